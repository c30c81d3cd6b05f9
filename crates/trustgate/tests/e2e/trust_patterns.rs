//! End-to-end: the parts of the trust patterns that `patterns.rs` does not cover — anonymous
//! access on identity-headers, per-route issuer restriction, coarse `require` checks, and prefix
//! stripping / rewriting of the forwarded path.

use serde_json::json;

use crate::common::{Fixture, Gateway, Issuer, Pattern, Route, bearer};

#[test]
fn allow_anonymous_identity_route_forwards_without_identity_but_never_client_identity() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &f.config()
            .route(Route::new("anon", "/anon", "echo", Pattern::IdentityHeaders).allow_anonymous()),
    );

    // No token: forwarded, but with no identity at all — the client's own is stripped.
    let r = gateway.raw(
        b"GET /anon/page HTTP/1.1\r\nHost: gw\r\nX-User-Id: admin\r\nx_user_id: admin\r\n\
          X-USER-ROLES: root\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.target, "/anon/page");
    let cgi = got.cgi_names();
    for name in ["HTTP_X_USER_ID", "HTTP_X_USER_ROLES", "HTTP_X_TENANT_ID"] {
        assert!(
            !cgi.contains(&name.to_owned()),
            "{name} reached the upstream"
        );
    }
    assert!(got.header_values("authorization").is_empty());

    // A valid token: identity injected, token removed.
    let t = f.token_with("alice", json!({"roles": ["r1"]}));
    let r = gateway.get(
        "/anon/page",
        &[("Authorization", &bearer(&t)), ("X-User-Id", "admin")],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("x-user-id"), ["alice"]);
    assert_eq!(got.header_values("x-user-roles"), ["r1"]);
    assert!(got.header_values("authorization").is_empty());

    // An invalid token is not "anonymous": it is refused.
    let before = f.upstream.count();
    let r = gateway.get(
        "/anon/page",
        &[("Authorization", &bearer(&f.expired_token("alice")))],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(f.upstream.count(), before);
}

#[test]
fn route_issuer_restriction_refuses_tokens_of_other_issuers() {
    let f = Fixture::new();
    let other = crate::common::issuer();
    let other_key = test_support::TestKey::es256("k-other");
    other.set_keys(&[&other_key]);
    let gateway = Gateway::start(
        &f.config()
            .issuer(Issuer::discovery("other", &other.url()).audiences(&["api"]))
            .route(
                Route::new("only-idp", "/only-idp", "echo", Pattern::ForwardToken)
                    .issuers(&["idp"]),
            )
            .route(Route::new("any", "/any", "echo", Pattern::ForwardToken)),
    );
    let foreign = other_key.sign(&test_support::claims(&other.url(), "api", "mallory"));
    let own = f.token("alice");

    // The foreign token is valid in itself: the unrestricted route takes it.
    let r = gateway.get("/any/x", &[("Authorization", &bearer(&foreign))]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(f.upstream.count(), 1);

    let r = gateway.get("/only-idp/x", &[("Authorization", &bearer(&foreign))]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(r.body_text(), r#"{"error":"invalid_token"}"#);
    assert_eq!(
        f.upstream.count(),
        1,
        "refused request reached the upstream"
    );

    let r = gateway.get("/only-idp/x", &[("Authorization", &bearer(&own))]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(f.upstream.last().unwrap().target, "/only-idp/x");
    assert_eq!(
        gateway.metric(r#"trustgate_validation_failures_total{reason="issuer_not_accepted"}"#),
        Some(1.0)
    );
}

#[test]
fn require_scopes_roles_and_claims_all_and_any() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &f.config()
            .route(
                Route::new("scopes-all", "/scopes-all", "echo", Pattern::ForwardToken)
                    .require(json!({"scopes": ["read", "write"]})),
            )
            .route(
                Route::new("scopes-any", "/scopes-any", "echo", Pattern::ForwardToken)
                    .require(json!({"scopes": ["read", "write"], "mode": "any"})),
            )
            .route(
                Route::new("roles", "/roles", "echo", Pattern::IdentityHeaders)
                    .require(json!({"roles": ["admin"]})),
            )
            .route(
                Route::new("claims", "/claims", "echo", Pattern::ForwardToken)
                    .require(json!({"claims": {"org.plan": ["gold", "platinum"]}})),
            )
            .route(
                Route::new("mixed-any", "/mixed-any", "echo", Pattern::ForwardToken)
                    .require(json!({"scopes": ["admin:all"], "roles": ["admin"], "mode": "any"})),
            )
            .route(
                Route::new("mixed-all", "/mixed-all", "echo", Pattern::ForwardToken).require(
                    json!({"scopes": ["read"], "roles": ["admin"], "claims": {"tier": ["1"]}}),
                ),
            ),
    );
    let read = f.token_with("a", json!({"scope": "read"}));
    let read_write = f.token_with("b", json!({"scope": "read write"}));
    let scp_list = f.token_with("c", json!({"scp": ["write", "read"]}));
    let user = f.token_with("d", json!({"roles": ["user"]}));
    let admin = f.token_with("e", json!({"roles": ["user", "admin"]}));
    let silver = f.token_with("f", json!({"org": {"plan": "silver"}}));
    let gold = f.token_with("g", json!({"org": {"plan": "gold"}}));
    let flat = f.token_with("h", json!({"org.plan": "gold"}));
    let all_three = f.token_with(
        "i",
        json!({"scope": "read", "roles": ["admin"], "tier": "1"}),
    );
    let two_of_three = f.token_with(
        "j",
        json!({"scope": "read", "roles": ["admin"], "tier": "2"}),
    );

    let cases: &[(&str, &str, u16)] = &[
        ("/scopes-all/x", &read, 403),
        ("/scopes-all/x", &read_write, 200),
        ("/scopes-all/x", &scp_list, 200),
        ("/scopes-all/x", &admin, 403),
        ("/scopes-any/x", &read, 200),
        ("/scopes-any/x", &user, 403),
        ("/roles/x", &user, 403),
        ("/roles/x", &admin, 200),
        ("/roles/x", &read_write, 403),
        ("/claims/x", &silver, 403),
        ("/claims/x", &gold, 200),
        ("/claims/x", &flat, 403),
        ("/claims/x", &read, 403),
        ("/mixed-any/x", &admin, 200),
        ("/mixed-any/x", &read_write, 403),
        ("/mixed-all/x", &all_three, 200),
        ("/mixed-all/x", &two_of_three, 403),
        ("/mixed-all/x", &admin, 403),
    ];
    for (path, token, want) in cases {
        let before = f.upstream.count();
        let r = gateway.get(path, &[("Authorization", &bearer(token))]);
        assert_eq!(r.status, *want, "{path}: {}", r.body_text());
        if *want == 403 {
            assert_eq!(
                r.header("www-authenticate"),
                Some(r#"Bearer error="insufficient_scope""#),
                "{path}"
            );
            assert_eq!(r.body_text(), r#"{"error":"insufficient_scope"}"#);
            assert_eq!(
                f.upstream.count(),
                before,
                "{path}: 403 reached the upstream"
            );
        } else {
            assert_eq!(f.upstream.count(), before + 1, "{path}");
            assert_eq!(f.upstream.last().unwrap().target, *path);
        }
    }
    // Without a token, a `require` route is 401 (authentication comes before authorization).
    let r = gateway.get("/roles/x", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        gateway.metric(r#"trustgate_requests_total{route="roles",outcome="forbidden"}"#),
        Some(2.0)
    );
}

#[test]
fn strip_prefix_and_rewrite_prefix_forward_the_exact_path() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &f.config()
            .route(Route::new("strip", "/strip", "echo", Pattern::Public).strip_prefix())
            .route(Route::new("old", "/old", "echo", Pattern::Public).rewrite_prefix("/v2"))
            .route(
                Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders)
                    .rewrite_prefix("/internal/users"),
            ),
    );
    let cases: &[(&str, &str)] = &[
        ("/strip/a/b?q=1&r=%2F", "/a/b?q=1&r=%2F"),
        ("/strip", "/"),
        ("/strip/", "/"),
        ("/strip/a/../b", "/b"),
        ("/strip/%61", "/a"),
        ("/strip/a%20b/", "/a%20b/"),
        ("/old/x/y?z", "/v2/x/y?z"),
        ("/old", "/v2"),
        ("/old/", "/v2/"),
        ("/old/./x/../y", "/v2/y"),
    ];
    for (sent, want) in cases {
        let r = gateway.get(sent, &[]);
        assert_eq!(r.status, 200, "{sent}: {}", r.body_text());
        let got = f.upstream.last().unwrap();
        assert_eq!(got.target, *want, "{sent}");
        assert_eq!(r.json()["target"], *want, "{sent}");
    }
    // Segment-aware: `/stripped` is not under `/strip`, and `..` cannot climb out of a prefix
    // into the rewritten namespace.
    let before = f.upstream.count();
    let r = gateway.get("/stripped/x", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(f.upstream.count(), before);

    let t = f.token("alice");
    let r = gateway.get("/ids/42?full=1", &[("Authorization", &bearer(&t))]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.target, "/internal/users/42?full=1");
    assert_eq!(got.header_values("x-user-id"), ["alice"]);
}

/// What an upstream of a `forward-token` route receives is exactly the one token that was checked:
/// a bearer-like value in any other form, several schemes in one value, a Cookie header the
/// gateway cannot read, or an `access_token` in the query never reach it unchecked.
#[test]
fn only_the_checked_token_ever_reaches_a_forward_token_upstream() {
    let f = Fixture::new();
    let config = f
        .config()
        .route(Route::new("anon", "/anon", "echo", Pattern::ForwardToken).allow_anonymous())
        .route(Route::new("cookie", "/cookie", "echo", Pattern::ForwardToken).token_cookie("at"))
        .route(Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders))
        .route(Route::new("int", "/int", "echo", Pattern::InternalToken).service("svc"))
        .section("internal_issuer", "issuer", "https://internal.example");
    let gateway = Gateway::start(&config);
    // Signed by a key the issuer never published, under the published kid.
    let forged =
        test_support::TestKey::es256("k1").sign(&test_support::claims(&f.iss, "api", "forged"));
    let valid = f.token("alice");
    let bad_request = |path: &str, headers: &[(&str, &str)], what: &str| {
        let before = f.upstream.count();
        let r = gateway.get(path, headers);
        assert_eq!(r.status, 400, "{what}: {}", r.body_text());
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_request""#),
            "{what}"
        );
        assert_eq!(f.upstream.count(), before, "{what}: reached the upstream");
    };

    // Bearer-like values that are not exactly RFC 6750 are malformed, never "no token".
    for value in [
        format!("Bearer\t{forged}"),
        format!("Bearer  \t{forged}"),
        format!("Bearer{forged}"),
        format!("Basic dXNlcjpwdw==, Bearer {forged}"),
        format!("Basic x,Bearer {forged}"),
        format!("Bearer {forged}\""),
    ] {
        for path in ["/anon/x", "/cookie/x", "/ids/x", "/int/x"] {
            bad_request(
                path,
                &[("Authorization", &value)],
                &format!("{path} {value:?}"),
            );
        }
    }

    // An access_token in the query is refused on every validating route, in any spelling, alone
    // or next to a valid token.
    for query in [
        format!("access_token={forged}"),
        format!("a=1&ACCESS_TOKEN={forged}"),
        format!("access%5Ftoken={forged}"),
        format!("access.token={forged}"),
    ] {
        for path in ["/anon/x", "/cookie/x", "/ids/x", "/int/x"] {
            let target = format!("{path}?{query}");
            bad_request(&target, &[], &target);
            bad_request(&target, &[("Authorization", &bearer(&valid))], &target);
        }
    }

    // A second Cookie header the gateway cannot read (not text) is refused, not skipped and
    // forwarded, on a route that reads its token from a cookie.
    let before = f.upstream.count();
    let mut request = format!(
        "GET /cookie/x HTTP/1.1\r\nHost: gw\r\nCookie: at={valid}\r\nConnection: close\r\n"
    )
    .into_bytes();
    request.extend_from_slice(b"Cookie: at=");
    request.extend_from_slice(forged.as_bytes());
    request.extend_from_slice(b"\xff\r\n\r\n");
    let r = gateway.raw(&request);
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert_eq!(
        f.upstream.count(),
        before,
        "an unreadable cookie reached the upstream"
    );

    // A cookie another parser reads as the token cookie (another case, percent-encoded, quoted,
    // or after a `,` that RFC 2109 parsers split at) is refused, with or without a valid token.
    for cookie in [
        format!("AT={forged}"),
        format!("%61t={forged}"),
        format!("\"at\"={forged}"),
        format!("theme=dark, at={forged}"),
        format!("at={valid}; theme=dark, AT={forged}"),
    ] {
        bad_request("/cookie/x", &[("Cookie", &cookie)], &cookie);
    }

    // Valid token from the cookie: the upstream gets that cookie and no Authorization, not even
    // another scheme's.
    let r = gateway.get(
        "/cookie/x",
        &[
            ("Cookie", &format!("theme=dark; at={valid}")),
            ("Authorization", "Basic dXNlcjpwdw=="),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert!(got.header_values("authorization").is_empty());
    assert_eq!(
        got.header_values("cookie"),
        [format!("theme=dark; at={valid}")]
    );

    // Anonymous on an allow_anonymous forward-token route: nothing that could be a credential.
    let r = gateway.get("/anon/x", &[("Authorization", "Basic dXNlcjpwdw==")]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        f.upstream
            .last()
            .unwrap()
            .header_values("authorization")
            .is_empty()
    );

    // A valid token in the header: exactly that token, once.
    let r = gateway.get("/anon/x", &[("Authorization", &bearer(&valid))]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let got = f.upstream.last().unwrap();
    assert_eq!(got.header_values("authorization"), [bearer(&valid)]);
    assert_eq!(got.target, "/anon/x");
}
