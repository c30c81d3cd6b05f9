//! Helpers shared by the API tests: fixed time, token forging over raw bytes, static issuers.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use serde_json::{Value, json};
use test_support::{TestKey, b64};
use trustgate_core::{
    Algorithm, IssuerConfig, KeySource, ManualClock, Validator, ValidatorOptions,
};

/// The fixed "now" of every ManualClock test, in seconds.
pub const NOW: i64 = 1_700_000_000;
pub const ISS: &str = "https://idp.example";
pub const AUD: &str = "orders";

/// A clock stopped at [`NOW`].
pub fn clock() -> ManualClock {
    ManualClock::at_secs(NOW)
}

/// Claims that pass every default rule at [`NOW`].
pub fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": NOW, "nbf": NOW, "exp": NOW + 600})
}

/// The standard header for `key`.
pub fn header(key: &TestKey) -> Value {
    json!({"alg": key.alg, "kid": key.kid, "typ": "JWT"})
}

/// Signs raw header and payload bytes (which need not be JSON, or UTF-8) with `key`'s algorithm.
pub fn sign_bytes(key: &TestKey, header: &[u8], payload: &[u8]) -> String {
    sign_bytes_as(key, key.alg, header, payload)
}

/// Signs with an explicit algorithm (for RSA keys, which can sign any RS/PS variant).
pub fn sign_bytes_as(key: &TestKey, alg: &str, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = key.sign_raw(alg, input.as_bytes());
    format!("{input}.{}", b64(sig))
}

/// Signs JSON values.
pub fn sign(key: &TestKey, header: &Value, claims: &Value) -> String {
    sign_bytes(
        key,
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
    )
}

/// A standard token for `claims`.
pub fn token(key: &TestKey, claims: &Value) -> String {
    sign(key, &header(key), claims)
}

/// A JWK Set of the keys' public JWKs (with `alg`).
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// A static issuer whose allow-list is exactly the keys' algorithms.
pub fn issuer(iss: &str, keys: &[&TestKey]) -> IssuerConfig {
    let mut config = IssuerConfig::new(iss, [AUD], KeySource::Jwks(jwks(keys)));
    config.algorithms = Vec::new();
    for key in keys {
        let alg = Algorithm::from_name(key.alg).unwrap();
        if !config.algorithms.contains(&alg) {
            config.algorithms.push(alg);
        }
    }
    config
}

/// A validator on `clock` with default options.
pub fn validator(issuers: Vec<IssuerConfig>, clock: &ManualClock) -> Validator {
    validator_with(issuers, ValidatorOptions::default(), clock)
}

pub fn validator_with(
    issuers: Vec<IssuerConfig>,
    options: ValidatorOptions,
    clock: &ManualClock,
) -> Validator {
    Validator::new(issuers, options, Arc::new(clock.clone())).unwrap()
}
