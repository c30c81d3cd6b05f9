//! Writes a JWKS and signed tokens for load tests, so benchmarks need no identity provider.
//!
//! `forge-tokens --alg RS256 --count 2000 --iss https://idp.bench --aud bench-api --out DIR`
//! writes `DIR/jwks.json` and `DIR/tokens.txt` (one token per line, distinct `sub`), valid for
//! 24 hours.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use std::path::PathBuf;

use serde_json::json;
use test_support::{TestKey, now_secs};

fn main() {
    let mut alg = "RS256".to_owned();
    let mut count = 1usize;
    let mut iss = "https://idp.bench".to_owned();
    let mut aud = "bench-api".to_owned();
    let mut out = PathBuf::from(".");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--alg" => alg = value,
            "--count" => count = value.parse().expect("--count is a number"),
            "--iss" => iss = value,
            "--aud" => aud = value,
            "--out" => out = PathBuf::from(value),
            other => panic!("unknown flag {other}"),
        }
    }
    let key = match alg.as_str() {
        "ES256" => TestKey::es256("bench-es256"),
        "EdDSA" => TestKey::ed25519("bench-eddsa"),
        "RS256" | "PS256" => {
            TestKey::rsa("bench-rsa", if alg == "RS256" { "RS256" } else { "PS256" })
        }
        other => panic!("unsupported --alg {other}"),
    };
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("jwks.json"),
        json!({"keys":[key.jwk()]}).to_string(),
    )
    .unwrap();
    let now = now_secs();
    let mut tokens = String::new();
    for n in 0..count {
        let claims = json!({
            "iss": iss, "aud": aud, "sub": format!("user-{n}"), "iat": now, "nbf": now,
            "exp": now + 24 * 3600, "roles": ["reader"], "tenant_id": "bench",
        });
        tokens.push_str(&key.sign(&claims));
        tokens.push('\n');
    }
    std::fs::write(out.join("tokens.txt"), tokens).unwrap();
    std::fs::write(out.join("public.pem"), key.public_pem()).unwrap();
    println!("wrote {count} {alg} tokens to {}", out.display());
}
