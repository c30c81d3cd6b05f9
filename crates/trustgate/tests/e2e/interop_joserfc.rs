//! End-to-end interoperability: tokens minted by joserfc (an independent Python JOSE
//! implementation, `tests/interop/joserfc_mint.py`) for RS256, PS256, ES256 and EdDSA are
//! accepted by the real binary from a `jwks_file`, and a tampered copy of each is refused.
//!
//! Needs `python3` with the `joserfc` package (`scripts/install-test-deps.sh` installs it). A
//! missing interpreter or package fails the test; it is never skipped.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::common::{Config, Gateway, Issuer, Pattern, Route, TempDir, Upstream, bearer, echo};

const ISS: &str = "https://joserfc.interop.test";
const AUD: &str = "interop-api";
const ALGS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the minting script into `dir`; panics with its stderr if python3 or joserfc is missing.
fn mint(dir: &TempDir) {
    let output = Command::new("python3")
        .arg("tests/interop/joserfc_mint.py")
        .arg(&dir.0)
        .current_dir(repo_root())
        .env("TRUSTGATE_INTEROP_ISS", ISS)
        .env("TRUSTGATE_INTEROP_AUD", AUD)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run python3 ({err}); run scripts/install-test-deps.sh")
        });
    assert!(
        output.status.success(),
        "joserfc_mint.py failed ({}); is joserfc installed? run scripts/install-test-deps.sh\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The same token with `sub` changed in the payload (signature kept).
fn tamper_payload(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = Value::from("admin");
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// The same token with one bit of the signature flipped.
fn tamper_signature(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[0] ^= 0x01;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[test]
fn joserfc_tokens_are_accepted_and_tampered_copies_refused() {
    let dir = TempDir::new();
    mint(&dir);
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("jwks.json")).unwrap()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4, "{jwks}");
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} in {key}"
            );
        }
    }
    let tokens: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("tokens.json")).unwrap()).unwrap();

    let upstream = echo();
    let config = Config::new()
        .issuer(
            Issuer::jwks_file("joserfc", ISS, &dir.0.join("jwks.json"))
                .audiences(&[AUD])
                .algorithms(&ALGS),
        )
        .upstream(Upstream::new("echo", &upstream.url()))
        .route(
            Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders)
                .headers(&[("X-User-Id", "subject")]),
        );
    let gateway = Gateway::start(&config);

    for alg in ALGS {
        let token = tokens[alg]
            .as_str()
            .unwrap_or_else(|| panic!("no {alg} token"));
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg, "joserfc wrote {header}");

        let before = upstream.count();
        let r = gateway.get("/ids/x", &[("Authorization", &bearer(token))]);
        assert_eq!(r.status, 200, "{alg}: {}", r.body_text());
        assert_eq!(upstream.count(), before + 1, "{alg}");
        let got = upstream.last().unwrap();
        let sub = format!("joserfc-{}", alg.to_lowercase());
        assert_eq!(got.header_values("x-user-id"), [sub.as_str()], "{alg}");

        for (how, tampered) in [
            ("payload", tamper_payload(token)),
            ("signature", tamper_signature(token)),
        ] {
            let r = gateway.get("/ids/x", &[("Authorization", &bearer(&tampered))]);
            assert_eq!(r.status, 401, "{alg} tampered {how}: {}", r.body_text());
            assert_eq!(
                r.header("www-authenticate"),
                Some(r#"Bearer error="invalid_token""#),
                "{alg} tampered {how}"
            );
            assert_eq!(
                upstream.count(),
                before + 1,
                "{alg} tampered {how} reached the upstream"
            );
        }
    }
}
