//! The proof of validation: a [`VerifiedToken`] only the validator creates.
//!
//! Apart from the validator so that the verified-token cache, which stores these, and the
//! validator, which makes them and reads the cache, depend on this module and not on each other.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::alg::Algorithm;
use crate::claims::Times;
use crate::identity::Identity;
use crate::json;
use crate::key::VerifyingKey;
use crate::source::IssuerKeys;

struct Verified {
    issuer: Arc<str>,
    /// The issuer's live keys, so that a cache hit can tell whether they are still trusted.
    issuer_keys: Arc<IssuerKeys>,
    /// The decoded payload. The checks read it through a borrowed parse; the owned claims map is
    /// built only if someone asks for it, since the gateway's usual path never does.
    payload: Vec<u8>,
    claims: OnceLock<Map<String, Value>>,
    identity: Identity,
    times: Times,
    key: Arc<VerifyingKey>,
    size: usize,
}

/// A token whose signature and claims have been verified. Only the validator creates one.
#[derive(Clone)]
pub struct VerifiedToken(Arc<Verified>);

impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Claims may be personal data; the token itself is never kept here.
        f.debug_struct("VerifiedToken")
            .field("issuer", &self.0.issuer)
            .field("subject", &self.0.identity.subject())
            .field("kid", &self.0.key.kid())
            .finish_non_exhaustive()
    }
}

impl VerifiedToken {
    /// Only the validator calls this, once every check passed.
    pub(crate) fn new(
        issuer: Arc<str>,
        issuer_keys: Arc<IssuerKeys>,
        payload: Vec<u8>,
        identity: Identity,
        times: Times,
        key: Arc<VerifyingKey>,
    ) -> Self {
        // The payload, its claims map if built, and the identity.
        let size = payload.len() * 3 + 256;
        Self(Arc::new(Verified {
            issuer,
            issuer_keys,
            payload,
            claims: OnceLock::new(),
            identity,
            times,
            key,
            size,
        }))
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// All verified claims. Built on first use and kept with the token (and so in the cache).
    pub fn claims(&self) -> &Map<String, Value> {
        // The same parser as the checks, over the same bytes, which it accepted when the token was
        // verified: this parse succeeds and gives the values the checks saw (the empty map is
        // unreachable). serde_json would refuse some numbers this parser reads.
        self.0.claims.get_or_init(|| {
            json::parse_borrowed(&self.0.payload)
                .map(|claims| claims.to_map())
                .unwrap_or_default()
        })
    }

    /// The identity built from the claims.
    pub fn identity(&self) -> &Identity {
        &self.0.identity
    }

    /// `exp` in whole seconds, if present.
    pub fn expires_at(&self) -> Option<i64> {
        self.0.times.exp_ms.map(|ms| ms.div_euclid(1000))
    }

    /// `iat` in whole seconds, if present. Revocation by subject compares it with a cut-off.
    pub fn issued_at(&self) -> Option<i64> {
        self.0.times.iat_ms.map(|ms| ms.div_euclid(1000))
    }

    /// The `jti`, if it is a string. Read through [`VerifiedToken::claims`], so the claims map is
    /// built once per verified token (and kept with it in the cache), never per request.
    pub fn token_id(&self) -> Option<&str> {
        self.claims().get("jti").and_then(Value::as_str)
    }

    /// The `kid` of the key that verified the signature.
    pub fn key_id(&self) -> Option<&str> {
        self.0.key.kid()
    }

    /// The algorithm of the key that verified the signature.
    pub fn algorithm(&self) -> Algorithm {
        self.0.key.algorithm()
    }

    pub(crate) fn times(&self) -> &Times {
        &self.0.times
    }

    pub(crate) fn key_retired(&self) -> bool {
        self.0.key.is_retired()
    }

    pub(crate) fn approx_size(&self) -> usize {
        self.0.size
    }

    /// Whether the issuer's keys are still trusted now (not past the maximum staleness).
    pub(crate) fn issuer_keys_usable_now(&self) -> bool {
        self.0.issuer_keys.usable_now()
    }
}
