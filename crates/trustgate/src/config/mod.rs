//! Configuration: from the TOML file (`file`) to a validated [`Config`], before any port is bound.
//!
//! Loading happens in three steps, each with errors written for the operator:
//! 1. the text is parsed as TOML into `file::FileConfig` (unknown fields are errors, with a line
//!    number);
//! 2. `${NAME}` in string values is replaced from the environment (a missing variable is an error;
//!    `$${` writes a literal `${`). Substitution works on parsed string values, never on raw text,
//!    so a variable's content can never change the structure of the file;
//! 3. cross-references and values are checked and turned into typed settings.

mod duration;
mod file;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Uri};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use trustgate_core::{
    AudiencePolicy, ClaimMapping, ClaimPath, ExpiryPolicy, FetchOptions, IdentityField,
    IssuerConfig, KeySource, NumericClaims, PemKey, RefreshPolicy, ValidatorOptions,
};

pub(crate) use file::{
    DoubleSlashMode, FilePattern as Pattern, FileTls, InternalClaim, LogFormat, RequireMode,
    SanitizeMode,
};

/// A configuration problem, with a message that says how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConfigError(pub(crate) String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) server: ServerConfig,
    pub(crate) admin_listen: SocketAddr,
    pub(crate) sanitize: SanitizeConfig,
    pub(crate) log: LogConfig,
    pub(crate) issuers: Vec<IssuerEntry>,
    pub(crate) validator: ValidatorOptions,
    pub(crate) upstreams: Vec<UpstreamConfig>,
    pub(crate) routes: Vec<RouteConfig>,
    pub(crate) internal: Option<InternalIssuerConfig>,
}

/// The gateway's own issuer for internal tokens and assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InternalIssuerConfig {
    /// `None`: `http://<admin listen address>`, decided once the admin port is bound.
    pub(crate) issuer: Option<String>,
    pub(crate) algorithm: trustgate_core::Algorithm,
    pub(crate) rotation_interval: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) key_files: Vec<PathBuf>,
    pub(crate) serve_on_edge: bool,
    /// Reuse a minted internal token for the same external token and route until shortly before
    /// it expires (default). Off: sign on every request.
    pub(crate) cache_minted_tokens: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) tls: Option<FileTls>,
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) double_slash: DoubleSlashMode,
    pub(crate) shutdown_grace: Duration,
    /// Tokio worker threads; 0 means one per CPU.
    pub(crate) worker_threads: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct SanitizeConfig {
    /// Exact identity header names: the configured ones plus every injected name.
    pub(crate) names: Vec<String>,
    pub(crate) prefixes: Vec<String>,
    pub(crate) mode: SanitizeMode,
}

#[derive(Debug, Clone)]
pub(crate) struct LogConfig {
    pub(crate) access: bool,
    pub(crate) format: LogFormat,
    pub(crate) level: String,
}

#[derive(Debug, Clone)]
pub(crate) struct IssuerEntry {
    pub(crate) id: String,
    pub(crate) config: IssuerConfig,
}

#[derive(Debug, Clone)]
pub(crate) struct UpstreamConfig {
    pub(crate) id: String,
    /// Scheme and authority of the upstream.
    pub(crate) scheme: http::uri::Scheme,
    pub(crate) authority: http::uri::Authority,
    /// `authority` as the Host header sent upstream (unless `preserve_host`), made once.
    pub(crate) host_header: http::HeaderValue,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
    pub(crate) preserve_host: bool,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_host: usize,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Requirements {
    pub(crate) scopes: Vec<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) claims: Vec<(ClaimPath, Vec<String>)>,
    pub(crate) mode: RequireMode,
}

impl Requirements {
    pub(crate) fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.roles.is_empty() && self.claims.is_empty()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RouteConfig {
    pub(crate) name: String,
    /// Lowercased host without port; `None` matches any host.
    pub(crate) host: Option<String>,
    pub(crate) prefix: String,
    pub(crate) upstream: String,
    pub(crate) pattern: Pattern,
    /// The `iss` values accepted on this route.
    pub(crate) issuers: Vec<String>,
    pub(crate) allow_anonymous: bool,
    /// The prefix that replaces `prefix` in the forwarded path, if any.
    pub(crate) rewrite: Option<String>,
    pub(crate) token_cookie: Option<String>,
    pub(crate) require: Requirements,
    pub(crate) headers: Vec<(HeaderName, IdentityField)>,
    /// The audience of internal tokens and assertions for this route's service.
    pub(crate) service: String,
    pub(crate) internal_ttl: Duration,
    pub(crate) internal_claims: Vec<InternalClaim>,
    pub(crate) assertion: bool,
}

impl Pattern {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pattern::Public => "public",
            Pattern::ServiceValidates => "service-validates",
            Pattern::ForwardToken => "forward-token",
            Pattern::IdentityHeaders => "identity-headers",
            Pattern::InternalToken => "internal-token",
        }
    }

    /// Whether the gateway validates a token on this pattern.
    pub(crate) fn validates(self) -> bool {
        matches!(
            self,
            Pattern::ForwardToken | Pattern::IdentityHeaders | Pattern::InternalToken
        )
    }
}

/// Reads, substitutes and validates the file at `path`.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigError::new(format!("cannot read config file {}: {err}", path.display()))
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    // Every error names the file it is about (the TOML errors add the line and column).
    parse(&text, base, &|name| std::env::var(name).ok()).map_err(|err| {
        let message = err.0.strip_prefix("config file: ").unwrap_or(&err.0);
        ConfigError(format!("{}: {message}", path.display()))
    })
}

/// Parses config text. Relative file paths are resolved against `base`.
pub(crate) fn parse(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    // Step 1: structure, with line numbers in errors. A `${NAME}` in a typed field (a duration,
    // an algorithm) only parses after substitution, so with placeholders present a failure here is
    // left to step 2, which reports it without a line number.
    if let Err(err) = toml::from_str::<file::FileConfig>(text)
        && !text.contains("${")
    {
        return Err(ConfigError::new(with_suggestion(format!(
            "config file: {err}"
        ))));
    }

    // Step 2: substitute ${ENV} inside string values only.
    let mut value: toml::Value = toml::from_str(text)
        .map_err(|err| ConfigError::new(with_suggestion(format!("config file: {err}"))))?;
    substitute(&mut value, env)?;
    let file: file::FileConfig = value
        .try_into()
        .map_err(|err| ConfigError::new(with_suggestion(format!("config file: {err}"))))?;
    // Step 3.
    validate(file, base)
}

/// Adds "did you mean `audiences`?" to an unknown-field error whose field is a near miss of a
/// valid one (at most a third of its letters wrong, and at least one).
fn with_suggestion(message: String) -> String {
    let Some((_, rest)) = message.split_once("unknown field `") else {
        return message;
    };
    let Some((unknown, rest)) = rest.split_once('`') else {
        return message;
    };
    let Some((_, expected)) = rest.split_once("expected one of ") else {
        return message;
    };
    let candidates = expected
        .split(',')
        .map(|c| c.trim().trim_matches('`'))
        .filter(|c| !c.is_empty());
    let best = candidates
        .map(|c| (edit_distance(unknown, c), c))
        .min_by_key(|&(distance, _)| distance);
    match best {
        Some((distance, candidate)) if distance <= (unknown.len() / 3).max(1) => {
            format!("{message}\ndid you mean `{candidate}`?")
        }
        _ => message,
    }
}

/// Levenshtein distance over bytes; field names are short ASCII.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.as_bytes().iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn substitute(
    value: &mut toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) => {
            if text.contains('$') {
                *text = substitute_str(text, env)?;
            }
            Ok(())
        }
        toml::Value::Array(items) => items.iter_mut().try_for_each(|v| substitute(v, env)),
        toml::Value::Table(table) => table.iter_mut().try_for_each(|(_, v)| substitute(v, env)),
        _ => Ok(()),
    }
}

fn substitute_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(open) = after.strip_prefix("${") {
            let end = open.find('}').ok_or_else(|| {
                ConfigError::new(format!("unterminated ${{...}} in config value {text:?}"))
            })?;
            let name = &open[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::new(format!(
                    "invalid variable name {name:?} in ${{...}}; use letters, digits and _"
                )));
            }
            let value = env(name).ok_or_else(|| {
                ConfigError::new(format!(
                    "environment variable {name} is referenced in the config but not set; export it or remove the reference"
                ))
            })?;
            out.push_str(&value);
            rest = &open[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn socket_addr(text: &str, field: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(format!(
            "{field} = {text:?} is not an address; write IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::]:8443\""
        ))
    })
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

fn validate(file: file::FileConfig, base: &Path) -> Result<Config, ConfigError> {
    let server = file.server;
    if server.max_connections == 0 {
        return Err(ConfigError::new(
            "server.max_connections must be at least 1",
        ));
    }
    if server.max_headers == 0 || server.max_header_bytes < 1024 {
        return Err(ConfigError::new(
            "server.max_headers must be at least 1 and server.max_header_bytes at least 1024",
        ));
    }
    if server.max_headers > crate::h1_framing::MAX_HEADERS {
        return Err(ConfigError::new(format!(
            "server.max_headers may be at most {}: the framing check parses that many fields of a head",
            crate::h1_framing::MAX_HEADERS
        )));
    }
    let server_config = ServerConfig {
        listen: socket_addr(&server.listen, "server.listen")?,
        tls: server.tls.map(|tls| FileTls {
            cert: resolve(base, &tls.cert),
            key: resolve(base, &tls.key),
        }),
        max_connections: server.max_connections,
        header_read_timeout: server.header_read_timeout.0,
        idle_timeout: server.idle_timeout.0,
        max_header_bytes: server.max_header_bytes,
        max_headers: server.max_headers,
        trusted_proxies: server.trusted_proxies,
        double_slash: server.double_slash,
        shutdown_grace: server.shutdown_grace.0,
        worker_threads: server.worker_threads,
    };
    let admin_listen = socket_addr(&file.admin.listen, "admin.listen")?;

    let mut extra_roots = Vec::new();
    for ca in &file.jwks_fetch.ca_files {
        let ca = resolve(base, ca);
        let certs = CertificateDer::pem_file_iter(&ca).map_err(|err| {
            ConfigError::new(format!(
                "jwks_fetch.ca_files: cannot read {}: {err}",
                ca.display()
            ))
        })?;
        for cert in certs {
            extra_roots.push(cert.map_err(|err| {
                ConfigError::new(format!(
                    "jwks_fetch.ca_files: {} is not PEM certificates: {err}",
                    ca.display()
                ))
            })?);
        }
    }
    let validator = ValidatorOptions {
        max_token_bytes: file.cache.max_token_bytes,
        cache: trustgate_core::CacheOptions {
            enabled: file.cache.enabled,
            max_entries: file.cache.max_entries,
            max_bytes: file.cache.max_bytes,
        },
        fetch: FetchOptions {
            timeout: file.jwks_fetch.timeout.0,
            max_body_bytes: file.jwks_fetch.max_bytes,
            extra_roots,
            danger_allow_http: file.jwks_fetch.danger_allow_http,
        },
    };

    let mut issuers = Vec::new();
    let mut seen_ids = HashSet::new();
    for issuer in file.issuers {
        if !seen_ids.insert(issuer.id.clone()) {
            return Err(ConfigError::new(format!(
                "issuer id {:?} is used twice; give each [[issuer]] a unique id",
                issuer.id
            )));
        }
        issuers.push(IssuerEntry {
            id: issuer.id.clone(),
            config: issuer_config(issuer, base, file.jwks_fetch.danger_allow_http)?,
        });
    }

    let mut upstreams = Vec::new();
    for upstream in file.upstreams {
        if upstreams
            .iter()
            .any(|u: &UpstreamConfig| u.id == upstream.id)
        {
            return Err(ConfigError::new(format!(
                "upstream id {:?} is used twice; give each [[upstream]] a unique id",
                upstream.id
            )));
        }
        upstreams.push(upstream_config(upstream, base)?);
    }

    let internal = match file.internal_issuer {
        None => None,
        Some(internal) => {
            if !matches!(
                internal.algorithm,
                trustgate_core::Algorithm::EdDSA | trustgate_core::Algorithm::ES256
            ) {
                return Err(ConfigError::new(
                    "internal_issuer.algorithm must be \"EdDSA\" (default) or \"ES256\"",
                ));
            }
            if let Some(iss) = &internal.issuer
                && issuers.iter().any(|i| &i.config.issuer == iss)
            {
                return Err(ConfigError::new(format!(
                    "internal_issuer.issuer {iss:?} equals an external issuer; internal tokens must be distinguishable at the edge, so choose another URL"
                )));
            }
            if internal.issuer.is_none() && admin_listen.ip().is_unspecified() {
                return Err(ConfigError::new(format!(
                    "internal_issuer.issuer is not set and admin.listen is {admin_listen}, which services cannot reach; set internal_issuer.issuer to the URL services use to fetch the gateway's JWKS"
                )));
            }
            if internal.max_ttl.0 < Duration::from_secs(1) {
                return Err(ConfigError::new(
                    "internal_issuer.max_ttl must be at least 1s",
                ));
            }
            if internal.rotation_interval.0.is_zero() {
                return Err(ConfigError::new(
                    "internal_issuer.rotation_interval = \"0s\" would rotate without end; the default is \"6h\"",
                ));
            }
            if internal.rotation_interval.0 < MIN_ROTATION_INTERVAL
                && !internal.danger_fast_rotation
            {
                return Err(ConfigError::new(format!(
                    "internal_issuer.rotation_interval {:?} is under {MIN_ROTATION_INTERVAL:?}: each next key is published one interval before it signs, and services cache the internal JWKS for {:?}, so a shorter interval lets a key sign before services have seen it. Raise it, or for tests only set internal_issuer.danger_fast_rotation = true",
                    internal.rotation_interval.0,
                    crate::admin::INTERNAL_JWKS_MAX_AGE
                )));
            }
            Some(InternalIssuerConfig {
                issuer: internal.issuer,
                algorithm: internal.algorithm,
                rotation_interval: internal.rotation_interval.0,
                max_ttl: internal.max_ttl.0,
                key_files: internal
                    .key_files
                    .iter()
                    .map(|p| resolve(base, p))
                    .collect(),
                serve_on_edge: internal.serve_on_edge,
                cache_minted_tokens: internal.cache_minted_tokens,
            })
        }
    };

    let mut injected_names = Vec::new();
    let mut routes = Vec::new();
    for route in file.routes {
        let route = route_config(route, &issuers, &upstreams, internal.as_ref())?;
        if routes
            .iter()
            .any(|r: &RouteConfig| r.host == route.host && r.prefix == route.prefix)
        {
            return Err(ConfigError::new(format!(
                "route {:?}: another route already has host {:?} and prefix {:?}",
                route.name,
                route.host.as_deref().unwrap_or("*"),
                route.prefix
            )));
        }
        if routes.iter().any(|r: &RouteConfig| r.name == route.name) {
            return Err(ConfigError::new(format!(
                "route name {:?} is used twice; route names label metrics and logs, so make them unique",
                route.name
            )));
        }
        injected_names.extend(
            route
                .headers
                .iter()
                .map(|(name, _)| name.as_str().to_owned()),
        );
        routes.push(route);
    }
    if routes.is_empty() {
        return Err(ConfigError::new(
            "no routes: add at least one [[route]] with name, prefix, upstream and pattern",
        ));
    }

    let mut names = file.sanitize.names;
    names.extend(injected_names);
    for name in &names {
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::new(format!(
                "sanitize.names: {name:?} is not a valid header name"
            ))
        })?;
    }

    Ok(Config {
        server: server_config,
        admin_listen,
        sanitize: SanitizeConfig {
            names,
            prefixes: file.sanitize.prefixes,
            mode: file.sanitize.mode,
        },
        log: LogConfig {
            access: file.log.access,
            format: file.log.format,
            level: file.log.level,
        },
        issuers,
        validator,
        upstreams,
        routes,
        internal,
    })
}

fn claim_path(text: &str, field: &str) -> Result<ClaimPath, ConfigError> {
    ClaimPath::parse(text).map_err(|err| ConfigError::new(format!("{field}: {err}")))
}

/// The shortest `rotation_interval` without `danger_fast_rotation`: the internal JWKS's cache
/// lifetime, plus 30 s for a service's refetch to complete.
const MIN_ROTATION_INTERVAL: Duration =
    Duration::from_secs(crate::admin::INTERNAL_JWKS_MAX_AGE.as_secs() + 30);

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

fn issuer_config(
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
    if config.refresh.min_interval > config.refresh.max_interval {
        return Err(ConfigError::new(format!(
            "issuer {id:?}: refresh.min_interval is larger than refresh.max_interval"
        )));
    }
    config.max_kidless_candidates = issuer.max_kidless_candidates;
    Ok(config)
}

fn upstream_config(
    upstream: file::FileUpstream,
    base: &Path,
) -> Result<UpstreamConfig, ConfigError> {
    let id = &upstream.id;
    let uri: Uri = upstream.url.parse().map_err(|_| {
        ConfigError::new(format!(
            "upstream {id:?}: url {:?} does not parse; write e.g. \"http://127.0.0.1:9000\"",
            upstream.url
        ))
    })?;
    let scheme = uri.scheme().cloned().ok_or_else(|| {
        ConfigError::new(format!(
            "upstream {id:?}: url needs a scheme (http:// or https://)"
        ))
    })?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: scheme must be http or https"
        )));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| ConfigError::new(format!("upstream {id:?}: url needs a host")))?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: url must not have a path; use the route's rewrite_prefix instead"
        )));
    }
    if upstream.client_cert.is_some() != upstream.client_key.is_some() {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: set both client_cert and client_key for mTLS, or neither"
        )));
    }
    if scheme == http::uri::Scheme::HTTP
        && (upstream.ca_file.is_some() || upstream.client_cert.is_some())
    {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: ca_file/client_cert need an https:// url"
        )));
    }
    let host_header = http::HeaderValue::from_str(authority.as_str()).map_err(|_| {
        ConfigError::new(format!(
            "upstream {id:?}: the url's host cannot be sent as a Host header"
        ))
    })?;
    Ok(UpstreamConfig {
        id: upstream.id.clone(),
        scheme,
        authority,
        host_header,
        connect_timeout: upstream.connect_timeout.0,
        response_timeout: upstream.response_timeout.0,
        ca_file: upstream.ca_file.map(|p| resolve(base, &p)),
        client_cert: upstream.client_cert.map(|p| resolve(base, &p)),
        client_key: upstream.client_key.map(|p| resolve(base, &p)),
        preserve_host: upstream.preserve_host,
        pool_idle_timeout: upstream.pool_idle_timeout.0,
        pool_max_idle_per_host: upstream.pool_max_idle_per_host,
    })
}

fn default_headers() -> Vec<(HeaderName, IdentityField)> {
    vec![
        (HeaderName::from_static("x-user-id"), IdentityField::Subject),
        (
            HeaderName::from_static("x-user-roles"),
            IdentityField::Roles,
        ),
        (
            HeaderName::from_static("x-tenant-id"),
            IdentityField::Tenant,
        ),
    ]
}

fn identity_field(from: &str) -> Option<IdentityField> {
    Some(match from {
        "subject" => IdentityField::Subject,
        "roles" => IdentityField::Roles,
        "scopes" => IdentityField::Scopes,
        "tenant" => IdentityField::Tenant,
        "client" => IdentityField::Client,
        "issuer" => IdentityField::Issuer,
        other => IdentityField::Claim(other.strip_prefix("claim:")?.to_owned()),
    })
}

fn route_config(
    route: file::FileRoute,
    issuers: &[IssuerEntry],
    upstreams: &[UpstreamConfig],
    internal: Option<&InternalIssuerConfig>,
) -> Result<RouteConfig, ConfigError> {
    let name = &route.name;
    if !upstreams.iter().any(|u| u.id == route.upstream) {
        let known: Vec<&str> = upstreams.iter().map(|u| u.id.as_str()).collect();
        return Err(ConfigError::new(format!(
            "route {name:?}: upstream {:?} is not defined; defined upstreams: {known:?}",
            route.upstream
        )));
    }
    let prefix = match crate::path::normalize(&route.prefix, crate::path::DoubleSlash::Reject) {
        Ok(normalized) if normalized.query().is_none() && normalized.path() == route.prefix => {
            route.prefix.clone()
        }
        _ => {
            return Err(ConfigError::new(format!(
                "route {name:?}: prefix {:?} must be a normalized path starting with '/', without '..', '//', '%2F' or a query",
                route.prefix
            )));
        }
    };
    let needs_signer = route.pattern == Pattern::InternalToken || route.assertion;
    if needs_signer && internal.is_none() {
        return Err(ConfigError::new(format!(
            "route {name:?}: internal tokens and assertions are signed by the gateway; add an [internal_issuer] section"
        )));
    }
    if route.assertion
        && !matches!(
            route.pattern,
            Pattern::IdentityHeaders | Pattern::ForwardToken
        )
    {
        return Err(ConfigError::new(format!(
            "route {name:?}: assertion = true applies to identity-headers and forward-token routes"
        )));
    }
    if route.pattern != Pattern::InternalToken
        && (route.internal_ttl.is_some() || route.internal_claims.is_some())
    {
        return Err(ConfigError::new(format!(
            "route {name:?}: internal_ttl and internal_claims only apply to pattern \"internal-token\""
        )));
    }
    if let Some(ttl) = route.internal_ttl
        && ttl.0 < Duration::from_secs(1)
    {
        return Err(ConfigError::new(format!(
            "route {name:?}: internal_ttl must be at least 1s"
        )));
    }
    // The default is 60 s, or the issuer's maximum if that is shorter.
    let internal_ttl = route.internal_ttl.map_or_else(
        || {
            internal.map_or(Duration::from_secs(60), |i| {
                i.max_ttl.min(Duration::from_secs(60))
            })
        },
        |d| d.0,
    );
    if let Some(internal) = internal
        && route.pattern == Pattern::InternalToken
        && internal_ttl > internal.max_ttl
    {
        return Err(ConfigError::new(format!(
            "route {name:?}: internal_ttl {internal_ttl:?} exceeds internal_issuer.max_ttl {:?}",
            internal.max_ttl
        )));
    }
    let route_issuers: Vec<String> = match &route.issuers {
        Some(ids) => ids
            .iter()
            .map(|id| {
                issuers
                    .iter()
                    .find(|i| &i.id == id)
                    .map(|i| i.config.issuer.clone())
                    .ok_or_else(|| {
                        let known: Vec<&str> = issuers.iter().map(|i| i.id.as_str()).collect();
                        ConfigError::new(format!(
                            "route {name:?}: issuer {id:?} is not defined; defined issuer ids: {known:?}"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
        None => issuers.iter().map(|i| i.config.issuer.clone()).collect(),
    };
    if route.pattern.validates() && route_issuers.is_empty() {
        return Err(ConfigError::new(format!(
            "route {name:?}: pattern {:?} validates tokens but no [[issuer]] is configured",
            route.pattern.name()
        )));
    }
    let require = Requirements {
        scopes: route.require.scopes,
        roles: route.require.roles,
        claims: route
            .require
            .claims
            .iter()
            .map(|(path, values)| {
                Ok((
                    claim_path(path, &format!("route {name:?} require.claims"))?,
                    values.clone(),
                ))
            })
            .collect::<Result<_, ConfigError>>()?,
        mode: route.require.mode,
    };
    if route.pattern == Pattern::InternalToken && route.allow_anonymous {
        return Err(ConfigError::new(format!(
            "route {name:?}: internal-token routes always need a token (allow_anonymous cannot be set)"
        )));
    }
    if !route.pattern.validates() && (!require.is_empty() || route.allow_anonymous) {
        return Err(ConfigError::new(format!(
            "route {name:?}: require/allow_anonymous only apply to patterns where the gateway validates (forward-token, identity-headers, internal-token)"
        )));
    }
    let rewrite = match (route.strip_prefix, &route.rewrite_prefix) {
        (true, Some(_)) => {
            return Err(ConfigError::new(format!(
                "route {name:?}: set strip_prefix or rewrite_prefix, not both"
            )));
        }
        (true, None) => Some("/".to_owned()),
        (false, Some(rewrite)) => {
            if !rewrite.starts_with('/') || rewrite.contains("..") || rewrite.contains("//") {
                return Err(ConfigError::new(format!(
                    "route {name:?}: rewrite_prefix {rewrite:?} must start with '/' and contain no '..' or '//'"
                )));
            }
            Some(rewrite.clone())
        }
        (false, None) => None,
    };
    let headers = match &route.headers {
        None if route.pattern == Pattern::IdentityHeaders => default_headers(),
        None => Vec::new(),
        Some(bindings) => {
            if route.pattern != Pattern::IdentityHeaders {
                return Err(ConfigError::new(format!(
                    "route {name:?}: headers only apply to pattern \"identity-headers\""
                )));
            }
            let mut out = Vec::new();
            for binding in bindings {
                let header = HeaderName::from_bytes(binding.name.as_bytes()).map_err(|_| {
                    ConfigError::new(format!(
                        "route {name:?}: {:?} is not a valid header name",
                        binding.name
                    ))
                })?;
                let field = identity_field(&binding.from).ok_or_else(|| {
                    ConfigError::new(format!(
                        "route {name:?}: header {:?} from {:?}: use subject, roles, scopes, tenant, client, issuer or claim:<name> (a name from the issuer's [claims.extra])",
                        binding.name, binding.from
                    ))
                })?;
                if let IdentityField::Claim(claim) = &field {
                    let known = issuers
                        .iter()
                        .filter(|i| route_issuers.contains(&i.config.issuer))
                        .any(|i| i.config.mapping.extra.iter().any(|(n, _)| n == claim));
                    if !known {
                        return Err(ConfigError::new(format!(
                            "route {name:?}: header {:?} uses claim:{claim} but no issuer of this route maps it; add it under [issuer.claims.extra]",
                            binding.name
                        )));
                    }
                }
                if matches!(
                    header.as_str(),
                    "authorization"
                        | "cookie"
                        | "host"
                        | "content-length"
                        | "transfer-encoding"
                        | "connection"
                        | "forwarded"
                        | "x-real-ip"
                ) || header.as_str().starts_with("x-forwarded-")
                {
                    return Err(ConfigError::new(format!(
                        "route {name:?}: {:?} cannot be used as an identity header",
                        binding.name
                    )));
                }
                out.push((header, field));
            }
            out
        }
    };
    // A host no request could carry would never match: refused, by the rule requests meet.
    if let Some(host) = route.host.as_deref()
        && !crate::router::is_host_and_port(host.as_bytes())
    {
        return Err(ConfigError::new(format!(
            "route {name:?}: host {host:?} is not a host name or address; write it like \"api.example.com\""
        )));
    }
    // Normalized exactly as request hosts are (lowercase, no port, no trailing dot).
    let host = route
        .host
        .as_deref()
        .map(|h| crate::router::host_without_port(h).into_owned());
    if route.token_cookie.as_ref().is_some_and(|c| {
        c.is_empty()
            || !c
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    }) {
        return Err(ConfigError::new(format!(
            "route {name:?}: token_cookie must be a valid cookie name"
        )));
    }
    let service = route
        .service
        .clone()
        .unwrap_or_else(|| route.upstream.clone());
    let internal_claims = route.internal_claims.clone().unwrap_or_else(|| {
        vec![
            InternalClaim::Sub,
            InternalClaim::Tenant,
            InternalClaim::Roles,
            InternalClaim::Scopes,
        ]
    });
    Ok(RouteConfig {
        service,
        internal_ttl,
        internal_claims,
        assertion: route.assertion,
        name: route.name.clone(),
        host,
        prefix,
        upstream: route.upstream,
        pattern: route.pattern,
        issuers: route_issuers,
        allow_anonymous: route.allow_anonymous,
        rewrite,
        token_cookie: route.token_cookie,
        require,
        headers,
    })
}

/// Builds an issuer id → `iss` lookup for display.
pub(crate) fn issuer_ids(config: &Config) -> BTreeMap<String, String> {
    config
        .issuers
        .iter()
        .map(|i| (i.config.issuer.clone(), i.id.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
