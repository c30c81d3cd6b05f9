//! End-to-end: the client → gateway trust boundary. Identity headers in every spelling,
//! duplicates, obs-fold, `Connection`-named headers, forwarding headers and URI overrides, sent as
//! raw bytes so no client library normalizes them away, and checked against exactly what the echo
//! upstream received.

use std::time::Duration;

use serde_json::json;

use crate::common::{Config, Fixture, Gateway, Pattern, Route, bearer};

fn routes(f: &Fixture) -> Config {
    f.config()
        .route(Route::new("root", "/", "echo", Pattern::Public))
        .route(Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders))
        .route(Route::new("fwd", "/fwd", "echo", Pattern::ForwardToken))
        .route(Route::new("svc", "/svc", "echo", Pattern::ServiceValidates))
}

fn start(f: &Fixture) -> Gateway {
    Gateway::start(&routes(f))
}

/// Client identity headers in many spellings (case, `_` for `-`, mixed) and families.
const SPOOFED: &[&str] = &[
    "X-User-Id: evil",
    "x-user-id: evil",
    "X_USER_ID: evil",
    "x_User-id: evil",
    "X-USER_id: evil",
    "X-User-Roles: admin",
    "x_user_roles: admin",
    "X-Tenant-Id: other-tenant",
    "X_TENANT_ID: other-tenant",
    "X-User: evil",
    "X-Forwarded-User: evil",
    "X_Forwarded_User: evil",
    "X-Forwarded-Email: evil@example.com",
    "X-Forwarded-Access-Token: evil",
    "Remote-User: evil",
    "REMOTE_USER: evil",
    "X-Remote-User: evil",
    "X-Auth-Request-Email: evil@example.com",
    "x_auth_request_user: evil",
    "X-Jwt-Assertion: evil",
    "X-Amzn-Oidc-Identity: evil",
    "Cf-Access-Authenticated-User-Email: evil@example.com",
    "X-Internal-Route: evil",
    "X-Trustgate-Identity: evil",
    "X-Ms-Client-Principal-Name: evil",
    "X-Authenticated-Userid: evil",
    "X-Consumer-Username: evil",
];

/// The CGI names the spoofed headers map to: none of them may reach the upstream.
const SPOOFED_CGI: &[&str] = &[
    "HTTP_X_USER_ID",
    "HTTP_X_USER_ROLES",
    "HTTP_X_TENANT_ID",
    "HTTP_X_USER",
    "HTTP_X_FORWARDED_USER",
    "HTTP_X_FORWARDED_EMAIL",
    "HTTP_X_FORWARDED_ACCESS_TOKEN",
    "HTTP_REMOTE_USER",
    "HTTP_X_REMOTE_USER",
    "HTTP_X_AUTH_REQUEST_EMAIL",
    "HTTP_X_AUTH_REQUEST_USER",
    "HTTP_X_JWT_ASSERTION",
    "HTTP_X_AMZN_OIDC_IDENTITY",
    "HTTP_CF_ACCESS_AUTHENTICATED_USER_EMAIL",
    "HTTP_X_INTERNAL_ROUTE",
    "HTTP_X_TRUSTGATE_IDENTITY",
    "HTTP_X_MS_CLIENT_PRINCIPAL_NAME",
    "HTTP_X_AUTHENTICATED_USERID",
    "HTTP_X_CONSUMER_USERNAME",
];

fn request_with(target: &str, lines: &[&str]) -> Vec<u8> {
    let mut text = format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n");
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    text.into_bytes()
}

fn raw_head(got: &test_support::RecordedRequest) -> String {
    String::from_utf8_lossy(&got.raw_head).into_owned()
}

#[test]
fn identity_headers_in_every_spelling_are_stripped_on_a_public_route() {
    let f = Fixture::new();
    let gateway = start(&f);
    let mut lines = SPOOFED.to_vec();
    // Look-alikes that are not identity headers survive: the matcher is not over-broad.
    lines.extend(["X-Request-Id: req-1", "X-Userx: keep", "X-Users: keep"]);
    let r = gateway.raw(&request_with("/anything/here", &lines));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.target, "/anything/here");
    let cgi = got.cgi_names();
    for name in SPOOFED_CGI {
        assert!(
            !cgi.contains(&(*name).to_owned()),
            "{name} reached the upstream"
        );
    }
    let head = raw_head(&got);
    assert!(
        !head.contains("evil"),
        "a spoofed value reached the upstream:\n{head}"
    );
    assert!(!head.contains("other-tenant"));
    assert_eq!(got.header_values("x-request-id"), ["req-1"]);
    assert_eq!(got.header_values("x-userx"), ["keep"]);
    assert_eq!(got.header_values("x-users"), ["keep"]);
}

#[test]
fn identity_route_forwards_exactly_one_value_per_identity_header_and_it_is_ours() {
    let f = Fixture::new();
    let gateway = start(&f);
    let t = f.token_with("alice", json!({"roles": ["reader"], "tenant_id": "t1"}));
    let auth = format!("Authorization: {}", bearer(&t));
    let mut lines = SPOOFED.to_vec();
    // Duplicates of the very headers the gateway injects.
    lines.extend([
        "X-User-Id: evil2",
        "X-User-Id: evil3",
        "X-User-Id: alice",
        auth.as_str(),
    ]);
    let r = gateway.raw(&request_with("/ids/me", &lines));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("x-user-id"), ["alice"]);
    assert_eq!(got.header_values("x-user-roles"), ["reader"]);
    assert_eq!(got.header_values("x-tenant-id"), ["t1"]);
    let cgi = got.cgi_names();
    for name in SPOOFED_CGI {
        let count = cgi.iter().filter(|n| n == name).count();
        let injected = matches!(
            *name,
            "HTTP_X_USER_ID" | "HTTP_X_USER_ROLES" | "HTTP_X_TENANT_ID"
        );
        assert_eq!(count, usize::from(injected), "{name}");
    }
    let head = raw_head(&got);
    assert!(!head.contains("evil"), "{head}");
    assert!(!head.contains(&t), "the token reached the upstream");
    assert!(got.header_values("authorization").is_empty());
}

#[test]
fn obs_fold_is_refused_and_never_reaches_the_upstream() {
    let f = Fixture::new();
    let gateway = start(&f);
    let folded: &[&[u8]] = &[
        // A folded continuation line smuggling an identity header.
        b"GET /x HTTP/1.1\r\nHost: gw.test\r\nX-Custom: a\r\n X-User-Id: evil\r\nConnection: close\r\n\r\n",
        // A folded identity header value.
        b"GET /x HTTP/1.1\r\nHost: gw.test\r\nX-User-Id: a\r\n\tevil\r\nConnection: close\r\n\r\n",
        // A folded Authorization value on a validating route.
        b"GET /fwd/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer\r\n abc\r\nConnection: close\r\n\r\n",
    ];
    for request in folded {
        let r = gateway.raw(request);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(request));
    }
    assert_eq!(
        f.upstream.count(),
        0,
        "a folded request reached the upstream"
    );
}

#[test]
fn connection_header_cannot_remove_injected_or_protected_headers() {
    let f = Fixture::new();
    let gateway = start(&f);
    let t = f.token_with("alice", json!({"roles": ["reader"]}));
    let auth = format!("Authorization: {}", bearer(&t));

    // Identity route: the client lists our headers in Connection; ours still arrive.
    let r = gateway.raw(&request_with(
        "/ids/x",
        &[
            "Connection: X-User-Id, X-User-Roles, X-Forwarded-For",
            "X-User-Id: evil",
            auth.as_str(),
        ],
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("x-user-id"), ["alice"]);
    assert_eq!(got.header_values("x-user-roles"), ["reader"]);
    assert_eq!(got.header_values("x-forwarded-for"), ["127.0.0.1"]);

    // Public route: the client's header is gone whether or not Connection names it, and a
    // Connection-named ordinary header is dropped as hop-by-hop.
    let r = gateway.raw(&request_with(
        "/pub",
        &[
            "Connection: X-User-Id, X-Trace",
            "X-User-Id: evil",
            "X-Trace: t1",
            "X-Kept: k",
        ],
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert!(got.header_values("x-user-id").is_empty());
    assert!(got.header_values("x-trace").is_empty());
    assert_eq!(got.header_values("x-kept"), ["k"]);

    // `Connection: close, Authorization` cannot strip the token the gateway validates...
    let r = gateway.raw(&request_with(
        "/fwd/x",
        &["Connection: close, Authorization", auth.as_str()],
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("authorization"), [bearer(&t).as_str()]);
    // ...nor make a missing token look present: no token is still 401.
    let before = f.upstream.count();
    let r = gateway.raw(&request_with(
        "/fwd/x",
        &["Connection: close, Authorization"],
    ));
    assert_eq!(r.status, 401);
    assert_eq!(f.upstream.count(), before);

    // ...nor strip Authorization, Host or Content-Length on a pass-through route.
    let request = b"POST /svc/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer opaque\r\n\
        Content-Length: 5\r\nConnection: close, Authorization, Host, Content-Length\r\n\r\nhello";
    let r = gateway.raw(request);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("authorization"), ["Bearer opaque"]);
    assert_eq!(got.header_values("host"), ["gw.test"]);
    assert_eq!(got.body, b"hello");
}

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let f = Fixture::new();
    let gateway = start(&f);
    let r = gateway.raw(&request_with(
        "/x",
        &[
            "X-Forwarded-For: 203.0.113.9",
            "X_Forwarded_For: 203.0.113.10",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: evil.example",
            "X-Forwarded-Port: 443",
            "Forwarded: for=203.0.113.9;proto=https;host=evil.example",
            "X-Real-IP: 203.0.113.9",
            "True-Client-IP: 203.0.113.9",
            "X-Client-IP: 203.0.113.9",
        ],
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_values("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_values("x-forwarded-host"), ["gw.test"]);
    let cgi = got.cgi_names();
    assert_eq!(
        cgi.iter().filter(|n| *n == "HTTP_X_FORWARDED_FOR").count(),
        1
    );
    for gone in [
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
    ] {
        assert!(
            got.header_values(gone).is_empty(),
            "{gone} reached the upstream"
        );
    }
    assert!(!raw_head(&got).contains("203.0.113"), "{}", raw_head(&got));
}

#[test]
fn forwarding_headers_from_a_trusted_proxy_are_appended_to() {
    let f = Fixture::new();
    let gateway = Gateway::start(&routes(&f).server("trusted_proxies", ["127.0.0.1"]));
    let r = gateway.raw(&request_with(
        "/x",
        &[
            "X-Forwarded-For: 203.0.113.9",
            "X-Forwarded-For: 198.51.100.1, 198.51.100.2",
            "X_Forwarded_For: 192.0.2.66",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: api.example",
            // A trusted proxy is still a client as far as identity goes.
            "X-User-Id: evil",
        ],
    ));
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(
        got.header_values("x-forwarded-for"),
        ["203.0.113.9, 198.51.100.1, 198.51.100.2, 127.0.0.1"]
    );
    assert_eq!(got.header_values("x-forwarded-proto"), ["https"]);
    assert_eq!(got.header_values("x-forwarded-host"), ["api.example"]);
    assert!(
        !raw_head(&got).contains("192.0.2.66"),
        "underscore variant survived"
    );
    assert!(got.header_values("x-user-id").is_empty());

    // Without client values, the trusted path still sets its own.
    let r = gateway.get("/y", &[]);
    assert_eq!(r.status, 200);
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(got.header_values("x-forwarded-proto"), ["http"]);
    assert_eq!(got.header_values("x-forwarded-host"), ["gateway.test"]);
}

#[test]
fn uri_override_headers_never_reach_the_upstream() {
    let f = Fixture::new();
    let gateway = start(&f);
    let t = f.token("alice");
    let auth = format!("Authorization: {}", bearer(&t));
    for target in ["/pub/page", "/ids/page"] {
        let r = gateway.raw(&request_with(
            target,
            &[
                "X-Original-URL: /admin/delete",
                "X_Original_URL: /admin/delete",
                "X-Rewrite-URL: /admin/delete",
                "X-Forwarded-Uri: /admin/delete",
                "X-Original-URI: /admin/delete",
                "X-Forwarded-Path: /admin/delete",
                "X-Envoy-Original-Path: /admin/delete",
                "X-HTTP-Method-Override: DELETE",
                "X-HTTP-Method: DELETE",
                "X-Method-Override: DELETE",
                auth.as_str(),
            ],
        ));
        assert_eq!(r.status, 200, "{target}: {}", r.body_text());
        let got = f.upstream.last().unwrap();
        assert_eq!(got.method, "GET");
        assert_eq!(got.target, target);
        let head = raw_head(&got);
        assert!(!head.contains("/admin"), "{target}: {head}");
        assert!(!head.contains("DELETE"), "{target}: {head}");
    }
}

#[test]
fn reject_mode_refuses_client_identity_before_routing_and_audits_it() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &f.config()
            .section("sanitize", "mode", "reject")
            .route(Route::new("public", "/public", "echo", Pattern::Public))
            .route(Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders)),
    );
    let t = f.token("alice");
    let auth = format!("Authorization: {}", bearer(&t));
    // Public route, unknown path and validating route without a token: the identity header is
    // judged first in each case (400, not 200 / 404 / 401).
    let cases: &[(&str, &[&str])] = &[
        ("/public/x", &["x_user_id: evil"]),
        ("/nowhere", &["X-Forwarded-User: evil"]),
        ("/ids/x", &["X-USER-ID: evil"]),
        (
            "/ids/x",
            &["Connection: X-User-Id", "X-User-Id: evil", &auth],
        ),
    ];
    for (target, lines) in cases {
        let r = gateway.raw(&request_with(target, lines));
        assert_eq!(r.status, 400, "{target} {lines:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_request""#)
        );
        assert_eq!(r.body_text(), r#"{"error":"invalid_request"}"#);
    }
    assert_eq!(f.upstream.count(), 0);
    assert!(
        gateway.wait_for_log("trustgate::audit", Duration::from_secs(5)),
        "no audit line:\n{}",
        gateway.log_text()
    );
    let audit = gateway.log_lines("trustgate::audit");
    assert!(audit.iter().any(|l| l.contains("reject")), "{audit:?}");
    assert!(audit.iter().all(|l| !l.contains("evil")), "{audit:?}");

    // Clean requests pass; the injected headers are not "client identity".
    assert_eq!(gateway.get("/nowhere", &[]).status, 404);
    assert_eq!(gateway.get("/public/x", &[]).status, 200);
    let r = gateway.get("/ids/x", &[("Authorization", &bearer(&t))]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        f.upstream.last().unwrap().header_values("x-user-id"),
        ["alice"]
    );
}
