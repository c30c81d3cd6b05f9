//! Stable replay of the fuzz bodies: every committed seed, every input libFuzzer kept in
//! `corpus/` (when a fuzz run left one), and a few thousand random and mutated inputs per target.
//! `FUZZ_REPLAY_CASES` sets the number of random cases per strategy (default 1500).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 5] = [
    ("token", trustgate_fuzz::token),
    ("jwks", trustgate_fuzz::jwks),
    ("headers", trustgate_fuzz::headers),
    ("decision", trustgate_fuzz::decision),
    ("framing", trustgate_fuzz::framing),
];

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    files(&dir("seeds", target))
        .into_iter()
        .map(|(_, b)| b)
        .collect()
}

fn cases() -> u32 {
    std::env::var("FUZZ_REPLAY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

/// Runs `body` on `input`, naming the input if it panics.
fn run(target: &str, label: &str, body: Body, input: &[u8]) {
    if std::panic::catch_unwind(|| body(input)).is_err() {
        panic!(
            "fuzz body {target} panicked on {label}: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn every_seed_and_corpus_input_replays_without_a_finding() {
    for (target, body) in TARGETS {
        let seeds = files(&dir("seeds", target));
        assert!(
            seeds.len() >= 3,
            "{target}: want a few seeds, have {}",
            seeds.len()
        );
        for (path, bytes) in seeds.iter().chain(&files(&dir("corpus", target))) {
            run(target, &path.display().to_string(), body, bytes);
        }
    }
}

/// The seeds reach the deep paths: the valid ones are accepted, so the fuzzer starts from inputs
/// that get past the signature check.
#[test]
fn valid_seeds_are_accepted_and_mutants_are_not() {
    for name in ["valid-eddsa.txt", "valid-es256.txt", "signed-claims.txt"] {
        let bytes = std::fs::read(dir("seeds", "token").join(name)).unwrap();
        assert!(trustgate_fuzz::token_accepted(&bytes), "{name} is refused");
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        assert!(
            !trustgate_fuzz::token_accepted(&flipped),
            "{name} with a flipped bit"
        );
    }
    for name in ["alg-none.txt", "expired-signed.txt"] {
        let bytes = std::fs::read(dir("seeds", "token").join(name)).unwrap();
        assert!(
            !trustgate_fuzz::token_accepted(&bytes),
            "{name} is accepted"
        );
    }
}

/// The framing seeds do what their names say through hyper and the check: the known bypasses
/// (a bare LF in trailers, an unanswered Upgrade) never let their CL+TE request pass, and a
/// clean pipelined stream passes every request, so the differential body is not vacuous.
#[test]
fn framing_seeds_refuse_the_smuggled_request_and_pass_clean_streams() {
    for name in [
        "bare-lf-trailer.txt",
        "bare-lf-trailer-decoy.txt",
        "unanswered-upgrade.txt",
    ] {
        let stream = std::fs::read(dir("seeds", "framing").join(name)).unwrap();
        let (dispatched, _) = trustgate_fuzz::dispatch(&stream);
        assert!(
            dispatched.iter().any(|r| r.target == "/first"),
            "{name}: the first request was not dispatched: {dispatched:?}"
        );
        assert!(
            !dispatched.iter().any(|r| r.target == "/after" && r.passed),
            "{name}: the CL+TE request passed: {dispatched:?}"
        );
    }
    let stream = std::fs::read(dir("seeds", "framing").join("clean-pipeline.txt")).unwrap();
    let (dispatched, heads) = trustgate_fuzz::dispatch(&stream);
    assert_eq!(dispatched.len(), 3, "{dispatched:?}");
    assert!(dispatched.iter().all(|r| r.passed), "{dispatched:?}");
    assert_eq!(heads.len(), 3);
}

/// A mutation of a seed: flip, insert, delete or duplicate bytes, or splice two seeds.
fn mutate(seeds: &[Vec<u8>], pick: usize, ops: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut out = seeds[pick % seeds.len()].clone();
    for &(op, at, byte) in ops {
        let len = out.len();
        let at = if len == 0 { 0 } else { at % len };
        match op % 6 {
            0 if len > 0 => out[at] ^= 1 << (byte % 8),
            1 => out.insert(at, byte),
            2 if len > 0 => {
                out.remove(at);
            }
            3 if len > 0 => out[at] = byte,
            4 => {
                let other = &seeds[usize::from(byte) % seeds.len()];
                let cut = if other.is_empty() {
                    0
                } else {
                    at % other.len()
                };
                out.truncate(at);
                out.extend_from_slice(&other[cut..]);
            }
            _ => {
                let end = (at + usize::from(byte % 16)).min(len);
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
        }
    }
    out
}

#[test]
fn random_and_mutated_inputs_never_cause_a_finding() {
    for (target, body) in TARGETS {
        let seeds = seeds(target);
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..600), |input| {
                run(target, "random bytes", body, &input);
                Ok(())
            })
            .unwrap();
        let mutation = (
            any::<usize>(),
            proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
        );
        runner
            .run(&mutation, |(pick, ops)| {
                run(target, "a mutated seed", body, &mutate(&seeds, pick, &ops));
                Ok(())
            })
            .unwrap();
    }
}

/// Rewrites the token and key-set seeds that depend on the fixed keys:
/// `cargo test --no-default-features -- --ignored write_seeds`.
#[test]
#[ignore = "regenerates the committed seed files"]
fn write_seeds() {
    use trustgate_fuzz::{AUD, ISS, NOW, good_claims, key_set, sign_ed25519, sign_es256};
    let claims = good_claims();
    let ed = br#"{"alg":"EdDSA","kid":"ed","typ":"JWT"}"#;
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let expired =
        serde_json::json!({"iss": ISS, "aud": AUD, "sub": "bob", "exp": NOW - 3600}).to_string();
    let nested = serde_json::json!({"iss": ISS, "aud": [AUD, "other"], "sub": "carol",
        "exp": NOW + 60, "nbf": NOW as f64 - 1.5, "realm_access": {"roles": ["a"]}, "scp": ["x", "y"],
        "email": "caf\u{e9}@example.test"})
    .to_string();
    let token_seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "valid-eddsa.txt",
            sign_ed25519(ed, claims.as_bytes()).into_bytes(),
        ),
        (
            "valid-es256.txt",
            sign_es256(br#"{"alg":"ES256","kid":"ec"}"#, claims.as_bytes()).into_bytes(),
        ),
        (
            "signed-claims.txt",
            [&ed[..], b"\n", claims.as_bytes()].concat(),
        ),
        (
            "signed-nested.txt",
            [&ed[..], b"\n", nested.as_bytes()].concat(),
        ),
        (
            "signed-kidless.txt",
            [&br#"{"alg":"EdDSA"}"#[..], b"\n", claims.as_bytes()].concat(),
        ),
        (
            "expired-signed.txt",
            [&ed[..], b"\n", expired.as_bytes()].concat(),
        ),
        (
            "alg-none.txt",
            format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims.as_bytes())).into_bytes(),
        ),
        (
            "bearer-header.txt",
            format!("Bearer {}", sign_ed25519(ed, claims.as_bytes())).into_bytes(),
        ),
        (
            "crit-b64.txt",
            [
                &br#"{"alg":"EdDSA","kid":"ed","crit":["b64"],"b64":false}"#[..],
                b"\n",
                claims.as_bytes(),
            ]
            .concat(),
        ),
    ];
    for (name, bytes) in token_seeds {
        std::fs::write(dir("seeds", "token").join(name), bytes).unwrap();
    }
    std::fs::write(dir("seeds", "jwks").join("fixed-set.json"), key_set()).unwrap();
}
