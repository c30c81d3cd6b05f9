//! What a validator is built from: the issuers and the options.

use crate::alg::Algorithm;
use crate::cache::CacheOptions;
use crate::claims::ClaimsPolicy;
use crate::fetch::FetchOptions;
use crate::identity::ClaimMapping;
use crate::jws::DEFAULT_MAX_TOKEN_BYTES;
use crate::source::{KeySource, RefreshPolicy, StaticKeyError};

/// Everything trustgate needs to know about one token issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The exact `iss` value. For discovery, also the base URL.
    pub issuer: String,
    /// Where the keys come from.
    pub source: KeySource,
    /// The algorithm allow-list (default RS256 and ES256).
    pub algorithms: Vec<Algorithm>,
    /// Claim rules.
    pub claims: ClaimsPolicy,
    /// How claims become an [`Identity`].
    pub mapping: ClaimMapping,
    /// Refresh, cooldown and staleness.
    pub refresh: RefreshPolicy,
    /// How many keys a token without `kid` may be tried against (default 3).
    pub max_kidless_candidates: usize,
}

impl IssuerConfig {
    /// An issuer with the safe defaults: `exp` and `aud` required, 60 s leeway, RS256 and ES256.
    pub fn new(
        issuer: impl Into<String>,
        audiences: impl IntoIterator<Item = impl Into<String>>,
        source: KeySource,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            source,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            claims: ClaimsPolicy::new(audiences),
            mapping: ClaimMapping::default(),
            refresh: RefreshPolicy::default(),
            max_kidless_candidates: 3,
        }
    }
}

/// Validator-wide settings.
#[derive(Debug, Clone)]
pub struct ValidatorOptions {
    /// Tokens longer than this are refused before decoding (default 8 KiB).
    pub max_token_bytes: usize,
    /// The verified-token cache.
    pub cache: CacheOptions,
    /// Limits for fetching discovery documents and key sets.
    pub fetch: FetchOptions,
}

impl Default for ValidatorOptions {
    fn default() -> Self {
        Self {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache: CacheOptions::default(),
            fetch: FetchOptions::default(),
        }
    }
}

/// A configuration error, written for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Two issuers with the same `issuer`.
    #[error("issuer {0:?} is configured twice; each issuer must appear once")]
    DuplicateIssuer(String),
    /// An issuer with an empty algorithm list.
    #[error("issuer {0:?} has no algorithms; list at least one, e.g. algorithms = [\"RS256\"]")]
    NoAlgorithms(String),
    /// `aud` is required but no audience is configured.
    #[error(
        "issuer {0:?} requires an audience but none is configured; set audiences = [\"your-api\"]"
    )]
    NoAudiences(String),
    /// An empty (or blank) audience: an unset variable, most likely. It would accept tokens
    /// whose `aud` is `""`, which names no service.
    #[error(
        "issuer {0:?} has an empty audience; each audience must name your API, e.g. \"your-api\""
    )]
    EmptyAudience(String),
    /// Discovery needs the issuer to be an http(s) URL.
    #[error("issuer {0:?} uses discovery, so it must be an https URL (http only for loopback)")]
    DiscoveryNeedsUrl(String),
    /// A static key source failed.
    #[error("issuer {issuer:?}: {source}")]
    StaticKeys {
        /// The issuer.
        issuer: String,
        /// What failed.
        source: StaticKeyError,
    },
    /// TLS setup for fetching keys failed (for example, a bad extra CA).
    #[error("TLS setup for key fetching failed: {0}")]
    Tls(#[from] rustls::Error),
    /// A zero cap on kid-less candidates would make every kid-less token fail.
    #[error("issuer {0:?}: max_kidless_candidates must be at least 1")]
    ZeroKidlessCandidates(String),
    /// A refresh policy whose lower bound is above its upper bound.
    #[error("issuer {0:?}: refresh min_interval is longer than max_interval")]
    InvertedRefreshBounds(String),
}
