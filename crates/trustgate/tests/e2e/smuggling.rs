//! End-to-end: request smuggling. Ambiguous framing (CL+TE, obfuscated or repeated TE, invalid or
//! repeated CL, framing headers spelled with `_`) is refused with 400 and `Connection: close`
//! before anything reaches the upstream; a request hidden in a body is never executed upstream.

use std::io::Write;
use std::time::Duration;

use crate::common::{Config, Fixture, Gateway, Pattern, Route, read_until_closed};

fn start(f: &Fixture) -> Gateway {
    start_with(f, |c| c)
}

/// [`start`], with `edit` applied to the config.
fn start_with(f: &Fixture, edit: impl FnOnce(Config) -> Config) -> Gateway {
    Gateway::start(&edit(
        f.config()
            .route(Route::new("public", "/", "echo", Pattern::Public))
            .route(Route::new(
                "admin",
                "/admin",
                "echo",
                Pattern::IdentityHeaders,
            )),
    ))
}

/// The request a smuggler hopes the upstream runs as a second request.
const HIDDEN: &str = "GET /smuggled HTTP/1.1\r\nHost: gw.test\r\nX-User-Id: admin\r\n\r\n";

/// Sends `head` + `body` without `Connection: close`, then reads until the gateway closes.
/// Returns the status of the first response and whether the connection was closed.
fn send_keep_alive(gateway: &Gateway, head: &str, body: &[u8]) -> (u16, String, bool) {
    let mut stream = gateway.connect();
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).unwrap();
    let (data, closed) = read_until_closed(&mut stream, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&data).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, closed)
}

fn assert_refused(f: &Fixture, gateway: &Gateway, name: &str, head: &str, body: &[u8]) {
    let (status, text, closed) = send_keep_alive(gateway, head, body);
    assert_eq!(status, 400, "{name}: {text:?}");
    assert!(
        closed,
        "{name}: the connection stayed open after a framing error"
    );
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "{name}: a second response was sent: {text:?}"
    );
    assert_eq!(f.upstream.count(), 0, "{name}: reached the upstream");
    assert!(
        !f.upstream
            .requests()
            .iter()
            .any(|r| r.target == "/smuggled"),
        "{name}"
    );
}

#[test]
fn cl_te_and_te_cl_are_refused_with_connection_close() {
    let f = Fixture::new();
    let gateway = start(&f);
    // CL.TE: a front end using Content-Length would send all of it; a back end using chunked
    // would see the end at `0\r\n\r\n` and run the rest as a new request.
    let body = format!("0\r\n\r\n{HIDDEN}");
    let head = format!(
        "POST /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        body.len()
    );
    let (status, text, closed) = send_keep_alive(&gateway, &head, body.as_bytes());
    assert_eq!(status, 400, "{text:?}");
    assert!(closed);
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{text:?}"
    );
    assert_eq!(f.upstream.count(), 0);

    // TE.CL: the headers in the other order, a body that is only "valid" as chunked.
    let chunk = format!("{:x}\r\n{HIDDEN}\r\n0\r\n\r\n", HIDDEN.len());
    let head = "POST /x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n";
    assert_refused(&f, &gateway, "TE.CL", head, chunk.as_bytes());
}

/// A request that says it is gRPC gets its refusal the gRPC way (HTTP 200, `grpc-status`), but
/// the connection closes all the same: the content type is the client's word, and the bytes
/// after a framing refusal are not read as a request.
#[test]
fn a_framing_refusal_closes_the_connection_for_a_grpc_request_too() {
    let f = Fixture::new();
    let gateway = start(&f);
    let chunk = format!("{:x}\r\n{HIDDEN}\r\n0\r\n\r\n", HIDDEN.len());
    let variants = [
        (
            "underscore TE",
            "Transfer_Encoding: chunked\r\n".to_owned(),
            chunk.clone(),
        ),
        (
            "underscore CL",
            format!("Content_Length: {}\r\n", HIDDEN.len()),
            HIDDEN.to_owned(),
        ),
        (
            "TE.CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n".to_owned(),
            chunk.clone(),
        ),
    ];
    for (name, framing, body) in &variants {
        let head = format!(
            "POST /x HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/grpc\r\nTE: trailers\r\n{framing}\r\n"
        );
        let (status, text, closed) = send_keep_alive(&gateway, &head, body.as_bytes());
        let lower = text.to_ascii_lowercase();
        assert_eq!(status, 200, "{name}: {text:?}");
        assert!(
            lower.contains("\r\ngrpc-status: 13\r\n"),
            "{name}: {text:?}"
        );
        assert!(
            lower.contains("\r\nconnection: close\r\n"),
            "{name}: {text:?}"
        );
        assert!(closed, "{name}: the connection stayed open: {text:?}");
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{name}: a second response was sent: {text:?}"
        );
    }
    assert_eq!(f.upstream.count(), 0);
}

#[test]
fn obfuscated_transfer_encodings_are_refused() {
    let f = Fixture::new();
    let gateway = start(&f);
    let body = format!("0\r\n\r\n{HIDDEN}");
    let variants: &[(&str, &str)] = &[
        ("xchunked", "Transfer-Encoding: xchunked\r\n"),
        ("chunkedx", "Transfer-Encoding: chunkedx\r\n"),
        (
            "chunked, identity",
            "Transfer-Encoding: chunked, identity\r\n",
        ),
        (
            "identity, chunked",
            "Transfer-Encoding: identity, chunked\r\n",
        ),
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        (
            "chunked, chunked",
            "Transfer-Encoding: chunked, chunked\r\n",
        ),
        (
            "two TE headers",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        ),
        (
            "two identical TE headers",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE + underscore TE",
            "Transfer-Encoding: chunked\r\nTransfer_Encoding: chunked\r\n",
        ),
        ("underscore TE only", "Transfer_Encoding: chunked\r\n"),
        ("space before colon", "Transfer-Encoding : chunked\r\n"),
        ("leading space name", " Transfer-Encoding: chunked\r\n"),
        ("vertical tab", "Transfer-Encoding:\x0bchunked\r\n"),
        ("quoted", "Transfer-Encoding: \"chunked\"\r\n"),
        (
            "TE with CL 0",
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
        ),
    ];
    for (name, header) in variants {
        let head = format!("POST /x HTTP/1.1\r\nHost: gw.test\r\n{header}\r\n");
        assert_refused(&f, &gateway, name, &head, body.as_bytes());
    }
}

#[test]
fn whitespace_around_chunked_is_parsed_once_and_reframed() {
    // `Transfer-Encoding:<TAB>chunked<SP>` is valid (optional whitespace). The gateway must read
    // it as chunked and re-frame the message itself: the upstream sees the declared body, and the
    // bytes after the last chunk are a separate request, judged like any other.
    let f = Fixture::new();
    let gateway = start(&f);
    for header in [
        "Transfer-Encoding:\tchunked\r\n",
        "Transfer-Encoding: \tchunked \r\n",
        "transfer-encoding: CHUNKED\r\n",
    ] {
        f.upstream.clear();
        let head = format!("POST /x HTTP/1.1\r\nHost: gw.test\r\n{header}\r\n");
        let body = "5\r\nhello\r\n0\r\n\r\n\
            GET /second HTTP/1.1\r\nHost: gw.test\r\nX-User-Id: admin\r\nConnection: close\r\n\r\n";
        let (_, text, closed) = send_keep_alive(&gateway, &head, body.as_bytes());
        assert!(closed, "{header:?}");
        assert!(text.starts_with("HTTP/1.1 200 "), "{header:?}: {text:?}");
        assert_eq!(
            text.matches("HTTP/1.1 200 ").count(),
            2,
            "{header:?}: {text:?}"
        );
        let requests = f.upstream.requests();
        let seen: Vec<(&str, &[u8])> = requests
            .iter()
            .map(|r| (r.target.as_str(), r.body.as_slice()))
            .collect();
        assert_eq!(
            seen,
            [("/x", &b"hello"[..]), ("/second", &b""[..])],
            "{header:?}"
        );
        assert!(
            requests[1].header_values("x-user-id").is_empty(),
            "{header:?}"
        );
    }
}

#[test]
fn invalid_content_lengths_are_refused() {
    let f = Fixture::new();
    let gateway = start(&f);
    let body = b"hello";
    let variants: &[(&str, &str)] = &[
        ("plus sign", "Content-Length: +5\r\n"),
        ("list", "Content-Length: 5, 5\r\n"),
        ("two headers", "Content-Length: 5\r\nContent-Length: 5\r\n"),
        (
            "two differing",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
        ),
        ("hex", "Content-Length: 0x5\r\n"),
        ("negative", "Content-Length: -5\r\n"),
        ("decimal point", "Content-Length: 5.0\r\n"),
        ("inner space", "Content-Length: 5 5\r\n"),
        ("empty", "Content-Length: \r\n"),
        ("underscore", "Content_Length: 5\r\n"),
        (
            "underscore + real",
            "Content-Length: 5\r\nContent_Length: 0\r\n",
        ),
        ("overflow", "Content-Length: 99999999999999999999999\r\n"),
    ];
    for (name, header) in variants {
        let head = format!("POST /x HTTP/1.1\r\nHost: gw.test\r\n{header}\r\n");
        assert_refused(&f, &gateway, name, &head, body);
    }
}

#[test]
fn a_request_hidden_in_a_body_is_not_executed_upstream() {
    let f = Fixture::new();
    let gateway = start(&f);
    let body = format!("{HIDDEN}GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = gateway.connect();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let first = crate::common::read_response(&mut stream);
    assert_eq!(first.status, 200, "{}", first.body_text());
    assert_eq!(first.json()["body_len"], body.len());
    // A second, honest request on the same connection is still framed correctly.
    stream
        .write_all(b"GET /after HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let second = crate::common::read_response(&mut stream);
    assert_eq!(second.status, 200);
    let requests = f.upstream.requests();
    let targets: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/upload", "/after"]);
    assert_eq!(requests[0].body, body.as_bytes());
}

#[test]
fn bare_lf_and_other_malformed_heads_never_reach_the_upstream_unnormalized() {
    let f = Fixture::new();
    let gateway = start(&f);
    let malformed: &[(&str, &[u8])] = &[
        (
            "NUL in a header value",
            b"GET /x HTTP/1.1\r\nHost: gw.test\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "bare CR in a header value",
            b"GET /x HTTP/1.1\r\nHost: gw.test\r\nX-A: a\rX-User-Id: evil\r\n\r\n",
        ),
        (
            "space in the header name",
            b"GET /x HTTP/1.1\r\nHost: gw.test\r\nX User-Id: evil\r\n\r\n",
        ),
        (
            "header without a colon",
            b"GET /x HTTP/1.1\r\nHost: gw.test\r\nX-User-Id evil\r\n\r\n",
        ),
        (
            "HTTP/1.0 with TE",
            b"POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    for (name, request) in malformed {
        let (status, text, closed) =
            send_keep_alive(&gateway, &String::from_utf8_lossy(request), b"");
        assert_eq!(status, 400, "{name}: {text:?}");
        assert!(closed, "{name}");
    }
    assert_eq!(f.upstream.count(), 0);

    // Bare LF line endings are accepted (as hyper does) but never forwarded as such: the
    // upstream gets one request with CRLF line endings and no client identity.
    let (status, text, closed) = send_keep_alive(
        &gateway,
        "GET /lf HTTP/1.1\nHost: gw.test\nX-User-Id: evil\nConnection: close\n\n",
        b"",
    );
    assert_eq!(status, 200, "{text:?}");
    assert!(closed);
    let got = f.upstream.last().unwrap();
    assert_eq!(got.target, "/lf");
    assert!(got.header_values("x-user-id").is_empty());
    let head = String::from_utf8_lossy(&got.raw_head).into_owned();
    assert_eq!(
        head.matches('\n').count(),
        head.matches("\r\n").count(),
        "{head:?}"
    );
}

/// Sends `bytes` in one write on a new connection and reads until the gateway closes it.
fn exchange(gateway: &Gateway, bytes: &[u8]) -> String {
    let mut stream = gateway.connect();
    stream.write_all(bytes).unwrap();
    let (data, closed) = read_until_closed(&mut stream, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&data).into_owned();
    assert!(closed, "the connection stayed open: {text:?}");
    text
}

/// `text` is one response, a 400 that closes the connection.
fn assert_only_a_refusal(name: &str, text: &str) {
    assert!(text.starts_with("HTTP/1.1 400 "), "{name}: {text:?}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{name}: {text:?}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{name}: {text:?}"
    );
}

/// The raw-bytes check cannot be thrown out of step with hyper on one keep-alive connection: not
/// by a bare LF in a chunked trailer section, and not by an `Upgrade` that is not answered with
/// 101. Either way the CL+TE request that follows never reaches the upstream, and the upstream
/// receives exactly the requests listed.
#[test]
fn the_framing_check_stays_in_step_with_hyper_on_keep_alive_connections() {
    let f = Fixture::new();
    let gateway = start(&f);
    let cl_te_head = "POST /after HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 6\r\n\
                      Transfer-Encoding: chunked\r\n\r\n";
    let cl_te = format!("{cl_te_head}0\r\n\r\n");

    // (a) A bare LF in the trailer section. hyper reads `X-Trailer: a\n` as the start of a trailer
    // line and goes on reading trailer lines, so the `GET /decoy` lines are trailers to it and its
    // body ends at the decoy's blank line; the next request it reads is the CL+TE one. A check that
    // ends the trailer line at the bare LF sees `GET /decoy` as a request whose Content-Length
    // covers the CL+TE head, judges the decoy instead, and (before the fix) its verdict went to
    // the CL+TE request. Now the bare LF is refused with the first request.
    let decoy = format!(
        "GET /decoy HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\n\r\n",
        cl_te_head.len()
    );
    let stream = format!(
        "POST /first HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\nX-Trailer: a\n\r\n{decoy}{cl_te}"
    );
    let text = exchange(&gateway, stream.as_bytes());
    assert_only_a_refusal("bare LF", &text);
    assert_eq!(
        f.upstream.count(),
        0,
        "bare LF: {:?}",
        f.upstream.requests()
    );
    assert_eq!(f.upstream.connections(), 0, "bare LF");

    // (b) An `Upgrade` the upstream answers 200, not 101: hyper reads the next request on the
    // connection as HTTP, and so must the check (it used to stop following at any `Upgrade`, and
    // a request without a verdict passed).
    let upgrade = "GET /first HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n\
                   Connection: upgrade\r\nX-Echo-No-Upgrade: 1\r\n\r\n";
    let text = exchange(&gateway, format!("{upgrade}{cl_te}").as_bytes());
    assert!(text.starts_with("HTTP/1.1 200 "), "upgrade: {text:?}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 2, "upgrade: {text:?}");
    let second = &text[text.rfind("HTTP/1.1 ").unwrap()..];
    assert!(second.starts_with("HTTP/1.1 400 "), "upgrade: {text:?}");
    let received = f.upstream.requests();
    assert_eq!(received.len(), 1, "upgrade: {received:?}");
    assert_eq!(
        (received[0].method.as_str(), received[0].target.as_str()),
        ("GET", "/first")
    );
    assert!(
        received[0].raw_head.starts_with(b"GET /first HTTP/1.1\r\n"),
        "{received:?}"
    );
    assert_eq!(received[0].header("upgrade"), Some("websocket"));
    assert_eq!(received[0].body, b"");

    // (b') The same when the gateway itself answers the upgrade request (401 on a protected
    // route): nothing reaches the upstream.
    f.upstream.clear();
    let upgrade = "GET /admin/first HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\n\
                   Connection: upgrade\r\n\r\n";
    let text = exchange(&gateway, format!("{upgrade}{cl_te}").as_bytes());
    assert!(text.starts_with("HTTP/1.1 401 "), "401 upgrade: {text:?}");
    let second = &text[text.rfind("HTTP/1.1 ").unwrap()..];
    assert!(second.starts_with("HTTP/1.1 400 "), "401 upgrade: {text:?}");
    assert_eq!(f.upstream.count(), 0, "{:?}", f.upstream.requests());
}

/// A fragment in the request target (invalid, but hyper accepts it and drops it) does not throw
/// the framing check out of step: the request and the one after it on the connection pass, and
/// the upstream receives the targets without the fragment.
#[test]
fn a_fragment_in_the_target_is_not_taken_for_a_desync() {
    let f = Fixture::new();
    let gateway = start(&f);
    let text = exchange(
        &gateway,
        b"GET /frag?q=1#part HTTP/1.1\r\nHost: gw.test\r\n\r\n\
          GET /next HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
    let second = &text[text.rfind("HTTP/1.1 ").unwrap()..];
    assert!(second.starts_with("HTTP/1.1 200 "), "{text:?}");
    let targets: Vec<String> = f
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(targets, ["/frag?q=1", "/next"]);
}

/// The internal issuer's documents served on the public listener are answered by the gateway
/// itself, but still only after the raw framing verdict: a head the check refused is 400 with
/// `Connection: close` there too, never a 200 on a connection the check no longer follows.
#[test]
fn edge_served_internal_documents_wait_for_the_framing_verdict() {
    let f = Fixture::new();
    let gateway = start_with(&f, |c| c.section("internal_issuer", "serve_on_edge", true));
    let plain = exchange(
        &gateway,
        b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    );
    assert!(plain.starts_with("HTTP/1.1 200 "), "{plain:?}");
    // hyper merges the two identical lengths into one; the raw check refuses them.
    let text = exchange(
        &gateway,
        b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\n\
          Content-Length: 0\r\n\r\n",
    );
    assert_only_a_refusal("duplicate Content-Length", &text);
    assert_eq!(f.upstream.connections(), 0);
}

/// A malformed chunked body is the client's error: 400, and no upstream connection is opened,
/// whether the bad chunk comes with the head or after it.
#[test]
fn malformed_chunked_bodies_are_400_and_open_no_upstream_connection() {
    let f = Fixture::new();
    let gateway = start(&f);
    let head = "POST /upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"fffffffffffffffff\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5;x\ny\r\nhello\r\n0\r\n\r\n",
    ] {
        for together in [true, false] {
            let name = format!(
                "{:?} ({})",
                String::from_utf8_lossy(body),
                if together {
                    "with the head"
                } else {
                    "after the head"
                }
            );
            let mut stream = gateway.connect();
            if together {
                let mut bytes = head.as_bytes().to_vec();
                bytes.extend_from_slice(body);
                stream.write_all(&bytes).unwrap();
            } else {
                stream.write_all(head.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(150));
                stream.write_all(body).unwrap();
            }
            let (data, closed) = read_until_closed(&mut stream, Duration::from_secs(3));
            let text = String::from_utf8_lossy(&data);
            assert!(text.starts_with("HTTP/1.1 400 "), "{name}: {text:?}");
            assert!(closed, "{name}: the connection stayed open");
            assert_eq!(
                f.upstream.connections(),
                0,
                "{name}: an upstream connection was opened"
            );
            assert_eq!(f.upstream.count(), 0, "{name}");
        }
    }
    // A good first chunk, and a bad one only after the request has gone upstream: the upstream
    // connection is open by then, but the answer is still the client's 400, not a 502, and the
    // upstream never receives a complete request.
    let mut stream = gateway.connect();
    stream
        .write_all(format!("{head}5\r\nhello\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    stream.write_all(b"zz\r\n").unwrap();
    let (data, closed) = read_until_closed(&mut stream, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&data);
    assert!(
        text.starts_with("HTTP/1.1 400 "),
        "late bad chunk: {text:?}"
    );
    assert!(closed, "late bad chunk: the connection stayed open");
    assert_eq!(f.upstream.count(), 0, "{:?}", f.upstream.requests());
    // The control: a well-formed chunked body passes, re-framed.
    let mut stream = gateway.connect();
    stream
        .write_all(
            format!("{head}5\r\nhello\r\n0\r\n\r\n")
                .replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n")
                .as_bytes(),
        )
        .unwrap();
    let (data, _) = read_until_closed(&mut stream, Duration::from_secs(3));
    assert!(String::from_utf8_lossy(&data).starts_with("HTTP/1.1 200 "));
    assert_eq!(f.upstream.last().unwrap().body, b"hello");
}
