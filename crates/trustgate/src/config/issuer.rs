//! `[[issuer]]`: from the file to a core `IssuerConfig`, with the checks that weaken nothing
//! silently (leeway ceiling, key URLs that fetching would refuse, one key source).

use std::path::Path;
use std::time::Duration;

use http::Uri;
use trustgate_core::{
    AudiencePolicy, ClaimMapping, ExpiryPolicy, IssuerConfig, KeySource, NumericClaims, PemKey,
    RefreshPolicy,
};

use super::file;
use super::{ConfigError, claim_path, resolve};

/// The shortest refresh interval, cooldown and retry delay an issuer may be given.
const MIN_REFRESH_STEP: Duration = Duration::from_millis(100);

/// The most clock skew an issuer may be given without `danger_allow_long_leeway`: a token stays
/// usable this long past its `exp`, so a larger value quietly extends every stolen token's life.
const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);

/// Refuses, at load time, a key URL that fetching would refuse later: plain `http` to a host that
/// is not loopback, unless `jwks_fetch.danger_allow_http`. `check` then fails where the mistake
/// is, instead of printing "ok" for a gateway that never becomes ready.
fn check_key_url(
    id: &str,
    field: &str,
    url: &str,
    danger_allow_http: bool,
) -> Result<(), ConfigError> {
    let uri: Uri = url.parse().map_err(|_| {
        ConfigError::new(format!(
            "issuer {id:?}: {field} {url:?} is not a URL; write it like \"https://idp.example.com/jwks.json\""
        ))
    })?;
    // Not echoed: the URL holds a password. The fetcher would not send it as credentials
    // anyway, and the URL is printed by `check` and in fetch warnings.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(ConfigError::new(format!(
            "issuer {id:?}: {field} carries credentials (user@ or user:password@); remove them (keys are fetched without credentials)"
        )));
    }
    let host = uri.host().unwrap_or_default();
    match trustgate_core::check_key_url(&uri, danger_allow_http) {
        Ok(()) => Ok(()),
        Err(trustgate_core::FetchError::InsecureScheme) => Err(ConfigError::new(format!(
            "issuer {id:?}: {field} {url:?} is plain http to {host:?}, which is not loopback: a network attacker could replace the keys. Use https; only on a closed test network set jwks_fetch.danger_allow_http = true"
        ))),
        Err(_) => Err(ConfigError::new(format!(
            "issuer {id:?}: {field} {url:?} must be an https:// URL"
        ))),
    }
}

pub(super) fn issuer_config(
    issuer: file::FileIssuer,
    base: &Path,
    danger_allow_http: bool,
) -> Result<IssuerConfig, ConfigError> {
    let id = &issuer.id;
    let mut sources = Vec::new();
    if issuer.discovery {
        // The discovery document is fetched from the issuer URL itself.
        check_key_url(
            id,
            "issuer (discovery = true)",
            &issuer.issuer,
            danger_allow_http,
        )?;
        sources.push(KeySource::Discovery);
    }
    if let Some(url) = &issuer.jwks_url {
        check_key_url(id, "jwks_url", url, danger_allow_http)?;
        sources.push(KeySource::JwksUrl(url.clone()));
    }
    if issuer.leeway.0 > MAX_LEEWAY && !issuer.danger_allow_long_leeway {
        return Err(ConfigError::new(format!(
            "issuer {id:?}: leeway {:?} is over the {MAX_LEEWAY:?} ceiling; every token would stay valid that long past its exp. Fix the clocks (NTP) and lower it, or set danger_allow_long_leeway = true",
            issuer.leeway.0
        )));
    }
    if let Some(path) = &issuer.jwks_file {
        sources.push(KeySource::JwksFile(resolve(base, path)));
    }
    if !issuer.pem_keys.is_empty() {
        let mut pems = Vec::new();
        for key in &issuer.pem_keys {
            if !issuer.algorithms.contains(&key.alg) {
                return Err(ConfigError::new(format!(
                    "issuer {id:?}: PEM key {} is for {} but algorithms = {:?}; add {} to algorithms or change the key's alg",
                    key.file.display(),
                    key.alg,
                    issuer
                        .algorithms
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>(),
                    key.alg
                )));
            }
            let path = resolve(base, &key.file);
            let pem = std::fs::read_to_string(&path).map_err(|err| {
                ConfigError::new(format!(
                    "issuer {id:?}: cannot read PEM key {}: {err}",
                    path.display()
                ))
            })?;
            pems.push(PemKey {
                pem,
                alg: key.alg,
                kid: key.kid.clone(),
            });
        }
        sources.push(KeySource::Pem(pems));
    }
    let source = match sources.len() {
        1 => sources.remove(0),
        0 => {
            return Err(ConfigError::new(format!(
                "issuer {id:?} has no key source; set one of discovery = true, jwks_url, jwks_file or pem_keys"
            )));
        }
        _ => {
            return Err(ConfigError::new(format!(
                "issuer {id:?} has more than one key source; keep exactly one of discovery, jwks_url, jwks_file, pem_keys"
            )));
        }
    };
    if !issuer.danger_skip_audience && issuer.audiences.is_empty() {
        return Err(ConfigError::new(format!(
            "issuer {id:?} has no audiences; set audiences = [\"your-api\"] (the aud your tokens carry)"
        )));
    }
    if issuer
        .audiences
        .iter()
        .any(|audience| audience.trim().is_empty())
    {
        return Err(ConfigError::new(format!(
            "issuer {id:?} has an empty audience; each audience must name your API (the aud your tokens carry)"
        )));
    }
    let mut config = IssuerConfig::new(issuer.issuer.clone(), issuer.audiences, source);
    config.algorithms = issuer.algorithms;
    config.claims.leeway = issuer.leeway.0;
    config.claims.required_typ = issuer.required_typ;
    config.claims.max_lifetime = issuer.max_lifetime.map(|d| d.0);
    config.claims.required_claims = issuer.required_claims;
    if issuer.danger_skip_audience {
        config.claims.audience = AudiencePolicy::DangerSkip;
    }
    if issuer.danger_optional_exp {
        config.claims.expiry = ExpiryPolicy::DangerOptional;
    }
    let mut mapping = ClaimMapping::default();
    let field = |name: &str| format!("issuer {id:?} claims.{name}");
    if let Some(subject) = &issuer.claims.subject {
        mapping.subject = claim_path(subject, &field("subject"))?;
    }
    if let Some(roles) = &issuer.claims.roles {
        mapping.roles = Some(claim_path(roles, &field("roles"))?);
    }
    if let Some(scopes) = &issuer.claims.scopes {
        mapping.scopes = scopes
            .iter()
            .map(|s| claim_path(s, &field("scopes")))
            .collect::<Result<_, _>>()?;
    }
    if let Some(tenant) = &issuer.claims.tenant {
        mapping.tenant = Some(claim_path(tenant, &field("tenant"))?);
    }
    if let Some(client) = &issuer.claims.client {
        mapping.client = client
            .iter()
            .map(|s| claim_path(s, &field("client")))
            .collect::<Result<_, _>>()?;
    }
    for (name, path) in &issuer.claims.extra {
        mapping
            .extra
            .push((name.clone(), claim_path(path, &field("extra"))?));
    }
    mapping.numbers = match issuer.claims.numbers {
        file::NumbersMode::Refuse => NumericClaims::Refuse,
        file::NumbersMode::Integers => NumericClaims::Integers,
    };
    config.mapping = mapping;
    config.refresh = RefreshPolicy {
        default_interval: issuer.refresh.default_interval.0,
        min_interval: issuer.refresh.min_interval.0,
        max_interval: issuer.refresh.max_interval.0,
        unknown_kid_cooldown: issuer.refresh.unknown_kid_cooldown.0,
        max_staleness: issuer.refresh.max_staleness.0,
        retry_base: issuer.refresh.retry_base.0,
        unknown_kid_wait: issuer.refresh.unknown_kid_wait.0,
    };
    if config.refresh.unknown_kid_wait.is_zero()
        || config.refresh.unknown_kid_wait > Duration::from_secs(30)
    {
        return Err(ConfigError::new(format!(
            "issuer {id:?}: refresh.unknown_kid_wait must be between 1ms and 30s (default \"1s\"): it is how long a request with a new kid may wait for the key set"
        )));
    }
    // Zero (or next to it) would turn off what bounds the fetches: the unknown-kid flood limit,
    // the back-off from a failing issuer, the floor under a `max-age=0`.
    for (name, value) in [
        ("default_interval", config.refresh.default_interval),
        ("min_interval", config.refresh.min_interval),
        ("unknown_kid_cooldown", config.refresh.unknown_kid_cooldown),
        ("retry_base", config.refresh.retry_base),
    ] {
        if value < MIN_REFRESH_STEP {
            return Err(ConfigError::new(format!(
                "issuer {id:?}: refresh.{name} must be at least 100ms: it bounds how often the issuer is fetched"
            )));
        }
    }
    if config.refresh.min_interval > config.refresh.max_interval {
        return Err(ConfigError::new(format!(
            "issuer {id:?}: refresh.min_interval is larger than refresh.max_interval"
        )));
    }
    config.max_kidless_candidates = issuer.max_kidless_candidates;
    Ok(config)
}
