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
    Config, Fixture, Gateway, Pattern, Route, TempDir, Upstream, bearer, closed_port, rt,
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
        .upstream(h2_upstream("down", &format!("http://{}", closed_port())))
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
