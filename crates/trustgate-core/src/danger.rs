//! **Dangerous.** Entry points that skip checks production code must never skip; only for
//! conformance tests, fuzzing and benchmarks.
//!
//! Compiled only with the `danger` cargo feature, which no production crate enables: tests turn
//! it on in `[dev-dependencies]`. A shipped build therefore cannot call any of this, and a
//! reviewer finds every use by searching for `danger`.

use crate::error::Reason;
use crate::key::VerifyingKey;
use crate::validator::Validator;

/// A JWS whose signature verified, before any claim check: nothing about issuer, audience,
/// expiry or identity has been checked.
#[derive(Debug)]
#[non_exhaustive]
pub struct VerifiedSignature {
    /// The decoded payload.
    pub payload: Vec<u8>,
    /// The `kid` of the key that verified it.
    pub kid: Option<String>,
}

/// Checks only the JWS layer of `token` (shape, encoding, header rules, key selection and
/// signature) against the first issuer's keys of `validator`, without any claim rule. For
/// conformance vectors whose payloads are not claim sets (such as Wycheproof's); production code
/// uses [`Validator::validate`].
///
/// # Errors
/// The reason the JWS was refused.
pub fn verify_signature_only(
    validator: &Validator,
    token: &str,
) -> Result<VerifiedSignature, Reason> {
    let (payload, kid) = validator.verify_signature_only(token)?;
    Ok(VerifiedSignature { payload, kid })
}

/// Verifies `signature` over arbitrary `message` bytes with `key`, exactly as token verification
/// does, but without the check that the token's `alg` is the key's.
///
/// For conformance tests of the primitive layer: Wycheproof's ECDSA, RSA and EdDSA vectors sign
/// arbitrary bytes, which no JWS signing input can reproduce.
pub fn verify_for_conformance(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    key.verify(message, signature)
}
