//! Property tests: no input makes the validator panic, and no change to a valid token keeps it
//! valid. Case counts are modest (512 per property) so the suite runs in seconds.

use std::future::Future;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use test_support::{TestKey, b64};
use trustgate_core::{Algorithm, AuthError, ManualClock, Validator, danger};

use crate::common::{ISS, NOW, claims, header, sign_bytes};

struct Fixture {
    key: TestKey,
    validator: Validator,
    _clock: ManualClock,
}

/// One validator for every case: its cache and key sets see all the inputs in turn.
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = TestKey::es256("k1");
    let clock = crate::common::clock();
    let mut config = crate::common::issuer(ISS, &[&key]);
    config.algorithms = Algorithm::ALL.to_vec();
    let validator = crate::common::validator(vec![config], &clock);
    Fixture {
        key,
        validator,
        _clock: clock,
    }
});

/// Runs `validate` to completion. With a static key source it never waits on anything, so a
/// single poll must finish it; anything else is a bug this test wants to see.
fn validate(token: &str) -> Result<Value, AuthError> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = pin!(FIXTURE.validator.validate(token));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(result) => result.map(|v| Value::Object(v.claims().clone())),
        Poll::Pending => panic!("validate waited with static keys"),
    }
}

/// Both entry points, on the same input.
fn exercise(token: &str) -> Result<Value, AuthError> {
    let _ = danger::verify_signature_only(&FIXTURE.validator, token);
    validate(token)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Segments: base64url of arbitrary bytes, or short arbitrary text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(b64),
        "[A-Za-z0-9_=+/ .-]{0,40}",
        Just(String::new()),
    ]
}

/// JSON values of the kinds that appear in tokens, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        (NOW - 1000..NOW + 1000).prop_map(|n| json!(n)),
        (-1e3f64..1e3).prop_map(move |f| json!(NOW as f64 + f)),
        ".{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("orders"),
            Just("https://idp.example"),
            Just("ES256"),
            Just("none"),
            Just("b64"),
            Just("at+jwt"),
            Just("a,b"),
            Just("x\r\ny"),
            Just("%41"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(member_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Member names, mostly the ones the validator reads.
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![
            Just("iss"), Just("aud"), Just("sub"), Just("exp"), Just("nbf"), Just("iat"),
            Just("roles"), Just("scope"), Just("scp"), Just("tenant_id"), Just("client_id"),
            Just("azp"), Just("alg"), Just("kid"), Just("typ"), Just("crit"), Just("b64"),
            Just("enc"), Just("jku"), Just("jwk"), Just("x5u"), Just("x5c"),
        ]
        .prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ]
}

fn object(members: Vec<(String, Value)>, base: Value) -> Value {
    let mut map: Map<String, Value> = match base {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (name, value) in members {
        map.insert(name, value);
    }
    Value::Object(map)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        prop_assert!(exercise(&text).is_err());
    }

    #[test]
    fn arbitrary_bytes_as_text_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(exercise(&text).is_err());
    }

    #[test]
    fn arbitrary_base64url_segments_never_panic(
        segments in proptest::collection::vec(segment(), 1..7),
    ) {
        let token = segments.join(".");
        prop_assert!(exercise(&token).is_err());
    }

    #[test]
    fn arbitrary_json_segments_never_panic(
        header_value in json_value(),
        payload_value in json_value(),
        signature in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let token = format!(
            "{}.{}.{}",
            b64(header_value.to_string()),
            b64(payload_value.to_string()),
            b64(signature)
        );
        prop_assert!(exercise(&token).is_err());
    }

    /// Correctly signed tokens with arbitrary extra header members and claims reach the claim
    /// checks and the identity mapping. Whatever the outcome, a token accepted was issued by the
    /// configured issuer and is not expired.
    #[test]
    fn signed_arbitrary_claims_never_panic(
        header_members in proptest::collection::vec((member_name(), json_value()), 0..4),
        claim_members in proptest::collection::vec((member_name(), json_value()), 0..8),
    ) {
        let fixture = &*FIXTURE;
        let h = object(header_members, header(&fixture.key));
        let c = object(claim_members, claims());
        let token = sign_bytes(&fixture.key, h.to_string().as_bytes(), c.to_string().as_bytes());
        if let Ok(verified) = exercise(&token) {
            prop_assert_eq!(&verified["iss"], &json!(ISS));
            let exp = verified["exp"].as_f64().unwrap();
            prop_assert!(exp + 60.0 > NOW as f64);
        }
    }

    /// Any single change to a valid token's text makes it invalid.
    #[test]
    fn every_mutation_of_a_valid_token_is_refused(
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
        kind in 0..3u8,
    ) {
        let fixture = &*FIXTURE;
        let token = sign_bytes(
            &fixture.key,
            header(&fixture.key).to_string().as_bytes(),
            claims().to_string().as_bytes(),
        );
        prop_assert!(validate(&token).is_ok());
        let mut chars: Vec<char> = token.chars().collect();
        let at = position.index(chars.len());
        match kind {
            0 => chars[at] = replacement,
            1 => chars.insert(at, replacement),
            _ => {
                chars.remove(at);
            }
        }
        let mutated: String = chars.into_iter().collect();
        prop_assume!(mutated != token);
        prop_assert!(exercise(&mutated).is_err(), "{}", mutated);
    }
}
