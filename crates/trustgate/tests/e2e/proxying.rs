//! End-to-end: the proxying machinery. HTTP/2 prior knowledge, streamed request bodies,
//! upgrades, upstream failures and timeouts, slow and idle clients, the connection limit, and TLS
//! termination with ALPN.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;

use crate::common::{
    Config, Fixture, Gateway, Pattern, RawResponse, Route, TempDir, Upstream, read_until_closed,
    rt, wait_until,
};

fn config(f: &Fixture) -> Config {
    f.config()
        .edit_upstream("echo", |u| u.set("response_timeout", "500ms"))
        .upstream(
            Upstream::new("down", &format!("http://{}", crate::common::refused_addr()))
                .set("connect_timeout", "500ms"),
        )
        .route(Route::new("root", "/", "echo", Pattern::Public))
        .route(Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders))
        .route(Route::new("down", "/down", "down", Pattern::Public))
}

/// Short header-read and idle timeouts.
fn with_timeouts(config: Config) -> Config {
    config
        .server("header_read_timeout", "1s")
        .server("idle_timeout", "1s")
}

fn start(f: &Fixture) -> Gateway {
    Gateway::start(&with_timeouts(config(f)))
}

/// Sends one request with `Connection: close` and returns the response, or `None` if the
/// connection was closed without one.
fn try_get(gateway: &Gateway, path: &str) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(gateway.proxy).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let (data, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    if data.is_empty() {
        return None;
    }
    let status = String::from_utf8_lossy(&data)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    Some(RawResponse {
        status,
        headers: Vec::new(),
        body: Vec::new(),
        raw: data,
    })
}

/// Without TLS the gateway tells HTTP/2 (prior knowledge) from HTTP/1 by the first bytes, even
/// when they come in pieces: a lone `P` may start either `POST` or the HTTP/2 preface.
#[test]
fn the_protocol_is_told_even_when_the_first_bytes_come_apart() {
    let f = Fixture::new();
    let gateway = start(&f);

    let mut h1 = gateway.connect();
    h1.write_all(b"P").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    h1.write_all(b"OST /apart HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(crate::common::read_response(&mut h1).status, 200);
    assert_eq!(f.upstream.last().unwrap().target, "/apart");

    let mut h2 = gateway.connect();
    h2.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The rest of the preface, then an empty SETTINGS frame.
    h2.write_all(b"\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    h2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut frame_head = [0u8; 9];
    h2.read_exact(&mut frame_head).unwrap();
    // The server's first frame is its SETTINGS (type 4) on stream 0: it speaks HTTP/2.
    assert_eq!(frame_head[3], 4, "{frame_head:?}");
    assert_eq!(&frame_head[5..], [0, 0, 0, 0]);
}

#[test]
fn http2_prior_knowledge_is_proxied_as_http1() {
    let f = Fixture::new();
    let gateway = start(&f);
    let t = f.token("alice");
    let url = format!("http://{}/ids/h2?x=1", gateway.proxy);
    let (status, version, body) = rt().block_on(async {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        let request = http::Request::post(url)
            .header("authorization", format!("Bearer {t}"))
            .header("x-user-id", "evil")
            .header("x_user_id", "evil")
            .body(Full::new(Bytes::from_static(b"h2 body")))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let version = response.version();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, version, body)
    });
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(version, http::Version::HTTP_2);
    let got = f.upstream.last().unwrap();
    assert!(
        got.raw_head.starts_with(b"POST /ids/h2?x=1 HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&got.raw_head)
    );
    assert_eq!(got.header_values("x-user-id"), ["alice"]);
    assert_eq!(
        got.cgi_names()
            .iter()
            .filter(|n| *n == "HTTP_X_USER_ID")
            .count(),
        1
    );
    assert_eq!(
        got.header_values("host"),
        [gateway.proxy.to_string().as_str()]
    );
    assert_eq!(got.body, b"h2 body");
    assert!(got.header_values("authorization").is_empty());
}

#[test]
fn a_chunked_upload_of_2_mib_streams_through_intact() {
    let f = Fixture::new();
    let gateway = start(&f);
    let payload: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    let mut stream = gateway.connect();
    stream
        .write_all(
            b"PUT /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\n",
        )
        .unwrap();
    for chunk in payload.chunks(50_000) {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .unwrap();
        stream.write_all(chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let r = crate::common::read_response(&mut stream);
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.json()["body_len"], payload.len());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.method, "PUT");
    assert_eq!(got.body.len(), payload.len());
    assert!(got.body == payload, "the body was altered in transit");
}

/// Opens a WebSocket through the gateway and reads the `101` head, asserting it.
/// hyper writes an HTTP/1 trailer field only when the head declares it in `Trailer`, which is
/// hop-by-hop here and restated: the upstream gets the declared fields that pass the trailer
/// filter, and never a client's identity, in the head or after the body.
#[test]
fn http1_request_trailers_reach_an_http1_upstream_without_client_identity() {
    let f = Fixture::new();
    let gateway = start(&f);
    let token = f.token("alice");
    let request = format!(
        "POST /ids HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n\
         Trailer: X-Checksum, X-User-Id, X_User_Id\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-User-Id: admin\r\nX_User_Id: admin\r\n\r\n"
    );
    let response = gateway.raw(request.as_bytes());
    assert_eq!(response.status, 200, "{}", response.body_text());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.body, b"hello");
    assert_eq!(seen.header_values("trailer"), ["x-checksum"]);
    assert_eq!(seen.header_values("x-user-id"), ["alice"]);
    assert_eq!(seen.trailers, [("x-checksum".to_owned(), "abc".to_owned())]);
}

/// Response trailers reach an HTTP/1 client that sent `TE: trailers`, without hop-by-hop fields,
/// and the restated declaration names only what is sent.
#[test]
fn http1_response_trailers_reach_a_client_that_accepts_them() {
    let f = Fixture::new();
    let gateway = start(&f);
    let exchange = |te: &str| {
        let mut stream = gateway.connect();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: gw.test\r\nx-echo-trailers: 1\r\n{te}Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let (data, _) = read_until_closed(&mut stream, Duration::from_secs(5));
        String::from_utf8(data).unwrap()
    };

    let accepted = exchange("TE: trailers\r\n");
    let (head, body) = accepted.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{accepted}");
    let declared: Vec<&str> = head
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| name.eq_ignore_ascii_case("trailer"))
        .map(|(_, value)| value)
        .collect();
    assert_eq!(declared, ["x-echo-trailer"], "{accepted}");
    assert!(
        body.ends_with("\r\n0\r\nx-echo-trailer: yes\r\n\r\n"),
        "{accepted}"
    );

    // Without `TE: trailers` hyper sends none.
    let refused = exchange("");
    assert!(refused.ends_with("\r\n0\r\n\r\n"), "{refused}");
}

/// Sends `request` over HTTP/2 with prior knowledge; returns the status and the body.
fn h2_exchange(request: http::Request<Full<Bytes>>) -> (http::StatusCode, Bytes) {
    rt().block_on(async {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    })
}

/// An HTTP/2 request reaches an HTTP/1.1 upstream as an HTTP/1.1 client would have sent it: one
/// `Cookie` line (RFC 9113 §8.2.3), `Content-Length: 0` on a POST without a body (RFC 9110
/// §8.6), and `TE: trailers` named in `Connection` (RFC 9110 §10.1.4).
#[test]
fn an_http2_request_reaches_an_http1_upstream_as_http1_carries_it() {
    let f = Fixture::new();
    let gateway = start(&f);
    let url = format!("http://{}/h2", gateway.proxy);
    let (status, _) = h2_exchange(
        http::Request::post(&url)
            .header("cookie", "a=1")
            .header("cookie", "b=2; c=3")
            .header("te", "trailers")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    );
    assert_eq!(status, 200);
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header_values("cookie"), ["a=1; b=2; c=3"]);
    assert_eq!(seen.header_values("content-length"), ["0"]);
    assert!(seen.header_values("transfer-encoding").is_empty());
    assert_eq!(seen.header_values("te"), ["trailers"]);
    assert_eq!(seen.header_values("connection"), ["te"]);

    // A GET without a body gets no length, and one cookie field stays as it is.
    let (status, _) = h2_exchange(
        http::Request::get(&url)
            .header("cookie", "a=1")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    );
    assert_eq!(status, 200);
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header_values("cookie"), ["a=1"]);
    assert!(seen.header_values("content-length").is_empty());
    assert!(seen.header_values("connection").is_empty());
}

/// An upstream response with equal `Content-Length` values, or with `Transfer-Encoding` and a
/// `Content-Length` that disagrees with it, reaches the client with one unambiguous length, and
/// the keep-alive connection stays in step.
#[test]
fn an_upstream_response_reaches_the_client_with_one_unambiguous_length() {
    let f = Fixture::new();
    let gateway = start(&f);
    let mut stream = gateway.connect();
    let mut ask = |framing: &str| {
        let request = format!(
            "GET /{framing} HTTP/1.1\r\nHost: gw.test\r\nx-echo-framing: {framing}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let response = crate::common::read_response(&mut stream);
        assert_eq!(response.status, 200, "{framing}: {response:?}");
        assert_eq!(response.json()["target"], format!("/{framing}"));
        (
            response.header_values("content-length").join("|"),
            response.body.len(),
            response.header("transfer-encoding").map(str::to_owned),
        )
    };
    for framing in ["double-length", "length-list"] {
        let (lengths, body, chunked) = ask(framing);
        assert_eq!(lengths, body.to_string(), "{framing}");
        assert_eq!(chunked, None, "{framing}");
    }
    let (lengths, _, chunked) = ask("chunked-and-length");
    assert_eq!(lengths, "");
    assert_eq!(chunked.as_deref(), Some("chunked"));
    // Still in step: the next response on the connection is read whole.
    let (lengths, body, _) = ask("double-length");
    assert_eq!(lengths, body.to_string());

    // An HTTP/2 client gets the response, not a stream error.
    for framing in ["double-length", "length-list", "chunked-and-length"] {
        let (status, body) = h2_exchange(
            http::Request::get(format!("http://{}/{framing}", gateway.proxy))
                .header("x-echo-framing", framing)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        );
        assert_eq!(status, 200, "{framing}");
        let described: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(described["target"], format!("/{framing}"));
    }
}

fn open_websocket(gateway: &Gateway) -> TcpStream {
    let mut stream = gateway.connect();
    stream
        .write_all(
            b"GET /ws/chat HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              X-User-Id: evil\r\n\r\n",
        )
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed before 101");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

/// Sends `message` down a tunnel and asserts the upstream's echo, byte for byte.
fn assert_echoes(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut echoed = vec![0u8; message.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, message);
}

#[test]
fn websocket_upgrade_passes_through_and_bytes_echo_back() {
    let f = Fixture::new();
    let gateway = start(&f);
    let mut stream = open_websocket(&gateway);
    assert_echoes(&mut stream, b"hello through the gateway");
    assert_echoes(&mut stream, &[0u8, 1, 2, 255, 13, 10]);
    let got = f.upstream.last().unwrap();
    assert_eq!(got.target, "/ws/chat");
    assert_eq!(got.header_values("upgrade"), ["websocket"]);
    assert_eq!(got.header_values("connection"), ["upgrade"]);
    assert_eq!(
        got.header_values("sec-websocket-key"),
        ["dGhlIHNhbXBsZSBub25jZQ=="]
    );
    assert!(got.header_values("x-user-id").is_empty());
}

#[test]
fn upstream_down_is_502_quickly() {
    let f = Fixture::new();
    let gateway = start(&f);
    let started = Instant::now();
    let r = gateway.get("/down/x", &[]);
    assert_eq!(r.status, 502);
    assert_eq!(r.body_text(), r#"{"error":"bad_gateway"}"#);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        gateway.metric(r#"trustgate_requests_total{route="down",outcome="upstream_error"}"#),
        Some(1.0)
    );
}

/// An upstream's response head is read into a buffer of 64 KiB (`upstream::UPSTREAM_BUF_BYTES`,
/// which also bounds what of a request body waits for a slow upstream). hyper refuses a head
/// still unfinished once that much is read, and a read adds at most that much again: 60,000
/// bytes of one field pass, 140,000 (which hyper's default of about 400 KiB let through) are
/// refused as the upstream's fault.
#[test]
fn an_upstream_response_head_over_128_kib_is_502() {
    let f = Fixture::new();
    for (value_len, status) in [(60_000, 200), (140_000, 502)] {
        let big = "a".repeat(value_len);
        let upstream = crate::common::canned_upstream(
            format!("HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\nok").into_bytes(),
        );
        let gateway = Gateway::start(
            &f.config()
                .upstream(Upstream::new("big", &format!("http://{upstream}")))
                .route(Route::new("big", "/", "big", Pattern::Public)),
        );
        let r = gateway.get("/", &[]);
        assert_eq!(r.status, status, "X-Big of {value_len} bytes");
        if status == 200 {
            assert_eq!(r.header("x-big").map(str::len), Some(value_len));
        }
    }
}

#[test]
fn slow_upstream_beyond_the_response_timeout_is_504() {
    let f = Fixture::new();
    let gateway = start(&f);
    let started = Instant::now();
    let r = gateway.get("/slow", &[("x-echo-delay-ms", "3000")]);
    let elapsed = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.body_text(), r#"{"error":"gateway_timeout"}"#);
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    // Within the timeout, a slow answer is fine.
    let r = gateway.get("/slow", &[("x-echo-delay-ms", "100")]);
    assert_eq!(r.status, 200);
}

#[test]
fn slowloris_half_a_header_block_is_cut_off() {
    let f = Fixture::new();
    // A long idle timeout, so only the header-read timeout can end these connections.
    let gateway = Gateway::start(
        &config(&f)
            .server("header_read_timeout", "1s")
            .server("idle_timeout", "30s"),
    );
    // Half a header block, then silence.
    let mut stream = gateway.connect();
    let started = Instant::now();
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ")
        .unwrap();
    let (data, closed) = read_until_closed(&mut stream, Duration::from_secs(4));
    let elapsed = started.elapsed();
    assert!(closed, "the connection stayed open");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    let text = String::from_utf8_lossy(&data);
    assert!(
        data.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );

    // A header block dripped a line at a time (never idle) is cut off all the same, and so are
    // blank lines dripped before a request line, which hyper skips as part of reading a head.
    for (what, first, drip) in [
        (
            "a dripping header block",
            &b"GET /y HTTP/1.1\r\nHost: gw.test\r\n"[..],
            &b"X-Drip: 1\r\n"[..],
        ),
        (
            "blank lines before a request line",
            &b"\r\n"[..],
            &b"\r\n"[..],
        ),
    ] {
        let elapsed = dripped_until_cut_off(&gateway, first, drip);
        let elapsed = elapsed.unwrap_or_else(|| panic!("{what} was never cut off"));
        assert!(elapsed < Duration::from_millis(2500), "{what}: {elapsed:?}");
    }
    assert_eq!(f.upstream.count(), 0);
}

/// Sends `first`, then `drip` every 200 ms, until the gateway closes the connection (or answers
/// on it): how long that took, or `None` if it had not after 4 s.
fn dripped_until_cut_off(gateway: &Gateway, first: &[u8], drip: &[u8]) -> Option<Duration> {
    let mut stream = gateway.connect();
    let started = Instant::now();
    stream.write_all(first).unwrap();
    while started.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(200));
        if stream.write_all(drip).is_err() {
            return Some(started.elapsed());
        }
        stream.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 256];
        // Anything but "no data yet" means the gateway acted: EOF, reset or a 408.
        let acted = !matches!(
            stream.read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        stream.set_nonblocking(false).unwrap();
        if acted {
            return Some(started.elapsed());
        }
    }
    None
}

/// The header read timeout runs from a head's first byte, not while a keep-alive connection
/// waits for its next request: that wait is the idle timeout's.
#[test]
fn an_idle_keep_alive_connection_outlives_the_header_read_timeout() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &config(&f)
            .server("header_read_timeout", "500ms")
            .server("idle_timeout", "30s"),
    );
    let mut stream = gateway.connect();
    for path in ["/first", "/second"] {
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n").as_bytes())
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(&head, b"HTTP/1.1 200", "{path}");
        // The rest of the response: read until the connection is quiet.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut rest = [0u8; 16384];
        while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
        // Three header read timeouts with nothing sent.
        std::thread::sleep(Duration::from_millis(1_500));
    }
    assert_eq!(f.upstream.count(), 2);
}

/// A gateway with these timeouts, and a connection to it on which `head` has been sent.
fn sent_with_timeouts(
    f: &Fixture,
    header_read_timeout: &str,
    idle_timeout: &str,
    head: &[u8],
) -> (Gateway, TcpStream) {
    let gateway = Gateway::start(
        &config(f)
            .server("header_read_timeout", header_read_timeout)
            .server("idle_timeout", idle_timeout),
    );
    let mut stream = gateway.connect();
    stream.write_all(head).unwrap();
    (gateway, stream)
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let f = Fixture::new();
    // A long header-read timeout, so only the idle timeout can end this connection.
    let (_gateway, mut stream) =
        sent_with_timeouts(&f, "30s", "1s", b"GET /a HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    let r = crate::common::read_response(&mut stream);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None, "keep-alive expected");
    let idle_from = Instant::now();
    let (data, closed) = read_until_closed(&mut stream, Duration::from_secs(4));
    let elapsed = idle_from.elapsed();
    assert!(closed, "the idle connection stayed open");
    assert!(data.is_empty(), "{:?}", String::from_utf8_lossy(&data));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
}

/// A head that promises a chunked body and then sends nothing is answered 408 with the connection
/// closed once `header_read_timeout` has passed; nothing reaches the upstream.
#[test]
fn a_chunked_head_whose_body_never_comes_gets_408_at_the_header_read_timeout() {
    let f = Fixture::new();
    let (_gateway, mut stream) = sent_with_timeouts(
        &f,
        "1s",
        "30s",
        b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let started = Instant::now();
    let (data, closed) = read_until_closed(&mut stream, Duration::from_secs(5));
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&data);
    assert!(closed, "{text:?}");
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{text:?}"
    );
    assert!(text.ends_with(r#"{"error":"request_timeout"}"#), "{text:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
    assert_eq!(f.upstream.count(), 0);
}

/// A request in flight that makes no progress (here an upstream that stops mid-body) does not
/// hold the connection for ever: the idle close waits for it one more idle timeout, then drops
/// the connection.
#[test]
fn a_stalled_exchange_is_dropped_one_idle_timeout_after_the_idle_close() {
    let f = Fixture::new();
    let (_gateway, mut stream) = sent_with_timeouts(
        &f,
        "30s",
        "1s",
        b"GET /stall HTTP/1.1\r\nHost: gw.test\r\nx-echo-stall-body: 1\r\n\r\n",
    );
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let stalled_from = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(8));
    let elapsed = stalled_from.elapsed();
    assert!(closed, "a connection without a byte for 8 s is still open");
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_millis(4000),
        "{elapsed:?}"
    );
}

/// One HTTP/2 connection to `addr` (its client pinging every 100 ms when `pings`), one `GET` of
/// `target` with `headers` on it: the status, and how long after the response head the gateway
/// closed the connection (at most 8 s). The body is read meanwhile, as far as it comes.
fn h2_closed_after(
    addr: std::net::SocketAddr,
    pings: bool,
    target: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, Duration) {
    let mut request = http::Request::get(format!("http://{addr}{target}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(http_body_util::Empty::<Bytes>::new()).unwrap();
    rt().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        if pings {
            builder
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_millis(100))
                .keep_alive_while_idle(true);
        }
        let (mut sender, conn) = builder.handshake(TokioIo::new(tcp)).await.unwrap();
        let conn = tokio::spawn(conn);
        let response = sender.send_request(request).await.unwrap();
        let from = Instant::now();
        let status = response.status();
        tokio::spawn(response.into_body().collect());
        let _ = tokio::time::timeout(Duration::from_secs(8), conn).await;
        (status, from.elapsed())
    })
}

/// An idle HTTP/2 connection closes at the idle timeout like an HTTP/1 one: nothing of the
/// gateway's own (no keep-alive ping) counts as activity.
#[test]
fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).server("idle_timeout", "1s"));
    let (status, idle_for) = h2_closed_after(gateway.proxy, false, "/a", &[]);
    assert_eq!(status, 200);
    assert!(
        idle_for >= Duration::from_millis(900) && idle_for < Duration::from_millis(2500),
        "{idle_for:?}"
    );
}

/// Nor do the client's pings, and the acknowledgements they call for: a client can send them
/// for ever without asking anything, and would hold its `max_connections` slot for ever.
#[test]
fn an_http2_connection_kept_only_by_its_clients_pings_is_closed_after_the_idle_timeout() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).server("idle_timeout", "1s"));
    let (status, idle_for) = h2_closed_after(gateway.proxy, true, "/a", &[]);
    assert_eq!(status, 200);
    assert!(
        idle_for >= Duration::from_millis(900) && idle_for < Duration::from_millis(2500),
        "{idle_for:?}"
    );
}

/// An HTTP/2 exchange that makes no progress (an upstream stopped mid-body) is dropped one idle
/// timeout after the idle close, as over HTTP/1, however the client pings meanwhile: a client
/// that never reads its response would otherwise hold the upstream's stream as long as it liked.
#[test]
fn a_stalled_http2_exchange_is_dropped_while_the_client_pings() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).server("idle_timeout", "1s"));
    let (status, stalled_for) =
        h2_closed_after(gateway.proxy, true, "/stall", &[("x-echo-stall-body", "1")]);
    assert_eq!(status, 200);
    assert!(
        stalled_for >= Duration::from_millis(1800) && stalled_for < Duration::from_millis(4000),
        "{stalled_for:?}"
    );
}

/// The public listener's part of the idle close's GOAWAY rule (the unit tests in `limits.rs`
/// run it on a listener of their own): once the final GOAWAY is out, h2 drops a client's HEADERS
/// on new streams without a word, so they are no use. A client sending one every 100 ms must not
/// keep its stalled request (a POST whose body never comes), the upstream's connection and its
/// own slot open.
#[test]
fn headers_sent_after_the_final_goaway_do_not_keep_a_stalled_http2_request_open() {
    use std::sync::{Arc, Mutex, mpsc};

    let f = Fixture::new();
    // A long response timeout: the upstream waits for the body, and the exchange stays stalled.
    let config = public_route_with(&f, "response_timeout", "30s").server("idle_timeout", "1s");
    let gateway = Gateway::start(&config);
    let stream = gateway.connect();
    let mut reader = stream.try_clone().unwrap();
    let writer = Arc::new(Mutex::new(stream));

    // :method POST, :scheme http, :path /, :authority gw.test (literal, not indexed).
    let block = [
        0x83u8, 0x86, 0x84, 0x01, 7, b'g', b'w', b'.', b't', b'e', b's', b't',
    ];
    let headers = move |id: u8, flags: u8| {
        let mut frame = vec![
            0,
            0,
            u8::try_from(block.len()).unwrap(),
            1,
            flags,
            0,
            0,
            0,
            id,
        ];
        frame.extend_from_slice(&block);
        frame
    };
    let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
    // Stream 1: END_HEADERS, no END_STREAM.
    writer
        .lock()
        .unwrap()
        .write_all(
            &[
                &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
                &settings[..],
                &headers(1, 0x4)[..],
            ]
            .concat(),
        )
        .unwrap();

    // Reads frames until the connection ends, answering the server's pings (the graceful
    // close's among them) as any client does, and telling when the final GOAWAY (last stream 1,
    // not 2^31-1) arrives.
    let (goaway_tx, goaway_rx) = mpsc::channel::<Instant>();
    let acks = Arc::clone(&writer);
    let ended = std::thread::spawn(move || {
        reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            while buf.len() >= 9 {
                let len =
                    usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..9 + len).collect();
                if frame[3] == 7 && frame.get(9..13) == Some(&[0, 0, 0, 1][..]) {
                    let _ = goaway_tx.send(Instant::now());
                }
                if frame[3] == 6 && frame[4] & 1 == 0 {
                    let mut ack = frame.clone();
                    ack[4] = 1;
                    let _ = acks.lock().unwrap().write_all(&ack);
                }
            }
        }
    });
    let final_goaway = goaway_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("no final GOAWAY within 5 s of an idle stalled request");
    // A GET on stream 3, END_STREAM | END_HEADERS, every 100 ms, until the connection is gone
    // (8 s at most).
    while final_goaway.elapsed() < Duration::from_secs(8) && !ended.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        // Fails once the gateway has closed; the loop ends when the reader sees it.
        let _ = writer.lock().unwrap().write_all(&headers(3, 0x5));
    }
    assert!(ended.is_finished(), "still open 8 s after the final GOAWAY");
    let closed_after = ended.join().unwrap().duration_since(final_goaway);
    // Dropped one idle timeout (checked every quarter of it) after the graceful close.
    assert!(
        closed_after >= Duration::from_millis(700) && closed_after < Duration::from_millis(2500),
        "{closed_after:?}"
    );
}

/// Sends `GET target` with `extra` header lines on `stream`, kept alive, and returns the status
/// and the number of the upstream connection that carried it.
fn get_on(stream: &mut TcpStream, f: &Fixture, target: &str, extra: &str) -> (u16, u64) {
    stream
        .write_all(format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{extra}\r\n").as_bytes())
        .unwrap();
    let response = crate::common::read_response(stream);
    let recorded = f.upstream.last().unwrap();
    assert_eq!(recorded.target, target);
    (response.status, recorded.connection)
}

/// Upstream connections are shared between client connections, but one is never given to a
/// second request while a first one's response is still on it.
#[test]
fn upstream_connections_are_reused_but_never_while_a_response_is_on_them() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let mut first = gateway.connect();
    let (status, reused) = get_on(&mut first, &f, "/a1", "");
    assert_eq!(status, 200);
    assert_eq!(get_on(&mut first, &f, "/a2", ""), (200, reused));
    let mut second = gateway.connect();
    assert_eq!(get_on(&mut second, &f, "/b1", ""), (200, reused));

    // A slow answer holds its connection: a request meanwhile gets another one.
    first
        .write_all(b"GET /slow HTTP/1.1\r\nHost: gw.test\r\nx-echo-delay-ms: 300\r\n\r\n")
        .unwrap();
    assert!(wait_until(Duration::from_secs(2), || {
        f.upstream.last().is_some_and(|r| r.target == "/slow")
    }));
    let (status, meanwhile) = get_on(&mut second, &f, "/b2", "");
    assert_eq!(status, 200);
    assert_ne!(meanwhile, reused, "a connection was lent twice");
    assert_eq!(crate::common::read_response(&mut first).status, 200);

    // Both are back on the idle list: no third connection is made.
    for (stream, target) in [(&mut first, "/a3"), (&mut second, "/b3")] {
        let (status, connection) = get_on(stream, &f, target, "");
        assert_eq!(status, 200);
        assert!(
            [reused, meanwhile].contains(&connection),
            "{target} on {connection}"
        );
    }
}

/// The fixture's issuer and echo upstream, with `upstream_settings` added to the upstream, and one
/// public route to it.
fn public_route_with(f: &Fixture, key: &str, value: impl Into<serde_json::Value>) -> Config {
    f.config()
        .edit_upstream("echo", |u| u.set(key, value))
        .route(Route::new("root", "/", "echo", Pattern::Public))
}

/// `pool_max_idle_per_host = 0` keeps no idle connection: every request connects anew.
#[test]
fn with_no_idle_connections_kept_every_request_connects_anew() {
    let f = Fixture::new();
    let gateway = Gateway::start(&public_route_with(&f, "pool_max_idle_per_host", 0));
    let mut stream = gateway.connect();
    let mut seen = Vec::new();
    for target in ["/n1", "/n2", "/n3"] {
        let (status, connection) = get_on(&mut stream, &f, target, "");
        assert_eq!(status, 200);
        seen.push(connection);
    }
    // Sorted first: `dedup` only merges neighbours, and a reuse may come back to any earlier one.
    let mut distinct = seen.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "connections used: {seen:?}");
}

/// A full idle list makes room by closing its least recently used connection; the others stay,
/// and the next request takes the most recently used.
#[test]
fn a_full_idle_list_closes_its_least_recently_used_connection() {
    let f = Fixture::new();
    let gateway = Gateway::start(&public_route_with(&f, "pool_max_idle_per_host", 2));
    // Three requests at once, so three upstream connections, answered 100, 400 and 700 ms
    // later: given back in that order to a list that holds two.
    let mut clients: Vec<TcpStream> = (0..3).map(|_| gateway.connect()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let request = format!(
            "GET /burst{i} HTTP/1.1\r\nHost: gw.test\r\nx-echo-delay-ms: {}\r\n\r\n",
            100 + 300 * i
        );
        client.write_all(request.as_bytes()).unwrap();
    }
    for client in &mut clients {
        assert_eq!(crate::common::read_response(client).status, 200);
    }
    let connection_of = |target: &str| {
        let requests = f.upstream.requests();
        let request = requests.iter().find(|r| r.target == target).unwrap();
        request.connection
    };
    let (first, second, third) = (
        connection_of("/burst0"),
        connection_of("/burst1"),
        connection_of("/burst2"),
    );
    assert_eq!(f.upstream.connections(), 3);
    assert!(
        wait_until(Duration::from_secs(2), || f
            .upstream
            .connection_ended(first)),
        "the least recently used connection stayed open"
    );
    assert!(!f.upstream.connection_ended(second));
    assert!(!f.upstream.connection_ended(third));
    let mut stream = gateway.connect();
    assert_eq!(get_on(&mut stream, &f, "/after", ""), (200, third));
    assert_eq!(get_on(&mut stream, &f, "/after2", ""), (200, third));
    assert_eq!(f.upstream.connections(), 3);
}

/// An idle upstream connection is closed once `pool_idle_timeout` has passed, even when no other
/// request comes to notice it.
#[test]
fn an_idle_upstream_connection_is_closed_after_the_pool_idle_timeout() {
    let f = Fixture::new();
    let gateway = Gateway::start(&public_route_with(&f, "pool_idle_timeout", "400ms"));
    let mut stream = gateway.connect();
    let (status, connection) = get_on(&mut stream, &f, "/idle", "");
    assert_eq!(status, 200);
    let idle_from = Instant::now();
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        !f.upstream.connection_ended(connection),
        "closed before the timeout"
    );
    assert!(
        wait_until(Duration::from_secs(3), || f
            .upstream
            .connection_ended(connection)),
        "the idle upstream connection stayed open"
    );
    // Pruned every half timeout: closed between one and one and a half timeouts, plus slack
    // for a loaded machine.
    let elapsed = idle_from.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    // The client connection is unaffected: its next request connects anew.
    let (status, next) = get_on(&mut stream, &f, "/again", "");
    assert_eq!(status, 200);
    assert_ne!(next, connection);
}

/// An HTTP/1.0 request may name no host at all; the upstream still gets a `Host`, its own
/// authority, as HTTP/1.1 requires.
#[test]
fn a_request_without_a_host_reaches_the_upstream_with_its_authority() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let response = gateway.raw(b"GET /no-host HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200);
    let recorded = f.upstream.last().unwrap();
    assert_eq!(recorded.target, "/no-host");
    assert_eq!(
        recorded.header("host"),
        Some(f.upstream.addr.to_string().as_str())
    );
}

/// The upstream may close a connection after any response, saying so or not. The next request on
/// the same downstream connection goes out on a new upstream connection, and the downstream
/// connection stays open.
#[test]
fn an_upstream_connection_closed_by_the_upstream_is_replaced() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let mut stream = gateway.connect();
    let mut seen = Vec::new();
    for (target, extra) in [
        ("/close1", "x-echo-close: 1\r\n"),
        ("/close2", "x-echo-close: 1\r\n"),
        ("/hangup", "x-echo-hangup: 1\r\n"),
    ] {
        let (status, connection) = get_on(&mut stream, &f, target, extra);
        assert_eq!(status, 200, "{target}");
        seen.push(connection);
        // Time for the gateway to see the upstream's close: a request written onto a connection
        // the upstream is closing at that moment gets 502, as with any proxy.
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, last) = get_on(&mut stream, &f, "/after", "");
    assert_eq!(status, 200);
    seen.push(last);
    let mut distinct = seen.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "connections used: {seen:?}");
}

/// A response whose body has not been read to its end keeps its connection: another request
/// meanwhile gets another one, and if the client leaves mid-body the connection is not reused.
/// A request that waited on the unfinished body would get 504 (`response_timeout` is 500 ms).
#[test]
fn a_connection_with_an_unfinished_body_is_not_lent_again() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let mut reading = gateway.connect();
    reading
        .write_all(b"GET /stall HTTP/1.1\r\nHost: gw.test\r\nx-echo-stall-body: 1\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    reading.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let stalled = f.upstream.last().unwrap().connection;

    let mut other = gateway.connect();
    let (status, connection) = get_on(&mut other, &f, "/meanwhile", "");
    assert_eq!(status, 200);
    assert_ne!(connection, stalled);

    drop(reading);
    std::thread::sleep(Duration::from_millis(200));
    for target in ["/after1", "/after2"] {
        let (status, connection) = get_on(&mut other, &f, target, "");
        assert_eq!(status, 200);
        assert_ne!(connection, stalled);
    }
}

#[test]
fn the_connection_limit_closes_the_third_connection() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).server("max_connections", 2));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = gateway.connect();
        stream
            .write_all(b"GET /held HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            .unwrap();
        assert_eq!(crate::common::read_response(&mut stream).status, 200);
        held.push(stream);
    }
    let mut third = gateway.connect();
    let _ = third.write_all(b"GET /third HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    let (data, closed) = read_until_closed(&mut third, Duration::from_secs(3));
    assert!(closed, "the third connection was kept");
    assert!(data.is_empty(), "{:?}", String::from_utf8_lossy(&data));
    assert!(!f.upstream.requests().iter().any(|r| r.target == "/third"));

    // Freeing a slot lets a new connection in.
    drop(held.pop());
    assert!(
        wait_until(Duration::from_secs(3), || {
            try_get(&gateway, "/fourth").is_some_and(|r| r.status == 200)
        }),
        "no connection accepted after one closed"
    );
}

/// The HTTP connection that made a tunnel ends at the `101`; the tunnel must keep the
/// connection's slot, or WebSockets could exceed `max_connections` without bound.
#[test]
fn a_websocket_tunnel_keeps_its_connection_slot_until_it_closes() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).server("max_connections", 2));
    let mut tunnel = open_websocket(&gateway);
    assert_echoes(&mut tunnel, b"open");
    let mut held = gateway.connect();
    held.write_all(b"GET /held HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .unwrap();
    assert_eq!(crate::common::read_response(&mut held).status, 200);

    // Two slots in use, one of them by the tunnel: a third connection is closed unanswered.
    let mut third = gateway.connect();
    let _ = third.write_all(b"GET /third HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    let (data, closed) = read_until_closed(&mut third, Duration::from_secs(3));
    assert!(closed, "the third connection was kept");
    assert!(data.is_empty(), "{:?}", String::from_utf8_lossy(&data));
    assert_echoes(&mut tunnel, b"still open");

    // Closing the tunnel frees its slot.
    drop(tunnel);
    assert!(
        wait_until(Duration::from_secs(3), || {
            try_get(&gateway, "/fourth").is_some_and(|r| r.status == 200)
        }),
        "no connection accepted after the tunnel closed"
    );
    assert!(!f.upstream.requests().iter().any(|r| r.target == "/third"));
}

#[test]
fn more_header_fields_than_max_headers_are_refused_before_the_upstream() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).server("max_headers", 20));
    let request = |fields: usize| {
        let mut text = format!("GET /fields-{fields} HTTP/1.1\r\nHost: gw.test\r\n");
        // Host, fillers and Connection: `fields` header fields in all.
        for n in 2..fields {
            text.push_str(&format!("X-Filler-{n}: {n}\r\n"));
        }
        text.push_str("Connection: close\r\n\r\n");
        text
    };
    // 20 fields pass; 21 are refused with 431 and never reach the upstream.
    assert_eq!(gateway.raw(request(20).as_bytes()).status, 200);
    assert_eq!(gateway.raw(request(21).as_bytes()).status, 431);
    let targets: Vec<String> = f
        .upstream
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(targets, ["/fields-20"]);
}

fn openssl(dir: &TempDir, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(&dir.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA and a `localhost` / `127.0.0.1` leaf signed by it, made with the `openssl` CLI.
fn make_certs(dir: &TempDir) -> bool {
    dir.write(
        "leaf.ext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=trustgate test CA",
        "-days",
        "1",
    ]);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &ca)
        && openssl(dir, &csr)
        && openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "1",
                "-extfile",
                "leaf.ext",
            ],
        )
}

/// A gateway terminating TLS with a certificate from a test CA, and that CA as a root store.
fn start_tls(f: &Fixture) -> (Gateway, rustls::RootCertStore) {
    use rustls_pki_types::pem::PemObject;
    let dir = TempDir::new();
    // scripts/install-test-deps.sh installs openssl; a missing peer is a failure, never a skip.
    assert!(
        make_certs(&dir),
        "the openssl CLI is needed to make a test certificate (run scripts/install-test-deps.sh)"
    );
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(dir.0.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let gateway = Gateway::start_in(
        dir,
        &with_timeouts(config(f)).server("tls", json!({"cert": "leaf.pem", "key": "leaf.key"})),
        &[],
    );
    (gateway, roots)
}

/// Returning clients resume: the gateway issues session tickets, so every connection after a
/// client's first skips the full handshake (certificate signature included), however many
/// clients came between (tickets are stateless, not entries of a bounded cache).
#[test]
fn tls_sessions_resume_with_tickets() {
    let f = Fixture::new();
    let (gateway, roots) = start_tls(&f);
    let addr = gateway.proxy;
    let kinds = rt().block_on(async move {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = |resumption| {
            let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            tls.resumption = resumption;
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        };
        let returning = config(rustls::client::Resumption::in_memory_sessions(16));
        // More one-off clients than rustls' default session cache holds (256) come in between.
        let one_off = config(rustls::client::Resumption::disabled());
        let mut kinds = Vec::new();
        for round in 0..3 {
            if round == 1 {
                for _ in 0..300 {
                    connect_and_get(&one_off, addr).await;
                }
            }
            kinds.push(connect_and_get(&returning, addr).await);
        }
        kinds
    });
    use rustls::HandshakeKind::{Full, Resumed};
    assert_eq!(kinds, [Some(Full), Some(Resumed), Some(Resumed)]);
    assert_eq!(f.upstream.count(), 303);
}

/// One TLS connection making one HTTP/1.1 request to `/tls/x`; the answer is read to the end,
/// which also takes in the session tickets sent after the handshake. Returns how the handshake
/// went.
async fn connect_and_get(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> Option<rustls::HandshakeKind> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    stream
        .write_all(b"GET /tls/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    stream.get_ref().1.handshake_kind()
}

#[test]
fn tls_termination_negotiates_h2_with_alpn() {
    let f = Fixture::new();
    let (gateway, roots) = start_tls(&f);
    let addr = gateway.proxy;
    let (alpn, status, version, plain) = rt().block_on(async move {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::get("https://localhost/tls/x")
            .header("x-forwarded-proto", "http")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let version = response.version();

        // A plain-text request on the TLS port gets no HTTP answer.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
        )
        .await
        .unwrap()
        .unwrap_or(0);
        buf.truncate(n);
        (alpn, status, version, buf)
    });
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(status, 200);
    assert_eq!(version, http::Version::HTTP_2);
    assert!(!plain.starts_with(b"HTTP/1.1 200"), "{plain:?}");
    let got = f.upstream.last().unwrap();
    assert_eq!(got.target, "/tls/x");
    assert_eq!(got.header_values("x-forwarded-proto"), ["https"]);
    assert_eq!(f.upstream.count(), 1);
}
