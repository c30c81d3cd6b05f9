//! Writes a JWKS and signed tokens for load tests, so benchmarks need no identity provider.
//!
//! `forge-tokens --alg RS256 --count 2000 --iss https://idp.bench --aud bench-api --out DIR`
//! writes `DIR/jwks.json`, `DIR/public.pem` and `DIR/tokens.txt` (one token per line, distinct
//! `sub`), valid for 24 hours.
//!
//! With `--cases`, it also writes `DIR/cases/NAME.jwt`, one token per file, for functional checks
//! of a gateway: `valid` and `valid-aud-array` must be accepted; `expired`, `not-yet-valid`,
//! `no-exp`, `wrong-iss`, `wrong-aud`, `bad-signature` (signed by another key with the same
//! `kid`), `alg-none`, `alg-hs256` (HMAC keyed with the public PEM) and, for RSA keys,
//! `alg-ps256` (same key, other padding) must be refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use serde_json::{Value, json};
use test_support::{TestKey, b64, now_secs};

fn key_for(alg: &str) -> TestKey {
    match alg {
        "ES256" => TestKey::es256("bench-es256"),
        "EdDSA" => TestKey::ed25519("bench-eddsa"),
        "RS256" => TestKey::rsa("bench-rsa", "RS256"),
        "PS256" => TestKey::rsa("bench-rsa", "PS256"),
        other => panic!("unsupported --alg {other}"),
    }
}

fn claims(iss: &str, aud: &str, sub: &str, now: i64) -> Value {
    json!({
        "iss": iss, "aud": aud, "sub": sub, "iat": now, "nbf": now,
        "exp": now + 24 * 3600, "roles": ["reader"], "tenant_id": "bench",
    })
}

/// A token whose header says `alg` while being signed by `key` with that algorithm.
fn sign_as(key: &TestKey, alg: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "kid": key.kid, "typ": "JWT"});
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = key.sign_raw(alg, input.as_bytes());
    format!("{input}.{}", b64(sig))
}

fn write_cases(dir: &Path, alg: &str, key: &TestKey, iss: &str, aud: &str, now: i64) {
    let dir = dir.join("cases");
    std::fs::create_dir_all(&dir).unwrap();
    let base = claims(iss, aud, "case-user", now);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        edit(&mut c);
        c
    };
    let mut cases: Vec<(&str, String)> = vec![
        ("valid", key.sign(&base)),
        (
            "valid-aud-array",
            key.sign(&with(&|c| c["aud"] = json!(["other-api", aud]))),
        ),
        (
            "expired",
            key.sign(&with(&|c| {
                c["iat"] = json!(now - 7200);
                c["nbf"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            })),
        ),
        (
            "not-yet-valid",
            key.sign(&with(&|c| c["nbf"] = json!(now + 3600))),
        ),
        (
            "no-exp",
            key.sign(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
        ),
        (
            "wrong-iss",
            key.sign(&with(&|c| c["iss"] = json!("https://evil.example"))),
        ),
        (
            "wrong-aud",
            key.sign(&with(&|c| c["aud"] = json!("other-api"))),
        ),
    ];
    let mut other = key_for(alg);
    other.kid.clone_from(&key.kid);
    cases.push(("bad-signature", other.sign(&base)));
    let none_header = json!({"alg": "none", "kid": key.kid, "typ": "JWT"});
    cases.push((
        "alg-none",
        format!(
            "{}.{}.",
            b64(none_header.to_string()),
            b64(base.to_string())
        ),
    ));
    let hs_header = json!({"alg": "HS256", "kid": key.kid, "typ": "JWT"});
    let hs_input = format!("{}.{}", b64(hs_header.to_string()), b64(base.to_string()));
    let hs_key = hmac::Key::new(hmac::HMAC_SHA256, key.public_pem().as_bytes());
    let hs_sig = hmac::sign(&hs_key, hs_input.as_bytes());
    cases.push(("alg-hs256", format!("{hs_input}.{}", b64(hs_sig.as_ref()))));
    if alg == "RS256" {
        cases.push(("alg-ps256", sign_as(key, "PS256", &base)));
    }
    for (name, token) in cases {
        std::fs::write(dir.join(format!("{name}.jwt")), format!("{token}\n")).unwrap();
    }
}

fn main() {
    let mut alg = "RS256".to_owned();
    let mut count = 1usize;
    let mut iss = "https://idp.bench".to_owned();
    let mut aud = "bench-api".to_owned();
    let mut out = PathBuf::from(".");
    let mut cases = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--cases" {
            cases = true;
            continue;
        }
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
    let key = key_for(&alg);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("jwks.json"),
        json!({"keys":[key.jwk()]}).to_string(),
    )
    .unwrap();
    let now = now_secs();
    let mut tokens = String::new();
    for n in 0..count {
        tokens.push_str(&key.sign(&claims(&iss, &aud, &format!("user-{n}"), now)));
        tokens.push('\n');
    }
    std::fs::write(out.join("tokens.txt"), tokens).unwrap();
    std::fs::write(out.join("public.pem"), key.public_pem()).unwrap();
    if cases {
        write_cases(&out, &alg, &key, &iss, &aud, now);
    }
    println!("wrote {count} {alg} tokens to {}", out.display());
}
