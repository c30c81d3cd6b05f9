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
mod fleet;
mod issuer;
mod observe;
mod route;
pub(crate) use route::warnings;
mod text;
mod upstream;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use trustgate_core::{ClaimPath, FetchOptions, IssuerConfig, ValidatorOptions};
use trustgate_edge::forward_auth::Convention;
use trustgate_edge::headers::{IdentityHeaderPolicy, TrustedProxies};
use trustgate_edge::path::DoubleSlash;
use trustgate_edge::{Route, SanitizeMode};

pub(crate) use file::{FileTls, LogFormat, UpstreamProtocol};
pub(crate) use fleet::{
    Backend, Kek, RateKey, RateLimit, RedisConfig, RevocationConfig, RouteFleet, Secret,
    StoreConfig, Topology,
};
pub(crate) use observe::{
    AuditConfig, AuditPath, OtlpProtocol, SubjectMode, TelemetryConfig, TrustIncoming,
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
    pub(crate) routes: Vec<Route>,
    pub(crate) internal: Option<InternalIssuerConfig>,
    pub(crate) forward_auth: Option<ForwardAuthConfig>,
    /// Where replicas share state (`[store]`); memory by default.
    pub(crate) store: StoreConfig,
    /// Revocation checks (`[revocation]`), if on.
    pub(crate) revocation: Option<RevocationConfig>,
    /// The admin API's bearer token (`admin.token_file`).
    pub(crate) admin_token: Option<Secret>,
    /// Each route's rate limit and revocation check, by route index.
    pub(crate) route_fleet: Vec<RouteFleet>,
    /// OpenTelemetry traces, when on.
    pub(crate) telemetry: Option<TelemetryConfig>,
    /// The audit log, when on.
    pub(crate) audit: Option<AuditConfig>,
}

/// The decision endpoint: trustgate's decisions for the proxy in front.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ForwardAuthConfig {
    pub(crate) listen: SocketAddr,
    /// How the proxy in front describes requests on `listen`.
    pub(crate) convention: Convention,
    /// Envoy's gRPC ext_authz listener, if any.
    pub(crate) grpc_listen: Option<SocketAddr>,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) envoy_path_prefix: String,
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
    /// With a Redis store and no `key_files`: the key ring is shared, its private keys sealed
    /// with this key.
    pub(crate) kek: Option<Kek>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerConfig {
    pub(crate) listen: SocketAddr,
    pub(crate) tls: Option<FileTls>,
    pub(crate) max_connections: usize,
    /// Open proxy connections from one client (an IPv4 address, an IPv6 /64), peers in
    /// `trusted_proxies` excepted; `None`: no limit but `max_connections`.
    pub(crate) max_connections_per_client: Option<u32>,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) double_slash: DoubleSlash,
    pub(crate) shutdown_grace: Duration,
    /// Tokio worker threads; 0 means one per CPU.
    pub(crate) worker_threads: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct SanitizeConfig {
    /// The compiled matcher: the defaults, `names` and the configured prefixes.
    pub(crate) policy: IdentityHeaderPolicy,
    pub(crate) mode: SanitizeMode,
}

#[derive(Debug, Clone, PartialEq)]
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
    pub(crate) protocol: UpstreamProtocol,
    /// HTTP/2 only: the most requests in flight to this upstream at once; more wait for a slot.
    pub(crate) max_concurrent_streams: usize,
    /// HTTP/2 only: the connections its requests are spread over, in turn.
    pub(crate) http2_connections: usize,
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
        return Err(ConfigError::new(text::with_suggestion(format!(
            "config file: {err}"
        ))));
    }

    // Step 2: substitute ${ENV} inside string values only.
    let mut value: toml::Value = toml::from_str(text)
        .map_err(|err| ConfigError::new(text::with_suggestion(format!("config file: {err}"))))?;
    text::substitute(&mut value, env)?;
    let file: file::FileConfig = value
        .try_into()
        .map_err(|err| ConfigError::new(text::with_suggestion(format!("config file: {err}"))))?;
    // Step 3.
    validate(file, base, env)
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

fn validate(
    file: file::FileConfig,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let store = fleet::store_config(file.store, base, env)?;
    let revocation = file
        .revocation
        .map(|r| fleet::revocation_config(r, &store))
        .transpose()?;
    let admin_token = fleet::admin_token(file.admin.token_file.as_deref(), base)?;
    let server = file.server;
    // The upper bound keeps the count within what a semaphore holds (larger would panic at
    // start), far above what a process can open.
    if server.max_connections == 0 || server.max_connections > MAX_COUNT {
        return Err(ConfigError::new(
            "server.max_connections must be between 1 and 1000000000",
        ));
    }
    // Within `max_connections`, so it fits a `u32` too.
    let max_connections_per_client = server
        .max_connections_per_client
        .map(|n| {
            (1..=server.max_connections)
                .contains(&n)
                .then(|| u32::try_from(n).ok())
                .flatten()
                .ok_or_else(|| {
                    ConfigError::new(
                        "server.max_connections_per_client must be between 1 and server.max_connections",
                    )
                })
        })
        .transpose()?;
    if server.max_headers == 0 || server.max_header_bytes < 1024 {
        return Err(ConfigError::new(
            "server.max_headers must be at least 1 and server.max_header_bytes at least 1024",
        ));
    }
    if server.max_headers > trustgate_edge::framing::h1::MAX_HEADERS {
        return Err(ConfigError::new(format!(
            "server.max_headers may be at most {}: the framing check parses that many fields of a head",
            trustgate_edge::framing::h1::MAX_HEADERS
        )));
    }
    let server_config = ServerConfig {
        listen: socket_addr(&server.listen, "server.listen")?,
        tls: server.tls.map(|tls| FileTls {
            cert: resolve(base, &tls.cert),
            key: resolve(base, &tls.key),
        }),
        max_connections: server.max_connections,
        max_connections_per_client,
        header_read_timeout: server.header_read_timeout.0,
        idle_timeout: server.idle_timeout.0,
        max_header_bytes: server.max_header_bytes,
        max_headers: server.max_headers,
        trusted_proxies: TrustedProxies::new(&server.trusted_proxies)
            .map_err(|err| ConfigError::new(format!("server.trusted_proxies: {err}")))?,
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
            config: issuer::issuer_config(issuer, base, file.jwks_fetch.danger_allow_http)?,
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
        upstreams.push(upstream::upstream_config(upstream, base)?);
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
            // `exp` is whole seconds from the second the token is minted in, and a token is
            // minted only with a second left: a 1 s lifetime would leave less, nearly always.
            if internal.max_ttl.0 < MIN_INTERNAL_TTL {
                return Err(ConfigError::new(
                    "internal_issuer.max_ttl must be at least 2s",
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
                    crate::internal_issuer::INTERNAL_JWKS_MAX_AGE
                )));
            }
            let kek = fleet::kek(
                internal.kek_file.as_deref(),
                internal.kek_env.as_deref(),
                base,
                env,
            )?;
            match (
                store.is_redis(),
                internal.key_files.is_empty(),
                kek.is_some(),
            ) {
                (true, true, false) => {
                    return Err(ConfigError::new(
                        "internal_issuer: with backend = \"redis\" the replicas share one key ring, whose private keys are stored encrypted; set internal_issuer.kek_file or kek_env to a 32-byte key (`openssl rand -base64 32`), the same on every replica",
                    ));
                }
                (true, false, true) | (false, _, true) => {
                    return Err(ConfigError::new(
                        "internal_issuer.kek_file/kek_env only apply to a shared key ring: [store] backend = \"redis\" without key_files",
                    ));
                }
                _ => {}
            }
            Some(InternalIssuerConfig {
                kek,
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
    let mut routes: Vec<Route> = Vec::new();
    let mut route_fleet = Vec::new();
    for (index, route) in file.routes.into_iter().enumerate() {
        route_fleet.push(route_fleet_of(&route, &issuers, revocation.as_ref())?);
        let route = route::route(index, route, &issuers, &upstreams, internal.as_ref())?;
        if routes
            .iter()
            .any(|r| r.host == route.host && r.prefix == route.prefix)
        {
            return Err(ConfigError::new(format!(
                "route {:?}: another route already has host {:?} and prefix {:?}",
                route.name,
                route.host.as_deref().unwrap_or("*"),
                route.prefix
            )));
        }
        if routes.iter().any(|r| r.name == route.name) {
            return Err(ConfigError::new(format!(
                "route name {:?} is used twice; route names label metrics and logs, so make them unique",
                route.name
            )));
        }
        if let trustgate_edge::Trust::IdentityHeaders(pattern) = &route.trust {
            injected_names.extend(
                pattern
                    .headers
                    .iter()
                    .map(|(name, _)| name.as_str().to_owned()),
            );
        }
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
        http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::new(format!(
                "sanitize.names: {name:?} is not a valid header name"
            ))
        })?;
    }
    let policy = IdentityHeaderPolicy::new(&names, &file.sanitize.prefixes)
        .map_err(|err| ConfigError::new(format!("sanitize: {err}")))?;

    let forward_auth = file.forward_auth.map(forward_auth_config).transpose()?;
    let telemetry = observe::telemetry(file.telemetry, env)?;
    let audit = observe::audit(file.audit, base)?;
    Ok(Config {
        store,
        revocation,
        admin_token,
        route_fleet,
        forward_auth,
        telemetry,
        audit,
        server: server_config,
        admin_listen,
        sanitize: SanitizeConfig {
            policy,
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

/// A route's rate limit and revocation check; a `claim:<name>` key must be a name one of the
/// route's issuers maps under `[issuer.claims.extra]`.
fn route_fleet_of(
    route: &file::FileRoute,
    issuers: &[IssuerEntry],
    revocation: Option<&RevocationConfig>,
) -> Result<RouteFleet, ConfigError> {
    let validates = matches!(
        route.pattern,
        file::FilePattern::ForwardToken
            | file::FilePattern::IdentityHeaders
            | file::FilePattern::InternalToken
    );
    let route_issuers = |entry: &&IssuerEntry| {
        route
            .issuers
            .as_ref()
            .is_none_or(|ids| ids.contains(&entry.id))
    };
    let maps = |claim: &str| {
        issuers
            .iter()
            .filter(route_issuers)
            .any(|i| i.config.mapping.extra.iter().any(|(n, _)| n == claim))
    };
    fleet::route_fleet(
        &route.name,
        validates,
        route.rate_limit.as_ref(),
        route.check_revocation,
        revocation,
        &maps,
    )
}

fn claim_path(text: &str, field: &str) -> Result<ClaimPath, ConfigError> {
    ClaimPath::parse(text).map_err(|err| ConfigError::new(format!("{field}: {err}")))
}

/// A PEM error about a private key file, without what the parser quotes from the file: for a key
/// whose line breaks were lost (flattened by a secret store), that is the key itself, in decimal.
pub(crate) fn pem_key_error(err: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match err {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no private key in it".to_owned(),
        Error::SectionTooLarge => "a PEM section is too large".to_owned(),
        _ => "not a well-formed PEM private key (are its line breaks intact?)".to_owned(),
    }
}

/// The largest count a connection, stream or queue limit may be given: semaphores and channels
/// panic above about 2^61, and no process gets near this.
pub(crate) const MAX_COUNT: usize = 1_000_000_000;

/// The shortest lifetime of a minted token (`internal_ttl`, `internal_issuer.max_ttl`).
pub(crate) const MIN_INTERNAL_TTL: Duration = Duration::from_secs(2);

/// The shortest `rotation_interval` without `danger_fast_rotation`: the internal JWKS's cache
/// lifetime, plus 30 s for a service's refetch to complete.
const MIN_ROTATION_INTERVAL: Duration =
    Duration::from_secs(crate::internal_issuer::INTERNAL_JWKS_MAX_AGE.as_secs() + 30);

fn forward_auth_config(file: file::FileForwardAuth) -> Result<ForwardAuthConfig, ConfigError> {
    if file.trusted_proxies.is_empty() {
        return Err(ConfigError::new(
            "forward_auth.trusted_proxies is empty: the decision endpoint believes a request's description only from the proxies in front of it; list their addresses, e.g. [\"127.0.0.1\"]",
        ));
    }
    let prefix = file.envoy_path_prefix;
    if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.ends_with('/')) {
        return Err(ConfigError::new(format!(
            "forward_auth.envoy_path_prefix {prefix:?} must start with '/' and not end with one, like \"/ext-authz\" (or be empty)"
        )));
    }
    Ok(ForwardAuthConfig {
        listen: socket_addr(&file.listen, "forward_auth.listen")?,
        convention: match file.convention {
            file::FileConvention::Nginx => Convention::Nginx,
            file::FileConvention::ForwardedHeaders => Convention::ForwardedHeaders,
            file::FileConvention::Envoy => Convention::Envoy,
        },
        grpc_listen: file
            .grpc_listen
            .as_deref()
            .map(|addr| socket_addr(addr, "forward_auth.grpc_listen"))
            .transpose()?,
        trusted_proxies: TrustedProxies::new(&file.trusted_proxies)
            .map_err(|err| ConfigError::new(format!("forward_auth.trusted_proxies: {err}")))?,
        envoy_path_prefix: prefix,
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
