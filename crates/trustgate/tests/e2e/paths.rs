//! End-to-end: path-normalization bypasses. With a public `/public` and a protected `/admin`,
//! every trick either is refused (400) or lands on `/admin` and needs a token — none reaches the
//! upstream as a public request. When forwarded, the upstream sees the normalized path exactly.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::common::{Fixture, Gateway, Pattern, Route, Upstream, bearer, rt};

fn start(f: &Fixture, server: &[(&str, &str)]) -> Gateway {
    let mut config = f.public_and_admin();
    for (key, value) in server {
        config = config.server(key, *value);
    }
    Gateway::start(&config)
}

/// (request target, status without a token, upstream target with a valid token or `None` when
/// refused whatever the token).
const BYPASSES: &[(&str, u16, Option<&str>)] = &[
    ("/public/../admin", 401, Some("/admin")),
    ("/public/../admin/x", 401, Some("/admin/x")),
    ("/public/%2e%2e/admin", 401, Some("/admin")),
    ("/public/%2E%2E/admin/x", 401, Some("/admin/x")),
    ("/public/.%2e/admin", 401, Some("/admin")),
    ("/public/%2e./admin", 401, Some("/admin")),
    ("/public/./../admin", 401, Some("/admin")),
    ("/%61dmin", 401, Some("/admin")),
    ("/%61dmin/x", 401, Some("/admin/x")),
    ("/%61%64%6d%69%6e/x?y=%2F", 401, Some("/admin/x?y=%2F")),
    ("//admin", 401, Some("/admin")),
    ("//admin//x", 401, Some("/admin/x")),
    ("/public//../admin", 401, Some("/admin")),
    ("/public/x/../../admin", 401, Some("/admin")),
    ("/public/..;/admin", 400, None),
    ("/public;/../admin", 400, None),
    ("/admin%2f", 400, None),
    ("/admin%2Fx", 400, None),
    ("/public%2F..%2Fadmin", 400, None),
    ("/public%2f%2e%2e%2fadmin", 400, None),
    ("/public/%5c../admin", 400, None),
    ("/public/%5C..%5Cadmin", 400, None),
    ("/public/%00/../admin", 400, None),
    ("/public/%2e%2e%2fadmin", 400, None),
    // Escaped escapes of dots, separators, `%` and control bytes: an upstream that decodes twice
    // would route on `/public/../admin` or `/public/x/admin`.
    ("/public/%252e%252e/admin", 400, None),
    ("/public/%252E%252E/admin", 400, None),
    ("/public/..%252Fadmin", 400, None),
    ("/public/%252fadmin", 400, None),
    ("/public/%255c..%255cadmin", 400, None),
    ("/public/%253B/admin", 400, None),
    ("/public/%2525", 400, None),
    ("/public/%2500", 400, None),
    ("/public/%25%32%65%25%32%65/admin", 400, None),
    // Escapes that are not UTF-8: overlong dots and slashes, lone continuation bytes, truncated
    // sequences and surrogates, which lenient decoders turn into `.`, `/` or U+FFFD.
    ("/public/%C0%AE%C0%AE/admin", 400, None),
    ("/public/%c0%af../admin", 400, None),
    ("/public/%E0%80%AE%E0%80%AE/admin", 400, None),
    ("/public/%80", 400, None),
    ("/public/%C3", 400, None),
    ("/public/%ED%A0%80", 400, None),
    ("/public/%FF", 400, None),
    // The same one level down: a second decoding would give the overlong dots and slashes.
    ("/public/%25C0%25AE%25C0%25AE/admin", 400, None),
    ("/public/%25c0%25af../admin", 400, None),
    ("/public/%25E0%2580%25AE/admin", 400, None),
    ("/public/%2580", 400, None),
    // Every route refuses them before routing: the token route, and a path no route matches
    // (which would be 404 if it were routed).
    ("/admin/%252e%252e/x", 400, None),
    ("/admin/%252Fx", 400, None),
    ("/admin/%2500", 400, None),
    ("/admin/%C0%AE%C0%AE/x", 400, None),
    ("/admin/%80", 400, None),
    ("/admin/%25C0%25AE", 400, None),
    ("/elsewhere/%252e%252e", 400, None),
    ("/elsewhere/%ED%A0%80", 400, None),
    // Valid UTF-8 and a harmless escaped escape are paths like any other.
    ("/public/caf%C3%A9", 200, Some("/public/caf%C3%A9")),
    ("/public/%2541", 200, Some("/public/%2541")),
    ("/public/%25C3%25A9", 200, Some("/public/%25C3%25A9")),
    // Routing is case-sensitive like the upstream's paths: `/ADMIN` is no route at all.
    ("/ADMIN", 404, None),
    ("/Admin/x", 404, None),
    ("/%41DMIN", 404, None),
];

#[test]
fn path_tricks_never_reach_the_upstream_as_a_public_request() {
    let f = Fixture::new();
    let gateway = start(&f, &[]);
    for (target, status, _) in BYPASSES {
        let before = f.upstream.count();
        let r = gateway.get(target, &[("X-User-Id", "admin")]);
        assert_eq!(r.status, *status, "{target}: {}", r.body_text());
        match *status {
            401 => {
                assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{target}");
                assert_eq!(f.upstream.count(), before, "{target} reached the upstream");
            }
            400 => {
                assert_eq!(r.body_text(), r#"{"error":"bad_request"}"#, "{target}");
                assert_eq!(f.upstream.count(), before, "{target} reached the upstream");
            }
            404 => assert_eq!(f.upstream.count(), before, "{target} reached the upstream"),
            _ => {
                let got = f.upstream.last().unwrap();
                assert_eq!(f.upstream.count(), before + 1, "{target}");
                assert!(got.target.starts_with("/public/"), "{target}");
                assert!(got.header_values("x-user-id").is_empty());
            }
        }
    }
}

#[test]
fn path_tricks_with_a_token_forward_the_normalized_path_exactly() {
    let f = Fixture::new();
    let gateway = start(&f, &[]);
    let t = f.token("alice");
    let auth = bearer(&t);
    for (target, status, forwarded) in BYPASSES {
        let before = f.upstream.count();
        let r = gateway.get(target, &[("Authorization", &auth), ("X-User-Id", "admin")]);
        match forwarded {
            Some(want) => {
                assert_eq!(r.status, 200, "{target}: {}", r.body_text());
                let got = f.upstream.last().unwrap();
                assert_eq!(got.target, *want, "{target}");
                if want.starts_with("/admin") {
                    assert_eq!(got.header_values("x-user-id"), ["alice"], "{target}");
                    assert!(got.header_values("authorization").is_empty());
                }
            }
            None => {
                // A valid token changes nothing: refused paths are refused before routing.
                assert_eq!(r.status, *status, "{target}: {}", r.body_text());
                assert_eq!(f.upstream.count(), before, "{target} reached the upstream");
            }
        }
    }
}

#[test]
fn double_slash_reject_mode_refuses_empty_segments() {
    let f = Fixture::new();
    let gateway = start(&f, &[("double_slash", "reject")]);
    for target in ["//admin", "/public//../admin", "/public//x"] {
        let r = gateway.get(target, &[]);
        assert_eq!(r.status, 400, "{target}");
    }
    assert_eq!(f.upstream.count(), 0);
    assert_eq!(gateway.get("/public/x/", &[]).status, 200);
    assert_eq!(f.upstream.last().unwrap().target, "/public/x/");
}

#[test]
fn absolute_form_and_odd_targets_route_on_the_path() {
    let f = Fixture::new();
    let gateway = start(&f, &[]);
    // Absolute-form: the path inside decides the route, never the client's idea of the host.
    let r = gateway.raw(
        b"GET http://gw.test/public/../admin HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    // Asterisk-form and authority-form have no path: refused, never sent to a route.
    let r = gateway.raw(b"OPTIONS * HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400);
    let r = gateway
        .raw(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nConnection: close\r\n\r\n");
    assert!(matches!(r.status, 400 | 405), "{}", r.status);
    assert_eq!(f.upstream.count(), 0);
}

#[test]
fn the_host_a_request_is_routed_on_is_the_host_the_upstream_sees() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &f.config()
            .route(Route::new("public-site", "/", "echo", Pattern::Public).host("public.example"))
            .route(
                Route::new("internal-site", "/", "echo", Pattern::IdentityHeaders)
                    .host("internal.example"),
            ),
    );
    // Absolute-form: the target's authority decides the route (RFC 9112 §3.2.2), so it must also
    // be the Host the upstream gets — not the Host header, which names the protected site.
    let r = gateway.raw(
        b"GET http://public.example/x HTTP/1.1\r\nHost: internal.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.target, "/x");
    assert_eq!(got.header_values("host"), ["public.example"]);
    assert_eq!(got.header_values("x-forwarded-host"), ["public.example"]);

    // The other way round: routed as the protected site, so a token is needed.
    let before = f.upstream.count();
    let r = gateway.raw(
        b"GET http://internal.example/x HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    assert_eq!(f.upstream.count(), before);

    // Two Host lines: refused (RFC 9112 §3.2), never routed on either.
    let before = f.upstream.count();
    let r = gateway.raw(
        b"GET /y HTTP/1.1\r\nHost: public.example\r\nHost: internal.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(f.upstream.count(), before);

    // Host matching ignores case, a trailing dot and the port; the Host is forwarded as sent.
    let r =
        gateway.raw(b"GET /z HTTP/1.1\r\nHost: PUBLIC.Example.:8080\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        f.upstream.last().unwrap().header_values("host"),
        ["PUBLIC.Example.:8080"]
    );
    let r = gateway.raw(b"GET /z HTTP/1.1\r\nHost: INTERNAL.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 401);
}

/// A public catch-all and a token route on `/admin`, both to an upstream that receives the
/// client's Host (`preserve_host`).
fn start_preserving_host(f: &Fixture) -> Gateway {
    Gateway::start(
        &f.config()
            .upstream(Upstream::new("echo-host", &f.upstream.url()).set("preserve_host", true))
            .route(Route::new("public", "/", "echo-host", Pattern::Public))
            .route(Route::new(
                "admin",
                "/admin",
                "echo-host",
                Pattern::IdentityHeaders,
            )),
    )
}

/// A Host, `:authority` or absolute-form authority that is not `host [":" port]` is refused with
/// 400 before routing, on every route; valid ones reach the upstream exactly as sent.
#[test]
fn hosts_that_are_not_a_host_and_port_are_refused_before_routing() {
    let f = Fixture::new();
    let gateway = start_preserving_host(&f);
    let auth = bearer(&f.token("alice"));
    for host in [
        "x@public.example",
        "public.example:80@evil.example",
        "user:pw@public.example",
        "a b",
        "public.example/path",
        "public.example,evil.example",
        "[::1",
        "public.example:99999",
        "public.example:",
        ":80",
        "public.example:80:80",
        "",
        // Empty labels: the router drops trailing dots, an upstream's virtual hosts may not.
        "public.example..",
        "public.example..:80",
        ".public.example",
        "public..example",
        ".",
    ] {
        // On the catch-all and on the token route, with a valid token: the Host is refused
        // before routing and before authentication.
        for (target, extra) in [
            ("/x", String::new()),
            ("/admin/x", format!("Authorization: {auth}\r\n")),
        ] {
            let request = format!(
                "GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
            );
            let r = gateway.raw(request.as_bytes());
            assert_eq!(r.status, 400, "Host {host:?} {target}: {}", r.body_text());
            assert_eq!(r.body_text(), r#"{"error":"bad_request"}"#);
            assert_eq!(f.upstream.count(), 0, "Host {host:?} reached the upstream");
        }
    }
    // Absolute-form with userinfo, even next to a valid Host.
    for target in [
        "http://x@public.example/x",
        "http://public.example:1@evil.example/x",
    ] {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n");
        let r = gateway.raw(request.as_bytes());
        assert_eq!(r.status, 400, "{target}: {}", r.body_text());
        assert_eq!(f.upstream.count(), 0, "{target} reached the upstream");
    }
    for host in [
        "public.example",
        "public.example:8080",
        "127.0.0.1:1",
        "[::1]:80",
        "public.example.",
    ] {
        let request = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let r = gateway.raw(request.as_bytes());
        assert_eq!(r.status, 200, "Host {host:?}: {}", r.body_text());
        assert_eq!(f.upstream.last().unwrap().header_values("host"), [host]);
    }
    let r = gateway.get("/admin/x", &[("Authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("host"), ["gateway.test"]);
    assert_eq!(got.header_values("x-user-id"), ["alice"]);
}

/// Sends one HTTP/2 (prior knowledge) GET and returns its status, or the client's error when the
/// stream or the connection was reset instead.
fn h2_get(gateway: &Gateway, uri: &str, headers: &[(&str, &str)]) -> Result<u16, String> {
    let addr = gateway.proxy;
    rt().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = http::Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    })
}

/// The HTTP/2 `:authority` follows the same rule as the Host header: refused with 400 before
/// routing unless it is `host [":" port]`, and forwarded exactly when it is.
#[test]
fn http2_authorities_that_are_not_a_host_and_port_are_refused_before_routing() {
    let f = Fixture::new();
    let gateway = start_preserving_host(&f);
    for uri in [
        "http://x@public.example/x",
        "http://public.example:1@evil.example/x",
        "http://public.example..:80/x",
        "http://.public.example/x",
    ] {
        assert_eq!(h2_get(&gateway, uri, &[]), Ok(400), "{uri}");
        assert_eq!(f.upstream.count(), 0, "{uri} reached the upstream");
    }
    // A valid `:authority` with an invalid Host header next to it: both must be valid.
    assert_eq!(
        h2_get(
            &gateway,
            "http://public.example/x",
            &[("host", "x@evil.example")]
        ),
        Ok(400)
    );
    assert_eq!(f.upstream.count(), 0);

    assert_eq!(
        h2_get(&gateway, "http://public.example:8080/x", &[]),
        Ok(200)
    );
    let got = f.upstream.last().unwrap();
    assert_eq!(got.target, "/x");
    assert_eq!(got.header_values("host"), ["public.example:8080"]);
}
