//! End-to-end: HTTP/2 upstreams (`protocol = "http2"`), at the HTTP/2 level: trailers both ways
//! and their sanitization, gRPC-style refusals, `grpc-timeout`, the stream bound, `:authority`,
//! and h2 over TLS with ALPN. The upstream is test-support's `H2Echo`, which records what crossed
//! the wire; the client is hyper's HTTP/2 client (h2c with prior knowledge) or a raw HTTP/1.1
//! socket. The gRPC calls of a real tonic client are in `grpc.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use test_support::{DataThenTrailers, H2Echo, header_map};

use crate::common::{
    Config, Fixture, Gateway, Pattern, Route, TempDir, Upstream, bearer, refused_addr, rt,
};

/// What came back over HTTP/2.
struct H2Response {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl H2Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends one request over a new h2c connection to `addr`.
async fn h2_send(addr: SocketAddr, request: Request<DataThenTrailers>) -> H2Response {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    H2Response {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: Bytes::from(data),
        trailers,
    }
}

/// A gRPC-shaped POST to `path` on the gateway, with `headers`, `body` and `trailers`.
fn grpc_request(
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
    trailers: Option<HeaderMap>,
) -> Request<DataThenTrailers> {
    let mut request = Request::post(format!("http://api.example{path}"))
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(DataThenTrailers::new(Bytes::from_static(body), trailers))
        .unwrap()
}

fn h2_upstream(id: &str, url: &str) -> Upstream {
    Upstream::new(id, url).set("protocol", "http2")
}

/// An identity-headers route `/svc` and a route requiring role `admin` at `/svc.Admin`, both on
/// an HTTP/2 upstream.
fn config(f: &Fixture, upstream_url: &str) -> Config {
    f.config()
        .upstream(h2_upstream("grpc", upstream_url))
        .route(Route::new(
            "svc",
            "/svc.Echo",
            "grpc",
            Pattern::IdentityHeaders,
        ))
        .route(
            Route::new(
                "admin",
                "/svc.Echo/Delete",
                "grpc",
                Pattern::IdentityHeaders,
            )
            .require(json!({"roles": ["admin"]})),
        )
}

#[test]
fn trailers_pass_both_ways_and_lose_client_identity() {
    let f = Fixture::new();
    let upstream = rt().block_on(H2Echo::start());
    let gateway = Gateway::start(&config(&f, &upstream.url()));
    let token = bearer(&f.token("alice"));
    let forged = header_map(&[
        ("x-user-id", "admin"),
        ("x_user_roles", "admin"),
        ("x-trustgate-assertion", "forged"),
        ("authorization", "Bearer forged"),
        ("x-forwarded-for", "10.9.9.9"),
        ("x-checksum", "abc"),
    ]);
    let request = grpc_request(
        "/svc.Echo/Unary",
        &[("authorization", &token), ("x-user-id", "admin")],
        b"\0\0\0\0\x05hello",
        Some(forged),
    );
    let response = rt().block_on(h2_send(gateway.proxy, request));
    assert_eq!(response.status, 200);
    assert_eq!(&response.body[..], b"\0\0\0\0\x05hello");
    let trailers = response.trailers.expect("response trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-echo-trailer"], "yes");

    let seen = upstream.last().unwrap();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.path, "/svc.Echo/Unary");
    assert_eq!(seen.body_len, 10);
    assert_eq!(seen.header_values("x-user-id"), ["alice"]);
    assert!(seen.header_values("authorization").is_empty());
    assert_eq!(seen.header_values("te"), ["trailers"]);
    assert_eq!(
        seen.trailers.as_deref(),
        Some(&[("x-checksum".to_owned(), "abc".to_owned())][..]),
        "only the harmless trailer reaches the service"
    );
}

#[test]
fn http1_chunked_trailers_to_an_http2_upstream_lose_client_identity() {
    let f = Fixture::new();
    let upstream = rt().block_on(H2Echo::start());
    let gateway = Gateway::start(&config(&f, &upstream.url()));
    let token = f.token("alice");
    let request = format!(
        "POST /svc.Echo/Unary HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer {token}\r\n\
         TE: trailers\r\nTrailer: X-User-Id, X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\nX-User-Id: admin\r\nX_User_Id: admin\r\nX-Checksum: abc\r\n\r\n"
    );
    let response = gateway.raw(request.as_bytes());
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, b"hello");
    let seen = upstream.last().unwrap();
    assert_eq!(seen.header_values("x-user-id"), ["alice"]);
    assert_eq!(
        seen.trailers.as_deref(),
        Some(&[("x-checksum".to_owned(), "abc".to_owned())][..])
    );
}

#[test]
fn refusals_of_grpc_calls_carry_grpc_status_and_the_challenge() {
    let f = Fixture::new();
    let upstream = rt().block_on(H2Echo::start());
    let gateway = Gateway::start(&config(&f, &upstream.url()));
    let call = |path: &str, headers: &[(&str, &str)]| {
        rt().block_on(h2_send(
            gateway.proxy,
            grpc_request(path, headers, b"", None),
        ))
    };

    let missing = call("/svc.Echo/Unary", &[]);
    assert_eq!(missing.status, 200);
    assert_eq!(missing.header("grpc-status"), Some("16"));
    assert_eq!(missing.header("grpc-message"), Some("unauthenticated"));
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert_eq!(missing.header("content-type"), Some("application/grpc"));
    assert!(missing.body.is_empty());

    let expired = bearer(&f.expired_token("alice"));
    let expired = call("/svc.Echo/Unary", &[("authorization", &expired)]);
    assert_eq!(expired.header("grpc-status"), Some("16"));
    assert_eq!(expired.header("grpc-message"), Some("invalid_token"));
    assert_eq!(
        expired.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );

    // `require` per method: the route for one method asks for a role the token lacks.
    let token = bearer(&f.token("alice"));
    let scope = call("/svc.Echo/Delete", &[("authorization", &token)]);
    assert_eq!(scope.header("grpc-status"), Some("7"));
    assert_eq!(
        scope.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#)
    );
    let other_method = call("/svc.Echo/Unary", &[("authorization", &token)]);
    assert_eq!(other_method.status, 200);
    assert_eq!(
        other_method.trailers.as_ref().unwrap()["grpc-status"],
        "0",
        "the service's own status"
    );

    let unrouted = call("/other.Service/Method", &[("authorization", &token)]);
    assert_eq!(unrouted.header("grpc-status"), Some("12"));
    for response in [&missing, &expired, &scope, &unrouted] {
        let message = response.header("grpc-message").unwrap();
        assert!(!message.contains("ey"), "no token bytes: {message}");
    }
    assert_eq!(
        upstream.requests().len(),
        1,
        "only the allowed call went up"
    );

    // The same refusal to a non-gRPC client stays RFC 6750's.
    let plain = gateway.get("/svc.Echo/Unary", &[]);
    assert_eq!(plain.status, 401);
    assert_eq!(plain.header("www-authenticate"), Some("Bearer"));
}

#[test]
fn grpc_deadline_and_an_unreachable_upstream() {
    let f = Fixture::new();
    let upstream = rt().block_on(H2Echo::start());
    let config = config(&f, &upstream.url())
        .upstream(h2_upstream("down", &format!("http://{}", refused_addr())))
        .route(Route::new(
            "down",
            "/down.Service",
            "down",
            Pattern::IdentityHeaders,
        ));
    let gateway = Gateway::start(&config);
    let token = bearer(&f.token("alice"));

    let started = Instant::now();
    let late = rt().block_on(h2_send(
        gateway.proxy,
        grpc_request(
            "/svc.Echo/Unary",
            &[
                ("authorization", &token),
                ("grpc-timeout", "300m"),
                ("x-echo-delay-ms", "5000"),
            ],
            b"",
            None,
        ),
    ));
    let waited = started.elapsed();
    assert_eq!(late.status, 200);
    assert_eq!(late.header("grpc-status"), Some("4"));
    assert!(
        waited < Duration::from_secs(3),
        "the deadline, not the 30 s response timeout, ended the wait ({waited:?})"
    );
    assert_eq!(
        gateway.metric(r#"trustgate_requests_total{route="svc",outcome="upstream_error"}"#),
        Some(1.0)
    );

    let down = rt().block_on(h2_send(
        gateway.proxy,
        grpc_request(
            "/down.Service/Call",
            &[("authorization", &token)],
            b"",
            None,
        ),
    ));
    assert_eq!(down.status, 200);
    assert_eq!(down.header("grpc-status"), Some("14"));
    assert_eq!(down.header("grpc-message"), Some("upstream_unavailable"));
}

#[test]
fn requests_in_flight_to_an_http2_upstream_are_bounded_on_one_connection() {
    let f = Fixture::new();
    let upstream = rt().block_on(H2Echo::start());
    let config = f
        .config()
        .upstream(h2_upstream("grpc", &upstream.url()).set("max_concurrent_streams", 2))
        .route(Route::new("svc", "/svc.Echo", "grpc", Pattern::Public));
    let gateway = Gateway::start(&config);
    let proxy = gateway.proxy;
    let statuses = rt().block_on(async {
        let calls = (0..6).map(|_| {
            tokio::spawn(h2_send(
                proxy,
                Request::post("http://api.example/svc.Echo/Slow")
                    .header("x-echo-delay-ms", "300")
                    .body(DataThenTrailers::new(Bytes::from_static(b"x"), None))
                    .unwrap(),
            ))
        });
        let mut statuses = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            statuses.push(call.await.unwrap().status);
        }
        statuses
    });
    assert_eq!(statuses, [200; 6]);
    assert_eq!(upstream.requests().len(), 6);
    assert_eq!(upstream.max_in_flight(), 2, "max_concurrent_streams = 2");
    assert_eq!(upstream.connections(), 1, "one multiplexed connection");
}

/// `http2_connections = 3`: the requests take the three connections in turn, so an L4 balancer
/// in front of the upstream can place each on another replica. One connection carries them all
/// by default (the test above).
#[test]
fn http2_connections_spreads_requests_over_that_many_connections_in_turn() {
    let f = Fixture::new();
    let upstream = rt().block_on(H2Echo::start());
    let config = f
        .config()
        .upstream(h2_upstream("grpc", &upstream.url()).set("http2_connections", 3))
        .route(Route::new("svc", "/svc.Echo", "grpc", Pattern::Public));
    let gateway = Gateway::start(&config);
    let proxy = gateway.proxy;
    let statuses = rt().block_on(async {
        let mut statuses = Vec::new();
        for _ in 0..9 {
            let request = Request::post("http://api.example/svc.Echo/Say")
                .body(DataThenTrailers::new(Bytes::from_static(b"x"), None))
                .unwrap();
            statuses.push(h2_send(proxy, request).await.status);
        }
        statuses
    });
    assert_eq!(statuses, [200; 9]);
    assert_eq!(upstream.connections(), 3);
    let mut per_connection = std::collections::BTreeMap::new();
    for request in upstream.requests() {
        *per_connection.entry(request.connection).or_insert(0) += 1;
    }
    assert_eq!(
        per_connection.into_iter().collect::<Vec<_>>(),
        [(1, 3), (2, 3), (3, 3)]
    );
}

#[test]
fn authority_is_the_preserved_host_or_the_upstream() {
    let f = Fixture::new();
    let upstream = rt().block_on(H2Echo::start());
    for (preserve, expected) in [
        (true, "gateway.test".to_owned()),
        (false, upstream.addr.to_string()),
    ] {
        let config = f
            .config()
            .upstream(h2_upstream("grpc", &upstream.url()).set("preserve_host", preserve))
            .route(Route::new("svc", "/svc.Echo", "grpc", Pattern::Public));
        let gateway = Gateway::start(&config);
        // An HTTP/1.1 client's Host (the harness sends `gateway.test`).
        let response = gateway.get("/svc.Echo/Get", &[]);
        assert_eq!(response.status, 200);
        let seen = upstream.last().unwrap();
        assert_eq!(seen.authority.as_deref(), Some(expected.as_str()));
        assert!(
            seen.header_values("host").is_empty(),
            "HTTP/2 carries the host as :authority"
        );
    }
}

#[test]
fn http2_over_tls_with_alpn_and_a_custom_ca() {
    let f = Fixture::new();
    let dir = TempDir::new();
    crate::upstream_tls::make_pki(&dir);
    let cert = std::fs::read(dir.0.join("server.pem")).unwrap();
    let key = std::fs::read(dir.0.join("server.key")).unwrap();
    let upstream = rt().block_on(H2Echo::start_tls(&cert, &key));
    let config = f
        .config()
        .upstream(
            h2_upstream(
                "grpc",
                &format!("https://127.0.0.1:{}", upstream.addr.port()),
            )
            .path("ca_file", &dir.0.join("ca.pem")),
        )
        .route(Route::new(
            "svc",
            "/svc.Echo",
            "grpc",
            Pattern::IdentityHeaders,
        ));
    let gateway = Gateway::start_in(dir, &config, &[]);
    let token = bearer(&f.token("alice"));
    let response = rt().block_on(h2_send(
        gateway.proxy,
        grpc_request(
            "/svc.Echo/Unary",
            &[("authorization", &token)],
            b"tls",
            Some(header_map(&[("x-user-id", "admin")])),
        ),
    ));
    assert_eq!(response.status, 200);
    assert_eq!(&response.body[..], b"tls");
    assert_eq!(response.trailers.unwrap()["grpc-status"], "0");
    let seen = upstream.last().unwrap();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.header_values("x-user-id"), ["alice"]);
    assert!(seen.trailer_values("x-user-id").is_empty());
}

/// How an HPACK field representation asks the decoder to treat the field (RFC 7541 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Indexing {
    /// The whole field from a table.
    Indexed,
    /// A literal the decoder adds to its dynamic table.
    Incremental,
    /// A literal not added.
    Without,
    /// A literal not added, here or by any intermediary further on.
    Never,
}

/// One field of a header block, as it crossed the wire.
#[derive(Debug, Clone, Copy)]
struct WireField {
    indexing: Indexing,
    /// The name's index in the tables, 0 for a literal name.
    name_index: usize,
    /// The value's encoded length (0 for an indexed field).
    value_len: usize,
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1).
fn hpack_int(block: &[u8], at: &mut usize, prefix: u32) -> usize {
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(block[*at]) & max;
    *at += 1;
    if value == max {
        let mut shift = 0;
        loop {
            let byte = block[*at];
            *at += 1;
            value += usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    value
}

/// Skips an HPACK string literal, returning its encoded length.
fn hpack_skip_string(block: &[u8], at: &mut usize) -> usize {
    let len = hpack_int(block, at, 7);
    *at += len;
    len
}

/// Each field's representation in a header block, without decoding names or values.
fn wire_fields(block: &[u8]) -> Vec<WireField> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        let (indexing, prefix) = match first {
            _ if first & 0x80 != 0 => (Indexing::Indexed, 7),
            _ if first & 0xc0 == 0x40 => (Indexing::Incremental, 6),
            _ if first & 0xe0 == 0x20 => {
                hpack_int(block, &mut at, 5); // a dynamic table size update
                continue;
            }
            _ if first & 0x10 != 0 => (Indexing::Never, 4),
            _ => (Indexing::Without, 4),
        };
        let name_index = hpack_int(block, &mut at, prefix);
        let value_len = if indexing == Indexing::Indexed {
            0
        } else {
            if name_index == 0 {
                hpack_skip_string(block, &mut at);
            }
            hpack_skip_string(block, &mut at)
        };
        fields.push(WireField {
            indexing,
            name_index,
            value_len,
        });
    }
    fields
}

/// An h2c upstream written at the frame level, because the h2 crate does not tell which fields
/// came never-indexed: it answers every request `200` with no body and keeps each request's
/// header block as it came.
struct RawH2Upstream {
    addr: SocketAddr,
    blocks: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl RawH2Upstream {
    fn start() -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let blocks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&blocks);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let kept = std::sync::Arc::clone(&kept);
                // Ends with the first read error: the gateway closed the connection.
                std::thread::spawn(move || -> std::io::Result<()> {
                    let mut preface = [0u8; 24];
                    stream.read_exact(&mut preface)?;
                    assert_eq!(&preface[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
                    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])?; // our SETTINGS, empty
                    let mut block = Vec::new();
                    loop {
                        let mut head = [0u8; 9];
                        stream.read_exact(&mut head)?;
                        let len = usize::from(head[0]) << 16
                            | usize::from(head[1]) << 8
                            | usize::from(head[2]);
                        let (kind, flags) = (head[3], head[4]);
                        let stream_id = [head[5] & 0x7f, head[6], head[7], head[8]];
                        let mut payload = vec![0u8; len];
                        stream.read_exact(&mut payload)?;
                        match kind {
                            // SETTINGS, not an acknowledgement: acknowledge it.
                            4 if flags & 1 == 0 => {
                                stream.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0])?
                            }
                            // HEADERS (no padding or priority from h2's client), CONTINUATION.
                            1 | 9 => {
                                block.extend_from_slice(&payload);
                                if flags & 4 != 0 {
                                    kept.lock().unwrap().push(std::mem::take(&mut block));
                                    // HEADERS `:status: 200` (static index 8), END_STREAM and
                                    // END_HEADERS.
                                    let mut answer = vec![0, 0, 1, 1, 5];
                                    answer.extend_from_slice(&stream_id);
                                    answer.push(0x88);
                                    stream.write_all(&answer)?;
                                }
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        Self { addr, blocks }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn blocks(&self) -> Vec<Vec<u8>> {
        self.blocks.lock().unwrap().clone()
    }
}

/// RFC 7541 §7.1.3: on the one HTTP/2 connection that carries every client's requests to an
/// upstream, a credential must not enter the HPACK table, where a compression attack could
/// recover it; and "never indexed" tells intermediaries further on the same. The internal token
/// (pattern 4), the gateway's assertion, and a forwarded client token (pattern 2) all go as
/// never-indexed literals, on every request.
#[test]
fn credentials_cross_to_an_http2_upstream_never_indexed() {
    const AUTHORIZATION_NAME: usize = 23; // HPACK's static table
    let f = Fixture::new();
    let upstream = RawH2Upstream::start();
    let config = f
        .config()
        .section("internal_issuer", "rotation_interval", "1h")
        .upstream(h2_upstream("svc", &upstream.url()))
        .route(Route::new(
            "internal",
            "/internal",
            "svc",
            Pattern::InternalToken,
        ))
        .route(Route::new("asserted", "/asserted", "svc", Pattern::IdentityHeaders).assertion())
        .route(Route::new(
            "forwarded",
            "/forwarded",
            "svc",
            Pattern::ForwardToken,
        ));
    let gateway = Gateway::start(&config);
    let token = bearer(&f.token("alice"));
    let paths = ["/internal", "/asserted", "/forwarded"];
    for _round in 0..2 {
        for path in paths {
            let response = gateway.get(path, &[("authorization", &token)]);
            assert_eq!(response.status, 200, "{path}");
        }
    }

    let blocks = upstream.blocks();
    assert_eq!(blocks.len(), 2 * paths.len());
    for (request, block) in blocks.iter().enumerate() {
        let path = paths[request % paths.len()];
        let fields = wire_fields(block);
        // A token or an assertion is hundreds of bytes; nothing else in these requests is.
        let credentials: Vec<&WireField> = fields.iter().filter(|f| f.value_len > 100).collect();
        assert_eq!(credentials.len(), 1, "{path}: {fields:?}");
        let credential = credentials[0];
        assert_eq!(credential.indexing, Indexing::Never, "{path}: {fields:?}");
        if path == "/asserted" {
            // The assertion's name is a literal; the client's token did not cross.
            assert_eq!(credential.name_index, 0, "{path}: {fields:?}");
            assert!(
                fields.iter().all(|f| f.name_index != AUTHORIZATION_NAME),
                "{path}"
            );
        } else {
            assert_eq!(
                credential.name_index, AUTHORIZATION_NAME,
                "{path}: {fields:?}"
            );
        }
        assert!(
            fields
                .iter()
                .all(|f| f.indexing != Indexing::Incremental || f.value_len < 100),
            "{path}: {fields:?}"
        );
    }
}
