//! End-to-end rules of [`Validator::validate`], one test per rule, each asserting the exact
//! [`AuthError`] and [`Reason`]. Time is a [`ManualClock`]; nothing sleeps.

use std::sync::LazyLock;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64_simd::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use test_support::{TestIssuer, TestKey, b64};
use trustgate_core::{
    Algorithm, AudiencePolicy, AuthError, CacheStats, ConfigError, ExpiryPolicy, JwksError,
    KeySource, Reason, StaticKeyError, Validator, ValidatorOptions,
};

use crate::common::{
    AUD, ISS, NOW, claims, clock, header, issuer, jwks, sign, sign_bytes, sign_bytes_as, token,
    validator, validator_with,
};

/// One RSA key for the whole file: generating them is the slow part.
static RSA: LazyLock<TestKey> = LazyLock::new(|| TestKey::rsa("r1", "RS256"));

fn invalid(reason: Reason) -> Result<(), AuthError> {
    Err(AuthError::InvalidToken(reason))
}

async fn check(validator: &Validator, token: &str) -> Result<(), AuthError> {
    validator.validate(token).await.map(|_| ())
}

/// A validator for one ES256 key `k1` at [`NOW`].
fn es256_fixture() -> (Validator, TestKey, trustgate_core::ManualClock) {
    let key = TestKey::es256("k1");
    let clock = clock();
    let v = validator(vec![issuer(ISS, &[&key])], &clock);
    (v, key, clock)
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut c = claims();
    c[name] = value;
    c
}

fn without_claim(name: &str) -> Value {
    let mut c = claims();
    c.as_object_mut().unwrap().remove(name);
    c
}

// === baseline ===

#[tokio::test]
async fn valid_tokens_of_every_tested_algorithm_are_accepted() {
    let keys = [
        TestKey::es256("e256"),
        TestKey::es384("e384"),
        TestKey::ed25519("ed"),
    ];
    let pss = TestKey::rsa("p1", "PS256");
    let all: Vec<&TestKey> = keys.iter().chain([&*RSA, &pss]).collect();
    let clock = clock();
    let v = validator(vec![issuer(ISS, &all)], &clock);
    for key in all {
        let mut c = claims();
        c["roles"] = json!(["admin", "ops"]);
        c["scope"] = json!("read write");
        let verified = v.validate(&token(key, &c)).await.unwrap();
        assert_eq!(verified.issuer(), ISS);
        assert_eq!(verified.key_id(), Some(key.kid.as_str()));
        assert_eq!(verified.algorithm().name(), key.alg);
        assert_eq!(verified.expires_at(), Some(NOW + 600));
        assert_eq!(verified.identity().subject(), Some("alice"));
        assert!(verified.identity().has_role("ops"));
        assert!(verified.identity().has_scope("write"));
    }
}

// === parsing ===

#[tokio::test]
async fn exactly_three_segments() {
    let (v, key, _) = es256_fixture();
    let good = token(&key, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    for bad in [
        String::new(),
        h.to_owned(),
        format!("{h}.{p}"),
        format!("{h}.{p}."),
        format!(".{p}.{s}"),
        format!("{h}.{p}.{s}."),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}..{p}.{s}"),
        format!("{h}.{p}.{s}.{s}.{s}.{s}"),
    ] {
        assert_eq!(check(&v, &bad).await, invalid(Reason::Malformed), "{bad}");
    }
    assert_eq!(check(&v, &good).await, Ok(()));
}

#[tokio::test]
async fn jwe_json_serialization_and_unencoded_payloads_are_refused() {
    let (v, key, _) = es256_fixture();
    let good = token(&key, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let unsupported = invalid(Reason::UnsupportedSerialization);
    // Five segments: a JWE, never decrypted.
    let jwe = format!(
        "{}.{}.{}.{}.{}",
        b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#),
        b64("key"),
        b64("iv"),
        b64("ciphertext"),
        b64("tag")
    );
    assert_eq!(check(&v, &jwe).await, unsupported);
    // A JWE header forced into three segments, even correctly signed.
    let enc = json!({"alg":"ES256","kid":"k1","enc":"A256GCM"});
    assert_eq!(check(&v, &sign(&key, &enc, &claims())).await, unsupported);
    // `zip` is JWE compression: refused in a JWS header too, even correctly signed.
    let zip = json!({"alg":"ES256","kid":"k1","zip":"DEF"});
    assert_eq!(check(&v, &sign(&key, &zip, &claims())).await, unsupported);
    // JWS JSON serialization, flattened and general, of the valid token.
    let flattened =
        json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]}).to_string();
    assert_eq!(check(&v, &flattened).await, unsupported);
    let general = json!({"payload": parts[1],
        "signatures": [{"protected": parts[0], "signature": parts[2]}]})
    .to_string();
    assert_eq!(check(&v, &general).await, unsupported);
    // RFC 7797 unencoded payload: signed over the raw payload, as a real b64:false signer would.
    let payload = claims().to_string();
    let b64_header = b64(r#"{"alg":"ES256","kid":"k1","b64":false,"crit":["b64"]}"#);
    let input = format!("{b64_header}.{payload}");
    let sig = b64(key.sign_raw("ES256", input.as_bytes()));
    let detached = format!("{b64_header}..{sig}");
    assert_eq!(check(&v, &detached).await, unsupported);
    for h in [
        json!({"alg":"ES256","kid":"k1","b64":false}),
        json!({"alg":"ES256","kid":"k1","b64":"false"}),
        json!({"alg":"ES256","kid":"k1","b64":0}),
    ] {
        assert_eq!(
            check(&v, &sign(&key, &h, &claims())).await,
            unsupported,
            "{h}"
        );
    }
    // b64: true is the default and harmless.
    let explicit = json!({"alg":"ES256","kid":"k1","b64":true});
    assert_eq!(check(&v, &sign(&key, &explicit, &claims())).await, Ok(()));
}

/// Builds a valid token of exactly `len` bytes by padding a claim and a header member.
fn token_of_len(key: &TestKey, len: usize) -> String {
    let sig_len = b64(key.sign_raw(key.alg, b"x")).len();
    let b64_len = |n: usize| (n * 4).div_ceil(3);
    for header_pad in 0..4 {
        let h = json!({"alg":key.alg,"kid":key.kid,"x":"h".repeat(header_pad)}).to_string();
        let fixed = b64_len(h.len()) + 2 + sig_len;
        let mut c = claims();
        c["pad"] = json!("");
        let base = c.to_string().len();
        for extra in 0..len {
            let total = fixed + b64_len(base + extra);
            if total == len {
                c["pad"] = json!("p".repeat(extra));
                let t = sign_bytes(key, h.as_bytes(), c.to_string().as_bytes());
                assert_eq!(t.len(), len);
                return t;
            }
            if total > len {
                break;
            }
        }
    }
    panic!("no token of {len} bytes");
}

#[tokio::test]
async fn size_limit_applies_before_decoding() {
    let (v, key, clock) = es256_fixture();
    let limit = trustgate_core::DEFAULT_MAX_TOKEN_BYTES;
    assert_eq!(limit, 8192);
    // A valid token of exactly 8 KiB is accepted; one byte more is refused though well formed.
    assert_eq!(check(&v, &token_of_len(&key, limit)).await, Ok(()));
    assert_eq!(
        check(&v, &token_of_len(&key, limit + 1)).await,
        invalid(Reason::TooLarge)
    );
    // Bytes that are not even base64url: the size is what refuses them, not their encoding.
    let garbage = "!".repeat(limit + 1);
    assert_eq!(check(&v, &garbage).await, invalid(Reason::TooLarge));
    assert_eq!(
        check(&v, &"{".repeat(1_000_000)).await,
        invalid(Reason::TooLarge)
    );
    // The limit is configurable.
    let small = validator_with(
        vec![issuer(ISS, &[&key])],
        ValidatorOptions {
            max_token_bytes: 1000,
            ..ValidatorOptions::default()
        },
        &clock,
    );
    assert_eq!(check(&small, &token_of_len(&key, 1000)).await, Ok(()));
    assert_eq!(
        check(&small, &token_of_len(&key, 1001)).await,
        invalid(Reason::TooLarge)
    );
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The same bytes with a non-zero unused bit in the last character.
fn non_canonical(segment: &str) -> String {
    assert_ne!(segment.len() % 4, 0, "no unused bits");
    let last = *segment.as_bytes().last().unwrap();
    let value = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(value & 1, 0, "canonical input");
    let mut out = segment[..segment.len() - 1].to_owned();
    out.push(ALPHABET[value | 1] as char);
    out
}

#[tokio::test]
async fn base64url_is_strict() {
    let (v, key, _) = es256_fixture();
    let good = token(&key, &claims());
    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let join = |h: &str, p: &str, s: &str| format!("{h}.{p}.{s}");
    let (h, p, s) = (&parts[0], &parts[1], &parts[2]);
    // A 64-byte ES256 signature has four unused bits in its last character.
    assert_eq!(s.len() % 4, 2);
    let mut bad = vec![
        join(h, p, &format!("{s}=")),
        join(h, p, &format!("{s}==")),
        join(&format!("{h}="), p, s),
        join(h, &format!(" {p}"), s),
        join(h, &format!("{}\n{}", &p[..4], &p[4..]), s),
        join(h, p, &format!("{}+{}", &s[..4], &s[5..])),
        join(h, p, &format!("{}/{}", &s[..4], &s[5..])),
        join(h, p, &format!("{}%2D{}", &s[..4], &s[5..])),
        join(h, p, &non_canonical(s)),
    ];
    // A header or payload segment with unused bits, signed correctly, made non-canonical.
    for pad in 0..3 {
        let hdr = json!({"alg":"ES256","kid":"k1","x":"y".repeat(pad)}).to_string();
        let t = sign_bytes(&key, hdr.as_bytes(), claims().to_string().as_bytes());
        let tp: Vec<&str> = t.split('.').collect();
        if !tp[0].len().is_multiple_of(4) {
            bad.push(join(&non_canonical(tp[0]), tp[1], tp[2]));
            assert_eq!(check(&v, &t).await, Ok(()));
        }
        if !tp[1].len().is_multiple_of(4) {
            bad.push(join(tp[0], &non_canonical(tp[1]), tp[2]));
        }
    }
    assert!(bad.len() >= 11);
    for t in &bad {
        assert_eq!(check(&v, t).await, invalid(Reason::Malformed), "{t}");
    }
    assert_eq!(check(&v, &good).await, Ok(()));
}

#[tokio::test]
async fn header_and_payload_must_be_strict_utf8_json_objects() {
    let (v, key, _) = es256_fixture();
    let h = header(&key).to_string();
    let c = claims().to_string();
    let bad_payloads: &[&[u8]] = &[
        b"",
        b"[]",
        b"\"alice\"",
        b"null",
        b"42",
        br#"{"iss":"https://idp.example","sub":"a"} x"#,
        br#"{"iss":"https://idp.example","sub":"\ud800"}"#,
        b"{\"iss\":\"https://idp.example\",\"sub\":\"\xff\xfe\"}",
        b"\xef\xbb\xbf{\"iss\":\"https://idp.example\"}",
        br#"{"iss":"https://idp.example","n":NaN}"#,
        br#"{"iss":"https://idp.example","n":1e400}"#,
        br#"{'iss':'https://idp.example'}"#,
        br#"{"iss":"https://idp.example",}"#,
    ];
    for payload in bad_payloads {
        let t = sign_bytes(&key, h.as_bytes(), payload);
        assert_eq!(
            check(&v, &t).await,
            invalid(Reason::BadJson),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    // An empty header segment is not even a segment.
    let t = sign_bytes(&key, b"", c.as_bytes());
    assert_eq!(check(&v, &t).await, invalid(Reason::Malformed));
    let bad_headers: &[&[u8]] = &[
        b"{}x",
        b"[\"ES256\"]",
        b"{\"alg\":\"ES256\",\"kid\":\"k1\xff\"}",
        br#"{"alg":"ES256","kid":"k1""#,
        br#"{"alg":"ES256","kid":"\udc00"}"#,
        br#"{"alg":"ES256","kid":7}"#,
        br#"{"alg":"ES256","kid":"k1","typ":["JWT"]}"#,
        br#"{"alg":["ES256"],"kid":"k1"}"#,
    ];
    for hdr in bad_headers {
        let t = sign_bytes(&key, hdr, c.as_bytes());
        assert_eq!(
            check(&v, &t).await,
            invalid(Reason::BadJson),
            "{}",
            String::from_utf8_lossy(hdr)
        );
    }
    // Insignificant whitespace is fine.
    let spaced = " { \"alg\" : \"ES256\" ,\n\t\"kid\" : \"k1\" } ";
    let t = sign_bytes(&key, spaced.as_bytes(), c.as_bytes());
    assert_eq!(check(&v, &t).await, Ok(()));
}

#[tokio::test]
async fn duplicate_member_names_are_refused_in_header_and_payload() {
    let (v, key, _) = es256_fixture();
    let h = header(&key).to_string();
    let c = claims().to_string();
    let body = &c[1..c.len() - 1];
    let headers = [
        r#"{"alg":"ES256","kid":"k1","kid":"k2"}"#.to_owned(),
        r#"{"alg":"none","alg":"ES256","kid":"k1"}"#.to_owned(),
        r#"{"alg":"ES256","alg":"ES256","kid":"k1"}"#.to_owned(),
        r#"{"alg":"ES256","kid":"k1","typ":"JWT","t\u0079p":"at+jwt"}"#.to_owned(),
        r#"{"alg":"ES256","kid":"k1","x":{"a":1,"a":2}}"#.to_owned(),
    ];
    for hdr in &headers {
        let t = sign_bytes(&key, hdr.as_bytes(), c.as_bytes());
        assert_eq!(
            check(&v, &t).await,
            invalid(Reason::DuplicateMember),
            "{hdr}"
        );
    }
    let payloads = [
        format!(r#"{{{body},"sub":"mallory"}}"#),
        format!(r#"{{{body},"iss":"https://evil.example"}}"#),
        format!(r#"{{{body},"exp":{}}}"#, NOW + 99_999),
        format!(r#"{{{body},"s\u0075b":"mallory"}}"#),
        format!(r#"{{{body},"realm_access":{{"roles":["a"],"roles":["admin"]}}}}"#),
        format!(r#"{{{body},"list":[{{"a":1,"a":1}}]}}"#),
    ];
    for payload in &payloads {
        let t = sign_bytes(&key, h.as_bytes(), payload.as_bytes());
        assert_eq!(
            check(&v, &t).await,
            invalid(Reason::DuplicateMember),
            "{payload}"
        );
    }
}

/// What a caller reads from a verified token (`claims()`, `token_id()`: revocation by `jti`) is
/// what the checks read, even for a number serde_json's own parser calls out of range.
#[tokio::test]
async fn verified_claims_are_the_claims_the_checks_read() {
    let (v, key, _clock) = es256_fixture();
    let h = header(&key).to_string();
    for big in ["1.7976931348623158e308", "-1.7976931348623157081e308"] {
        let payload = format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","exp":{},"jti":"revoked-1","n":{big}}}"#,
            NOW + 600
        );
        let t = sign_bytes(&key, h.as_bytes(), payload.as_bytes());
        let verified = v.validate(&t).await.unwrap();
        assert_eq!(verified.token_id(), Some("revoked-1"), "{big}");
        assert_eq!(verified.claims()["sub"], "alice");
        assert_eq!(
            verified.claims()["n"].as_f64().map(f64::abs),
            Some(f64::MAX)
        );
    }
}

#[tokio::test]
async fn crit_is_refused() {
    let (v, key, _) = es256_fixture();
    for hdr in [
        json!({"alg":"ES256","kid":"k1","crit":["exp"],"exp":NOW + 10}),
        json!({"alg":"ES256","kid":"k1","crit":[]}),
        json!({"alg":"ES256","kid":"k1","crit":"exp"}),
        json!({"alg":"ES256","kid":"k1","crit":null}),
    ] {
        let t = sign(&key, &hdr, &claims());
        assert_eq!(
            check(&v, &t).await,
            invalid(Reason::UnsupportedCritical),
            "{hdr}"
        );
    }
}

#[tokio::test]
async fn key_carrying_headers_are_never_fetched_or_used() {
    let (v, key, _) = es256_fixture();
    let attacker = TestKey::es256("k1");
    // A live server holding the attacker's key: any fetch of jku/x5u would show in its counters.
    let evil = TestIssuer::start().await;
    evil.set_keys(&[&attacker]);
    let carried = |kid: Option<&str>| {
        let mut h = json!({
            "alg": "ES256",
            "jku": evil.jwks_url(),
            "x5u": evil.jwks_url(),
            "jwk": attacker.jwk(),
            "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
        });
        if let Some(kid) = kid {
            h["kid"] = json!(kid);
        }
        h
    };
    // Signed by the attacker under the real kid, under the attacker's own kid, and without kid.
    let by_attacker = [
        (carried(Some("k1")), Reason::BadSignature),
        (carried(Some("attacker")), Reason::UnknownKey),
        (carried(None), Reason::BadSignature),
    ];
    for (hdr, reason) in by_attacker {
        let t = sign(&attacker, &hdr, &claims());
        assert_eq!(check(&v, &t).await, invalid(reason), "{hdr}");
    }
    // The same headers on a token the real key signed are ignored, not trusted and not refused.
    let t = sign(&key, &carried(Some("k1")), &claims());
    assert_eq!(check(&v, &t).await, Ok(()));
    tokio::task::yield_now().await;
    assert_eq!((evil.jwks_fetches(), evil.discovery_fetches()), (0, 0));
}

// === keys ===

#[tokio::test]
async fn algorithm_allow_list_is_per_issuer() {
    let es = TestKey::es256("e1");
    let clock = clock();
    // Issuer A allows ES256 only; issuer B allows RS256 only. B's key is RS256.
    let a = issuer("https://a.example", &[&es]);
    let b = issuer("https://b.example", &[&*RSA]);
    let v = validator(vec![a, b], &clock);
    let for_iss = |iss: &str| with_claim("iss", json!(iss));
    assert_eq!(
        check(&v, &token(&RSA, &for_iss("https://a.example"))).await,
        invalid(Reason::AlgorithmNotAllowed)
    );
    assert_eq!(
        check(&v, &token(&es, &for_iss("https://b.example"))).await,
        invalid(Reason::AlgorithmNotAllowed)
    );
    assert_eq!(
        check(&v, &token(&RSA, &for_iss("https://b.example"))).await,
        Ok(())
    );
    assert_eq!(
        check(&v, &token(&es, &for_iss("https://a.example"))).await,
        Ok(())
    );
    // Algorithms nobody allowed, signed correctly with the RSA key.
    for alg in ["PS256", "RS512"] {
        let h = json!({"alg": alg, "kid": "r1"});
        let c = for_iss("https://b.example");
        let t = sign_bytes_as(
            &RSA,
            alg,
            h.to_string().as_bytes(),
            c.to_string().as_bytes(),
        );
        assert_eq!(
            check(&v, &t).await,
            invalid(Reason::AlgorithmNotAllowed),
            "{alg}"
        );
    }
    // A key whose alg is not on the allow-list is not loaded at all.
    let mut only_es = issuer(ISS, &[&es]);
    only_es.source = KeySource::Jwks(jwks(&[&es, &*RSA]));
    let v = validator(vec![only_es], &clock);
    assert_eq!(v.issuer_status()[0].kids, vec!["e1".to_owned()]);
}

#[tokio::test]
async fn the_key_decides_the_algorithm() {
    let clock = clock();
    // The JWK says RS256; the issuer allows RS256 and PS256.
    let mut config = issuer(ISS, &[&*RSA]);
    config.algorithms = vec![Algorithm::RS256, Algorithm::PS256];
    let v = validator(vec![config], &clock);
    let c = claims().to_string();
    let pss = |alg_in_header: &str| {
        let h = json!({"alg": alg_in_header, "kid": "r1"}).to_string();
        sign_bytes_as(&RSA, "PS256", h.as_bytes(), c.as_bytes())
    };
    // A PS256 token from the same RSA key: the key's algorithm is RS256, so no key matches.
    assert_eq!(
        check(&v, &pss("PS256")).await,
        invalid(Reason::NoMatchingKey)
    );
    // A PSS signature under an RS256 header is verified as RS256, and fails.
    assert_eq!(
        check(&v, &pss("RS256")).await,
        invalid(Reason::BadSignature)
    );
    assert_eq!(check(&v, &token(&RSA, &claims())).await, Ok(()));

    // EC: an ES384 header naming the ES256 key.
    let es = TestKey::es256("e1");
    let mut config = issuer(ISS, &[&es]);
    config.algorithms = vec![Algorithm::ES256, Algorithm::ES384];
    let v = validator(vec![config], &clock);
    let h = json!({"alg":"ES384","kid":"e1"});
    assert_eq!(
        check(&v, &sign(&es, &h, &claims())).await,
        invalid(Reason::NoMatchingKey)
    );

    // A JWK without alg is bound by the allow-list: only the allowed algorithms fitting its type.
    let no_alg = json!({"keys":[RSA.jwk_without_alg()]}).to_string();
    let mut config = issuer(ISS, &[&*RSA]);
    config.source = KeySource::Jwks(no_alg.clone());
    config.algorithms = vec![Algorithm::RS256];
    let v = validator(vec![config.clone()], &clock);
    assert_eq!(
        check(&v, &pss("PS256")).await,
        invalid(Reason::AlgorithmNotAllowed)
    );
    assert_eq!(check(&v, &token(&RSA, &claims())).await, Ok(()));
    config.algorithms = vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
    let v = validator(vec![config], &clock);
    assert_eq!(check(&v, &pss("PS256")).await, Ok(()));
    assert_eq!(check(&v, &token(&RSA, &claims())).await, Ok(()));
    // Still an RSA key: an ES256 header under its kid finds no key of that algorithm.
    let t = sign(&es, &json!({"alg":"ES256","kid":"r1"}), &claims());
    assert_eq!(check(&v, &t).await, invalid(Reason::NoMatchingKey));
}

#[tokio::test]
async fn none_and_hmac_are_never_accepted() {
    let es = TestKey::es256("e1");
    let clock = clock();
    let mut config = issuer(ISS, &[&es, &*RSA]);
    config.algorithms = Algorithm::ALL.to_vec();
    // The key set also carries a symmetric key, which is dropped.
    let oct =
        json!({"kty":"oct","kid":"hmac","alg":"HS256","k":b64("0123456789abcdef0123456789abcdef")});
    let mut set: Value = serde_json::from_str(&jwks(&[&es, &*RSA])).unwrap();
    set["keys"].as_array_mut().unwrap().push(oct);
    config.source = KeySource::Jwks(set.to_string());
    let v = validator(vec![config], &clock);
    assert_eq!(
        v.issuer_status()[0].kids,
        vec!["e1".to_owned(), "r1".to_owned()]
    );

    let c = claims().to_string();
    let payload = b64(&c);
    // alg none, with no signature or with junk in its place.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(json!({"alg": alg, "kid": "e1"}).to_string());
        assert_eq!(
            check(&v, &format!("{h}.{payload}.")).await,
            invalid(Reason::Malformed),
            "{alg}"
        );
        assert_eq!(
            check(&v, &format!("{h}.{payload}.AAAA")).await,
            invalid(Reason::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    // HMAC keyed with what an attacker can read: the public JWK, its PEM, or the oct key's secret.
    let secrets: Vec<Vec<u8>> = vec![
        es.jwk().to_string().into_bytes(),
        RSA.public_pem().into_bytes(),
        b"0123456789abcdef0123456789abcdef".to_vec(),
    ];
    for (alg, digest) in [
        ("HS256", hmac::HMAC_SHA256),
        ("HS384", hmac::HMAC_SHA384),
        ("HS512", hmac::HMAC_SHA512),
    ] {
        for (secret, kid) in secrets.iter().zip(["e1", "r1", "hmac"]) {
            let h = b64(json!({"alg": alg, "kid": kid}).to_string());
            let input = format!("{h}.{payload}");
            let mac = hmac::sign(&hmac::Key::new(digest, secret), input.as_bytes());
            let t = format!("{input}.{}", b64(mac.as_ref()));
            assert_eq!(
                check(&v, &t).await,
                invalid(Reason::UnsupportedAlgorithm),
                "{alg} {kid}"
            );
        }
    }
    // An issuer with only a symmetric key is a configuration error, not a working issuer.
    let mut hmac_only = issuer(ISS, &[&es]);
    hmac_only.source = KeySource::Jwks(
        json!({"keys":[{"kty":"oct","kid":"h","alg":"HS256","k":"AAAA"}]}).to_string(),
    );
    let err = Validator::new(
        vec![hmac_only],
        ValidatorOptions::default(),
        std::sync::Arc::new(clock.clone()),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::StaticKeys {
                source: StaticKeyError::Jwks(JwksError::NoUsableKeys),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn unusable_keys_are_ignored() {
    let good = TestKey::es256("good");
    let enc = TestKey::es256("enc");
    let ops = TestKey::es256("ops");
    let p384 = TestKey::es384("curve");
    let mismatch = TestKey::es256("mismatch");
    let mut keys = vec![good.jwk()];
    let mut j = enc.jwk();
    j["use"] = json!("enc");
    keys.push(j);
    let mut j = ops.jwk();
    j.as_object_mut().unwrap().remove("use");
    j["key_ops"] = json!(["encrypt", "wrapKey"]);
    keys.push(j);
    // A P-384 key claiming to be P-256 (wrong coordinate size), and a P-384 key marked ES256.
    let mut j = p384.jwk();
    j["crv"] = json!("P-256");
    j["alg"] = json!("ES256");
    keys.push(j);
    let mut j = p384.jwk();
    j["alg"] = json!("ES256");
    j["kid"] = json!("curve2");
    keys.push(j);
    // An EC key marked RS256, an RSA key marked ES256.
    let mut j = mismatch.jwk();
    j["alg"] = json!("RS256");
    keys.push(j);
    let mut j = RSA.jwk();
    j["alg"] = json!("ES256");
    j["kid"] = json!("mismatch2");
    keys.push(j);
    // A 1024-bit RSA modulus (the top half of a real one).
    let mut j = RSA.jwk();
    let n = URL_SAFE_NO_PAD
        .decode_to_vec(j["n"].as_str().unwrap())
        .unwrap();
    j["n"] = json!(b64(&n[..128]));
    j["kid"] = json!("small");
    keys.push(j);
    // A P-521 key.
    keys.push(json!({"kty":"EC","crv":"P-521","kid":"p521","alg":"ES512",
        "x":"AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
        "y":"AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"}));
    let clock = clock();
    let mut config = issuer(ISS, &[&good]);
    config.algorithms = vec![Algorithm::ES256, Algorithm::ES384, Algorithm::RS256];
    config.source = KeySource::Jwks(json!({ "keys": keys }).to_string());
    let v = validator(vec![config], &clock);
    let status = &v.issuer_status()[0];
    assert_eq!(status.kids, vec!["good".to_owned()]);
    assert_eq!(status.keys, 1);
    for key in [&enc, &ops, &mismatch] {
        assert_eq!(
            check(&v, &token(key, &claims())).await,
            invalid(Reason::UnknownKey),
            "{}",
            key.kid
        );
    }
    for (key, kid) in [(&p384, "curve"), (&p384, "curve2"), (&*RSA, "small")] {
        let t = sign(key, &json!({"alg": key.alg, "kid": kid}), &claims());
        assert_eq!(check(&v, &t).await, invalid(Reason::UnknownKey), "{kid}");
    }
    assert_eq!(check(&v, &token(&good, &claims())).await, Ok(()));
}

#[tokio::test]
async fn kidless_tokens_are_tried_against_at_most_n_keys() {
    let keys: Vec<TestKey> = (0..5).map(|i| TestKey::es256(&format!("k{i}"))).collect();
    let set = json!({"keys": keys.iter().map(|k| {
        let mut j = k.jwk();
        j.as_object_mut().unwrap().remove("kid");
        j
    }).collect::<Vec<_>>()});
    let clock = clock();
    let build = |max: usize| {
        let mut config = issuer(ISS, &[&keys[0]]);
        config.source = KeySource::Jwks(set.to_string());
        config.max_kidless_candidates = max;
        config
    };
    let kidless = |key: &TestKey| sign(key, &json!({"alg":"ES256"}), &claims());
    let v = validator(vec![build(3)], &clock);
    assert_eq!(v.issuer_status()[0].keys, 5);
    for (i, key) in keys.iter().enumerate() {
        let want = if i < 3 {
            Ok(())
        } else {
            invalid(Reason::BadSignature)
        };
        assert_eq!(check(&v, &kidless(key)).await, want, "key {i}");
    }
    let v = validator(vec![build(5)], &clock);
    for key in &keys {
        assert_eq!(check(&v, &kidless(key)).await, Ok(()));
    }
    // Default cap is 3.
    assert_eq!(
        trustgate_core::IssuerConfig::new(ISS, [AUD], KeySource::Jwks(String::new()))
            .max_kidless_candidates,
        3
    );
    // A kid-less token whose algorithm no key has.
    let mut config = build(3);
    config.algorithms = vec![Algorithm::ES256, Algorithm::ES384];
    let v = validator(vec![config], &clock);
    let other = TestKey::es384("x");
    let t = sign(&other, &json!({"alg":"ES384"}), &claims());
    assert_eq!(check(&v, &t).await, invalid(Reason::NoMatchingKey));
    // Zero would refuse every kid-less token: a configuration error.
    let err = Validator::new(
        vec![build(0)],
        ValidatorOptions::default(),
        std::sync::Arc::new(clock.clone()),
    )
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::ZeroKidlessCandidates(_)),
        "{err}"
    );
}

/// Inverted refresh bounds are refused when the validator is built: the background refresh
/// would otherwise meet them later, with nobody to tell.
#[test]
fn inverted_refresh_bounds_are_a_configuration_error() {
    let key = TestKey::es256("k1");
    let mut config = issuer(ISS, &[&key]);
    config.refresh.min_interval = std::time::Duration::from_millis(200);
    config.refresh.max_interval = std::time::Duration::from_millis(20);
    let err = Validator::new(
        vec![config],
        ValidatorOptions::default(),
        std::sync::Arc::new(clock()),
    )
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::InvertedRefreshBounds(_)),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("issuer {ISS:?}: refresh min_interval is longer than max_interval")
    );
}

/// An empty or blank audience (an unset variable) would accept tokens whose `aud` is `""`: a
/// configuration error, beside others that are fine.
#[test]
fn an_empty_audience_is_a_configuration_error() {
    let key = TestKey::es256("k1");
    for audiences in [vec![""], vec![" "], vec![AUD, ""]] {
        let mut config = issuer(ISS, &[&key]);
        config.claims.audiences = audiences.iter().map(|a| (*a).to_owned()).collect();
        let err = Validator::new(
            vec![config],
            ValidatorOptions::default(),
            std::sync::Arc::new(clock()),
        )
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::EmptyAudience(_)),
            "{audiences:?}: {err}"
        );
    }
}

// === claims ===

#[tokio::test]
async fn exp_is_required_by_default() {
    let (v, key, clock) = es256_fixture();
    assert_eq!(
        check(&v, &token(&key, &without_claim("exp"))).await,
        invalid(Reason::MissingExpiry)
    );
    let mut config = issuer(ISS, &[&key]);
    config.claims.expiry = ExpiryPolicy::DangerOptional;
    let lax = validator(vec![config], &clock);
    assert_eq!(
        check(&lax, &token(&key, &without_claim("exp"))).await,
        Ok(())
    );
}

#[tokio::test]
async fn exp_is_checked_with_leeway() {
    let (v, key, clock) = es256_fixture();
    // Default leeway is 60 s: expired once now >= exp + 60.
    assert_eq!(
        check(&v, &token(&key, &with_claim("exp", json!(NOW - 59)))).await,
        Ok(())
    );
    assert_eq!(
        check(&v, &token(&key, &with_claim("exp", json!(NOW - 60)))).await,
        invalid(Reason::Expired)
    );
    let mut config = issuer(ISS, &[&key]);
    config.claims.leeway = Duration::ZERO;
    let strict = validator(vec![config], &clock);
    let t = token(&key, &with_claim("exp", json!(NOW + 1)));
    assert_eq!(check(&strict, &t).await, Ok(()));
    clock.advance_secs(1);
    // Fresh token text, so no cache entry answers.
    let t = token(&key, &with_claim("exp", json!(NOW + 1)));
    assert_eq!(check(&strict, &t).await, invalid(Reason::Expired));
}

#[tokio::test]
async fn nbf_is_checked_with_leeway() {
    let (v, key, _) = es256_fixture();
    assert_eq!(
        check(&v, &token(&key, &with_claim("nbf", json!(NOW + 60)))).await,
        Ok(())
    );
    assert_eq!(
        check(&v, &token(&key, &with_claim("nbf", json!(NOW + 61)))).await,
        invalid(Reason::NotYetValid)
    );
}

#[tokio::test]
async fn iat_must_not_be_in_the_future_beyond_leeway() {
    let (v, key, _) = es256_fixture();
    assert_eq!(
        check(&v, &token(&key, &with_claim("iat", json!(NOW + 60)))).await,
        Ok(())
    );
    assert_eq!(
        check(&v, &token(&key, &with_claim("iat", json!(NOW + 61)))).await,
        invalid(Reason::IssuedInFuture)
    );
}

#[tokio::test]
async fn date_claims_are_strictly_typed_and_may_be_fractional() {
    let (v, key, clock) = es256_fixture();
    for bad in [
        json!("1700000600"),
        json!(true),
        json!(null),
        json!([NOW + 600]),
        json!({"t": NOW + 600}),
        json!(-1),
        json!(1e300),
        json!(253_402_300_800_u64),
    ] {
        for name in ["exp", "nbf", "iat"] {
            let t = token(&key, &with_claim(name, bad.clone()));
            assert_eq!(
                check(&v, &t).await,
                invalid(Reason::BadDateClaim),
                "{name} = {bad}"
            );
        }
    }
    // Fractional NumericDates are accepted and kept to the millisecond.
    let mut config = issuer(ISS, &[&key]);
    config.claims.leeway = Duration::ZERO;
    let strict = validator(vec![config], &clock);
    let mut c = claims();
    c["exp"] = json!(NOW as f64 + 0.5);
    c["nbf"] = json!(NOW as f64 - 0.25);
    c["iat"] = json!(NOW as f64 - 0.25);
    let verified = strict.validate(&token(&key, &c)).await.unwrap();
    assert_eq!(verified.expires_at(), Some(NOW));
    clock.advance_millis(499);
    c["sub"] = json!("bob");
    assert_eq!(check(&strict, &token(&key, &c)).await, Ok(()));
    clock.advance_millis(1);
    c["sub"] = json!("carol");
    assert_eq!(
        check(&strict, &token(&key, &c)).await,
        invalid(Reason::Expired)
    );
    // A fractional nbf a quarter second ahead.
    let mut c = claims();
    c["nbf"] = json!(NOW as f64 + 0.75);
    assert_eq!(
        check(&strict, &token(&key, &c)).await,
        invalid(Reason::NotYetValid)
    );
    clock.advance_millis(250);
    c["sub"] = json!("dave");
    assert_eq!(check(&strict, &token(&key, &c)).await, Ok(()));
}

#[tokio::test]
async fn issuer_must_match_exactly() {
    let (v, key, _) = es256_fixture();
    for iss in [
        json!("https://idp.example/"),
        json!("https://IDP.example"),
        json!("HTTPS://idp.example"),
        json!(" https://idp.example"),
        json!("https://idp.example "),
        json!("https://idp.example\u{0}"),
        json!("https://idp.exampl"),
        json!(["https://idp.example"]),
        json!({"iss": "https://idp.example"}),
        json!(null),
        json!(1),
    ] {
        let t = token(&key, &with_claim("iss", iss.clone()));
        assert_eq!(check(&v, &t).await, invalid(Reason::UnknownIssuer), "{iss}");
    }
    let t = token(&key, &without_claim("iss"));
    assert_eq!(check(&v, &t).await, invalid(Reason::UnknownIssuer));
}

#[tokio::test]
async fn the_key_must_belong_to_the_token_issuer() {
    let ka = TestKey::es256("a");
    let kb = TestKey::es256("b");
    let shared_a = TestKey::es256("shared");
    let shared_b = TestKey::es256("shared");
    let clock = clock();
    let v = validator(
        vec![
            issuer("https://a.example", &[&ka, &shared_a]),
            issuer("https://b.example", &[&kb, &shared_b]),
        ],
        &clock,
    );
    let claims_a = with_claim("iss", json!("https://a.example"));
    // B's key, B's kid, A's iss.
    assert_eq!(
        check(&v, &token(&kb, &claims_a)).await,
        invalid(Reason::UnknownKey)
    );
    // The same kid at both issuers: only A's key counts for A's tokens.
    assert_eq!(
        check(&v, &token(&shared_b, &claims_a)).await,
        invalid(Reason::BadSignature)
    );
    // Without kid, only A's keys are tried.
    let t = sign(&kb, &json!({"alg":"ES256"}), &claims_a);
    assert_eq!(check(&v, &t).await, invalid(Reason::BadSignature));
    assert_eq!(check(&v, &token(&shared_a, &claims_a)).await, Ok(()));
    let claims_b = with_claim("iss", json!("https://b.example"));
    assert_eq!(check(&v, &token(&kb, &claims_b)).await, Ok(()));
}

#[tokio::test]
async fn audience_may_be_a_string_or_an_array() {
    let (v, key, clock) = es256_fixture();
    for aud in [json!(AUD), json!([AUD]), json!(["billing", AUD])] {
        let t = token(&key, &with_claim("aud", aud.clone()));
        assert_eq!(check(&v, &t).await, Ok(()), "{aud}");
    }
    for aud in [
        json!("Orders"),
        json!("orders "),
        json!("order"),
        json!("billing"),
        json!([]),
        json!(["billing"]),
        json!([AUD, 1]),
        json!([[AUD]]),
        json!(null),
        json!({"aud": AUD}),
        json!(1),
    ] {
        let t = token(&key, &with_claim("aud", aud.clone()));
        assert_eq!(check(&v, &t).await, invalid(Reason::BadAudience), "{aud}");
    }
    assert_eq!(
        check(&v, &token(&key, &without_claim("aud"))).await,
        invalid(Reason::BadAudience)
    );
    let mut config = issuer(ISS, &[&key]);
    config.claims.audience = AudiencePolicy::DangerSkip;
    let any = validator(vec![config], &clock);
    assert_eq!(
        check(&any, &token(&key, &without_claim("aud"))).await,
        Ok(())
    );
}

#[tokio::test]
async fn typ_is_checked_only_when_required() {
    let (v, key, clock) = es256_fixture();
    let with_typ = |typ: Option<&str>| {
        let mut h = json!({"alg":"ES256","kid":"k1"});
        if let Some(typ) = typ {
            h["typ"] = json!(typ);
        }
        sign(&key, &h, &claims())
    };
    assert_eq!(check(&v, &with_typ(Some("anything"))).await, Ok(()));
    let mut config = issuer(ISS, &[&key]);
    config.claims.required_typ = Some("at+jwt".into());
    let strict = validator(vec![config], &clock);
    for ok in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        assert_eq!(check(&strict, &with_typ(Some(ok))).await, Ok(()), "{ok}");
    }
    for bad in [Some("JWT"), Some("at+jwt "), Some("application/jwt"), None] {
        assert_eq!(
            check(&strict, &with_typ(bad)).await,
            invalid(Reason::BadType),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn max_lifetime_when_configured() {
    let (_, key, clock) = es256_fixture();
    let mut config = issuer(ISS, &[&key]);
    config.claims.max_lifetime = Some(Duration::from_secs(3600));
    config.claims.leeway = Duration::ZERO;
    let v = validator(vec![config], &clock);
    let lifetime = |iat: i64, exp: i64| {
        let mut c = claims();
        c["iat"] = json!(iat);
        c["exp"] = json!(exp);
        token(&key, &c)
    };
    assert_eq!(check(&v, &lifetime(NOW, NOW + 3600)).await, Ok(()));
    assert_eq!(
        check(&v, &lifetime(NOW, NOW + 3601)).await,
        invalid(Reason::LifetimeTooLong)
    );
    // Without iat, the lifetime left is what counts.
    let mut c = without_claim("iat");
    c["exp"] = json!(NOW + 3601);
    assert_eq!(
        check(&v, &token(&key, &c)).await,
        invalid(Reason::LifetimeTooLong)
    );
    c["exp"] = json!(NOW + 3600);
    assert_eq!(check(&v, &token(&key, &c)).await, Ok(()));
}

#[tokio::test]
async fn required_claims_when_configured() {
    let (_, key, clock) = es256_fixture();
    let mut config = issuer(ISS, &[&key]);
    config.claims.required_claims = vec!["client_id".into(), "jti".into()];
    let v = validator(vec![config], &clock);
    let mut c = claims();
    c["client_id"] = json!("web");
    c["jti"] = json!("1");
    assert_eq!(check(&v, &token(&key, &c)).await, Ok(()));
    let mut missing = c.clone();
    missing.as_object_mut().unwrap().remove("jti");
    assert_eq!(
        check(&v, &token(&key, &missing)).await,
        invalid(Reason::MissingClaim)
    );
    let mut null = c.clone();
    null["client_id"] = Value::Null;
    assert_eq!(
        check(&v, &token(&key, &null)).await,
        invalid(Reason::MissingClaim)
    );
}

#[tokio::test]
async fn claims_bound_for_headers_must_be_safe() {
    let (v, key, _) = es256_fixture();
    for (name, value) in [
        ("sub", json!("alice\r\nX-Admin: true")),
        ("sub", json!("alice\u{0}")),
        ("roles", json!(["admin,ops"])),
        ("roles", json!(["ok", null])),
        ("tenant_id", json!({"id": 1})),
        // A number by default: it would read as the string of its digits.
        ("tenant_id", json!(12345)),
        ("roles", json!(["ok", 7])),
    ] {
        let t = token(&key, &with_claim(name, value.clone()));
        assert_eq!(
            check(&v, &t).await,
            invalid(Reason::UnsafeClaimValue),
            "{name} = {value}"
        );
    }
}

#[tokio::test]
async fn sub_must_be_a_string() {
    let (v, key, _) = es256_fixture();
    for value in [
        json!(12345),
        json!(true),
        json!(null),
        json!(["alice"]),
        json!({}),
    ] {
        let t = token(&key, &with_claim("sub", value.clone()));
        assert_eq!(check(&v, &t).await, invalid(Reason::BadSubject), "{value}");
    }
    // Absent is fine (the claim is optional); a string is the subject.
    assert_eq!(check(&v, &token(&key, &without_claim("sub"))).await, Ok(()));
}

// === cache ===

fn stats(v: &Validator) -> (u64, u64, u64) {
    let CacheStats {
        hits,
        misses,
        entries,
        ..
    } = v.cache_stats();
    (hits, misses, entries)
}

#[tokio::test]
async fn cache_hits_recheck_time_claims() {
    let (v, key, clock) = es256_fixture();
    let t = token(&key, &with_claim("exp", json!(NOW + 10)));
    assert_eq!(check(&v, &t).await, Ok(()));
    assert_eq!(stats(&v), (0, 1, 1));
    assert_eq!(check(&v, &t).await, Ok(()));
    assert_eq!(stats(&v), (1, 1, 1));
    // Past exp + leeway, the cached entry refuses the token and is dropped.
    clock.advance_secs(70);
    assert_eq!(check(&v, &t).await, invalid(Reason::Expired));
    assert_eq!(stats(&v), (2, 1, 0));
    assert_eq!(check(&v, &t).await, invalid(Reason::Expired));
    assert_eq!(stats(&v), (2, 2, 0));
}

#[tokio::test]
async fn invalid_tokens_are_never_cached() {
    let (v, key, clock) = es256_fixture();
    let good = token(&key, &with_claim("exp", json!(NOW + 7200)));
    // A forged signature on the good token's header and payload.
    let forged = {
        let dot = good.rfind('.').unwrap();
        format!("{}.{}", &good[..dot], b64([7u8; 64]))
    };
    let refused = [
        (forged, Reason::BadSignature),
        (
            token(&key, &with_claim("aud", json!("billing"))),
            Reason::BadAudience,
        ),
        (
            token(&key, &with_claim("exp", json!(NOW - 3600))),
            Reason::Expired,
        ),
        (
            token(
                &key,
                &json!({"iss": ISS, "aud": AUD, "nbf": NOW + 3600, "exp": NOW + 7200}),
            ),
            Reason::NotYetValid,
        ),
    ];
    for (t, reason) in &refused {
        for _ in 0..2 {
            assert_eq!(check(&v, t).await, invalid(*reason));
        }
    }
    assert_eq!(stats(&v), (0, 8, 0));
    // The token that is not yet valid stays uncached, so it is accepted once its time comes.
    clock.advance_secs(3600);
    assert_eq!(check(&v, &refused[3].0).await, Ok(()));
    assert_eq!(stats(&v).2, 1);
    // A cached token does not vouch for a token that differs only in its signature.
    assert_eq!(check(&v, &good).await, Ok(()));
    assert_eq!(
        check(&v, &refused[0].0).await,
        invalid(Reason::BadSignature)
    );
}

#[tokio::test]
async fn a_disabled_cache_holds_nothing() {
    let key = TestKey::es256("k1");
    let clock = clock();
    let options = ValidatorOptions {
        cache: trustgate_core::CacheOptions {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let v = validator_with(vec![issuer(ISS, &[&key])], options, &clock);
    let t = token(&key, &claims());
    assert_eq!(check(&v, &t).await, Ok(()));
    assert_eq!(check(&v, &t).await, Ok(()));
    assert_eq!(stats(&v), (0, 0, 0));
}

/// `max_entries` is a bound, as documented ("most cached tokens"), not a sizing hint: with a
/// byte budget that would hold many more, the cache still keeps at most `max_entries` tokens.
#[tokio::test]
async fn the_cache_holds_at_most_max_entries_tokens() {
    let key = TestKey::es256("k1");
    let clock = clock();
    let options = ValidatorOptions {
        cache: trustgate_core::CacheOptions {
            enabled: true,
            max_entries: 8,
            max_bytes: 32 * 1024 * 1024,
        },
        ..Default::default()
    };
    let v = validator_with(vec![issuer(ISS, &[&key])], options, &clock);
    for i in 0..200 {
        let t = token(&key, &with_claim("sub", json!(format!("user-{i}"))));
        assert_eq!(check(&v, &t).await, Ok(()));
    }
    let entries = stats(&v).2;
    assert!(
        (1..=8).contains(&entries),
        "{entries} entries cached with max_entries = 8"
    );
}

/// The validation future is part of every gateway request future, and a cache hit should not
/// carry (and copy) the space the uncached path needs for a decoded signature kept inline.
#[test]
fn the_validation_future_is_small() {
    let (validator, key, _clock) = es256_fixture();
    let token = crate::common::token(&key, &crate::common::claims());
    let future = validator.validate(&token);
    let size = std::mem::size_of_val(&future);
    assert!(size < 512, "validate() future is {size} bytes");
}
