//! Patterns 2 and 3 with the gateway assertion: identity headers are believed only when the
//! gateway's signed assertion binds them to this exact request. And the danger mode that does not.

use std::sync::Arc;

use axum::Router;
use http::Method;
use serde_json::json;
use test_support::now_secs;
use trustgate_core::{Clock as _, ManualClock};
use trustgate_service::{
    Builder, HeaderMapping, Mode, ReplayStore, ReplayStoreError, TrustgateLayer,
};

use crate::common::*;

async fn header_service(issuers: &Issuers) -> std::net::SocketAddr {
    let layer = TrustgateLayer::identity_headers(&issuers.internal.url(), SERVICE)
        .await
        .unwrap();
    assert_eq!(layer.mode(), Mode::IdentityHeaders);
    serve(app(layer)).await
}

const ALICE: [(&str, &str); 3] = [
    ("x-user-id", "alice"),
    ("x-user-roles", "admin,user"),
    ("x-tenant-id", "t1"),
];

fn with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = ALICE.to_vec();
    headers.extend_from_slice(extra);
    headers
}

#[tokio::test]
async fn identity_headers_without_an_assertion_are_refused() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    get_with(addr, "/users/me", &ALICE)
        .await
        .assert_refused(401, Some("Bearer"), "unauthorized");
    // Nor does a valid external or internal bearer token stand in for it.
    let token = issuers.internal_token(SERVICE, json!({}));
    get_with(
        addr,
        "/users/me",
        &with(&[("authorization", &bearer(&token))]),
    )
    .await
    .assert_refused(401, Some("Bearer"), "unauthorized");
}

#[tokio::test]
async fn a_valid_assertion_admits_the_request_with_the_asserted_identity() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    let assertion = issuers.assertion(
        SERVICE,
        "GET",
        "/users/me?x=1",
        alice_headers(),
        json!({"scope": "profile:read payments:read"}),
    );
    let reply = get_with(
        addr,
        "/users/me?x=1",
        &with(&[("x-trustgate-assertion", &assertion)]),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        reply.json(),
        json!({
            "mode": "identity-headers", "subject": "alice", "roles": ["admin", "user"],
            "scopes": ["profile:read", "payments:read"], "tenant": "t1", "client": "web",
            "issuer": issuers.internal.url(), "external_issuer": issuers.external.url(),
            "verified": true,
        })
    );
}

#[tokio::test]
async fn the_identity_comes_from_the_assertion_not_from_extra_headers() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    // The assertion lists only x-user-id; an unlisted roles header claiming more is ignored.
    let assertion = issuers.assertion(
        SERVICE,
        "GET",
        "/users/me",
        json!({"x-user-id": "alice"}),
        json!({"roles": ["user"]}),
    );
    let reply = get_with(
        addr,
        "/users/me",
        &[
            ("x-user-id", "alice"),
            ("x-user-roles", "admin,superuser"),
            ("x-trustgate-assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["roles"], json!(["user"]));
}

#[tokio::test]
async fn an_assertion_replayed_for_another_path_is_refused() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    let assertion = issuers.assertion(SERVICE, "GET", "/users/me", alice_headers(), json!({}));
    let headers = with(&[("x-trustgate-assertion", &assertion)]);
    assert_eq!(get_with(addr, "/users/me", &headers).await.status, 200);
    get_with(addr, "/admin", &headers)
        .await
        .assert_invalid_token();
    // The query is part of the binding, both ways.
    get_with(addr, "/users/me?as=bob", &headers)
        .await
        .assert_invalid_token();
    let with_query = issuers.assertion(SERVICE, "GET", "/users/me?x=1", alice_headers(), json!({}));
    get_with(
        addr,
        "/users/me",
        &with(&[("x-trustgate-assertion", &with_query)]),
    )
    .await
    .assert_invalid_token();
}

#[tokio::test]
async fn an_assertion_replayed_for_another_method_is_refused() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    let assertion = issuers.assertion(SERVICE, "GET", "/users/me", alice_headers(), json!({}));
    call(
        addr,
        Method::POST,
        "/users/me",
        &with(&[("x-trustgate-assertion", &assertion)]),
    )
    .await
    .assert_invalid_token();
    let post = issuers.assertion(SERVICE, "POST", "/users/me", alice_headers(), json!({}));
    let reply = call(
        addr,
        Method::POST,
        "/users/me",
        &with(&[("x-trustgate-assertion", &post)]),
    )
    .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn an_assertion_after_its_window_is_refused() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    let now = now_secs();
    // Expired 10 s ago: beyond the 5 s leeway.
    let stale = issuers.assertion(
        SERVICE,
        "GET",
        "/users/me",
        alice_headers(),
        json!({"iat": now - 40, "exp": now - 10}),
    );
    get_with(
        addr,
        "/users/me",
        &with(&[("x-trustgate-assertion", &stale)]),
    )
    .await
    .assert_invalid_token();
    // A long-lived assertion is refused even while valid: lifetime is capped at 60 s.
    let long = issuers.assertion(
        SERVICE,
        "GET",
        "/users/me",
        alice_headers(),
        json!({"iat": now, "exp": now + 3600}),
    );
    get_with(
        addr,
        "/users/me",
        &with(&[("x-trustgate-assertion", &long)]),
    )
    .await
    .assert_invalid_token();
}

#[tokio::test]
async fn the_window_closes_for_an_accepted_assertion_as_time_moves() {
    let issuers = Issuers::start().await;
    let t0 = now_secs();
    let clock = ManualClock::at_secs(t0);
    let layer = Builder::identity_headers(&issuers.internal.url(), SERVICE)
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    // Assertions minted at t0, each used once, as the gateway's are.
    let minted_at_t0 = || {
        issuers.assertion(
            SERVICE,
            "GET",
            "/users/me",
            alice_headers(),
            json!({"iat": t0, "exp": t0 + 30}),
        )
    };
    let first = minted_at_t0();
    let headers = with(&[("x-trustgate-assertion", &first)]);
    assert_eq!(get_with(addr, "/users/me", &headers).await.status, 200);
    // Refused from exp + 5 s leeway on.
    clock.advance_secs(34);
    let second = minted_at_t0();
    let headers = with(&[("x-trustgate-assertion", &second)]);
    assert_eq!(get_with(addr, "/users/me", &headers).await.status, 200);
    clock.advance_secs(1);
    let third = minted_at_t0();
    get_with(
        addr,
        "/users/me",
        &with(&[("x-trustgate-assertion", &third)]),
    )
    .await
    .assert_invalid_token();
}

#[tokio::test]
async fn the_same_assertion_is_accepted_once() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    let assertion = issuers.assertion(SERVICE, "GET", "/users/me", alice_headers(), json!({}));
    let headers = with(&[("x-trustgate-assertion", &assertion)]);
    // A use that does not bind this request does not use the assertion up...
    get_with(addr, "/admin", &headers)
        .await
        .assert_invalid_token();
    // ...the first use for its own request passes, a second one is refused like any bad token.
    assert_eq!(get_with(addr, "/users/me", &headers).await.status, 200);
    get_with(addr, "/users/me", &headers)
        .await
        .assert_invalid_token();
    // Concurrent replays of one fresh assertion: exactly one passes.
    let assertion = issuers.assertion(SERVICE, "GET", "/users/me", alice_headers(), json!({}));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let assertion = assertion.clone();
        tasks.spawn(async move {
            let headers = with(&[("x-trustgate-assertion", &assertion)]);
            get_with(addr, "/users/me", &headers).await.status
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses.sort_unstable();
    let mut expected = vec![200];
    expected.extend([401; 15]);
    assert_eq!(statuses, expected);
}

/// Once the layer has seen more assertions than it remembers, a captured one used 200 requests
/// ago (well within the 1,000 it is told to remember, and within its 30 s) is still refused: the
/// oldest ids are forgotten first, never the newest.
#[tokio::test]
async fn a_recent_assertion_is_refused_after_the_memory_filled_over() {
    let issuers = Issuers::start().await;
    let layer = Builder::gateway_assertion(&issuers.internal.url(), SERVICE)
        .remembered_assertions(1_000)
        .build()
        .await
        .unwrap();
    let addr = serve(app(layer)).await;
    let mut captured = None;
    for i in 0..2_200 {
        let assertion = issuers.assertion(SERVICE, "GET", "/users/me", json!(null), json!({}));
        let reply = get_with(addr, "/users/me", &[("x-trustgate-assertion", &assertion)]).await;
        assert_eq!(reply.status, 200, "request {i}");
        if i == 2_000 {
            captured = Some(assertion);
        }
    }
    let captured = captured.unwrap();
    get_with(addr, "/users/me", &[("x-trustgate-assertion", &captured)])
        .await
        .assert_invalid_token();
}

/// A shared store that forgets an id once its TTL has passed, as Redis' `PX` does, on the
/// layers' clock.
struct ExpiringStore {
    clock: ManualClock,
    entries: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl ReplayStore for ExpiringStore {
    fn first_use<'a>(
        &'a self,
        jti: &'a str,
        ttl: std::time::Duration,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<bool, ReplayStoreError>> + Send + 'a>,
    > {
        Box::pin(async move {
            let now = self.clock.now_millis();
            let mut entries = self.entries.lock().unwrap();
            if entries.get(jti).is_some_and(|&until| until > now) {
                return Ok(false);
            }
            let ttl = i64::try_from(ttl.as_millis()).unwrap();
            entries.insert(jti.to_owned(), now + ttl);
            Ok(true)
        })
    }
}

/// With a 30 s leeway, an assertion passes until 30 s after its `exp`; the shared store must
/// keep its id that long, measured on the layers' clock, or a second replica accepts the replay.
#[tokio::test]
async fn the_shared_store_keeps_an_id_for_the_whole_leeway() {
    let issuers = Issuers::start().await;
    let t0 = now_secs();
    let clock = ManualClock::at_secs(t0);
    let store: Arc<dyn ReplayStore> = Arc::new(ExpiringStore {
        clock: clock.clone(),
        entries: Default::default(),
    });
    let replica = || {
        Builder::identity_headers(&issuers.internal.url(), SERVICE)
            .clock(Arc::new(clock.clone()))
            .leeway(std::time::Duration::from_secs(30))
            .shared_replay_store(Arc::clone(&store))
            .build()
    };
    let a = serve(app(replica().await.unwrap())).await;
    let b = serve(app(replica().await.unwrap())).await;
    let assertion = issuers.assertion(
        SERVICE,
        "GET",
        "/users/me",
        alice_headers(),
        json!({"iat": t0, "exp": t0 + 30}),
    );
    let headers = with(&[("x-trustgate-assertion", &assertion)]);
    assert_eq!(get_with(a, "/users/me", &headers).await.status, 200);
    // 10 s past `exp`, within the leeway.
    clock.advance_secs(40);
    get_with(b, "/users/me", &headers)
        .await
        .assert_invalid_token();
    // A fresh assertion still passes at B: the refusal was the replay, not the clock.
    let fresh = issuers.assertion(
        SERVICE,
        "GET",
        "/users/me",
        alice_headers(),
        json!({"iat": t0 + 40, "exp": t0 + 70}),
    );
    let headers = with(&[("x-trustgate-assertion", &fresh)]);
    assert_eq!(get_with(b, "/users/me", &headers).await.status, 200);
}

#[tokio::test]
async fn a_header_altered_or_missing_or_duplicated_is_refused() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    let assertion = issuers.assertion(SERVICE, "GET", "/users/me", alice_headers(), json!({}));
    let cases: [Vec<(&str, &str)>; 5] = [
        vec![
            ("x-user-id", "bob"),
            ("x-user-roles", "admin,user"),
            ("x-tenant-id", "t1"),
        ],
        vec![
            ("x-user-id", "alice"),
            ("x-user-roles", "admin,user,root"),
            ("x-tenant-id", "t1"),
        ],
        vec![
            ("x-user-id", "alice"),
            ("x-user-roles", "admin,user"),
            ("x-tenant-id", "T1"),
        ],
        vec![("x-user-id", "alice"), ("x-user-roles", "admin,user")],
        vec![
            ("x-user-id", "alice"),
            ("x-user-roles", "admin,user"),
            ("x-user-roles", "root"),
            ("x-tenant-id", "t1"),
        ],
    ];
    for mut headers in cases {
        headers.push(("x-trustgate-assertion", &assertion));
        get_with(addr, "/users/me", &headers)
            .await
            .assert_invalid_token();
    }
    // The same assertion with the exact headers still passes.
    assert_eq!(
        get_with(
            addr,
            "/users/me",
            &with(&[("x-trustgate-assertion", &assertion)])
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn only_a_gateway_assertion_for_this_service_counts() {
    let issuers = Issuers::start().await;
    let addr = header_service(&issuers).await;
    // For another service.
    let other = issuers.assertion(
        SERVICE,
        "GET",
        "/users/me",
        alice_headers(),
        json!({"aud": "payments-api"}),
    );
    // An internal token (wrong typ) in the assertion header.
    let internal = issuers.internal_token(SERVICE, json!({}));
    // An external token in the assertion header.
    let external = issuers.external_token(SERVICE, json!({}));
    // No hdr at all: identity-header mode requires it.
    let no_hdr = issuers.assertion(SERVICE, "GET", "/users/me", json!(null), json!({}));
    for assertion in [other, internal, external, no_hdr] {
        get_with(
            addr,
            "/users/me",
            &with(&[("x-trustgate-assertion", &assertion)]),
        )
        .await
        .assert_invalid_token();
    }
    let assertion = issuers.assertion(SERVICE, "GET", "/users/me", alice_headers(), json!({}));
    get_with(
        addr,
        "/users/me",
        &with(&[
            ("x-trustgate-assertion", &assertion),
            ("x-trustgate-assertion", &assertion),
        ]),
    )
    .await
    .assert_refused(
        400,
        Some(r#"Bearer error="invalid_request""#),
        "invalid_request",
    );
}

#[tokio::test]
async fn the_binding_uses_the_full_path_behind_a_nested_router() {
    let issuers = Issuers::start().await;
    let layer = TrustgateLayer::identity_headers(&issuers.internal.url(), SERVICE)
        .await
        .unwrap();
    let addr = serve(Router::new().nest("/api", app(layer))).await;
    let assertion = issuers.assertion(SERVICE, "GET", "/api/users/me", alice_headers(), json!({}));
    let headers = with(&[("x-trustgate-assertion", &assertion)]);
    assert_eq!(get_with(addr, "/api/users/me", &headers).await.status, 200);
    let stripped = issuers.assertion(SERVICE, "GET", "/users/me", alice_headers(), json!({}));
    get_with(
        addr,
        "/api/users/me",
        &with(&[("x-trustgate-assertion", &stripped)]),
    )
    .await
    .assert_invalid_token();
}

#[tokio::test]
async fn gateway_assertion_mode_trusts_the_gateway_for_a_forwarded_token() {
    let issuers = Issuers::start().await;
    let layer = TrustgateLayer::gateway_assertion(&issuers.internal.url(), SERVICE)
        .await
        .unwrap();
    assert_eq!(layer.mode(), Mode::GatewayAssertion);
    let addr = serve(app(layer)).await;
    // Pattern 2: the forwarded token is present but it is the assertion that is checked.
    let token = issuers.external_token(SERVICE, json!({}));
    let assertion = issuers.assertion(SERVICE, "GET", "/users/me", json!(null), json!({}));
    let reply = get_with(
        addr,
        "/users/me",
        &[
            ("authorization", &bearer(&token)),
            ("x-trustgate-assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["mode"], "gateway-assertion");
    assert_eq!(reply.json()["issuer"], issuers.internal.url());
    // The forwarded token alone is not enough.
    get_with(addr, "/users/me", &[("authorization", &bearer(&token))])
        .await
        .assert_refused(401, Some("Bearer"), "unauthorized");
    // Headers listed in hdr are checked here too.
    let listed = issuers.assertion(
        SERVICE,
        "GET",
        "/users/me",
        json!({"x-user-id": "alice"}),
        json!({}),
    );
    get_with(
        addr,
        "/users/me",
        &[("x-user-id", "mallory"), ("x-trustgate-assertion", &listed)],
    )
    .await
    .assert_invalid_token();
}

/// DANGEROUS by design: this mode believes whatever identity headers arrive. Anyone who can
/// reach the service without the gateway can be anyone. The test shows exactly that.
/// What the gateway signs for a request without a token on an `allow_anonymous` route: the
/// binding, and no identity at all (no `ext_iss` either).
fn anonymous_assertion(issuers: &Issuers, htu: &str) -> String {
    issuers.assertion(
        SERVICE,
        "GET",
        htu,
        json!({}),
        json!({
            "sub": null, "roles": null, "scope": null, "tenant_id": null, "client_id": null,
            "ext_iss": null,
        }),
    )
}

#[tokio::test]
async fn an_anonymous_assertion_is_refused_unless_the_service_allows_it() {
    let issuers = Issuers::start().await;
    let internal = issuers.internal.url();
    for builder in [
        Builder::gateway_assertion(&internal, SERVICE),
        Builder::identity_headers(&internal, SERVICE),
    ] {
        let addr = serve(app(builder.build().await.unwrap())).await;
        let assertion = anonymous_assertion(&issuers, "/users/me");
        get_with(addr, "/users/me", &[("x-trustgate-assertion", &assertion)])
            .await
            .assert_refused(401, Some("Bearer"), "unauthorized");
        // A token without a subject is not anonymous: the gateway checked it (`ext_iss`).
        let machine = issuers.assertion(
            SERVICE,
            "GET",
            "/users/me",
            json!({}),
            json!({"sub": null, "roles": null}),
        );
        let reply = get_with(addr, "/users/me", &[("x-trustgate-assertion", &machine)]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["subject"], json!(null));
    }
}

#[tokio::test]
async fn an_allowed_anonymous_caller_fails_every_guard_with_401() {
    let issuers = Issuers::start().await;
    let internal = issuers.internal.url();
    for builder in [
        Builder::gateway_assertion(&internal, SERVICE),
        Builder::identity_headers(&internal, SERVICE),
    ] {
        let addr = serve(app(builder.allow_anonymous().build().await.unwrap())).await;
        let assertion = anonymous_assertion(&issuers, "/users/me");
        let reply = get_with(addr, "/users/me", &[("x-trustgate-assertion", &assertion)]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["subject"], json!(null));
        assert_eq!(reply.json()["external_issuer"], json!(null));
        for path in ["/profile", "/admin", "/reports", "/tenants/t1"] {
            let assertion = anonymous_assertion(&issuers, path);
            get_with(addr, path, &[("x-trustgate-assertion", &assertion)])
                .await
                .assert_refused(401, Some("Bearer"), "unauthorized");
        }
        // A verified token without the role is still told it is not enough.
        let machine =
            issuers.assertion(SERVICE, "GET", "/profile", json!({}), json!({"sub": null}));
        get_with(addr, "/profile", &[("x-trustgate-assertion", &machine)])
            .await
            .assert_refused(
                403,
                Some(r#"Bearer error="insufficient_scope""#),
                "insufficient_scope",
            );
    }
}

#[tokio::test]
async fn danger_mode_accepts_unproven_headers() {
    let layer =
        TrustgateLayer::danger_trust_identity_headers_without_assertion(HeaderMapping::default());
    assert_eq!(layer.mode(), Mode::DangerTrustedHeaders);
    assert!(layer.is_ready() && layer.validator().is_none());
    let addr = serve(app(layer)).await;
    let reply = get_with(
        addr,
        "/users/me",
        &[("x-user-id", "anyone-at-all"), ("x-user-roles", "admin")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({
            "mode": "danger-trusted-headers", "subject": "anyone-at-all", "roles": ["admin"],
            "scopes": [], "tenant": null, "client": null, "issuer": null,
            "external_issuer": null, "verified": false,
        })
    );
    // The guards still apply to the (unproven) roles.
    assert_eq!(
        get_with(
            addr,
            "/admin",
            &[("x-user-id", "x"), ("x-user-roles", "admin")]
        )
        .await
        .status,
        200
    );
    // Byte checks still apply: no subject, a duplicate (two identities: a malformed request, as
    // two tokens are), or a bad escape.
    get_with(addr, "/users/me", &[("x-user-roles", "admin")])
        .await
        .assert_refused(401, Some("Bearer"), "unauthorized");
    for duplicated in ["x-user-id", "x-user-roles", "x-tenant-id"] {
        get_with(
            addr,
            "/users/me",
            &[("x-user-id", "a"), (duplicated, "b"), (duplicated, "c")],
        )
        .await
        .assert_refused(
            400,
            Some(r#"Bearer error="invalid_request""#),
            "invalid_request",
        );
    }
    // A token in the URL is refused as in every mode: a handler never finds one nothing checked.
    get_with(
        addr,
        "/users/me?access_token=anything",
        &[("x-user-id", "a")],
    )
    .await
    .assert_refused(
        400,
        Some(r#"Bearer error="invalid_request""#),
        "invalid_request",
    );
    get_with(addr, "/users/me", &[("x-user-id", "%0Aadmin")])
        .await
        .assert_invalid_token();
}
