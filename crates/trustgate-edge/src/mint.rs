//! What the gateway signs with its own keys: pattern 4's internal tokens and the assertions of
//! routes with `assertion = true`.
//!
//! Minted internal tokens are cached per (external token, route), and reused until shortly before
//! they expire, so signing is not on every request's path.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use quick_cache::Equivalent;
use quick_cache::sync::Cache;
use serde_json::{Map, Value, json};
use trustgate_core::{
    AuthError, BoundRequest, Clock, INTERNAL_TOKEN_TYP, InternalSigner, MintError, Reason,
    SystemClock, VerifiedToken,
};

use crate::error::GatewayError;
use crate::trust::{IdentityHeaders, InternalClaim, InternalToken};

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
pub struct MintCache {
    /// `None` when caching is switched off: every request signs.
    entries: Option<Cache<MintKey, (HeaderValue, i64)>>,
}

impl MintCache {
    /// A cache of `capacity` minted tokens, or none when `enabled` is false.
    pub fn new(capacity: usize, enabled: bool) -> Self {
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
    pub fn authorization(
        &self,
        signer: &InternalSigner,
        external_text: &str,
        route_index: u32,
        pattern: &InternalToken,
        verified: &VerifiedToken,
    ) -> Result<HeaderValue, GatewayError> {
        let now = SystemClock.now_millis();
        let margin = i64::try_from((pattern.ttl / 4).max(Duration::from_secs(5)).as_millis())
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
        let claims = internal_claims(verified, &pattern.claims);
        let minted = signer
            .mint_within(
                INTERNAL_TOKEN_TYP,
                &pattern.service,
                pattern.ttl,
                verified.expires_at(),
                claims,
            )
            .map_err(mint_refusal)?;
        let value = credential_value(&format!("Bearer {}", minted.token))?;
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
        MintError::NoSigningKey => GatewayError::SigningUnavailable,
        _ => GatewayError::Internal,
    }
}

/// The allow-listed identity plus the origin (client id and external issuer).
pub fn internal_claims(verified: &VerifiedToken, allowed: &[InternalClaim]) -> Map<String, Value> {
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

/// Signs a gateway assertion for `service`, binding the method, the forwarded path and query,
/// the identity headers the route injects (`injected`, their values taken from the verified
/// identity exactly as they are injected) and the time.
pub fn assertion(
    signer: &InternalSigner,
    service: &str,
    method: &http::Method,
    path_and_query: &str,
    injected: Option<&IdentityHeaders>,
    verified: Option<&VerifiedToken>,
) -> Result<HeaderValue, GatewayError> {
    let identity = match verified {
        Some(verified) => internal_claims(verified, &InternalToken::default_claims()),
        None => Map::new(),
    };
    // The injected headers as the upstream receives them: their values come from the verified
    // identity, exactly as `IdentityHeaders::inject` sets them.
    let mut injected_values = HeaderMap::new();
    if let (Some(injected), Some(verified)) = (injected, verified) {
        injected.inject(verified.identity(), &mut injected_values);
    }
    let request = BoundRequest {
        method,
        path_and_query,
        headers: &injected_values,
    };
    let minted = signer
        .mint_assertion(
            service,
            &request,
            injected
                .into_iter()
                .flat_map(|i| i.headers.iter().map(|(name, _)| name)),
            identity,
            verified.and_then(VerifiedToken::expires_at),
        )
        .map_err(mint_refusal)?;
    credential_value(&minted.token)
}

/// A header value that carries a credential the gateway minted. Marked sensitive, so that an
/// HTTP/2 upstream connection, which every client's requests share, never puts it in its HPACK
/// table but sends it as "never indexed" (RFC 7541 §7.1.3): a compression context shared with
/// other clients' headers is how compression attacks recover secrets, and the marking also tells
/// intermediaries further on not to index it. `Debug` prints it as `Sensitive`.
fn credential_value(text: &str) -> Result<HeaderValue, GatewayError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| GatewayError::Internal)?;
    value.set_sensitive(true);
    Ok(value)
}

/// The assertion header name.
pub fn assertion_header() -> HeaderName {
    HeaderName::from_static(trustgate_core::ASSERTION_HEADER)
}
