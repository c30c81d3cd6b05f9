//! The verified-token cache's byte bound holds for what a cached token really keeps.
//!
//! The cache charges each entry an estimate of its bytes, and `max_bytes` bounds the sum of the
//! estimates; so an estimate below what an entry holds lets the cache grow past `max_bytes`. A
//! token's claims are small in the payload and large once built into `serde_json` values
//! (`[0,0,0]`: two bytes per value in the payload, 32 in the map), so a payload-proportional
//! estimate falls short for claim-dense tokens. Each shape of claims here must be charged at
//! least a lower bound of what its claims map holds, read from the map itself.

use std::mem::size_of;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use test_support::TestKey;
use trustgate_core::{CacheOptions, ValidatorOptions};

use crate::common::{claims, clock, issuer, token, validator_with};

/// Heap bytes `value` owns, not counting its own slot: capacities, so a lower bound (the
/// allocator's headers and the B-tree's spare slots come on top).
fn owned_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => text.capacity(),
        Value::Array(items) => {
            items.capacity() * size_of::<Value>() + items.iter().map(owned_bytes).sum::<usize>()
        }
        Value::Object(members) => map_bytes(members),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

fn map_bytes(members: &Map<String, Value>) -> usize {
    members
        .iter()
        .map(|(name, value)| {
            size_of::<String>() + size_of::<Value>() + name.capacity() + owned_bytes(value)
        })
        .sum()
}

fn with(name: &str, value: Value) -> Value {
    let mut c = claims();
    c[name] = value;
    c
}

#[tokio::test]
async fn every_shape_of_claims_is_charged_at_least_what_its_claims_map_holds() {
    let key = TestKey::es256("k1");
    let clock = clock();
    let options = ValidatorOptions {
        // Each entry is charged at least max_bytes / max_entries = 1 KiB, below every shape's
        // estimate, and each shape fits in one of the cache's shards.
        cache: CacheOptions {
            enabled: true,
            max_entries: 1 << 16,
            max_bytes: 1 << 26,
        },
        ..ValidatorOptions::default()
    };
    let validator = validator_with(vec![issuer(crate::common::ISS, &[&key])], options, &clock);

    let mut members = Map::new();
    for i in 0..400 {
        members.insert(format!("c{i}"), json!(i));
    }
    let shapes: Vec<(&str, Value)> = vec![
        ("a usual access token", {
            let mut c = with("roles", json!(["reader", "writer"]));
            c["scope"] = json!("orders:read orders:write");
            c["client_id"] = json!("web-frontend");
            c["jti"] = json!("3c7a1e0e-9b1a-4e55-a4a5-93a8a8f1d0c2");
            c
        }),
        ("2,500 zeros in an array", with("n", json!(vec![0; 2_500]))),
        (
            "1,200 one-letter strings",
            with("s", json!(vec!["a"; 1_200])),
        ),
        (
            "1,500 empty arrays",
            with("e", Value::Array(vec![json!([]); 1_500])),
        ),
        (
            "1,000 empty objects",
            with("o", Value::Array(vec![json!({}); 1_000])),
        ),
        ("400 members", with("m", Value::Object(members))),
        ("a long string", with("t", json!("x".repeat(5_000)))),
    ];
    for (shape, claims) in shapes {
        let token = token(&key, &claims);
        assert!(token.len() <= 8 * 1024, "{shape}: {} bytes", token.len());
        let charged_before = validator.cache_stats().bytes;
        let verified = validator.validate(&token).await.unwrap();
        let charged = validator.cache_stats().bytes - charged_before;
        // Built on first use, and then kept with the cached token, as are the token itself and
        // its decoded payload (at least three quarters of the token's length).
        let holds = token.len() + token.len() * 3 / 4 + map_bytes(verified.claims());
        let holds = u64::try_from(holds).unwrap();
        assert!(
            holds <= charged,
            "{shape}: the cached token holds at least {holds} bytes and is charged {charged}"
        );
        // Not so far above it that the cache holds far fewer tokens than it could.
        assert!(
            charged <= 4 * holds,
            "{shape}: the cached token holds at least {holds} bytes and is charged {charged}"
        );
        drop(Arc::new(verified));
    }
}
