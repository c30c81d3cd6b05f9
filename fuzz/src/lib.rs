//! Fuzz bodies for trustgate, shared by the cargo-fuzz targets (`fuzz_targets/`, nightly) and the
//! stable replay (`tests/replay.rs`).
//!
//! Each body takes arbitrary bytes, must never panic on its own account, and asserts invariants
//! that hold for every input (an assertion failure is a finding, just like a crash):
//!
//! - [`token`]: token text (or, for input starting with `{`, a header and a payload that are
//!   signed here with a fixed Ed25519 key, so the claim rules and identity mapping behind the
//!   signature check are fuzzed too) through [`trustgate_core::Validator::validate`] against a
//!   fixed static key set at a fixed time; also through [`trustgate_core::bearer_token`].
//! - [`jwks`]: a JWK Set document through the public key-set entry point (a static
//!   [`KeySource::Jwks`] in [`Validator::new`]), then a few tokens against whatever it yielded.
//! - [`headers`]: a request target and header lines through the gateway's path normalization
//!   and header sanitization (`trustgate_edge::{path, headers}`).
//! - [`framing`]: a byte stream (raw, and read as a recipe for pipelined requests) through a real
//!   hyper HTTP/1 server and the gateway's raw-bytes framing check (`trustgate_edge::framing::h1`)
//!   side by side; every request the check lets pass must be the head it judged
//!   ([`check_agreement`]).
//! - [`decision`]: a request head through the decision engine (`trustgate_edge::Engine`) with a
//!   route of every trust pattern, and its decision applied: no client identity header and no
//!   unchecked credential may reach an upstream.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use trustgate_core::{
    Algorithm, AuthError, ConfigError, IdentityField, IssuerConfig, KeySource, ManualClock,
    StaticKeyError, Validator, ValidatorOptions, VerifiedToken,
};

use trustgate_edge::headers as sanitize;
use trustgate_edge::path;

mod decision;
mod framing;
pub use decision::decision;
pub use framing::{Dispatched, check_agreement, dispatch, framing, recipe};

/// The fixed "now" of every validation, in seconds.
pub const NOW: i64 = 1_700_000_000;
/// The one configured issuer.
pub const ISS: &str = "https://issuer.fuzz.test";
/// The one accepted audience.
pub const AUD: &str = "api";

/// Seed of the fixed Ed25519 key (`kid` `ed`). Test material only.
const ED25519_SEED: [u8; 32] = *b"trustgate-fuzz-ed25519-seed-0001";
/// The P-256 example key of RFC 7517 appendix A (`kid` `ec`). Public test material.
const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const EC_D: &str = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap_or_default()
}

fn ed25519() -> &'static Ed25519KeyPair {
    static KEY: OnceLock<Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(
        || match Ed25519KeyPair::from_seed_unchecked(&ED25519_SEED) {
            Ok(key) => key,
            Err(err) => panic!("fixed Ed25519 seed: {err}"),
        },
    )
}

/// The static JWK Set every token is validated against: the Ed25519 key `ed` and the P-256 key
/// `ec`, each with its `alg`.
pub fn key_set() -> String {
    serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA", "use": "sig",
         "x": b64(ed25519().public_key().as_ref())},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256", "x": EC_X, "y": EC_Y},
    ]})
    .to_string()
}

/// Signs raw header and payload bytes with the fixed Ed25519 key (deterministic).
pub fn sign_ed25519(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = ed25519().sign(input.as_bytes());
    format!("{input}.{}", b64(signature.as_ref()))
}

/// Signs raw header and payload bytes with the fixed P-256 key (randomized, as ECDSA is).
pub fn sign_es256(header: &[u8], payload: &[u8]) -> String {
    let mut public = vec![4u8];
    public.extend(b64_decode(EC_X));
    public.extend(b64_decode(EC_Y));
    let key = match EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &b64_decode(EC_D),
        &public,
    ) {
        Ok(key) => key,
        Err(err) => panic!("fixed P-256 key: {err}"),
    };
    let input = format!("{}.{}", b64(header), b64(payload));
    match key.sign(&SystemRandom::new(), input.as_bytes()) {
        Ok(signature) => format!("{input}.{}", b64(signature.as_ref())),
        Err(err) => panic!("P-256 signing: {err}"),
    }
}

/// Claims that pass every default rule at [`NOW`], as JSON text.
pub fn good_claims() -> String {
    serde_json::json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "iat": NOW, "nbf": NOW, "exp": NOW + 600,
        "roles": ["admin", "ops"], "scope": "read write", "tenant_id": "t1", "client_id": "c1",
    })
    .to_string()
}

pub(crate) fn issuer(jwks: String) -> IssuerConfig {
    let mut config = IssuerConfig::new(ISS, [AUD], KeySource::Jwks(jwks));
    config.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];
    config
}

fn new_validator(jwks: String) -> Result<(Validator, ManualClock), ConfigError> {
    let clock = ManualClock::at_secs(NOW);
    let validator = Validator::new(
        vec![issuer(jwks)],
        ValidatorOptions::default(),
        Arc::new(clock.clone()),
    )?;
    Ok((validator, clock))
}

/// Runs a future to completion on this thread's runtime. Validation against static keys never
/// does I/O, but the API is async.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(err) => panic!("tokio runtime: {err}"),
        };
    }
    RT.with(|rt| rt.block_on(future))
}

/// Every identity value bound for a header must be visible ASCII (or a space): no CR, LF, NUL, TAB
/// or raw non-ASCII byte can reach an upstream through a claim.
fn check_identity(verified: &VerifiedToken) {
    assert_eq!(verified.issuer(), ISS);
    let identity = verified.identity();
    let fields = [
        IdentityField::Subject,
        IdentityField::Roles,
        IdentityField::Scopes,
        IdentityField::Tenant,
        IdentityField::Client,
        IdentityField::Issuer,
    ];
    for field in &fields {
        if let Some(value) = identity.header_value(field) {
            assert!(
                value.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)),
                "unsafe identity header value for {field:?}: {value:?}"
            );
        }
    }
}

/// Validates `text` twice (the second time through the cache) and checks the invariants.
/// Returns whether it was accepted.
fn check_token(validator: &Validator, text: &str) -> bool {
    let entries_before = validator.cache_stats().entries;
    let first = block_on(validator.validate(text));
    match &first {
        Ok(verified) => {
            check_identity(verified);
            // A token that passed every rule passes the signature layer alone.
            assert!(
                trustgate_core::danger::verify_signature_only(validator, text).is_ok(),
                "accepted by validate but not by verify_signature_only"
            );
        }
        Err(err) => {
            assert_eq!(
                validator.cache_stats().entries,
                entries_before,
                "a refused token ({err}) was cached"
            );
            assert!(
                !matches!(err, AuthError::KeysUnavailable | AuthError::MissingToken),
                "static keys cannot be unavailable: {err}"
            );
        }
    }
    let second = block_on(validator.validate(text));
    assert_eq!(
        first.as_ref().map(|_| ()).map_err(|e| *e),
        second.as_ref().map(|_| ()).map_err(|e| *e),
        "the same token got two different outcomes (cache inconsistency)"
    );
    first.is_ok()
}

/// The token built from fuzz input: `{header}\n{payload}` is signed with the Ed25519 key, anything
/// else is taken as token text.
fn token_text(data: &[u8]) -> Option<String> {
    if data.first() == Some(&b'{') {
        let (header, payload) = match data.iter().position(|&b| b == b'\n') {
            Some(at) => (&data[..at], &data[at + 1..]),
            None => (data, &b""[..]),
        };
        return Some(sign_ed25519(header, payload));
    }
    std::str::from_utf8(data).ok().map(str::to_owned)
}

/// Whether the token built from `data` (see [`token`]) is accepted. For the replay's sanity checks.
pub fn token_accepted(data: &[u8]) -> bool {
    let Ok((validator, _)) = new_validator(key_set()) else {
        panic!("the fixed key set must load");
    };
    token_text(data).is_some_and(|text| check_token(&validator, &text))
}

/// Fuzz body: token parsing and full validation against the fixed static key set.
pub fn token(data: &[u8]) {
    let (validator, clock) = match new_validator(key_set()) {
        Ok(v) => v,
        Err(err) => panic!("the fixed key set must load: {err}"),
    };
    if let Some(text) = token_text(data)
        && check_token(&validator, &text)
    {
        // Past the latest NumericDate the validator accepts (9999-12-31T23:59:59Z), plus a day
        // for the leeway, every token has expired, so the cached one must be refused too.
        // (Advancing by a fixed `u32::MAX` seconds was not enough: the fuzzer found a token
        // valid until 2185.)
        const LATEST_NUMERIC_DATE: i64 = 253_402_300_799;
        clock.advance_secs(LATEST_NUMERIC_DATE - NOW + 86_400);
        assert!(
            block_on(validator.validate(&text)).is_err(),
            "a cached token outlived its exp"
        );
    }
    // The same bytes as an Authorization header value.
    if let Ok(value) = HeaderValue::from_bytes(data)
        && let Ok(Some(found)) = trustgate_core::bearer_token(&value)
    {
        assert!(
            value
                .to_str()
                .is_ok_and(|whole| whole.contains(found) && !found.is_empty()),
            "bearer_token returned {found:?}, not a part of the header"
        );
        let _ = block_on(validator.validate(found));
    }
}

/// Fuzz body: JWK Set parsing through the static key source, then tokens against the result.
pub fn jwks(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    match new_validator(text) {
        Ok((validator, _)) => {
            assert!(validator.is_ready(), "a loaded static key set is not ready");
            let status = validator.issuer_status();
            assert_eq!(status.len(), 1);
            assert!(status[0].keys > 0, "a loaded key set has no key");
            let claims = good_claims();
            let header = br#"{"alg":"EdDSA","kid":"ed","typ":"JWT"}"#;
            let signed = sign_ed25519(header, claims.as_bytes());
            let _ = block_on(validator.validate(&signed));
            let kidless = sign_ed25519(br#"{"alg":"EdDSA"}"#, claims.as_bytes());
            let _ = block_on(validator.validate(&kidless));
            let es = sign_es256(br#"{"alg":"ES256","kid":"ec"}"#, claims.as_bytes());
            let _ = block_on(validator.validate(&es));
        }
        Err(ConfigError::StaticKeys {
            source: StaticKeyError::Jwks(_),
            ..
        }) => {}
        Err(other) => panic!("a key set document failed with an unexpected error: {other}"),
    }
}

/// Splits fuzz input into a request target (first line) and header lines (`name: value`).
pub(crate) fn request_parts(data: &[u8]) -> (&[u8], HeaderMap) {
    let mut lines = data.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = sanitize::trim_ows(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    (target, headers)
}

fn check_normalized(input: &str, output: &str, mode: path::DoubleSlash) {
    assert!(output.starts_with('/'), "{input:?} -> {output:?}");
    assert!(output.len() <= path::MAX_PATH_LEN, "{input:?} too long");
    assert!(
        output.bytes().all(|b| b.is_ascii_graphic()),
        "{input:?} -> {output:?} has a byte that is not visible ASCII"
    );
    for bad in ["\\", ";", "%2F", "%5C", "%3B", "%00"] {
        assert!(!output.contains(bad), "{input:?} -> {output:?} has {bad}");
    }
    let segments: Vec<&str> = output.split('/').skip(1).collect();
    for (index, segment) in segments.iter().enumerate() {
        assert!(
            *segment != "." && *segment != "..",
            "{input:?} -> {output:?} kept a dot segment"
        );
        assert!(
            !segment.is_empty() || index + 1 == segments.len(),
            "{input:?} -> {output:?} kept an empty segment"
        );
    }
    let again = path::normalize(output, mode).map(|n| n.path().to_owned());
    assert_eq!(again.as_deref(), Ok(output), "not idempotent for {input:?}");
}

/// Fuzz body: path normalization and header sanitization.
pub fn headers(data: &[u8]) {
    let (target, mut headers) = request_parts(data);

    // === path ===
    if let Ok(target) = std::str::from_utf8(target) {
        let merged = path::normalize(target, path::DoubleSlash::Merge);
        let rejected = path::normalize(target, path::DoubleSlash::Reject);
        if let Ok(normal) = &merged {
            check_normalized(target, normal.path(), path::DoubleSlash::Merge);
            let query = target.split_once('?').map(|(_, q)| q);
            assert_eq!(
                normal.query(),
                query,
                "the query must pass through untouched"
            );
            for (prefix, replacement) in [("/api", "/v2"), ("/api/", "/"), ("/", "/x/")] {
                let rewritten = path::rewrite(normal.path(), prefix, replacement);
                assert!(rewritten.starts_with('/'), "{rewritten:?}");
                assert!(!rewritten.contains("//"), "{normal:?} -> {rewritten:?}");
                if !path::prefix_matches(normal.path(), prefix) {
                    assert_eq!(rewritten, normal.path());
                }
            }
        }
        match (&merged, &rejected) {
            // Reject is Merge with one more refusal, never a different result.
            (Ok(m), Ok(r)) => assert_eq!(m, r, "{target:?}"),
            (Err(m), Err(r)) => assert_eq!(m, r, "{target:?}"),
            (Ok(_), Err(r)) => assert_eq!(*r, path::PathError::DoubleSlash, "{target:?}"),
            (Err(m), Ok(_)) => panic!("{target:?}: merge refused ({m}) what reject accepted"),
        }
        if let Ok(normal) = &rejected {
            check_normalized(target, normal.path(), path::DoubleSlash::Reject);
        }
    }

    // === headers ===
    let _ = trustgate_edge::framing::check_framing(&headers);
    let Ok(policy) = sanitize::IdentityHeaderPolicy::new(
        &["x-acme-employee".to_owned()],
        &["x-acme-user-".to_owned()],
    ) else {
        panic!("a fixed identity policy must build");
    };
    // The same fields as trailers: whatever the head would lose, a trailer loses too.
    let mut trailers = headers.clone();
    trustgate_edge::headers::sanitize_request_trailers(&policy, &mut trailers);
    assert!(
        !policy.contains_any(&trailers),
        "an identity trailer survived"
    );
    for credential in [
        http::header::AUTHORIZATION,
        http::header::COOKIE,
        http::header::HOST,
    ] {
        assert!(
            !trailers.contains_key(&credential),
            "{credential} survived in trailers"
        );
    }
    let had_identity = policy.contains_any(&headers);
    let removed = policy.strip(&mut headers);
    assert_eq!(had_identity, removed > 0);
    assert!(
        !policy.contains_any(&headers),
        "an identity header survived strip"
    );

    let keep =
        |name: &HeaderName| -> Vec<HeaderValue> { headers.get_all(name).iter().cloned().collect() };
    let protected_before = [
        http::header::HOST,
        http::header::CONTENT_LENGTH,
        http::header::AUTHORIZATION,
        http::header::COOKIE,
    ]
    .map(|name| (keep(&name), name));
    let framed_by_coding = headers.contains_key(http::header::TRANSFER_ENCODING);
    let hop = sanitize::remove_hop_by_hop(&mut headers, sanitize::Message::Request);
    for (values, name) in &protected_before {
        let after: Vec<HeaderValue> = headers.get_all(name).iter().cloned().collect();
        if *name == http::header::CONTENT_LENGTH && framed_by_coding {
            // Transfer-Encoding frames the message: its Content-Length goes (RFC 9112 §6.3).
            assert!(
                after.is_empty(),
                "Content-Length kept next to Transfer-Encoding"
            );
        } else {
            assert_eq!(&after, values, "{name} changed through Connection");
        }
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(!headers.contains_key(name), "hop-by-hop {name} survived");
    }
    // A response head: one `Content-Length` value, or an error; cookies joined into one field.
    let mut response = headers.clone();
    if trustgate_edge::framing::single_content_length(&mut response).is_ok() {
        let lengths: Vec<&HeaderValue> = response
            .get_all(http::header::CONTENT_LENGTH)
            .iter()
            .collect();
        assert!(
            lengths.len() <= 1,
            "{} Content-Length fields left",
            lengths.len()
        );
        assert!(
            lengths
                .iter()
                .all(|value| !value.as_bytes().contains(&b',')),
            "a Content-Length list left"
        );
    }
    trustgate_edge::headers::join_cookie_fields(&mut response);
    assert!(
        response.get_all(http::header::COOKIE).iter().count() <= 1,
        "Cookie fields left unjoined"
    );
    // The restated `Trailer` declares only fields the trailer filter lets through.
    let mut restated = HeaderMap::new();
    sanitize::restate_request_trailers(&policy, &mut restated, &hop.trailer_names);
    if let Some(declared) = restated.get(http::header::TRAILER) {
        let Ok(declared) = declared.to_str() else {
            panic!("a restated Trailer is not text: {declared:?}");
        };
        for field in declared.split(", ") {
            let Ok(field) = HeaderName::from_bytes(field.as_bytes()) else {
                panic!("a restated Trailer names a non-field {field:?}");
            };
            let mut one = HeaderMap::new();
            one.insert(field.clone(), HeaderValue::from_static("x"));
            let removed = trustgate_edge::headers::sanitize_request_trailers(&policy, &mut one);
            assert_eq!(
                removed, 0,
                "the restated Trailer names {field}, which the filter removes"
            );
        }
    }

    let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let trust_it = data.len().is_multiple_of(2);
    let trusted = match sanitize::TrustedProxies::new(&[if trust_it {
        "192.0.2.0/24".to_owned()
    } else {
        "198.51.100.0/24".to_owned()
    }]) {
        Ok(t) => t,
        Err(err) => panic!("fixed trusted proxies: {err}"),
    };
    let host = headers.get(http::header::HOST).cloned();
    sanitize::set_forwarding_headers(&mut headers, peer, "https", host.as_ref(), &trusted);
    let forwarded_for: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(forwarded_for.len(), 1, "exactly one X-Forwarded-For");
    if trust_it {
        assert!(
            forwarded_for[0].as_bytes().ends_with(b"192.0.2.7"),
            "the peer must end the chain: {:?}",
            forwarded_for[0]
        );
    } else {
        assert_eq!(forwarded_for[0], "192.0.2.7");
        assert_eq!(
            headers
                .get_all("x-forwarded-proto")
                .iter()
                .collect::<Vec<_>>(),
            ["https"]
        );
        for name in [
            "forwarded",
            "x-real-ip",
            "true-client-ip",
            "x-forwarded-port",
        ] {
            assert!(!headers.contains_key(name), "{name} from an untrusted peer");
        }
    }
}
