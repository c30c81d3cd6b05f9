//! Real key pairs and JWS forging: tests sign what they want, including headers no honest issuer
//! would write.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

/// A private key with a kid and an algorithm.
pub struct TestKey {
    pub kid: String,
    pub alg: &'static str,
    pair: Pair,
}

impl TestKey {
    pub fn rsa(kid: &str, alg: &'static str) -> Self {
        Self::rsa_sized(kid, alg, KeySize::Rsa2048)
    }

    pub fn rsa_sized(kid: &str, alg: &'static str, size: KeySize) -> Self {
        assert!(alg.starts_with("RS") || alg.starts_with("PS"));
        Self {
            kid: kid.into(),
            alg,
            pair: Pair::Rsa(RsaKeyPair::generate(size).unwrap()),
        }
    }

    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .unwrap();
        Self {
            kid: kid.into(),
            alg: "ES256",
            pair: Pair::Ec(pair, "P-256"),
        }
    }

    pub fn es384(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref())
                .unwrap();
        Self {
            kid: kid.into(),
            alg: "ES384",
            pair: Pair::Ec(pair, "P-384"),
        }
    }

    pub fn ed25519(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Self {
            kid: kid.into(),
            alg: "EdDSA",
            pair: Pair::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()),
        }
    }

    /// The public JWK, with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> Value {
        let mut jwk = self.jwk_without_alg();
        jwk["alg"] = json!(self.alg);
        jwk
    }

    /// The public JWK with `kid` and `use` but no `alg`.
    pub fn jwk_without_alg(&self) -> Value {
        match &self.pair {
            Pair::Rsa(pair) => {
                let public: RsaPublicKeyComponents<Vec<u8>> = pair.public_key().into();
                json!({"kty":"RSA","kid":self.kid,"use":"sig","n":b64(&public.n),"e":b64(&public.e)})
            }
            Pair::Ec(pair, crv) => {
                let point = pair.public_key().as_ref();
                let size = (point.len() - 1) / 2;
                json!({"kty":"EC","crv":crv,"kid":self.kid,"use":"sig",
                       "x":b64(&point[1..1 + size]),"y":b64(&point[1 + size..])})
            }
            Pair::Ed(pair) => {
                json!({"kty":"OKP","crv":"Ed25519","kid":self.kid,"use":"sig",
                       "x":b64(pair.public_key().as_ref())})
            }
        }
    }

    /// The public key as a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo).
    pub fn public_pem(&self) -> String {
        use aws_lc_rs::encoding::AsDer;
        let der: Vec<u8> = match &self.pair {
            Pair::Rsa(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            Pair::Ec(pair, _) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
            Pair::Ed(pair) => pair.public_key().as_der().unwrap().as_ref().to_vec(),
        };
        let body = base64_simd::STANDARD.encode_to_string(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Signs `message` with this key's algorithm (or `alg_override`, for RSA keys).
    pub fn sign_raw(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let encoding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("RSA key cannot sign {other}"),
                };
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &rng, message, &mut sig).unwrap();
                sig
            }
            Pair::Ec(pair, _) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Pair::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }

    /// A compact JWS with a standard header (`alg`, `kid`, `typ: JWT`) over `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg":self.alg,"kid":self.kid,"typ":"JWT"});
        self.sign_with_header(&header.to_string(), &claims.to_string())
    }

    /// A compact JWS over raw header and payload JSON text, signed with this key's own algorithm
    /// whatever the header says.
    pub fn sign_with_header(&self, header_json: &str, payload_json: &str) -> String {
        let signing_input = format!("{}.{}", b64(header_json), b64(payload_json));
        let sig = self.sign_raw(self.alg, signing_input.as_bytes());
        format!("{signing_input}.{}", b64(sig))
    }
}

/// Replaces the header of `token` (keeping payload and signature): the signature then no longer
/// matches, which is what most header-tampering tests want.
pub fn token_with_header(token: &str, header_json: &str) -> String {
    let mut parts = token.splitn(2, '.');
    let _ = parts.next();
    format!("{}.{}", b64(header_json), parts.next().unwrap_or_default())
}

/// Standard claims for tests: `iss`, `aud`, `sub`, `exp` in an hour, `iat` now.
pub fn claims(iss: &str, aud: &str, sub: &str) -> Value {
    let now = now_secs();
    json!({"iss":iss,"aud":aud,"sub":sub,"iat":now,"nbf":now,"exp":now + 3600})
}
