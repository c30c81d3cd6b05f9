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
}

/// The bytes a verified token may hold for each byte of its payload. Every byte is held up to three
/// times: in the payload, in the strings of the claims map, and in the identity's header values.
/// The claims map costs far more than its text for small values (`[0,0,0]` is two bytes of
/// payload per `serde_json::Value` of 32): each `,`, `[`, `{` or `:` may start a value or a
/// member, held as a 32-byte `Value` (and a member as a 24-byte `String` key and its share of the
/// map's node), and each `"` opens or closes a string, which has an allocation of its own (its
/// header, and its rounding up). An overestimate for bytes inside strings, which is cheap: the
/// estimate bounds memory, and counting exactly would mean a parse.
const HELD_PER_PAYLOAD_BYTE: [u8; 256] = {
    let mut costs = [3u8; 256];
    costs[b',' as usize] = 3 + 32;
    costs[b'[' as usize] = 3 + 32;
    costs[b'{' as usize] = 3 + 32;
    costs[b':' as usize] = 3 + 32;
    costs[b'"' as usize] = 3 + 16;
    costs
};

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
        Self(Arc::new(Verified {
            issuer,
            issuer_keys,
            payload,
            claims: OnceLock::new(),
            identity,
            times,
            key,
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

    /// What this token holds, in bytes, for the verified-token cache's byte bound: an upper
    /// estimate, as if its claims map were built (it may be, any time while the token is cached).
    /// Read from the payload's bytes, each costed by [`HELD_PER_PAYLOAD_BYTE`]: a pass over at most
    /// `max_token_bytes`, made only by the cache when it inserts or evicts the token.
    pub(crate) fn approx_size(&self) -> usize {
        let per_byte = self
            .0
            .payload
            .iter()
            .map(|&b| usize::from(HELD_PER_PAYLOAD_BYTE[usize::from(b)]))
            .sum::<usize>();
        // The `Verified` itself with its `Arc` counts, the identity's fields and allocations'
        // headers: a fixed part.
        per_byte + 256
    }

    /// Whether the issuer's keys are still trusted now (not past the maximum staleness).
    pub(crate) fn issuer_keys_usable_now(&self) -> bool {
        self.0.issuer_keys.usable_now()
    }
}
