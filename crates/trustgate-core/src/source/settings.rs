//! What an issuer's key source is, how often it is refreshed, and how a static source is read.

use std::path::PathBuf;
use std::time::Duration;

use crate::alg::Algorithm;
use crate::fetch::FetchError;
use crate::key::{KeyRejection, VerifyingKey};
use crate::keyset::{JwksError, KeySet};

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeySource {
    /// A JWK Set document given inline (for example, read by the caller from a file).
    Jwks(String),
    /// A JWK Set file, read once when the validator is built.
    JwksFile(PathBuf),
    /// PEM `PUBLIC KEY` blocks, each bound to one algorithm.
    Pem(Vec<PemKey>),
    /// A JWK Set URL, fetched at start and refreshed in the background.
    JwksUrl(String),
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery,
}

/// One PEM public key and the algorithm it verifies.
#[derive(Debug, Clone)]
pub struct PemKey {
    /// PEM text containing one `PUBLIC KEY` block.
    pub pem: String,
    /// The algorithm this key verifies.
    pub alg: Algorithm,
    /// An optional key id; a key without one is tried for tokens without `kid`.
    pub kid: Option<String>,
}

/// How often keys are refreshed and how long stale keys are served.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    /// Interval when the response has no `Cache-Control: max-age`.
    pub default_interval: Duration,
    /// Lower bound for a `max-age` (protects the issuer from a `max-age=0`).
    pub min_interval: Duration,
    /// Upper bound for a `max-age` (rotations are noticed within this time).
    pub max_interval: Duration,
    /// Minimum time between two on-demand refetches caused by unknown `kid`s.
    pub unknown_kid_cooldown: Duration,
    /// How long keys keep serving after the last successful fetch, while the issuer is failing.
    pub max_staleness: Duration,
    /// The first retry delay after a failed fetch; it doubles up to `default_interval`.
    pub retry_base: Duration,
    /// The longest a request waits for the on-demand refetch an unknown `kid` starts, however
    /// slow the issuer is; then it is refused (`unknown_kid`) and the refetch goes on without it.
    /// A slow or stalled issuer thus cannot hold requests, and their connections, open.
    pub unknown_kid_wait: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            default_interval: Duration::from_secs(300),
            min_interval: Duration::from_secs(30),
            max_interval: Duration::from_secs(3600),
            unknown_kid_cooldown: Duration::from_secs(30),
            max_staleness: Duration::from_secs(24 * 3600),
            retry_base: Duration::from_secs(1),
            unknown_kid_wait: Duration::from_secs(1),
        }
    }
}

/// Why a refresh failed. The previous key set stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The HTTP fetch failed.
    #[error("fetch failed: {0}")]
    Fetch(#[from] FetchError),
    /// The key set document was refused.
    #[error("{0}")]
    Jwks(#[from] JwksError),
    /// The discovery document is malformed.
    #[error("discovery document is not a JSON object with a string jwks_uri")]
    BadDiscovery,
    /// The discovery document names another issuer.
    #[error("discovery document issuer {found:?} does not equal the configured issuer")]
    IssuerMismatch {
        /// The `issuer` the document declared.
        found: String,
    },
}

/// A configuration problem with a static key source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaticKeyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The JWK Set was refused.
    #[error("{0}")]
    Jwks(#[from] JwksError),
    /// A PEM block is missing or not a public key.
    #[error("PEM key {index}: expected one \"PUBLIC KEY\" block")]
    Pem {
        /// Position in the list, from 0.
        index: usize,
    },
    /// A PEM key was refused.
    #[error("PEM key {index}: {rejection}")]
    PemKey {
        /// Position in the list, from 0.
        index: usize,
        /// Why.
        rejection: KeyRejection,
    },
}

pub(super) fn static_pem_keys(pems: &[PemKey]) -> Result<KeySet, StaticKeyError> {
    use rustls_pki_types::SubjectPublicKeyInfoDer;
    use rustls_pki_types::pem::PemObject;

    let mut keys = Vec::with_capacity(pems.len());
    for (index, pem) in pems.iter().enumerate() {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.pem.as_bytes())
            .map_err(|_| StaticKeyError::Pem { index })?;
        let key = VerifyingKey::from_spki_der(der.as_ref(), pem.alg, pem.kid.as_deref())
            .map_err(|rejection| StaticKeyError::PemKey { index, rejection })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(StaticKeyError::Jwks(JwksError::NoUsableKeys));
    }
    Ok(KeySet::from_keys(keys, None))
}
