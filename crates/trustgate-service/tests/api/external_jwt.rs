//! Pattern 1: the service validates an external issuer's JWT itself, found by discovery.

use http::Method;
use serde_json::json;
use test_support::{TestIssuer, TestKey, now_secs};
use trustgate_core::ConfigError;
use trustgate_service::{Builder, Mode, SetupError, TrustgateLayer};

use crate::common::*;

async fn service(issuers: &Issuers) -> std::net::SocketAddr {
    let layer = TrustgateLayer::jwt(&issuers.external.url(), SERVICE)
        .await
        .unwrap();
    assert_eq!(layer.mode(), Mode::ExternalJwt);
    assert!(layer.is_ready());
    serve(app(layer)).await
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_its_identity() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    let token = issuers.external_token(
        SERVICE,
        json!({"roles": ["user"], "scope": "profile:read", "tenant_id": "t1", "azp": "web"}),
    );
    let reply = get_with(addr, "/users/me", &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({
            "mode": "external-jwt", "subject": "alice", "roles": ["user"],
            "scopes": ["profile:read"], "tenant": "t1", "client": "web",
            "issuer": issuers.external.url(), "external_issuer": issuers.external.url(),
            "verified": true,
        })
    );
    // Discovery, then the key set, each fetched once; the second request is a cache hit.
    let again = get_with(addr, "/users/me", &[("authorization", &bearer(&token))]).await;
    assert_eq!(again.status, 200);
    assert_eq!(issuers.external.discovery_fetches(), 1);
    assert_eq!(issuers.external.jwks_fetches(), 1);
}

#[tokio::test]
async fn expired_token_is_invalid() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    let now = now_secs();
    // Past the default 60 s leeway.
    let token = issuers.external_token(
        SERVICE,
        json!({"iat": now - 3600, "nbf": now - 3600, "exp": now - 120}),
    );
    let reply = get_with(addr, "/users/me", &[("authorization", &bearer(&token))]).await;
    reply.assert_invalid_token();
    assert!(!String::from_utf8_lossy(&reply.body).contains("expired"));
}

#[tokio::test]
async fn wrong_audience_is_invalid() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    let token = issuers.external_token("payments-api", json!({}));
    get_with(addr, "/users/me", &[("authorization", &bearer(&token))])
        .await
        .assert_invalid_token();
}

#[tokio::test]
async fn no_token_gets_a_bare_bearer_challenge() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    get_with(addr, "/users/me", &[])
        .await
        .assert_refused(401, Some("Bearer"), "unauthorized");
    // Another scheme is not a bearer token.
    get_with(
        addr,
        "/users/me",
        &[("authorization", "Basic YWxpY2U6cHc=")],
    )
    .await
    .assert_refused(401, Some("Bearer"), "unauthorized");
}

#[tokio::test]
async fn two_tokens_are_an_invalid_request() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    let token = issuers.external_token(SERVICE, json!({}));
    let header = bearer(&token);
    let reply = get_with(
        addr,
        "/users/me",
        &[("authorization", &header), ("authorization", &header)],
    )
    .await;
    reply.assert_refused(
        400,
        Some(r#"Bearer error="invalid_request""#),
        "invalid_request",
    );
    // A malformed Bearer credential too.
    get_with(addr, "/users/me", &[("authorization", "Bearer a b")])
        .await
        .assert_refused(
            400,
            Some(r#"Bearer error="invalid_request""#),
            "invalid_request",
        );
}

/// The gateway's credential rules hold in the service too: a bearer-like value that is not exactly
/// RFC 6750 and an `access_token` in the query are malformed requests, never "no token" and never
/// a token the handler could find unchecked.
#[tokio::test]
async fn bearer_like_values_and_query_tokens_are_invalid_requests() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    let token = issuers.external_token(SERVICE, json!({}));
    let invalid_request = |reply: Reply| {
        reply.assert_refused(
            400,
            Some(r#"Bearer error="invalid_request""#),
            "invalid_request",
        )
    };
    for value in [
        format!("Bearer\t{token}"),
        format!("Bearer{token}"),
        format!("Basic dXNlcjpwdw==, Bearer {token}"),
        format!("Bearer {token}\""),
    ] {
        invalid_request(get_with(addr, "/users/me", &[("authorization", &value)]).await);
    }
    for target in [
        format!("/users/me?access_token={token}"),
        format!("/users/me?x=1&access%5Ftoken={token}"),
    ] {
        invalid_request(get_with(addr, &target, &[]).await);
        invalid_request(get_with(addr, &target, &[("authorization", &bearer(&token))]).await);
    }
    // The control: the same token in the header alone is accepted.
    let reply = get_with(addr, "/users/me?x=1", &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_invalid() {
    let issuers = Issuers::start().await;
    let addr = service(&issuers).await;
    // Signed by a key the issuer never published, with the published kid.
    let forger = TestKey::es256("ext-1");
    let forged = forger.sign(&test_support::claims(
        &issuers.external.url(),
        SERVICE,
        "alice",
    ));
    get_with(addr, "/users/me", &[("authorization", &bearer(&forged))])
        .await
        .assert_invalid_token();
    // A valid internal token is not an external token.
    let internal = issuers.internal_token(SERVICE, json!({}));
    get_with(addr, "/users/me", &[("authorization", &bearer(&internal))])
        .await
        .assert_invalid_token();
    // Garbage.
    get_with(addr, "/users/me", &[("authorization", "Bearer not.a.jwt")])
        .await
        .assert_invalid_token();
}

#[tokio::test]
async fn builder_settings_are_enforced() {
    let issuers = Issuers::start().await;
    let layer = Builder::jwt(&issuers.external.url(), SERVICE)
        .required_typ("at+jwt")
        .build()
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    // `sign` writes typ JWT.
    let token = issuers.external_token(SERVICE, json!({}));
    get_with(addr, "/users/me", &[("authorization", &bearer(&token))])
        .await
        .assert_invalid_token();
    let header = json!({"alg": "ES256", "kid": "ext-1", "typ": "at+jwt"}).to_string();
    let payload = test_support::claims(&issuers.external.url(), SERVICE, "alice").to_string();
    let at = issuers.external_key.sign_with_header(&header, &payload);
    assert_eq!(
        call(
            addr,
            Method::GET,
            "/users/me",
            &[("authorization", &bearer(&at))]
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn an_unreachable_issuer_fails_setup_or_answers_503() {
    let down = TestIssuer::start().await;
    down.set_behavior(test_support::Behavior::Status(500));
    let url = down.url();
    let error = TrustgateLayer::jwt(&url, SERVICE).await.unwrap_err();
    assert!(
        matches!(error, SetupError::KeysUnavailable { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("start_without_keys"));

    let layer = Builder::jwt(&url, SERVICE)
        .start_without_keys()
        .build()
        .await
        .unwrap();
    assert!(!layer.is_ready());
    let addr = serve(app(layer)).await;
    let key = TestKey::es256("k");
    let token = key.sign(&test_support::claims(&url, SERVICE, "alice"));
    let reply = get_with(addr, "/users/me", &[("authorization", &bearer(&token))]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(reply.json(), json!({"error": "temporarily_unavailable"}));
}

#[tokio::test]
async fn configuration_errors_are_reported() {
    let error = TrustgateLayer::jwt("idp.example", SERVICE)
        .await
        .unwrap_err();
    assert!(matches!(error, SetupError::Config(_)), "{error}");
    // An unset variable for the audience: it would accept tokens with `aud: ""`.
    let issuers = Issuers::start().await;
    let error = TrustgateLayer::jwt(&issuers.external.url(), "")
        .await
        .unwrap_err();
    assert!(
        matches!(error, SetupError::Config(ConfigError::EmptyAudience(_))),
        "{error}"
    );
    let error = Builder::internal_tokens("http://127.0.0.1:1", SERVICE)
        .required_typ("JWT")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SetupError::NotForMode {
                setting: "required_typ",
                mode: Mode::InternalToken
            }
        ),
        "{error}"
    );
}
