//! Each of the four modes, on a unary call: who gets in, and the exact refusal for who does not.

use grpc_echo::pb::StreamRequest;
use serde_json::{Value, json};
use test_support::now_secs;
use tonic::Status;

use crate::common::*;

/// A unary call in `mode` with a credential for `aud` carrying `extra`, expected to be refused.
async fn refused_unary(mode: Mode, aud: &str, extra: Value) -> Status {
    let (issuers, server) = start(mode).await;
    let metadata = mode.credentials_for(&issuers, "Unary", aud, extra);
    server
        .unary(message("hello", 0), &metadata)
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn a_valid_call_reaches_the_handler_with_the_caller() {
    for mode in MODES {
        let (issuers, server) = start(mode).await;
        let mut metadata = mode.credentials(&issuers, "Unary");
        metadata.push(("x-request-tag", "t-42".to_owned()));
        let reply = server
            .unary(message("hello", 1000), &metadata)
            .await
            .unwrap_or_else(|status| panic!("{mode:?}: {status:?}"));
        assert_eq!(reply.subject, "alice", "{mode:?}");
        assert_eq!(reply.tenant, "t1", "{mode:?}");
        assert_eq!(reply.roles, ["admin", "user"], "{mode:?}");
        assert_eq!(reply.message, "hello", "{mode:?}");
        assert_eq!(reply.payload, grpc_echo::pattern(1000), "{mode:?}");
        assert_eq!(reply.received_bytes, 1000, "{mode:?}");
        // The handler saw the metadata as sent, credentials included, sorted by name.
        let seen: Vec<(&str, &str)> = reply
            .metadata
            .iter()
            .map(|m| (m.name.as_str(), m.value.as_str()))
            .collect();
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "{mode:?}");
        for (name, value) in &metadata {
            assert!(
                seen.contains(&(*name, value.as_str())),
                "{mode:?}: {name} not in {seen:?}"
            );
        }
        assert!(
            seen.contains(&("content-type", "application/grpc")),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn no_credential_is_unauthenticated_with_a_bearer_challenge() {
    for mode in MODES {
        let (_issuers, server) = start(mode).await;
        let refused = server.unary(message("hello", 0), &[]).await.unwrap_err();
        assert_unauthenticated(&refused, &format!("{mode:?}"));
    }
}

#[tokio::test]
async fn an_expired_credential_is_unauthenticated() {
    for mode in MODES {
        let now = now_secs();
        // A 30 s lifetime that ended 70 s ago: past the 60 s leeway of tokens and the 5 s of
        // assertions, and short enough that only expiry can be the reason.
        let expired = json!({"iat": now - 100, "nbf": now - 100, "exp": now - 70});
        let refused = refused_unary(mode, SERVICE, expired).await;
        assert_invalid_token(&refused, &format!("{mode:?}"));
    }
}

#[tokio::test]
async fn a_credential_for_another_service_is_unauthenticated() {
    for mode in MODES {
        let refused = refused_unary(mode, "payments-api", json!({})).await;
        assert_invalid_token(&refused, &format!("{mode:?}"));
    }
}

#[tokio::test]
async fn two_credentials_are_an_invalid_argument() {
    let (issuers, server) = start(Mode::Jwt).await;
    let mut metadata = Mode::Jwt.credentials(&issuers, "Unary");
    metadata.extend(Mode::Jwt.credentials(&issuers, "Unary"));
    let refused = server
        .unary(message("hello", 0), &metadata)
        .await
        .unwrap_err();
    assert_refused(
        &refused,
        tonic::Code::InvalidArgument,
        "invalid_request",
        r#"Bearer error="invalid_request""#,
        "two authorization headers",
    );
}

#[tokio::test]
async fn forged_identity_headers_without_an_assertion_are_refused() {
    let (issuers, server) = start(Mode::IdentityHeaders).await;
    let forged = vec![
        ("x-user-id", "alice".to_owned()),
        ("x-user-roles", "admin".to_owned()),
        ("x-tenant-id", "t1".to_owned()),
    ];
    let refused = server
        .unary(message("hello", 0), &forged)
        .await
        .unwrap_err();
    assert_unauthenticated(&refused, "headers alone");
    // A valid internal token does not stand in for the assertion.
    let mut with_token = forged;
    with_token.push((
        "authorization",
        format!("Bearer {}", issuers.internal_token(SERVICE, json!({}))),
    ));
    let refused = server
        .unary(message("hello", 0), &with_token)
        .await
        .unwrap_err();
    assert_unauthenticated(&refused, "headers and an internal token");
    // A genuine assertion for alice does not vouch for a different header value.
    let mut changed = Mode::IdentityHeaders.credentials(&issuers, "Unary");
    changed[0].1 = "mallory".to_owned();
    let refused = server
        .unary(message("hello", 0), &changed)
        .await
        .unwrap_err();
    assert_invalid_token(
        &refused,
        "a header the assertion does not list with that value",
    );
}

#[tokio::test]
async fn an_assertion_binds_the_call_path_and_is_used_once() {
    for mode in [Mode::GatewayAssertion, Mode::IdentityHeaders] {
        let (issuers, server) = start(mode).await;
        let mut client = server.client().await;
        // Minted for Unary, sent to ServerStream: another path.
        let for_unary = mode.credentials(&issuers, "Unary");
        let refused = client
            .server_stream(request(StreamRequest::default(), &for_unary))
            .await
            .unwrap_err();
        assert_invalid_token(&refused, &format!("{mode:?}: another method"));
        // Bound to `GET` instead of gRPC's `POST`.
        if mode == Mode::GatewayAssertion {
            let get = issuers.assertion(SERVICE, "GET", &path("Unary"), json!({}), json!({}));
            let refused = unary(
                &mut client,
                message("hello", 0),
                &[("x-trustgate-assertion", get)],
            )
            .await
            .unwrap_err();
            assert_invalid_token(&refused, "GET assertion");
        }
        // The right call is admitted once; the same assertion again is a replay.
        let fresh = mode.credentials(&issuers, "Unary");
        unary(&mut client, message("hello", 0), &fresh)
            .await
            .unwrap();
        let refused = unary(&mut client, message("hello", 0), &fresh)
            .await
            .unwrap_err();
        assert_invalid_token(&refused, &format!("{mode:?}: replay"));
    }
}
