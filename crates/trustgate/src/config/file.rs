//! The TOML file as written by the operator. Every struct denies unknown fields, so a typo is an
//! error rather than a silently ignored setting. `docs/configuration.md` documents every field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use trustgate_core::Algorithm;

use trustgate_edge::SanitizeMode;
use trustgate_edge::path::DoubleSlash;
use trustgate_edge::trust::{InternalClaim, RequireMode};

use super::duration::Dur;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub(crate) server: FileServer,
    #[serde(default)]
    pub(crate) admin: FileAdmin,
    #[serde(default)]
    pub(crate) sanitize: FileSanitize,
    #[serde(default)]
    pub(crate) log: FileLog,
    #[serde(default)]
    pub(crate) cache: FileCache,
    #[serde(default)]
    pub(crate) jwks_fetch: FileJwksFetch,
    #[serde(default, rename = "issuer")]
    pub(crate) issuers: Vec<FileIssuer>,
    #[serde(default, rename = "upstream")]
    pub(crate) upstreams: Vec<FileUpstream>,
    #[serde(default, rename = "route")]
    pub(crate) routes: Vec<FileRoute>,
    pub(crate) internal_issuer: Option<FileInternalIssuer>,
    pub(crate) forward_auth: Option<FileForwardAuth>,
    #[serde(default)]
    pub(crate) store: super::fleet::FileStore,
    pub(crate) revocation: Option<super::fleet::FileRevocation>,
    #[serde(default)]
    pub(crate) telemetry: super::observe::FileTelemetry,
    #[serde(default)]
    pub(crate) audit: super::observe::FileAudit,
}

/// `[forward_auth]`: the decision endpoint for a proxy in front (nginx `auth_request`, Traefik,
/// Caddy, Envoy ext_authz).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileForwardAuth {
    pub(crate) listen: String,
    /// How the proxy in front describes the original request on `listen`: stated, never
    /// guessed from the headers a client could send.
    pub(crate) convention: FileConvention,
    /// Envoy's gRPC ext_authz (`envoy.service.auth.v3.Authorization`), on a listener of its own.
    #[serde(default)]
    pub(crate) grpc_listen: Option<String>,
    /// The proxies whose description of a request is believed. Required: nobody by default.
    pub(crate) trusted_proxies: Vec<String>,
    /// The path prefix Envoy's `http_service.path_prefix` adds before the original path.
    #[serde(default)]
    pub(crate) envoy_path_prefix: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FileConvention {
    /// nginx `auth_request` with `trustgate snippet nginx`.
    Nginx,
    /// Traefik ForwardAuth, Caddy `forward_auth` (X-Forwarded-Method/Uri/Host).
    ForwardedHeaders,
    /// Envoy's HTTP ext_authz filter.
    Envoy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileInternalIssuer {
    pub(crate) issuer: Option<String>,
    #[serde(default = "default_internal_alg")]
    pub(crate) algorithm: Algorithm,
    #[serde(default = "default_rotation")]
    pub(crate) rotation_interval: Dur,
    #[serde(default = "default_max_ttl")]
    pub(crate) max_ttl: Dur,
    #[serde(default)]
    pub(crate) key_files: Vec<PathBuf>,
    #[serde(default)]
    pub(crate) serve_on_edge: bool,
    #[serde(default = "default_true")]
    pub(crate) cache_minted_tokens: bool,
    #[serde(default)]
    pub(crate) danger_fast_rotation: bool,
    /// The shared key ring's key-encryption key (`[store] backend = "redis"`).
    pub(crate) kek_file: Option<PathBuf>,
    pub(crate) kek_env: Option<String>,
}

fn default_internal_alg() -> Algorithm {
    Algorithm::EdDSA
}

fn default_rotation() -> Dur {
    Dur::secs(6 * 3600)
}

fn default_max_ttl() -> Dur {
    Dur::secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileServer {
    pub(crate) listen: String,
    pub(crate) tls: Option<FileTls>,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_client: Option<usize>,
    pub(crate) header_read_timeout: Dur,
    pub(crate) idle_timeout: Dur,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) double_slash: DoubleSlash,
    pub(crate) shutdown_grace: Dur,
    pub(crate) worker_threads: usize,
}

impl Default for FileServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls: None,
            max_connections: 10_000,
            max_connections_per_client: None,
            header_read_timeout: Dur::secs(10),
            idle_timeout: Dur::secs(60),
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            trusted_proxies: Vec::new(),
            double_slash: DoubleSlash::Merge,
            shutdown_grace: Dur::secs(30),
            worker_threads: 0,
        }
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileAdmin {
    pub(crate) listen: String,
    /// The bearer token of the admin API (`/revocations`); without it the API is off.
    pub(crate) token_file: Option<PathBuf>,
}

impl Default for FileAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9901".into(),
            token_file: None,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileSanitize {
    pub(crate) names: Vec<String>,
    pub(crate) prefixes: Vec<String>,
    pub(crate) mode: SanitizeMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileLog {
    pub(crate) access: bool,
    pub(crate) format: LogFormat,
    pub(crate) level: String,
}

impl Default for FileLog {
    fn default() -> Self {
        Self {
            access: true,
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileCache {
    pub(crate) enabled: bool,
    pub(crate) max_entries: usize,
    pub(crate) max_bytes: u64,
    pub(crate) max_token_bytes: usize,
}

impl Default for FileCache {
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: 10_000,
            max_bytes: 32 * 1024 * 1024,
            max_token_bytes: trustgate_core::DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileJwksFetch {
    pub(crate) timeout: Dur,
    pub(crate) max_bytes: usize,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) danger_allow_http: bool,
}

impl Default for FileJwksFetch {
    fn default() -> Self {
        Self {
            timeout: Dur::secs(5),
            max_bytes: 256 * 1024,
            ca_files: Vec::new(),
            danger_allow_http: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileIssuer {
    pub(crate) id: String,
    pub(crate) issuer: String,
    #[serde(default)]
    pub(crate) audiences: Vec<String>,
    #[serde(default = "default_algorithms")]
    pub(crate) algorithms: Vec<Algorithm>,
    #[serde(default)]
    pub(crate) discovery: bool,
    pub(crate) jwks_url: Option<String>,
    pub(crate) jwks_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) pem_keys: Vec<FilePemKey>,
    #[serde(default = "default_leeway")]
    pub(crate) leeway: Dur,
    #[serde(default)]
    pub(crate) danger_allow_long_leeway: bool,
    pub(crate) required_typ: Option<String>,
    pub(crate) max_lifetime: Option<Dur>,
    #[serde(default)]
    pub(crate) required_claims: Vec<String>,
    #[serde(default)]
    pub(crate) danger_skip_audience: bool,
    #[serde(default)]
    pub(crate) danger_optional_exp: bool,
    #[serde(default)]
    pub(crate) claims: FileClaims,
    #[serde(default)]
    pub(crate) refresh: FileRefresh,
    #[serde(default = "default_kidless")]
    pub(crate) max_kidless_candidates: usize,
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::ES256]
}

fn default_leeway() -> Dur {
    Dur::secs(60)
}

fn default_kidless() -> usize {
    3
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePemKey {
    pub(crate) file: PathBuf,
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileClaims {
    pub(crate) subject: Option<String>,
    pub(crate) roles: Option<String>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) tenant: Option<String>,
    pub(crate) client: Option<Vec<String>>,
    pub(crate) extra: BTreeMap<String, String>,
    pub(crate) numbers: NumbersMode,
}

/// What a JSON number in a mapped claim becomes (`trustgate_core::NumericClaims`).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum NumbersMode {
    #[default]
    Refuse,
    Integers,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileRefresh {
    pub(crate) default_interval: Dur,
    pub(crate) min_interval: Dur,
    pub(crate) max_interval: Dur,
    pub(crate) unknown_kid_cooldown: Dur,
    pub(crate) max_staleness: Dur,
    pub(crate) retry_base: Dur,
    pub(crate) unknown_kid_wait: Dur,
}

impl Default for FileRefresh {
    fn default() -> Self {
        let policy = trustgate_core::RefreshPolicy::default();
        Self {
            default_interval: Dur(policy.default_interval),
            min_interval: Dur(policy.min_interval),
            max_interval: Dur(policy.max_interval),
            unknown_kid_cooldown: Dur(policy.unknown_kid_cooldown),
            max_staleness: Dur(policy.max_staleness),
            retry_base: Dur(policy.retry_base),
            unknown_kid_wait: Dur(policy.unknown_kid_wait),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileUpstream {
    pub(crate) id: String,
    pub(crate) url: String,
    #[serde(default = "default_connect_timeout")]
    pub(crate) connect_timeout: Dur,
    #[serde(default = "default_response_timeout")]
    pub(crate) response_timeout: Dur,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
    #[serde(default = "default_true")]
    pub(crate) preserve_host: bool,
    #[serde(default = "default_pool_idle")]
    pub(crate) pool_idle_timeout: Dur,
    #[serde(default = "default_pool_max_idle")]
    pub(crate) pool_max_idle_per_host: usize,
    #[serde(default)]
    pub(crate) protocol: UpstreamProtocol,
    #[serde(default = "default_max_concurrent_streams")]
    pub(crate) max_concurrent_streams: usize,
    #[serde(default = "default_http2_connections")]
    pub(crate) http2_connections: usize,
}

/// How the gateway talks to an upstream.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UpstreamProtocol {
    /// HTTP/1.1, one request at a time per connection.
    #[default]
    Http1,
    /// HTTP/2: prior knowledge (h2c) on an `http://` url, ALPN `h2` on an `https://` one. gRPC
    /// services need it.
    Http2,
}

fn default_connect_timeout() -> Dur {
    Dur::secs(2)
}

fn default_response_timeout() -> Dur {
    Dur::secs(30)
}

fn default_pool_idle() -> Dur {
    Dur::secs(90)
}

/// Room for the idle connections of a busy minute: a list shorter than the requests in flight
/// closes the connections it has no room for as each burst ends, and the next burst connects
/// again, each close leaving a TIME_WAIT socket. With 256 here, HTTP/2 clients at 32
/// connections x 16 streams (512 in flight) kept the list full; that and the full list's old
/// handling cost 9 % more instructions per request (callgrind), the connects and closes aside.
/// Idle connections past `pool_idle_timeout` are closed anyway.
fn default_pool_max_idle() -> usize {
    1024
}

fn default_max_concurrent_streams() -> usize {
    256
}

fn default_http2_connections() -> usize {
    1
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FilePattern {
    Public,
    ServiceValidates,
    ForwardToken,
    IdentityHeaders,
    InternalToken,
}

impl FilePattern {
    pub(crate) fn name(self) -> &'static str {
        match self {
            FilePattern::Public => "public",
            FilePattern::ServiceValidates => "service-validates",
            FilePattern::ForwardToken => "forward-token",
            FilePattern::IdentityHeaders => "identity-headers",
            FilePattern::InternalToken => "internal-token",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRoute {
    pub(crate) name: String,
    pub(crate) host: Option<String>,
    pub(crate) prefix: String,
    pub(crate) upstream: String,
    pub(crate) pattern: FilePattern,
    pub(crate) issuers: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) allow_anonymous: bool,
    #[serde(default)]
    pub(crate) strip_prefix: bool,
    pub(crate) rewrite_prefix: Option<String>,
    pub(crate) token_cookie: Option<String>,
    #[serde(default)]
    pub(crate) require: FileRequire,
    pub(crate) headers: Option<Vec<FileHeaderBinding>>,
    pub(crate) service: Option<String>,
    pub(crate) internal_ttl: Option<Dur>,
    pub(crate) internal_claims: Option<Vec<InternalClaim>>,
    #[serde(default)]
    pub(crate) assertion: bool,
    pub(crate) rate_limit: Option<super::fleet::FileRateLimit>,
    pub(crate) check_revocation: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileRequire {
    pub(crate) scopes: Vec<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) claims: BTreeMap<String, Vec<String>>,
    pub(crate) mode: RequireMode,
}

impl FileRequire {
    pub(crate) fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.roles.is_empty() && self.claims.is_empty()
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileHeaderBinding {
    pub(crate) name: String,
    pub(crate) from: String,
}
