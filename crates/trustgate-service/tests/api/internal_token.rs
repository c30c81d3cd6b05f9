//! Pattern 4: the gateway mints an internal token per service; the service accepts only that.

use std::sync::Arc;

use serde_json::json;
use test_support::now_secs;
use trustgate_core::ManualClock;
use trustgate_service::{Builder, Mode, TrustgateLayer};

use crate::common::*;

async fn service(issuers: &Issuers) -> std::net::SocketAddr {
    let layer = TrustgateLayer::internal_tokens(&issuers.internal.url(), SERVICE)
        .await
        .unwrap();
    assert_eq!(layer.mode(), Mode::InternalToken);
    serve(app(layer)).await
}

#[tokio::test]
async fn internal_token_is_accepted_with_its_identity() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    let token = issuers.internal_token(SERVICE, json!({}));
    let reply = get_with(addr, "/users/me", &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({
            "mode": "internal-token", "subject": "alice", "roles": ["admin", "user"],
            "scopes": ["profile:read", "payments:read"], "tenant": "t1", "client": "web",
            "issuer": issuers.internal.url(), "external_issuer": issuers.external.url(),
            "verified": true,
        })
    );
}

#[tokio::test]
async fn a_token_minted_for_another_service_is_refused() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    let token = issuers.internal_token("payments-api", json!({}));
    get_with(addr, "/users/me", &[("authorization", &bearer(&token))])
        .await
        .assert_invalid_token();
}

#[tokio::test]
async fn the_external_token_is_never_accepted() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    // The user's own token, even with this service as audience: another issuer.
    let external = issuers.external_token(SERVICE, json!({}));
    get_with(addr, "/users/me", &[("authorization", &bearer(&external))])
        .await
        .assert_invalid_token();
    // The internal issuer's key but the wrong typ (a plain JWT, or a gateway assertion).
    let payload = json!({"iss": issuers.internal.url(), "aud": SERVICE, "sub": "alice",
                         "iat": now_secs(), "exp": now_secs() + 60, "jti": "x"});
    for typ in ["JWT", "trustgate-assertion+jwt"] {
        let token = issuers.internal_signed(typ, &payload);
        get_with(addr, "/users/me", &[("authorization", &bearer(&token))])
            .await
            .assert_invalid_token();
    }
    // An assertion header does not stand in for the token.
    let assertion = issuers.assertion(SERVICE, "GET", "/users/me", json!({}), json!({}));
    get_with(addr, "/users/me", &[("x-trustgate-assertion", &assertion)])
        .await
        .assert_refused(401, Some("Bearer"), "unauthorized");
}

#[tokio::test]
async fn expired_internal_token_is_refused() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    let now = now_secs();
    let token = issuers.internal_token(
        SERVICE,
        json!({"iat": now - 600, "nbf": now - 600, "exp": now - 120}),
    );
    get_with(addr, "/users/me", &[("authorization", &bearer(&token))])
        .await
        .assert_invalid_token();
}

#[tokio::test]
async fn expiry_is_enforced_on_cached_tokens_as_time_moves() {
    let issuers = Issuers::start().await;
    let t0 = now_secs();
    let clock = ManualClock::at_secs(t0);
    let layer = Builder::internal_tokens(&issuers.internal.url(), SERVICE)
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    let token = issuers.internal_token(SERVICE, json!({"iat": t0, "nbf": t0, "exp": t0 + 60}));
    let auth = bearer(&token);
    assert_eq!(
        get_with(addr, "/users/me", &[("authorization", &auth)])
            .await
            .status,
        200
    );
    // Refused from exp + 60 s leeway on; accepted until then (from the cache).
    clock.advance_secs(119);
    assert_eq!(
        get_with(addr, "/users/me", &[("authorization", &auth)])
            .await
            .status,
        200
    );
    clock.advance_secs(1);
    get_with(addr, "/users/me", &[("authorization", &auth)])
        .await
        .assert_invalid_token();
}
