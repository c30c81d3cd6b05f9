//! Wycheproof conformance (C2SP/wycheproof, `testvectors_v1`, copied to
//! `../shared/testvectors/wycheproof`).
//!
//! Every `invalid` vector must be rejected, and every `valid` one accepted unless it uses an
//! algorithm trustgate deliberately does not support or breaks a rule trustgate enforces on
//! purpose. Those deviations are listed one by one below with the outcome we assert and why; the
//! test fails if any other vector changes outcome, and the accepted/rejected totals of every file
//! are asserted exactly.
//!
//! - JWS and JWK files go through the public API: a [`Validator`] built from the group's key (or
//!   key set) with every supported algorithm allowed, and [`danger::verify_signature_only`],
//!   because their payloads are not claim sets.
//! - The primitive files (ECDSA P1363, RSA PKCS#1 v1.5, RSA-PSS, Ed25519) sign arbitrary bytes,
//!   which no JWS signing input can reproduce, so they go through the key layer:
//!   [`VerifyingKey::from_spki_der`] and [`danger::verify_for_conformance`], which is the exact
//!   call token verification makes.
//!
//! The vectors are required: a missing file fails the test, it is never skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use base64_simd::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use trustgate_core::{
    Algorithm, ConfigError, IssuerConfig, JwksError, KeyRejection, KeySource, StaticKeyError,
    SystemClock, Validator, ValidatorOptions, VerifyingKey, danger,
};

// === loading ===

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/testvectors/wycheproof"
    ))
}

/// Loads a vector file and checks that it holds as many tests as it declares.
fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "Wycheproof vectors are required and never skipped, but {} cannot be read: {err}",
            path.display()
        )
    });
    let doc: Value = serde_json::from_str(&text).unwrap();
    let declared = doc["numberOfTests"].as_u64().unwrap();
    let found: u64 = groups(&doc).map(|g| tests(g).len() as u64).sum();
    assert_eq!(
        found, declared,
        "{name}: test count differs from numberOfTests"
    );
    doc
}

fn groups(doc: &Value) -> impl Iterator<Item = &Value> {
    doc["testGroups"].as_array().unwrap().iter()
}

fn tests(group: &Value) -> &Vec<Value> {
    group["tests"].as_array().unwrap()
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

// === outcomes ===

/// What trustgate did with one vector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Accepted,
    /// The group's key set yields no usable key, so no validator can be built from it at all.
    KeySetRefused,
    /// Refused with this [`trustgate_core::Reason`] label.
    Rejected(&'static str),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::KeySetRefused => "key_set_refused",
            Outcome::Rejected(reason) => reason,
        }
    }
}

/// The outcomes of one file, by tcId, with the expected result.
struct Results {
    by_id: BTreeMap<u64, (String, Outcome)>,
}

impl Results {
    fn new() -> Self {
        Self {
            by_id: BTreeMap::new(),
        }
    }

    fn record(&mut self, test: &Value, outcome: Outcome) {
        let id = test["tcId"].as_u64().unwrap();
        let result = test["result"].as_str().unwrap().to_owned();
        assert!(
            self.by_id.insert(id, (result, outcome)).is_none(),
            "tcId {id} twice"
        );
    }

    /// Asserts the Wycheproof contract with the listed deviations, and the exact totals.
    ///
    /// `deviations` are the `valid` (or `acceptable`) vectors that are not accepted, each with
    /// the outcome label asserted for it. Every other `valid` vector must be accepted, and every
    /// `invalid` one must not be.
    fn check(&self, file: &str, deviations: &[(u64, &str)], accepted: usize, rejected: usize) {
        let deviations: BTreeMap<u64, &str> = deviations.iter().copied().collect();
        for (id, (result, outcome)) in &self.by_id {
            match (result.as_str(), deviations.get(id)) {
                ("invalid", None) => assert_ne!(
                    *outcome,
                    Outcome::Accepted,
                    "{file} tcId {id}: invalid vector accepted"
                ),
                ("invalid", Some(_)) => {
                    panic!("{file} tcId {id}: deviations list only valid vectors")
                }
                (_, None) => assert_eq!(
                    *outcome,
                    Outcome::Accepted,
                    "{file} tcId {id}: {result} vector not accepted"
                ),
                (_, Some(expected)) => assert_eq!(
                    outcome.label(),
                    *expected,
                    "{file} tcId {id}: documented deviation changed outcome"
                ),
            }
        }
        for id in deviations.keys() {
            assert!(self.by_id.contains_key(id), "{file}: no tcId {id}");
        }
        let accepted_now = self
            .by_id
            .values()
            .filter(|(_, o)| *o == Outcome::Accepted)
            .count();
        assert_eq!(
            (accepted_now, self.by_id.len() - accepted_now),
            (accepted, rejected),
            "{file}: (accepted, rejected) totals"
        );
    }

    fn outcome(&self, id: u64) -> &Outcome {
        &self.by_id[&id].1
    }
}

// === JWS and JWK files ===

/// A validator for one group's key or key set, allowing every supported algorithm.
fn validator_for(key: &Value) -> Result<Validator, ConfigError> {
    let jwks = if key.get("keys").is_some() {
        key.clone()
    } else {
        json!({ "keys": [key] })
    };
    let mut issuer = IssuerConfig::new(
        "wycheproof",
        ["wycheproof"],
        KeySource::Jwks(jwks.to_string()),
    );
    issuer.algorithms = Algorithm::ALL.to_vec();
    Validator::new(
        vec![issuer],
        ValidatorOptions::default(),
        Arc::new(SystemClock),
    )
}

/// A compact token as text; JSON-serialized vectors are given as objects and sent as their text.
fn token_text(test: &Value) -> String {
    match &test["jws"] {
        Value::String(token) => token.clone(),
        other => other.to_string(),
    }
}

fn verify(validator: &Validator, token: &str) -> Outcome {
    match danger::verify_signature_only(validator, token) {
        Ok(_) => Outcome::Accepted,
        Err(reason) => Outcome::Rejected(reason.as_str()),
    }
}

/// A usable validator to run tokens through when a group's own key set is refused, so that its
/// vectors are still shown to be rejected by the JWS layer, not only by the missing keys. It holds
/// a fresh P-256 key under the kid most vectors name (`kid-ec-sign`), so a token reaches the
/// signature check whenever its encoding and header allow.
fn fallback_validator() -> Validator {
    validator_for(&test_support::TestKey::es256("kid-ec-sign").jwk()).unwrap()
}

/// Runs a JWS or JWK file. Returns the outcomes and, for groups whose key set was refused, what
/// the fallback validator said about each token.
fn run_jose_file(name: &str) -> (Results, BTreeMap<u64, Outcome>) {
    let doc = load(name);
    let fallback = fallback_validator();
    let mut results = Results::new();
    let mut fallback_outcomes = BTreeMap::new();
    for group in groups(&doc) {
        // `public` when the group has one; otherwise `private`, whose private members core
        // ignores (those groups only hold symmetric keys, which core refuses anyway).
        let key = group
            .get("public")
            .filter(|k| !k.is_null())
            .or_else(|| group.get("private"))
            .unwrap();
        match validator_for(key) {
            Ok(validator) => {
                for test in tests(group) {
                    results.record(test, verify(&validator, &token_text(test)));
                }
            }
            Err(ConfigError::StaticKeys {
                source: StaticKeyError::Jwks(JwksError::NoUsableKeys),
                ..
            }) => {
                for test in tests(group) {
                    let token = token_text(test);
                    let by_fallback = verify(&fallback, &token);
                    assert_ne!(by_fallback, Outcome::Accepted, "{name}: {token}");
                    fallback_outcomes.insert(test["tcId"].as_u64().unwrap(), by_fallback);
                    results.record(test, Outcome::KeySetRefused);
                }
            }
            Err(other) => panic!("{name}: unexpected configuration error {other}"),
        }
    }
    (results, fallback_outcomes)
}

#[test]
fn json_web_signature_vectors() {
    let (results, fallback) = run_jose_file("json_web_signature_test.json");
    results.check(
        "json_web_signature_test.json",
        &[
            // HS256 (groups `hs256`, `rfc7520` Figure 35 and `base64`): HMAC is unsupported by
            // design (a published key must never become a shared secret), so these key sets are
            // refused and the vectors are not for a supported algorithm.
            (1, "key_set_refused"),
            (348, "key_set_refused"),
            (352, "key_set_refused"),
            (357, "key_set_refused"),
            (358, "key_set_refused"),
            (359, "key_set_refused"),
            (376, "key_set_refused"),
            (377, "key_set_refused"),
            // Also HS256. Wycheproof marks these valid although a '?' sits inside a base64url
            // segment (a lenient decoder skips it). Against a usable key (the fallback run below)
            // 372, with the '?' in the header, is refused as malformed; 373 has it in the
            // payload, which is decoded only after its algorithm has been refused.
            (372, "key_set_refused"),
            (373, "key_set_refused"),
            // RFC 7520 Figure 27: ES512 on P-521 (key alg "ES521"), an unsupported algorithm.
            (347, "key_set_refused"),
            (351, "key_set_refused"),
            // RFC 7520 Figure 20: the key is declared `"alg": "PS256"` but the token is PS384.
            // The key decides the algorithm, so no key matches; refused by design.
            (346, "no_matching_key"),
            (350, "no_matching_key"),
        ],
        32,
        369,
    );
    // The `base64` group is HS256, so its key set is refused. Run against a usable key, the
    // vectors that corrupt the header segment are refused for their encoding, and the others for
    // their algorithm, which is checked before the payload and signature are decoded. (Strict
    // base64url with supported algorithms is covered in tests/api/validate.rs.)
    for id in 357..=377 {
        let want = if [365, 366, 372].contains(&id) {
            "malformed"
        } else {
            "unsupported_alg"
        };
        assert_eq!(fallback[&id], Outcome::Rejected(want), "tcId {id}");
    }
    // Selected vectors, each refused for the reason that matters.
    let expect = [
        (19, "bad_signature"),
        (20, "malformed"),        // empty signature
        (21, "malformed"),        // two segments
        (25, "unknown_kid"),      // kid altered
        (31, "unsupported_alg"),  // HS256 keyed with the EC public key
        (32, "bad_signature"),    // attacker's embedded jwk is never used
        (341, "malformed"),       // alg none: the empty signature is refused first
        (342, "malformed"),       // alg NONE likewise
        (331, "bad_signature"),   // RS256 signature, PS512 header
        (332, "no_matching_key"), // RS256 header on a PS512 key
        (353, "key_set_refused"), // use: enc, the only key, is not a signing key
        (354, "key_set_refused"),
        (355, "key_set_refused"), // key_ops: [encrypt] likewise
        (356, "key_set_refused"),
        (386, "bad_signature"), // r = s = 0 (CVE-2022-21449)
        (379, "bad_signature"), // signature too long
    ];
    for (id, label) in expect {
        assert_eq!(results.outcome(id).label(), label, "tcId {id}");
    }
    // From the refused `hs256` group, against a usable key: extra segments, alg none without a
    // signature, and the JSON serialization.
    for (id, label) in [
        (14, "malformed"),
        (15, "malformed"),
        (16, "malformed"),
        (17, "unsupported_serialization"),
    ] {
        assert_eq!(fallback[&id], Outcome::Rejected(label), "tcId {id}");
    }
}

#[test]
fn json_web_key_vectors() {
    let (results, fallback) = run_jose_file("json_web_key_test.json");
    results.check(
        "json_web_key_test.json",
        &[
            // HS256/HS384/HS512 key sets: symmetric keys are never accepted from a key set.
            (2, "key_set_refused"),
            (13, "key_set_refused"),
            (14, "key_set_refused"),
            (15, "key_set_refused"),
        ],
        1,
        25,
    );
    for (id, label) in [
        (1, "unsupported_alg"), // mixed set: the oct key is dropped, the HS256 token refused
        (5, "accepted"),        // RS256
        (6, "key_set_refused"), // the same key with use: enc is not a signing key
        (7, "key_set_refused"), // ROCA key, see rsa_jwk_rejections below
        (8, "key_set_refused"), // 1024-bit RSA
        (9, "key_set_refused"), // e = 1
        (19, "key_set_refused"), // alg ES521 on a P-256 key
        (20, "key_set_refused"), // alg ES224
        (21, "key_set_refused"), // use: enc
        (22, "key_set_refused"), // point not on the curve
        (23, "key_set_refused"), // P-384 curve name with P-256 coordinates
        (24, "key_set_refused"), // kty RSA with EC members
    ] {
        assert_eq!(results.outcome(id).label(), label, "tcId {id}");
    }
    assert_eq!(fallback[&25], Outcome::Rejected("unsupported_alg"));
}

/// The RSA keys of json_web_key_test.json, refused for the exact reason, through the key layer
/// (the same checks apply to a JWK and to a PEM/SPKI key).
#[test]
fn rsa_jwk_rejections() {
    let doc = load("json_web_key_test.json");
    let mut seen = BTreeMap::new();
    for group in groups(&doc) {
        let Some(keys) = group.get("public").and_then(|k| k["keys"].as_array()) else {
            continue;
        };
        for jwk in keys
            .iter()
            .filter(|k| k["kty"] == "RSA" && k.get("n").is_some())
        {
            let decode = |name: &str| {
                URL_SAFE_NO_PAD
                    .decode_to_vec(jwk[name].as_str().unwrap())
                    .unwrap()
            };
            let components = aws_lc_rs::rsa::PublicKeyComponents {
                n: decode("n"),
                e: decode("e"),
            };
            let der = components.as_der().unwrap();
            let outcome = VerifyingKey::from_spki_der(der.as_ref(), Algorithm::RS256, None).err();
            seen.insert(jwk["kid"].as_str().unwrap().to_owned(), outcome);
        }
    }
    // ROCA (CVE-2017-15361): the modulus has the Infineon RSALib fingerprint; refused at load.
    assert_eq!(seen["kid-rsa-roca-sign"], Some(KeyRejection::RsaRoca));
    assert_eq!(seen["RS256_1024"], Some(KeyRejection::RsaTooSmall(1024)));
    // e = 1 makes every "signature" its own message.
    assert_eq!(seen["RS256_2048"], Some(KeyRejection::Invalid));
    assert_eq!(seen["kid-rsa-sign"], None);
}

// === primitive files ===

/// Runs a primitive signature file through the key layer.
fn run_primitive_file(name: &str, alg: Algorithm) -> Results {
    let doc = load(name);
    let mut results = Results::new();
    for group in groups(&doc) {
        let der = hex(group["publicKeyDer"].as_str().unwrap());
        let key = VerifyingKey::from_spki_der(&der, alg, None)
            .unwrap_or_else(|err| panic!("{name}: group key refused: {err}"));
        // The same key as a JWK (with the algorithm it verifies) loads into a validator too.
        if let Some(jwk) = group.get("publicKeyJwk").or_else(|| group.get("keyJwk")) {
            let mut jwk = jwk.clone();
            jwk["alg"] = json!(alg.name());
            let validator = validator_for(&jwk)
                .unwrap_or_else(|err| panic!("{name}: group JWK refused: {err}"));
            assert_eq!(validator.issuer_status()[0].keys, 1);
        }
        for test in tests(group) {
            let msg = hex(test["msg"].as_str().unwrap());
            let sig = hex(test["sig"].as_str().unwrap());
            let outcome = if danger::verify_for_conformance(&key, &msg, &sig) {
                Outcome::Accepted
            } else {
                Outcome::Rejected("bad_signature")
            };
            results.record(test, outcome);
        }
    }
    results
}

#[test]
fn ecdsa_p256_p1363_vectors() {
    run_primitive_file("ecdsa_secp256r1_sha256_p1363_test.json", Algorithm::ES256).check(
        "ecdsa_secp256r1_sha256_p1363_test.json",
        &[],
        173,
        89,
    );
}

#[test]
fn ecdsa_p384_p1363_vectors() {
    run_primitive_file("ecdsa_secp384r1_sha384_p1363_test.json", Algorithm::ES384).check(
        "ecdsa_secp384r1_sha384_p1363_test.json",
        &[],
        193,
        87,
    );
}

#[test]
fn ed25519_vectors() {
    run_primitive_file("ed25519_test.json", Algorithm::EdDSA).check(
        "ed25519_test.json",
        &[],
        88,
        63,
    );
}

#[test]
fn rsa_pss_2048_sha256_vectors() {
    run_primitive_file("rsa_pss_2048_sha256_mgf1_32_test.json", Algorithm::PS256).check(
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        &[],
        63,
        45,
    );
}

#[test]
fn rsa_pkcs1_2048_sha256_vectors() {
    run_primitive_file("rsa_signature_2048_sha256_test.json", Algorithm::RS256).check(
        "rsa_signature_2048_sha256_test.json",
        &[
            // tcId 8 is "acceptable": a DigestInfo without the NULL parameters. RFC 8017 §9.2
            // defines one encoding, and verification compares the whole encoded block with it,
            // so the legacy form is refused. Refusing is the stricter of the two permitted
            // answers and costs nothing: no JOSE signer omits the NULL.
            (8, "bad_signature"),
        ],
        9,
        250,
    );
}
