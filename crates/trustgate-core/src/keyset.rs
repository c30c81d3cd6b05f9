//! An immutable snapshot of one issuer's keys. A refresh builds a new snapshot and publishes it
//! atomically; requests only ever read a complete one.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::alg::Algorithm;
use crate::json;
use crate::key::{VerifyingKey, keys_from_jwk};

/// The keys of one issuer, indexed by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    /// Hashed with foldhash rather than SipHash: every uncached token looks its `kid` up here, and
    /// SipHash cost more than the rest of key selection. Only the issuer's own documents insert
    /// names, so a token cannot fill the map with colliding ones.
    by_kid: HashMap<Box<str>, Vec<Arc<VerifyingKey>>, foldhash::fast::RandomState>,
    all: Vec<Arc<VerifyingKey>>,
}

/// Why a key set document was refused. A refused document never replaces a good key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// Not a JSON object with a `keys` array (or it has duplicate member names).
    #[error("not a JWK Set: expected a JSON object with a \"keys\" array")]
    NotAKeySet,
    /// The document parsed but yielded no usable key.
    #[error("the JWK Set has no usable signing key for the allowed algorithms")]
    NoUsableKeys,
}

impl KeySet {
    /// Builds a snapshot. Keys identical to ones in `previous` (same fingerprint) keep their `Arc`,
    /// so tokens they verified stay cached across refreshes.
    pub(crate) fn from_keys(keys: Vec<VerifyingKey>, previous: Option<&KeySet>) -> Self {
        let mut set = KeySet::default();
        for key in keys {
            let key = previous
                .and_then(|prev| {
                    prev.all
                        .iter()
                        .find(|old| old.fingerprint() == key.fingerprint())
                        .cloned()
                })
                .unwrap_or_else(|| Arc::new(key));
            if set.all.iter().any(|k| k.fingerprint() == key.fingerprint()) {
                continue;
            }
            if let Some(kid) = key.kid() {
                set.by_kid
                    .entry(Box::from(kid))
                    .or_default()
                    .push(Arc::clone(&key));
            }
            set.all.push(key);
        }
        set
    }

    /// Parses a JWK Set document. Unusable keys are skipped with a warning naming the issuer and
    /// kid; the document is refused only if it is malformed or yields no key at all.
    pub(crate) fn from_jwks(
        bytes: &[u8],
        allowed: &[Algorithm],
        issuer: &str,
        previous: Option<&KeySet>,
    ) -> Result<Self, JwksError> {
        let doc = json::parse_object(bytes).map_err(|_| JwksError::NotAKeySet)?;
        let Some(Value::Array(entries)) = doc.get("keys") else {
            return Err(JwksError::NotAKeySet);
        };
        let mut keys = Vec::new();
        for entry in entries {
            let Value::Object(jwk) = entry else {
                tracing::warn!(issuer, "ignoring a JWKS entry that is not an object");
                continue;
            };
            match keys_from_jwk(jwk, allowed) {
                Ok(parsed) => keys.extend(parsed),
                Err(rejection) => {
                    let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("<none>");
                    tracing::warn!(issuer, kid, %rejection, "ignoring JWKS key");
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Self::from_keys(keys, previous))
    }

    /// Number of (key, algorithm) entries.
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The keys a token with this `kid` may be checked against, whatever their algorithm: those
    /// with the same `kid`, or all keys when the token has none. `None` when no key carries the
    /// token's `kid`, which is what may justify a refetch. One map lookup serves both questions.
    pub(crate) fn pool(&self, kid: Option<&str>) -> Option<&[Arc<VerifyingKey>]> {
        match kid {
            Some(kid) => self.by_kid.get(kid).map(Vec::as_slice),
            None => Some(&self.all),
        }
    }

    /// Marks every key of `self` that is absent from `next` as retired.
    pub(crate) fn retire_missing(&self, next: &KeySet) {
        for key in &self.all {
            if !next.all.iter().any(|k| Arc::ptr_eq(k, key)) {
                key.retire();
            }
        }
    }

    pub(crate) fn kids(&self) -> impl Iterator<Item = &str> {
        self.all.iter().filter_map(|k| k.kid())
    }
}
