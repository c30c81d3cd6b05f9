//! Verification keys: parsed once when a key set is loaded, never per request.
//!
//! Each key is bound to exactly one [`Algorithm`]. A token is only ever checked against keys whose
//! algorithm equals the token's `alg`, so the key decides the algorithm and the token cannot.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_lc_rs::digest;
use aws_lc_rs::rsa::PublicKey as RsaPublicKey;
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};

use crate::alg::{Algorithm, KeyKind};
use crate::jws::decode_segment;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// A public key bound to one algorithm, ready to verify.
pub struct VerifyingKey {
    kid: Option<Arc<str>>,
    alg: Algorithm,
    key: ParsedPublicKey,
    /// SHA-256 over the algorithm, kid and public key bytes. Two loads of the same JWK produce the
    /// same fingerprint, which lets a refresh keep the existing `Arc` (and its cached tokens).
    fingerprint: [u8; 32],
    /// Set when a refresh publishes a key set without this key. Cached tokens verified by a
    /// retired key are dropped on their next lookup.
    retired: AtomicBool,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("retired", &self.is_retired())
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    fn new(kid: Option<&str>, alg: Algorithm, key: ParsedPublicKey) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(alg.name().as_bytes());
        ctx.update(&[0]);
        if let Some(kid) = kid {
            ctx.update(kid.as_bytes());
        }
        ctx.update(&[0]);
        ctx.update(key.as_ref());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(ctx.finish().as_ref());
        Self {
            kid: kid.map(Arc::from),
            alg,
            key,
            fingerprint,
            retired: AtomicBool::new(false),
        }
    }

    /// The key id, if the key set gave one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Verifies `signature` over `message`. The caller has already checked that the token's `alg`
    /// equals [`Self::algorithm`].
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Builds a key from DER `SubjectPublicKeyInfo` (as found in a PEM `PUBLIC KEY` block).
    ///
    /// # Errors
    /// [`KeyRejection`] if the key does not parse for `alg`, or is an RSA key under 2048 bits.
    pub fn from_spki_der(
        der: &[u8],
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Self, KeyRejection> {
        if alg.key_kind() == KeyKind::Rsa {
            // The same modulus and exponent rules as for a JWK (size, exponent, ROCA).
            let public = RsaPublicKey::from_der(der).map_err(|_| KeyRejection::Invalid)?;
            check_rsa_public(
                public.modulus().big_endian_without_leading_zero(),
                public.exponent().big_endian_without_leading_zero(),
            )?;
        }
        let key =
            ParsedPublicKey::new(alg.verification(), der).map_err(|_| KeyRejection::Invalid)?;
        // A `SubjectPublicKeyInfo` ends with the key's BIT STRING: the last 32 bytes are the point.
        if alg.key_kind() == KeyKind::Ed25519
            && der
                .len()
                .checked_sub(32)
                .and_then(|start| der.get(start..))
                .is_none_or(ed25519_small_order)
        {
            return Err(KeyRejection::Invalid);
        }
        Ok(Self::new(kid, alg, key))
    }
}

/// Why a JWK was left out of a key set. Each is logged as a warning with the key's `kid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRejection {
    /// `use` is not `sig`.
    #[error("key is for encryption (use is not \"sig\")")]
    EncryptionUse,
    /// `key_ops` lists only non-signature operations.
    #[error("key_ops does not allow signature verification")]
    WrongKeyOps,
    /// A symmetric (`oct`) key: never accepted from a key set.
    #[error("symmetric keys are never accepted from a key set")]
    Symmetric,
    /// `alg` is absent from the supported set (includes `none` and HMAC).
    #[error("unsupported alg {0:?}")]
    UnsupportedAlgorithm(String),
    /// `alg` is supported but not on this issuer's allow-list.
    #[error("alg {0} is not on the issuer's allow-list")]
    AlgorithmNotAllowed(Algorithm),
    /// `kty` does not fit `alg`.
    #[error("kty {kty:?} does not match alg {alg}")]
    KeyTypeMismatch {
        /// The JWK's `kty`.
        kty: String,
        /// The JWK's `alg`.
        alg: Algorithm,
    },
    /// An EC or OKP key on a curve the algorithm does not use.
    #[error("curve {0:?} is not usable here")]
    WrongCurve(String),
    /// An RSA key below [`MIN_RSA_BITS`].
    #[error("RSA key of {0} bits is below the 2048-bit minimum")]
    RsaTooSmall(usize),
    /// An RSA key generated by the flawed Infineon RSALib (ROCA, CVE-2017-15361): its private key
    /// can be computed from the public key.
    #[error(
        "RSA key has the ROCA fingerprint (CVE-2017-15361); its private key is recoverable, so the issuer must generate a new key"
    )]
    RsaRoca,
    /// No `alg`, and no allowed algorithm fits the key type.
    #[error("no allowed algorithm fits this key")]
    NoUsableAlgorithm,
    /// A member is missing, has the wrong type, or is not strict base64url.
    #[error("missing or malformed member {0:?}")]
    Malformed(&'static str),
    /// The key material does not form a valid public key.
    #[error("invalid key material")]
    Invalid,
}

const ENCRYPTION_OPS: [&str; 6] = [
    "encrypt",
    "decrypt",
    "wrapKey",
    "unwrapKey",
    "deriveKey",
    "deriveBits",
];

fn member<'a>(jwk: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, KeyRejection> {
    match jwk.get(name) {
        Some(Value::String(value)) => Ok(value),
        _ => Err(KeyRejection::Malformed(name)),
    }
}

fn b64_member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, KeyRejection> {
    decode_segment(member(jwk, name)?).map_err(|_| KeyRejection::Malformed(name))
}

/// Parses one JWK into the keys it yields: one per algorithm it may verify.
///
/// A JWK with `alg` yields exactly that algorithm, if the issuer allows it. A JWK without `alg`
/// yields every allowed algorithm that fits its key type and curve (many identity providers omit
/// `alg`); the issuer's allow-list is then what binds the key. Private members are ignored.
pub(crate) fn keys_from_jwk(
    jwk: &Map<String, Value>,
    allowed: &[Algorithm],
) -> Result<Vec<VerifyingKey>, KeyRejection> {
    let kty = member(jwk, "kty")?;
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(KeyRejection::EncryptionUse),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let Value::Array(ops) = ops else {
            return Err(KeyRejection::Malformed("key_ops"));
        };
        let only_encryption = !ops.is_empty()
            && ops
                .iter()
                .all(|op| op.as_str().is_some_and(|op| ENCRYPTION_OPS.contains(&op)));
        if only_encryption {
            return Err(KeyRejection::WrongKeyOps);
        }
    }
    if kty == "oct" {
        return Err(KeyRejection::Symmetric);
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(KeyRejection::Malformed("kid")),
    };
    let crv = match jwk.get("crv") {
        None => None,
        Some(Value::String(crv)) => Some(crv.as_str()),
        Some(_) => return Err(KeyRejection::Malformed("crv")),
    };
    let kind = match (kty, crv) {
        ("RSA", _) => KeyKind::Rsa,
        ("EC", Some("P-256")) => KeyKind::EcP256,
        ("EC", Some("P-384")) => KeyKind::EcP384,
        ("OKP", Some("Ed25519")) => KeyKind::Ed25519,
        ("EC" | "OKP", Some(other)) => return Err(KeyRejection::WrongCurve(other.to_owned())),
        ("EC" | "OKP", None) => return Err(KeyRejection::Malformed("crv")),
        (other, _) => {
            return Err(KeyRejection::KeyTypeMismatch {
                kty: other.to_owned(),
                alg: allowed.first().copied().unwrap_or(Algorithm::RS256),
            });
        }
    };

    let algorithms: Vec<Algorithm> = match jwk.get("alg") {
        Some(Value::String(name)) => {
            let alg = Algorithm::from_name(name)
                .ok_or_else(|| KeyRejection::UnsupportedAlgorithm(name.clone()))?;
            if alg.key_kind() != kind {
                return Err(match (alg.key_kind(), kind) {
                    (KeyKind::EcP256 | KeyKind::EcP384, KeyKind::EcP256 | KeyKind::EcP384) => {
                        KeyRejection::WrongCurve(crv.unwrap_or_default().to_owned())
                    }
                    _ => KeyRejection::KeyTypeMismatch {
                        kty: kty.to_owned(),
                        alg,
                    },
                });
            }
            if !allowed.contains(&alg) {
                return Err(KeyRejection::AlgorithmNotAllowed(alg));
            }
            vec![alg]
        }
        Some(_) => return Err(KeyRejection::Malformed("alg")),
        None => {
            let fitting: Vec<Algorithm> = allowed
                .iter()
                .copied()
                .filter(|alg| alg.key_kind() == kind)
                .collect();
            if fitting.is_empty() {
                return Err(KeyRejection::NoUsableAlgorithm);
            }
            fitting
        }
    };

    match kind {
        KeyKind::Rsa => {
            let n = strip_leading_zeros(b64_member(jwk, "n")?);
            let e = strip_leading_zeros(b64_member(jwk, "e")?);
            check_rsa_public(&n, &e)?;
            let components = RsaPublicKeyComponents { n: &n, e: &e };
            algorithms
                .into_iter()
                .map(|alg| {
                    let params = alg.rsa_parameters().ok_or(KeyRejection::Invalid)?;
                    let key = components
                        .to_parsed_public_key(params)
                        .map_err(|_| KeyRejection::Invalid)?;
                    Ok(VerifyingKey::new(kid, alg, key))
                })
                .collect()
        }
        KeyKind::EcP256 | KeyKind::EcP384 => {
            let size = if kind == KeyKind::EcP256 { 32 } else { 48 };
            let x = b64_member(jwk, "x")?;
            let y = b64_member(jwk, "y")?;
            if x.len() != size {
                return Err(KeyRejection::Malformed("x"));
            }
            if y.len() != size {
                return Err(KeyRejection::Malformed("y"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            parse_each(&algorithms, kid, &point)
        }
        KeyKind::Ed25519 => {
            let x = b64_member(jwk, "x")?;
            if x.len() != 32 {
                return Err(KeyRejection::Malformed("x"));
            }
            if ed25519_small_order(&x) {
                return Err(KeyRejection::Invalid);
            }
            parse_each(&algorithms, kid, &x)
        }
    }
}

fn parse_each(
    algorithms: &[Algorithm],
    kid: Option<&str>,
    bytes: &[u8],
) -> Result<Vec<VerifyingKey>, KeyRejection> {
    algorithms
        .iter()
        .map(|&alg| {
            let key = ParsedPublicKey::new(alg.verification(), bytes)
                .map_err(|_| KeyRejection::Invalid)?;
            Ok(VerifyingKey::new(kid, alg, key))
        })
        .collect()
}

/// The checks every RSA public key passes, whatever its encoding: the minimum size, a sane
/// exponent, and no ROCA fingerprint. `n` and `e` are big-endian without leading zeros.
fn check_rsa_public(n: &[u8], e: &[u8]) -> Result<(), KeyRejection> {
    let bits = bit_length(n);
    if bits < MIN_RSA_BITS {
        return Err(KeyRejection::RsaTooSmall(bits));
    }
    // e = 1 makes every "signature" its own message; even e is not an RSA key.
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    if !odd || (e.len() == 1 && e[0] < 3) || e.len() > 8 {
        return Err(KeyRejection::Invalid);
    }
    if has_roca_fingerprint(n) {
        return Err(KeyRejection::RsaRoca);
    }
    Ok(())
}

/// The `y` coordinates (little-endian, sign bit clear) of the eight Ed25519 points of small order
/// (orders 1, 2, 4 and 8), with the non-canonical `p` and `p + 1` for 0 and 1. These are the
/// encodings libsodium refuses as public keys (`ge25519_has_small_order`).
const ED25519_SMALL_ORDER_Y: [[u8; 32]; 7] = {
    /// p - 1, p or p + 1 (p = 2^255 - 19) for `low` 0xec, 0xed or 0xee.
    const fn high(low: u8) -> [u8; 32] {
        let mut y = [0xff; 32];
        y[0] = low;
        y[31] = 0x7f;
        y
    }
    let mut one = [0; 32];
    one[0] = 1;
    [
        [0; 32],
        one,
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
        // p - 1, p, p + 1.
        high(0xec),
        high(0xed),
        high(0xee),
    ]
};

/// Whether an Ed25519 public key is a point of small order. Such a key verifies forged
/// signatures (with the identity point, `R` = identity and `S` = 0 verify every message), as an
/// RSA key with `e = 1` would; aws-lc accepts it. The `x` sign bit is ignored.
fn ed25519_small_order(key: &[u8]) -> bool {
    let Ok(mut y) = <[u8; 32]>::try_from(key) else {
        return true;
    };
    y[31] &= 0x7f;
    ED25519_SMALL_ORDER_Y.contains(&y)
}

/// The largest small prime tested for the ROCA fingerprint: 701 is the 126th prime.
const ROCA_PRIME_LIMIT: u32 = 701;

/// The ROCA test (CVE-2017-15361, Nemec et al., CCS 2017).
///
/// Infineon's RSALib made every prime as `k·M + (65537^a mod M)`, where `M` is the product of the
/// first 126 primes for keys of 1984 to 3936 bits (225 primes above that; smaller keys are refused
/// before this test). Then `n = p·q ≡ 65537^(a+b) (mod r)` for every prime `r` up to 701: `n mod r`
/// lies in the subgroup that 65537 generates modulo `r`. A vulnerable modulus always passes this
/// test; an ordinary one passes it with a probability of about 2^-167, so no honest key is refused
/// in practice. It runs once per key load, never per request.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    (3..=ROCA_PRIME_LIMIT)
        .filter(|&r| is_small_prime(r))
        .all(|r| {
            let residue = n
                .iter()
                .fold(0u32, |acc, &byte| (acc * 256 + u32::from(byte)) % r);
            in_subgroup_of_65537(residue, r)
        })
}

fn is_small_prime(r: u32) -> bool {
    r >= 2
        && (2..r)
            .take_while(|d| d * d <= r)
            .all(|d| !r.is_multiple_of(d))
}

/// Whether `residue` is a power of 65537 modulo the prime `r`.
fn in_subgroup_of_65537(residue: u32, r: u32) -> bool {
    let generator = 65_537 % r;
    let mut power = 1 % r;
    // The powers of the generator cycle back to 1 within r - 1 steps.
    for _ in 0..r {
        if power == residue {
            return true;
        }
        power = power * generator % r;
        if power == 1 % r {
            return false;
        }
    }
    false
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(&first) => (big_endian.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    #[test]
    fn ec_key_binds_to_its_alg() {
        let jwk =
            obj(json!({"kty":"EC","crv":"P-256","x":P256_X,"y":P256_Y,"kid":"a","alg":"ES256"}));
        let keys = keys_from_jwk(&jwk, &[Algorithm::ES256]).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].algorithm(), Algorithm::ES256);
        assert_eq!(keys[0].kid(), Some("a"));
    }

    #[test]
    fn rejections() {
        let ec = |extra: Value| {
            let mut jwk = obj(json!({"kty":"EC","crv":"P-256","x":P256_X,"y":P256_Y}));
            jwk.extend(obj(extra));
            keys_from_jwk(&jwk, &[Algorithm::ES256, Algorithm::RS256]).map(|k| k.len())
        };
        assert_eq!(ec(json!({"use":"enc"})), Err(KeyRejection::EncryptionUse));
        assert_eq!(
            ec(json!({"key_ops":["encrypt","decrypt"]})),
            Err(KeyRejection::WrongKeyOps)
        );
        assert_eq!(
            ec(json!({"alg":"RS256"})),
            Err(KeyRejection::KeyTypeMismatch {
                kty: "EC".into(),
                alg: Algorithm::RS256
            })
        );
        assert_eq!(
            ec(json!({"alg":"ES384"})),
            Err(KeyRejection::WrongCurve("P-256".into()))
        );
        assert_eq!(
            ec(json!({"alg":"HS256"})),
            Err(KeyRejection::UnsupportedAlgorithm("HS256".into()))
        );
        assert_eq!(
            ec(json!({"alg":"none"})),
            Err(KeyRejection::UnsupportedAlgorithm("none".into()))
        );
        assert_eq!(
            ec(json!({"crv":"P-521"})),
            Err(KeyRejection::WrongCurve("P-521".into()))
        );
        assert_eq!(ec(json!({"x":"AAAA"})), Err(KeyRejection::Malformed("x")));
        // A point not on the curve.
        assert_eq!(ec(json!({"y":P256_X})), Err(KeyRejection::Invalid));
        assert_eq!(ec(json!({})), Ok(1));
        assert_eq!(
            keys_from_jwk(&obj(json!({"kty":"oct","k":"AAAA"})), &[Algorithm::ES256]).err(),
            Some(KeyRejection::Symmetric)
        );
        assert_eq!(ec(json!({"alg":"ES256","use":"sig"})), Ok(1),);
        assert_eq!(
            keys_from_jwk(
                &obj(json!({"kty":"EC","crv":"P-256","x":P256_X,"y":P256_Y,"alg":"ES256"})),
                &[Algorithm::RS256]
            )
            .err(),
            Some(KeyRejection::AlgorithmNotAllowed(Algorithm::ES256))
        );
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        let n = base64_simd::URL_SAFE_NO_PAD.encode_to_string([0xffu8; 128]);
        let jwk = obj(json!({"kty":"RSA","n":n,"e":"AQAB","alg":"RS256"}));
        assert_eq!(
            keys_from_jwk(&jwk, &[Algorithm::RS256]).err(),
            Some(KeyRejection::RsaTooSmall(1024))
        );
    }

    #[test]
    fn roca_fingerprint() {
        // 65537 generates {1, 10} modulo 11, so a modulus that is 2 mod 11 cannot be ROCA's.
        assert!(in_subgroup_of_65537(1, 11));
        assert!(in_subgroup_of_65537(10, 11));
        assert!(!in_subgroup_of_65537(2, 11));
        assert!(!in_subgroup_of_65537(0, 11));
        assert_eq!(
            (3..=ROCA_PRIME_LIMIT)
                .filter(|&r| is_small_prime(r))
                .count(),
            125
        );
        // 65537^k itself is in every subgroup: a product of such "primes" has the fingerprint.
        let mut n = vec![0x01, 0x00, 0x01];
        assert!(has_roca_fingerprint(&n));
        n[2] = 0x03;
        assert!(!has_roca_fingerprint(&n));
    }

    /// An Ed25519 public key of small order verifies forged signatures: with the identity point,
    /// the constant signature R = identity, S = 0 verifies every message (as RSA with e = 1
    /// would). Every encoding of the eight small-order points is refused, in a JWK and in a PEM
    /// key: both sign bits, and the non-canonical `p` and `p + 1` for 0 and 1.
    #[test]
    fn small_order_ed25519_keys_are_refused() {
        let hex = |text: &str| -> [u8; 32] {
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
            }
            out
        };
        let small_order = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        for text in small_order {
            for sign in [0u8, 0x80] {
                let mut x = hex(text);
                x[31] |= sign;
                let b64 = base64_simd::URL_SAFE_NO_PAD.encode_to_string(x);
                let jwk = obj(json!({"kty":"OKP","crv":"Ed25519","x":b64,"kid":"weak"}));
                assert!(
                    keys_from_jwk(&jwk, &[Algorithm::EdDSA]).is_err(),
                    "JWK {text} sign {sign:#x}"
                );
                let mut der = vec![
                    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
                ];
                der.extend_from_slice(&x);
                assert!(
                    VerifyingKey::from_spki_der(&der, Algorithm::EdDSA, None).is_err(),
                    "PEM {text} sign {sign:#x}"
                );
            }
        }
        // RFC 8032's first test key is an ordinary key, and stays accepted.
        let rfc8032 = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let b64 = base64_simd::URL_SAFE_NO_PAD.encode_to_string(rfc8032);
        let jwk = obj(json!({"kty":"OKP","crv":"Ed25519","x":b64}));
        assert_eq!(
            keys_from_jwk(&jwk, &[Algorithm::EdDSA]).map(|k| k.len()),
            Ok(1)
        );
    }

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(strip_leading_zeros(vec![0, 0, 1, 0]), vec![1, 0]);
    }
}
