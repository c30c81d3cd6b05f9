//! Pattern 4 (external token becomes an internal token) and gateway assertions.
//!
//! The signer is created once per process, not per configuration, so a reload never rotates keys
//! by accident and services never see a kid they were not told about. Minted internal tokens are
//! cached per (external token, route), and reused until shortly before they expire, so signing is
//! not on every request's path.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use quick_cache::Equivalent;
use quick_cache::sync::Cache;
use serde_json::{Map, Value, json};
use trustgate_core::{
    AuthError, BoundRequest, Clock, INTERNAL_TOKEN_TYP, InternalSigner, MintError, Reason,
    SignerConfig, SystemClock, VerifiedToken,
};

use crate::config::{ConfigError, InternalClaim, InternalIssuerConfig, RouteConfig};
use crate::error::GatewayError;

/// The internal issuer URL: configured, or the admin listener's address.
pub(crate) fn issuer_url(config: &InternalIssuerConfig, admin: SocketAddr) -> String {
    config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{admin}"))
}

/// Creates the process's signer.
pub(crate) fn build_signer(
    config: &InternalIssuerConfig,
    admin: SocketAddr,
) -> Result<Arc<InternalSigner>, ConfigError> {
    let signer_config = SignerConfig {
        issuer: issuer_url(config, admin),
        algorithm: config.algorithm,
        rotation_interval: config.rotation_interval,
        max_token_ttl: config.max_ttl,
    };
    let clock = Arc::new(SystemClock);
    let signer = if config.key_files.is_empty() {
        InternalSigner::generate(signer_config, clock)
    } else {
        let mut pems = Vec::new();
        for path in &config.key_files {
            pems.push(std::fs::read_to_string(path).map_err(|err| {
                ConfigError(format!(
                    "internal_issuer.key_files: cannot read {}: {err}",
                    path.display()
                ))
            })?);
        }
        InternalSigner::from_pem(signer_config, &pems, clock)
    }
    .map_err(|err| ConfigError(format!("internal_issuer: {err}")))?;
    Ok(Arc::new(signer))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MintKey {
    token: Box<str>,
    route: u32,
}

impl Hash for MintKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.token.as_ref().hash(state);
        self.route.hash(state);
    }
}

/// A borrowed key, so a lookup does not allocate.
#[derive(Hash)]
struct MintKeyRef<'a> {
    token: &'a str,
    route: u32,
}

impl Equivalent<MintKey> for MintKeyRef<'_> {
    fn equivalent(&self, key: &MintKey) -> bool {
        self.route == key.route && self.token == &*key.token
    }
}

/// Minted internal tokens, ready as Authorization values.
pub(crate) struct MintCache {
    /// `None` when caching is switched off: every request signs.
    entries: Option<Cache<MintKey, (HeaderValue, i64)>>,
}

impl MintCache {
    pub(crate) fn new(capacity: usize, enabled: bool) -> Self {
        Self {
            entries: enabled.then(|| Cache::new(capacity)),
        }
    }

    /// The `Authorization` value carrying an internal token for `external` on `route`: cached,
    /// or minted now. A cached token is reused only while more than a quarter of its lifetime
    /// (and at least 5 s) remains, so the service never receives one about to expire.
    ///
    /// The internal token never outlives the external one: its `exp` is capped at the external
    /// `exp`, and so is the cache entry, which records the capped `exp`.
    ///
    /// # Errors
    /// `invalid_token` (expired) when under one second of the external token's life remains
    /// (inside its leeway, say); [`GatewayError::Internal`] if signing fails.
    pub(crate) fn authorization(
        &self,
        signer: &InternalSigner,
        external_text: &str,
        route_index: u32,
        route: &RouteConfig,
        verified: &VerifiedToken,
    ) -> Result<HeaderValue, GatewayError> {
        let now = SystemClock.now_millis();
        let margin = i64::try_from(
            (route.internal_ttl / 4)
                .max(Duration::from_secs(5))
                .as_millis(),
        )
        .unwrap_or(i64::MAX);
        let lookup = MintKeyRef {
            token: external_text,
            route: route_index,
        };
        if let Some((value, expires)) = self.entries.as_ref().and_then(|e| e.get(&lookup))
            && expires.saturating_sub(now) > margin
        {
            return Ok(value);
        }
        let claims = internal_claims(verified, &route.internal_claims);
        let minted = signer
            .mint_within(
                INTERNAL_TOKEN_TYP,
                &route.service,
                route.internal_ttl,
                verified.expires_at(),
                claims,
            )
            .map_err(mint_refusal)?;
        let value = HeaderValue::from_str(&format!("Bearer {}", minted.token))
            .map_err(|_| GatewayError::Internal)?;
        if let Some(entries) = &self.entries {
            entries.insert(
                MintKey {
                    token: Box::from(external_text),
                    route: route_index,
                },
                (value.clone(), minted.expires_at_ms),
            );
        }
        Ok(value)
    }
}

/// A token that cannot be minted because the external one is about to expire is refused as
/// expired; any other failure is the gateway's own.
fn mint_refusal(err: MintError) -> GatewayError {
    match err {
        MintError::TooShort => AuthError::InvalidToken(Reason::Expired).into(),
        _ => GatewayError::Internal,
    }
}

/// The allow-listed identity plus the origin (client id and external issuer).
pub(crate) fn internal_claims(
    verified: &VerifiedToken,
    allowed: &[InternalClaim],
) -> Map<String, Value> {
    let identity = verified.identity();
    let mut claims = Map::new();
    for claim in allowed {
        match claim {
            InternalClaim::Sub => {
                if let Some(sub) = identity.subject() {
                    claims.insert("sub".into(), json!(sub));
                }
            }
            InternalClaim::Tenant => {
                if let Some(tenant) = identity.tenant() {
                    claims.insert("tenant_id".into(), json!(tenant));
                }
            }
            InternalClaim::Roles => {
                if !identity.roles().is_empty() {
                    claims.insert("roles".into(), json!(identity.roles()));
                }
            }
            InternalClaim::Scopes => {
                if !identity.scopes().is_empty() {
                    claims.insert("scope".into(), json!(identity.scopes().join(" ")));
                }
            }
        }
    }
    if let Some(client) = identity.client() {
        claims.insert("client_id".into(), json!(client));
    }
    claims.insert("ext_iss".into(), json!(verified.issuer()));
    claims
}

/// Signs a gateway assertion binding the method, the forwarded path and query, the injected
/// identity headers and the time.
pub(crate) fn assertion(
    signer: &InternalSigner,
    route: &RouteConfig,
    method: &http::Method,
    path_and_query: &str,
    headers: &HeaderMap,
    verified: Option<&VerifiedToken>,
) -> Result<HeaderValue, GatewayError> {
    let identity = match verified {
        Some(verified) => internal_claims(
            verified,
            &[
                InternalClaim::Sub,
                InternalClaim::Tenant,
                InternalClaim::Roles,
                InternalClaim::Scopes,
            ],
        ),
        None => Map::new(),
    };
    let request = BoundRequest {
        method,
        path_and_query,
        headers,
    };
    let minted = signer
        .mint_assertion(
            &route.service,
            &request,
            route.headers.iter().map(|(name, _)| name),
            identity,
            verified.and_then(VerifiedToken::expires_at),
        )
        .map_err(mint_refusal)?;
    HeaderValue::from_str(&minted.token).map_err(|_| GatewayError::Internal)
}

/// The assertion header name.
pub(crate) fn assertion_header() -> HeaderName {
    HeaderName::from_static(trustgate_core::ASSERTION_HEADER)
}
