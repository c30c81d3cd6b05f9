//! End-to-end: pattern 4 (internal tokens) and gateway assertions through the real binary. The
//! "service" is trustgate-core's validator pointed at the gateway's internal discovery document,
//! checking exactly the Authorization the echo upstream received.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use test_support::{TestKey, claims};
use trustgate_core::{
    Algorithm, IssuerConfig, KeySource, SystemClock, Validator, ValidatorOptions,
};

use crate::common::{
    Config, Gateway, Issuer, Pattern, Route, Upstream, echo, issuer, jwt_payload, rt,
};

struct Setup {
    gateway: Gateway,
    upstream: test_support::EchoUpstream,
    _issuer: test_support::TestIssuer,
    key: TestKey,
    iss: String,
}

fn setup(rotation: &str) -> Setup {
    let issuer = issuer();
    let key = TestKey::rsa("ext-1", "RS256");
    issuer.set_keys(&[&key]);
    let upstream = echo();
    let mut config = Config::new()
        .section("internal_issuer", "rotation_interval", rotation)
        .section("internal_issuer", "max_ttl", "2m");
    // Rotating within seconds is for this test only: services could miss a key.
    if !rotation.ends_with("h") {
        config = config.section("internal_issuer", "danger_fast_rotation", true);
    }
    let config = config
        .issuer(Issuer::discovery("idp", &issuer.url()).audiences(&["api"]))
        .upstream(Upstream::new("users", &upstream.url()))
        .upstream(Upstream::new("payments", &upstream.url()))
        .route(
            Route::new("users", "/users", "users", Pattern::InternalToken)
                .internal_claims(&["sub", "tenant"]),
        )
        .route(
            Route::new("payments", "/payments", "payments", Pattern::InternalToken)
                .internal_ttl("30s"),
        )
        .route(Route::new("profile", "/profile", "users", Pattern::IdentityHeaders).assertion());
    let gateway = Gateway::start(&config);
    Setup {
        gateway,
        upstream,
        iss: issuer.url(),
        _issuer: issuer,
        key,
    }
}

fn external(s: &Setup, sub: &str) -> String {
    let mut c = claims(&s.iss, "api", sub);
    c["roles"] = json!(["admin"]);
    c["tenant_id"] = json!("t1");
    c["scope"] = json!("payments:read");
    c["email"] = json!("secret@example.com");
    s.key.sign(&c)
}

/// A service validator for `audience`, trusting the gateway's internal issuer only.
fn service(s: &Setup, audience: &str, typ: &str) -> Validator {
    let internal = format!("http://{}", s.gateway.admin);
    let mut config = IssuerConfig::new(internal, [audience], KeySource::Discovery);
    config.algorithms = vec![Algorithm::EdDSA];
    config.claims.required_typ = Some(typ.into());
    config.refresh.min_interval = Duration::from_millis(200);
    config.refresh.unknown_kid_cooldown = Duration::from_millis(200);
    let validator = Validator::new(
        vec![config],
        ValidatorOptions::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert!(rt().block_on(validator.start()), "internal discovery works");
    validator
}

fn bearer_of(recorded: &test_support::RecordedRequest) -> String {
    recorded
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned()
}

#[test]
fn external_token_becomes_an_internal_token_for_that_service_only() {
    let s = setup("6h");
    let ext = external(&s, "alice");
    let auth = format!("Bearer {ext}");
    let r = s.gateway.get(
        "/users/me",
        &[("Authorization", &auth), ("X-Internal-Token", "forged")],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = s.upstream.last().unwrap();
    let internal = bearer_of(&got);
    assert_ne!(
        internal, ext,
        "the external token never crosses into the mesh"
    );
    assert!(got.header_values("x-internal-token").is_empty());
    let raw = String::from_utf8_lossy(&got.raw_head).to_string();
    assert!(!raw.contains(&ext));

    let claims = jwt_payload(&internal);
    assert_eq!(claims["aud"], "users");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["tenant_id"], "t1");
    assert_eq!(claims["ext_iss"], s.iss.as_str());
    assert!(
        claims.get("roles").is_none(),
        "roles are not on this route's allow-list"
    );
    assert!(
        claims.get("email").is_none(),
        "claims outside the allow-list never appear"
    );
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 60, "default internal TTL");

    let users = service(&s, "users", "internal+jwt");
    let payments = service(&s, "payments", "internal+jwt");
    let verified = rt().block_on(users.validate(&internal)).unwrap();
    assert_eq!(verified.identity().subject(), Some("alice"));
    assert!(
        rt().block_on(payments.validate(&internal)).is_err(),
        "minted for users, refused by payments"
    );
    assert!(
        rt().block_on(users.validate(&ext)).is_err(),
        "a service in pattern 4 refuses external tokens"
    );

    // The same external token reuses the cached internal token.
    s.gateway.get("/users/again", &[("Authorization", &auth)]);
    assert_eq!(bearer_of(&s.upstream.last().unwrap()), internal);
    // Another route gets its own token with its own audience and TTL.
    s.gateway.get("/payments/x", &[("Authorization", &auth)]);
    let pay = jwt_payload(&bearer_of(&s.upstream.last().unwrap()));
    assert_eq!(pay["aud"], "payments");
    assert_eq!(
        pay["exp"].as_i64().unwrap() - pay["iat"].as_i64().unwrap(),
        30
    );
    assert_eq!(pay["roles"], json!(["admin"]));
    assert_eq!(pay["scope"], "payments:read");
}

#[test]
fn internal_tokens_are_refused_at_the_edge() {
    let s = setup("6h");
    let auth = format!("Bearer {}", external(&s, "bob"));
    s.gateway.get("/users/me", &[("Authorization", &auth)]);
    let internal = bearer_of(&s.upstream.last().unwrap());
    s.upstream.clear();
    let r = s.gateway.get(
        "/users/me",
        &[("Authorization", &format!("Bearer {internal}"))],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(s.upstream.count(), 0);
    // Without a token, nothing is minted.
    let r = s.gateway.get("/users/me", &[]);
    assert_eq!(r.status, 401);
    assert!(
        !s.gateway.log_text().contains(&internal),
        "internal tokens never appear in logs"
    );
}

#[test]
fn key_rotation_under_traffic_fails_no_request() {
    let s = setup("1s");
    let users = service(&s, "users", "internal+jwt");
    let mut kids = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_millis(3500);
    let mut n = 0;
    while std::time::Instant::now() < deadline {
        // Distinct external tokens, so every request mints with the key active at that moment.
        let auth = format!("Bearer {}", external(&s, &format!("user-{n}")));
        let r = s.gateway.get("/users/me", &[("Authorization", &auth)]);
        assert_eq!(r.status, 200);
        let internal = bearer_of(&s.upstream.last().unwrap());
        let verified = rt().block_on(users.validate(&internal));
        assert!(verified.is_ok(), "request {n} failed: {verified:?}");
        kids.insert(verified.unwrap().key_id().unwrap().to_owned());
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(kids.len() >= 3, "keys rotated during the test: {kids:?}");
}

#[test]
fn assertion_binds_identity_headers_method_and_path() {
    let s = setup("6h");
    let auth = format!("Bearer {}", external(&s, "carol"));
    let r = s.gateway.request(
        "POST",
        "/profile/settings?tab=2",
        &[
            ("Authorization", &auth),
            ("Content-Length", "0"),
            ("X-Trustgate-Assertion", "forged"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = s.upstream.last().unwrap();
    let assertions = got.header_values("x-trustgate-assertion");
    assert_eq!(assertions.len(), 1);
    assert_ne!(assertions[0], "forged");
    let verifier = service(&s, "users", "trustgate-assertion+jwt");
    let verified = rt().block_on(verifier.validate(assertions[0])).unwrap();
    let claims = verified.claims();
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], "/profile/settings?tab=2");
    assert_eq!(claims["hdr"]["x-user-id"], "carol");
    assert_eq!(claims["hdr"]["x-user-roles"], "admin");
    assert_eq!(got.header("x-user-id"), Some("carol"));
    let exp = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(exp, 30);
}

#[test]
fn internal_jwks_is_on_the_admin_listener_not_the_edge() {
    let s = setup("6h");
    let (status, body) = s.gateway.admin_get("/.well-known/jwks.json");
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "active and pre-published next key"
    );
    assert!(jwks["keys"][0].get("d").is_none(), "no private members");
    let (status, body) = s.gateway.admin_get("/.well-known/openid-configuration");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["issuer"], format!("http://{}", s.gateway.admin));
    // Not on the public edge by default (no route matches, so 404).
    let r = s.gateway.get("/.well-known/jwks.json", &[]);
    assert_eq!(r.status, 404);
}

/// An internal token never outlives the external token it was minted from: its `exp` is capped
/// at the external `exp` (also when it comes from the minted-token cache), and an external token
/// with under one second left (inside its leeway) is refused rather than minted for.
#[test]
fn an_internal_token_never_outlives_the_external_token() {
    let s = setup("6h");
    let now = test_support::now_secs();
    let mut c = claims(&s.iss, "api", "short-lived");
    c["iat"] = json!(now - 10);
    c["nbf"] = json!(now - 10);
    c["exp"] = json!(now + 20);
    let auth = format!("Bearer {}", s.key.sign(&c));
    for attempt in ["minted", "from the cache"] {
        let r = s.gateway.get("/users/me", &[("Authorization", &auth)]);
        assert_eq!(r.status, 200, "{attempt}: {}", r.body_text());
        let internal = jwt_payload(&bearer_of(&s.upstream.last().unwrap()));
        assert_eq!(internal["exp"], json!(now + 20), "{attempt}: {internal}");
        assert!(internal["iat"].as_i64().unwrap() >= now, "{attempt}");
    }
    // The assertion on an identity-headers route is capped the same way.
    let r = s.gateway.get("/profile/me", &[("Authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let assertion = s.upstream.last().unwrap();
    let assertion = jwt_payload(assertion.header("x-trustgate-assertion").unwrap());
    assert_eq!(assertion["exp"], json!(now + 20), "{assertion}");

    // Expired 5 s ago: still inside the issuer's 60 s leeway, so the external token validates,
    // but nothing may be minted that outlives it.
    let before = s.upstream.count();
    let mut c = claims(&s.iss, "api", "in-leeway");
    c["iat"] = json!(now - 60);
    c["nbf"] = json!(now - 60);
    c["exp"] = json!(now - 5);
    let auth = format!("Bearer {}", s.key.sign(&c));
    let r = s.gateway.get("/users/me", &[("Authorization", &auth)]);
    assert_eq!(r.status, 401, "{}", r.body_text());
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(s.upstream.count(), before, "a token was minted for it");
}
