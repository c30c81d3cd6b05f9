//! A gRPC call is refused the gRPC way by the same layer (the tonic server tests are in
//! examples/grpc-echo/tests): HTTP 200, trailers-only, `grpc-status` and `grpc-message` from
//! trustgate-core's one mapping, `WWW-Authenticate` kept. Anything else keeps RFC 6750.

use http::Method;
use serde_json::json;
use trustgate_service::TrustgateLayer;

use crate::common::*;

#[tokio::test]
async fn a_grpc_call_is_refused_with_grpc_status() {
    let issuers = Issuers::start().await;
    let layer = TrustgateLayer::jwt(&issuers.external.url(), SERVICE)
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    let expired = issuers.external_token(SERVICE, json!({"exp": 1}));
    for (content_type, auth, status, message, challenge) in [
        ("application/grpc", None, "16", "unauthenticated", "Bearer"),
        (
            "application/grpc+proto",
            Some(bearer(&expired)),
            "16",
            "invalid_token",
            r#"Bearer error="invalid_token""#,
        ),
    ] {
        let mut headers = vec![("content-type", content_type)];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        let reply = call(addr, Method::POST, "/users/me", &headers).await;
        assert_eq!(reply.status, 200, "{content_type}");
        assert_eq!(reply.header("grpc-status"), Some(status), "{content_type}");
        assert_eq!(
            reply.header("grpc-message"),
            Some(message),
            "{content_type}"
        );
        assert_eq!(
            reply.header("www-authenticate"),
            Some(challenge),
            "{content_type}"
        );
        assert_eq!(reply.header("content-type"), Some("application/grpc"));
        assert!(reply.body.is_empty(), "{content_type}: {:?}", reply.body);
    }
    // gRPC-Web and JSON are not gRPC: RFC 6750 as before.
    for content_type in ["application/grpc-web", "application/json"] {
        call(
            addr,
            Method::POST,
            "/users/me",
            &[("content-type", content_type)],
        )
        .await
        .assert_refused(401, Some("Bearer"), "unauthorized");
    }
}

#[tokio::test]
async fn a_grpc_call_past_the_layer_reaches_the_handler() {
    let issuers = Issuers::start().await;
    let layer = TrustgateLayer::gateway_assertion(&issuers.internal.url(), SERVICE)
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    // The gateway binds a call as it binds any request: POST and the path.
    let assertion = issuers.assertion(SERVICE, "POST", "/users/me", json!({}), json!({}));
    let reply = call(
        addr,
        Method::POST,
        "/users/me",
        &[
            ("content-type", "application/grpc"),
            ("x-trustgate-assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("grpc-status"), None);
    assert_eq!(reply.json()["subject"], "alice");
}
