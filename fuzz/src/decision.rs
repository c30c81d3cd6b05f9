//! The decision engine under fuzzing: an arbitrary request head against one route of every trust
//! pattern, then the decision applied as the reverse proxy applies it.
//!
//! Input: the first line is the method and target (`GET /x?y`), the rest header lines. An input
//! line `token: good` becomes a valid token in the Authorization header, so the validating paths
//! are reached too. Invariants, on every input:
//! - the engine never panics;
//! - after `Decision::apply` no client identity header survives, except the ones the pattern
//!   injected with the verified identity's exact values;
//! - identity-headers and internal-token routes forward no client Authorization, and no token
//!   cookie; an internal-token route's Authorization is the one the decision minted;
//! - a forward-token route forwards Authorization only when it carried the checked token;
//! - the forwarded target normalizes to itself and matches the route.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use trustgate_core::{IdentityField, InternalSigner, SignerConfig, SystemClock, Validator};
use trustgate_edge::decision::Credentials;
use trustgate_edge::headers::IdentityHeaderPolicy;
use trustgate_edge::mint::MintCache;
use trustgate_edge::path::{self, DoubleSlash};
use trustgate_edge::router::Router;
use trustgate_edge::trust::{
    Assertion, ForwardToken, IdentityHeaders, InternalToken, Requirements, Trust, Validation,
};
use trustgate_edge::{Engine, Route, SanitizeMode};

use crate::{AUD, ISS, block_on, good_claims, issuer, key_set, request_parts, sign_ed25519};

fn validation() -> Validation {
    Validation {
        issuers: vec![ISS.to_owned()],
        token_cookie: Some("at".to_owned()),
        require: Requirements::default(),
    }
}

fn routes() -> Vec<Route> {
    let trusts = [
        ("/public", Trust::Public),
        ("/svc", Trust::ServiceValidates),
        (
            "/fwd",
            Trust::ForwardToken(ForwardToken {
                validation: validation(),
                allow_anonymous: true,
                assertion: Some(Assertion {
                    service: "fwd".into(),
                }),
            }),
        ),
        (
            "/id",
            Trust::IdentityHeaders(IdentityHeaders {
                validation: validation(),
                allow_anonymous: true,
                headers: IdentityHeaders::default_headers(),
                assertion: Some(Assertion {
                    service: "id".into(),
                }),
            }),
        ),
        (
            "/int",
            Trust::InternalToken(InternalToken {
                validation: validation(),
                service: "int".into(),
                ttl: Duration::from_secs(60),
                claims: InternalToken::default_claims(),
            }),
        ),
    ];
    trusts
        .into_iter()
        .enumerate()
        .map(|(index, (prefix, trust))| Route {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            name: prefix.trim_start_matches('/').to_owned(),
            host: None,
            prefix: prefix.to_owned(),
            upstream: "up".to_owned(),
            rewrite: (prefix == "/svc").then(|| "/inner".to_owned()),
            trust,
        })
        .collect()
}

/// One engine per thread, built once: the keys are fixed, and the clock is real (the signer's
/// tokens must be valid now), so the good token is made with `exp` far ahead.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let validator = match Validator::new(
            vec![issuer(key_set())],
            trustgate_core::ValidatorOptions::default(),
            Arc::new(SystemClock),
        ) {
            Ok(validator) => validator,
            Err(err) => panic!("fixed validator: {err}"),
        };
        let signer = match InternalSigner::generate(
            SignerConfig {
                issuer: "https://gateway.fuzz.test".into(),
                algorithm: trustgate_core::Algorithm::EdDSA,
                rotation_interval: Duration::from_secs(3600),
                max_token_ttl: Duration::from_secs(300),
            },
            Arc::new(SystemClock),
        ) {
            Ok(signer) => signer,
            Err(err) => panic!("fixed signer: {err}"),
        };
        let identity_headers = match IdentityHeaderPolicy::new(
            &[
                "x-user-id".into(),
                "x-user-roles".into(),
                "x-tenant-id".into(),
            ],
            &[],
        ) {
            Ok(policy) => policy,
            Err(err) => panic!("fixed policy: {err}"),
        };
        Engine {
            router: Router::new(
                routes()
                    .into_iter()
                    .map(|r| (r.host.clone(), r.prefix.clone(), Arc::new(r))),
            ),
            identity_headers,
            sanitize: SanitizeMode::Strip,
            double_slash: DoubleSlash::Merge,
            validator,
            signer: Some(Arc::new(signer)),
            minted: MintCache::new(64, true),
            revocations: None,
        }
    })
}

/// A token every validating route accepts until long after any fuzzing run.
fn good_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut claims: serde_json::Value = match serde_json::from_str(&good_claims()) {
            Ok(claims) => claims,
            Err(err) => panic!("fixed claims: {err}"),
        };
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
        .unwrap_or(i64::MAX);
        claims["iat"] = now.into();
        claims["nbf"] = now.into();
        claims["exp"] = (now + 86_400 * 365).into();
        claims["aud"] = AUD.into();
        sign_ed25519(
            br#"{"alg":"EdDSA","kid":"ed"}"#,
            claims.to_string().as_bytes(),
        )
    })
}

/// The fuzz body: see the module documentation.
pub fn decision(data: &[u8]) {
    let (first_line, mut headers) = request_parts(data);
    let Ok(first_line) = std::str::from_utf8(first_line) else {
        return;
    };
    let (method, target) = first_line.split_once(' ').unwrap_or(("GET", first_line));
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), target.parse::<Uri>())
    else {
        return;
    };
    if headers.get("token").is_some_and(|v| v == "good") {
        headers.remove("token");
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", good_token())) {
            headers.insert(AUTHORIZATION, value);
        }
    }
    let engine = engine();
    // Both doors' rule, chosen by the input.
    let forwarding = if first_line.len() % 2 == 0 {
        trustgate_edge::TargetForwarding::Normalized
    } else {
        trustgate_edge::TargetForwarding::AsReceived
    };
    let head = trustgate_edge::RequestHead {
        method: &method,
        uri: &uri,
        headers: &headers,
        peer: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        target: forwarding,
    };
    let Ok(decision) = block_on(engine.decide(head, None)) else {
        return;
    };
    let client_authorization = headers.get(AUTHORIZATION).cloned();
    let mut forwarded = headers.clone();
    decision.apply(engine, &mut forwarded);

    let injected: Vec<(HeaderName, IdentityField)> = match &decision.route.trust {
        Trust::IdentityHeaders(pattern) if decision.token.is_some() => pattern.headers.clone(),
        _ => Vec::new(),
    };
    for name in forwarded.keys() {
        if engine.identity_headers.is_identity_header(name)
            && name.as_str() != "x-trustgate-assertion"
        {
            let Some((_, field)) = injected.iter().find(|(n, _)| n == name) else {
                panic!("client identity header {name} reached the upstream");
            };
            let expected = decision
                .token
                .as_ref()
                .and_then(|t| t.identity().header_value(field));
            assert_eq!(forwarded.get(name), expected.as_ref(), "{name}");
        }
        assert!(
            !trustgate_edge::headers::is_uri_override(name),
            "URI override {name} reached the upstream"
        );
    }
    match (&decision.route.trust, &decision.credentials) {
        (Trust::IdentityHeaders(_), Credentials::Identity) => {
            assert!(!forwarded.contains_key(AUTHORIZATION), "token forwarded");
            assert_no_token_cookie(&forwarded);
        }
        (Trust::InternalToken(_), Credentials::Internal(minted)) => {
            assert_eq!(forwarded.get_all(AUTHORIZATION).iter().count(), 1);
            assert_eq!(forwarded.get(AUTHORIZATION), Some(minted));
            assert_no_token_cookie(&forwarded);
        }
        (Trust::ForwardToken(_), Credentials::Keep) => {
            assert!(
                decision.token.is_some(),
                "kept an Authorization not checked"
            );
            assert_eq!(forwarded.get(AUTHORIZATION), client_authorization.as_ref());
        }
        (Trust::ForwardToken(_), Credentials::DropAuthorization) => {
            assert!(!forwarded.contains_key(AUTHORIZATION));
        }
        (Trust::Public | Trust::ServiceValidates, Credentials::Keep) => {}
        (trust, credentials) => panic!("{} with {credentials:?}", trust.name()),
    }

    // Behind a proxy that forwards what it received, only a target already in normal form may
    // be allowed: the path judged is then the path served.
    if forwarding == trustgate_edge::TargetForwarding::AsReceived {
        let received = uri.path_and_query().map_or("/", |pq| pq.as_str());
        match path::normalize(received, DoubleSlash::Merge) {
            Ok(normalized) => assert!(
                normalized.path() == uri.path() && normalized.query() == uri.query(),
                "allowed {received:?} as received, not in normal form"
            ),
            Err(err) => panic!("allowed {received:?}, which does not normalize: {err}"),
        }
    }
    let target = decision
        .rewritten_target
        .clone()
        .or_else(|| uri.path_and_query().map(|pq| pq.as_str().to_owned()))
        .unwrap_or_else(|| "/".to_owned());
    let again = match path::normalize(&target, DoubleSlash::Merge) {
        Ok(normalized) => normalized,
        Err(err) => panic!("forwarded target {target:?} does not normalize: {err}"),
    };
    let forwarded_path = target.split('?').next().unwrap_or_default();
    assert_eq!(again.path(), forwarded_path, "forwarded target not normal");
    if decision.route.rewrite.is_none() {
        assert!(
            path::prefix_matches(forwarded_path, &decision.route.prefix),
            "{forwarded_path:?} outside {:?}",
            decision.route.prefix
        );
    }
}

fn assert_no_token_cookie(headers: &HeaderMap) {
    for value in headers.get_all(COOKIE) {
        let text = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !text
                .split(';')
                .any(|pair| pair.split('=').next().is_some_and(|k| k.trim() == "at")),
            "token cookie forwarded: {text:?}"
        );
    }
}
