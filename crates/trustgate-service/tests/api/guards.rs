//! Guards in handlers: a missing role, scope or tenant is 403 `insufficient_scope`.

use axum::Router;
use axum::routing::get;
use serde_json::json;
use trustgate_service::TrustgateLayer;

use crate::common::*;

fn assert_forbidden(reply: &Reply) {
    reply.assert_refused(
        403,
        Some(r#"Bearer error="insufficient_scope""#),
        "insufficient_scope",
    );
}

#[tokio::test]
async fn require_role() {
    let issuers = Issuers::start().await;
    let layer = TrustgateLayer::internal_tokens(&issuers.internal.url(), SERVICE)
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    let token = issuers.internal_token(SERVICE, json!({}));
    let auth = [("authorization", bearer(&token))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = get_with(addr, "/admin", &auth).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"admin": true}));
    assert_forbidden(&get_with(addr, "/audit", &auth).await);
    // No roles claim at all.
    let plain = issuers.internal_token(SERVICE, json!({"roles": null}));
    assert_forbidden(&get_with(addr, "/admin", &[("authorization", &bearer(&plain))]).await);
}

#[tokio::test]
async fn require_scope_and_tenant() {
    let issuers = Issuers::start().await;
    let layer = TrustgateLayer::jwt(&issuers.external.url(), SERVICE)
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    let t1 = issuers.external_token(SERVICE, json!({"scope": "reports:read", "tenant_id": "t1"}));
    let t2 = issuers.external_token(SERVICE, json!({"scope": "profile:read", "tenant_id": "t2"}));
    let none = issuers.external_token(SERVICE, json!({}));
    assert_eq!(
        get_with(addr, "/reports", &[("authorization", &bearer(&t1))])
            .await
            .status,
        200
    );
    assert_eq!(
        get_with(addr, "/tenants/t1", &[("authorization", &bearer(&t1))])
            .await
            .status,
        200
    );
    assert_forbidden(&get_with(addr, "/reports", &[("authorization", &bearer(&t2))]).await);
    assert_forbidden(&get_with(addr, "/tenants/t1", &[("authorization", &bearer(&t2))]).await);
    assert_forbidden(&get_with(addr, "/tenants/t1", &[("authorization", &bearer(&none))]).await);
    // Without credentials the layer answers first: 401, not 403.
    get_with(addr, "/reports", &[])
        .await
        .assert_refused(401, Some("Bearer"), "unauthorized");
}

#[tokio::test]
async fn require_subject_refuses_a_token_that_names_no_user() {
    let issuers = Issuers::start().await;
    let layer = TrustgateLayer::jwt(&issuers.external.url(), SERVICE)
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    let alice = issuers.external_token(SERVICE, json!({}));
    let reply = get_with(addr, "/profile", &[("authorization", &bearer(&alice))]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"subject": "alice"}));
    // A client-credentials token: valid, so the layer admits it, but it names no user.
    let machine = issuers.external_token(SERVICE, json!({"sub": null, "client_id": "batch"}));
    let auth = [("authorization", bearer(&machine))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = get_with(addr, "/users/me", &auth).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["subject"], json!(null));
    assert_eq!(reply.json()["client"], "batch");
    assert_forbidden(&get_with(addr, "/profile", &auth).await);
}

#[tokio::test]
async fn the_caller_tells_when_its_proof_expires() {
    let issuers = Issuers::start().await;
    let exp = test_support::now_secs() + 123;
    let jwt = TrustgateLayer::jwt(&issuers.external.url(), SERVICE)
        .await
        .unwrap();
    let addr = serve(app(jwt)).await;
    let token = issuers.external_token(SERVICE, json!({"exp": exp}));
    let reply = get_with(addr, "/expiry", &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.json(), json!({"expires_at": exp}));
    // In the assertion modes, the assertion's own expiry: the gateway vouches for the start.
    let assertion_layer = TrustgateLayer::gateway_assertion(&issuers.internal.url(), SERVICE)
        .await
        .unwrap();
    let addr = serve(app(assertion_layer)).await;
    // (At most 60 s after `iat`, or the layer refuses it.)
    let exp = test_support::now_secs() + 17;
    let assertion = issuers.assertion(SERVICE, "GET", "/expiry", json!({}), json!({"exp": exp}));
    let reply = get_with(addr, "/expiry", &[("x-trustgate-assertion", &assertion)]).await;
    assert_eq!(reply.json(), json!({"expires_at": exp}));
    // Nothing verified, nothing to tell.
    let danger = TrustgateLayer::danger_trust_identity_headers_without_assertion(
        trustgate_service::HeaderMapping::default(),
    );
    let addr = serve(app(danger)).await;
    let reply = get_with(addr, "/expiry", &[("x-user-id", "alice")]).await;
    assert_eq!(reply.json(), json!({"expires_at": null}));
}

#[tokio::test]
async fn a_caller_on_a_route_without_the_layer_fails_closed() {
    let addr = serve(Router::new().route("/users/me", get(whoami))).await;
    get_with(addr, "/users/me", &[("x-user-id", "alice")])
        .await
        .assert_refused(401, Some("Bearer"), "unauthorized");
}
