//! End-to-end: each trust pattern through the real binary, against a real issuer and an echo
//! upstream that records the raw request.

use serde_json::json;
use test_support::{TestKey, claims, now_secs};

use crate::common::{Config, Gateway, Issuer, Pattern, Route, Upstream, echo, issuer};

struct Setup {
    gateway: Gateway,
    upstream: test_support::EchoUpstream,
    _issuer: test_support::TestIssuer,
    key: TestKey,
    iss: String,
}

fn setup() -> Setup {
    let issuer = issuer();
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    let upstream = echo();
    let config = Config::new()
        .issuer(
            Issuer::discovery("idp", &issuer.url())
                .audiences(&["api"])
                .claims(json!({"extra": {"email": "email"}})),
        )
        .upstream(Upstream::new("echo", &upstream.url()))
        .route(Route::new("public", "/public", "echo", Pattern::Public))
        .route(Route::new("svc", "/svc", "echo", Pattern::ServiceValidates))
        .route(Route::new("fwd", "/fwd", "echo", Pattern::ForwardToken))
        .route(
            Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders)
                .token_cookie("at")
                .headers(&[
                    ("X-User-Id", "subject"),
                    ("X-User-Roles", "roles"),
                    ("X-Tenant-Id", "tenant"),
                    ("X-User-Email", "claim:email"),
                ]),
        );
    let gateway = Gateway::start(&config);
    Setup {
        gateway,
        upstream,
        iss: issuer.url(),
        _issuer: issuer,
        key,
    }
}

fn token(s: &Setup, sub: &str) -> String {
    let mut c = claims(&s.iss, "api", sub);
    c["roles"] = json!(["admin", "user"]);
    c["tenant_id"] = json!("t1");
    c["email"] = json!("a@example.com");
    s.key.sign(&c)
}

#[test]
fn identity_headers_pattern_injects_verified_identity_and_drops_the_token() {
    let s = setup();
    let t = token(&s, "alice");
    let bearer = format!("Bearer {t}");
    let r = s.gateway.get(
        "/ids/profile?x=1",
        &[
            ("Authorization", &bearer),
            ("X-User-Id", "admin"),
            ("x_user_id", "admin"),
            ("X-USER-ROLES", "superuser"),
            ("Cookie", "theme=dark"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = s.upstream.last().unwrap();
    assert_eq!(got.target, "/ids/profile?x=1");
    assert_eq!(got.header_values("x-user-id"), ["alice"]);
    assert_eq!(got.header_values("x-user-roles"), ["admin,user"]);
    assert_eq!(got.header_values("x-tenant-id"), ["t1"]);
    assert_eq!(got.header_values("x-user-email"), ["a@example.com"]);
    assert!(got.header_values("authorization").is_empty());
    assert_eq!(got.header_values("cookie"), ["theme=dark"]);
    // No CGI-equivalent spelling survived either.
    let cgi = got.cgi_names();
    assert_eq!(cgi.iter().filter(|n| *n == "HTTP_X_USER_ID").count(), 1);
    let raw = String::from_utf8_lossy(&got.raw_head).to_string();
    assert!(!raw.contains(&t), "the token reached the upstream");
}

/// A claim that is an empty string is no identity: its header is left out, as for a missing
/// claim, and the client's forged value of that header is removed all the same.
#[test]
fn identity_headers_leave_out_empty_claims_and_still_strip_forgeries() {
    let s = setup();
    let mut c = claims(&s.iss, "api", "");
    c["roles"] = json!([]);
    c["tenant_id"] = json!("");
    c["email"] = json!("");
    let bearer = format!("Bearer {}", s.key.sign(&c));
    let r = s.gateway.get(
        "/ids/profile",
        &[
            ("Authorization", &bearer),
            ("X-User-Id", "admin"),
            ("X_Tenant_Id", "evil"),
            ("X-User-Email", "root@example.com"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = s.upstream.last().unwrap();
    for name in ["x-user-id", "x-user-roles", "x-tenant-id", "x-user-email"] {
        assert!(
            got.header_values(name).is_empty(),
            "{name} reached the upstream"
        );
    }
    let raw = String::from_utf8_lossy(&got.raw_head).to_lowercase();
    for forged in [
        "admin",
        "evil",
        "root@example.com",
        "x-user-id",
        "x_tenant_id",
    ] {
        assert!(
            !raw.contains(forged),
            "{forged} reached the upstream: {raw}"
        );
    }
}

#[test]
fn identity_headers_from_cookie_removes_only_the_token_cookie() {
    let s = setup();
    let t = token(&s, "bob");
    let cookie = format!("theme=dark; at={t}; lang=en");
    let r = s.gateway.get("/ids/x", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = s.upstream.last().unwrap();
    assert_eq!(got.header_values("x-user-id"), ["bob"]);
    assert_eq!(got.header_values("cookie"), ["theme=dark; lang=en"]);
}

#[test]
fn forward_token_pattern_forwards_the_original_token() {
    let s = setup();
    let t = token(&s, "carol");
    let bearer = format!("Bearer {t}");
    let r = s.gateway.get(
        "/fwd/a",
        &[("Authorization", &bearer), ("X-User-Id", "admin")],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = s.upstream.last().unwrap();
    assert_eq!(got.header_values("authorization"), [bearer.as_str()]);
    assert!(got.header_values("x-user-id").is_empty());
}

#[test]
fn service_validates_and_public_pass_authorization_untouched_but_sanitize() {
    let s = setup();
    for path in ["/svc/a", "/public/a"] {
        s.upstream.clear();
        let r = s.gateway.get(
            path,
            &[
                ("Authorization", "Bearer not-even-a-jwt"),
                ("X-User-Id", "admin"),
                ("X-Forwarded-User", "root"),
            ],
        );
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        let got = s.upstream.last().unwrap();
        assert_eq!(
            got.header_values("authorization"),
            ["Bearer not-even-a-jwt"],
            "{path}"
        );
        assert!(got.header_values("x-user-id").is_empty(), "{path}");
        assert!(got.header_values("x-forwarded-user").is_empty(), "{path}");
    }
}

#[test]
fn validating_routes_answer_rfc6750() {
    let s = setup();
    let r = s.gateway.get("/ids/a", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let mut expired = claims(&s.iss, "api", "dave");
    expired["exp"] = json!(now_secs() - 3600);
    expired["iat"] = json!(now_secs() - 7200);
    expired["nbf"] = json!(now_secs() - 7200);
    let bearer = format!("Bearer {}", s.key.sign(&expired));
    let r = s.gateway.get("/fwd/a", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(r.body_text(), r#"{"error":"invalid_token"}"#);

    let t = token(&s, "erin");
    let two = format!("Bearer {t}");
    let cookie = format!("at={t}");
    let r = s
        .gateway
        .get("/ids/a", &[("Authorization", &two), ("Cookie", &cookie)]);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_request""#)
    );
    assert_eq!(
        s.upstream.count(),
        0,
        "refused requests never reach the upstream"
    );
}
