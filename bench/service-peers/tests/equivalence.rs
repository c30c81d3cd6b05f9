//! Every router of the benchmark is configured equivalently: each accepts the valid RS256 token
//! (and the distinct tokens of the uncached case) with the subject, and refuses with 401 an
//! expired token, a wrong `aud`, a wrong `iss`, a bad signature, `alg: none`, an HS256 token keyed
//! with the public key, and no token. Run by `bench/service.sh --check`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use axum::Router;
use http::StatusCode;
use http_body_util::BodyExt as _;
use service_peers::{
    AXUM_JWT_AUTH, Fixture, OAUTH2_RS, RawVerify, SUBJECT, TRUSTGATE, bearer, refusal_cases,
    request,
};
use tower::ServiceExt as _;

/// The status and body `router` answers with this token (`None`: no `Authorization`).
async fn send(router: &Router, token: Option<&str>) -> (StatusCode, String) {
    let value = token.map(bearer);
    let response = router
        .clone()
        .oneshot(request(value.as_ref()))
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn assert_equivalent(system: &str, router: Router) {
    let fixture = Fixture::get();
    // The benchmark's cached token and some of its distinct ones.
    for serial in [0, 1, 2, 1024] {
        let token = fixture.token(serial);
        assert_eq!(
            send(&router, Some(&token)).await,
            (StatusCode::OK, SUBJECT.to_owned()),
            "{system}: valid token #{serial}"
        );
    }
    // Twice: a cache must not turn a refusal into an acceptance, nor the reverse.
    let mut wrong = Vec::new();
    for round in 0..2 {
        for (case, token) in refusal_cases(fixture) {
            let (status, body) = send(&router, token.as_deref()).await;
            assert!(
                !body.contains(SUBJECT),
                "{system}: {case} reached the handler"
            );
            let expected = expected_refusal(system, case);
            if status != expected {
                wrong.push(format!(
                    "{case} (round {round}): {status} {body:?}, expected {expected}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{system}:\n{}", wrong.join("\n"));
}

/// 401 for every refusal, but for the peers' own error mappings, listed here so that any other
/// difference fails. None of them lets a request through.
fn expected_refusal(system: &str, case: &str) -> StatusCode {
    match (system, case) {
        // jsonwebtoken cannot parse `alg: none` in the header; axum-jwt-auth maps that error
        // (like any error it does not list) to 500 "Internal error".
        (AXUM_JWT_AUTH, "alg none") => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNAUTHORIZED,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn trustgate_cached() {
    let router = service_peers::trustgate_router(Fixture::get(), true).await;
    assert_equivalent(TRUSTGATE, router).await;
}

#[tokio::test(flavor = "current_thread")]
async fn trustgate_uncached() {
    let router = service_peers::trustgate_router(Fixture::get(), false).await;
    assert_equivalent(TRUSTGATE, router).await;
}

#[tokio::test(flavor = "current_thread")]
async fn tower_oauth2_resource_server() {
    let router = service_peers::oauth2_router(Fixture::get()).await;
    assert_equivalent(OAUTH2_RS, router).await;
}

#[tokio::test(flavor = "current_thread")]
async fn axum_jwt_auth() {
    let router = service_peers::axum_jwt_auth_router(Fixture::get()).await;
    assert_equivalent(AXUM_JWT_AUTH, router).await;
}

/// The baseline verifies exactly the signatures the layers accept, and not an impostor's.
#[test]
fn raw_verify_checks_the_signature() {
    let fixture = Fixture::get();
    let valid = fixture.token(7);
    let forged = refusal_cases(fixture)
        .into_iter()
        .find(|(case, _)| *case == "bad signature")
        .and_then(|(_, token)| token)
        .unwrap();
    let raw = RawVerify::new(fixture, &[valid, forged]);
    assert!(raw.verify(0));
    assert!(!raw.verify(1));
}
