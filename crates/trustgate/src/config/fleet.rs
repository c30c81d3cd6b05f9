//! The settings of a fleet: `[store]` (memory or Redis), `[revocation]`, the admin API token,
//! the shared key ring's key-encryption key, and each route's `rate_limit` and
//! `check_revocation`. Secrets (the Redis password, the admin token, the key-encryption key) are
//! read here, once, and never printed: their types redact `Debug`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::ConfigError;
use super::duration::Dur;

// === The file ===

/// `[store]`: where what replicas share lives.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileStore {
    pub(crate) backend: FileBackend,
    pub(crate) namespace: Option<String>,
    /// A standalone server: `redis://host:port/db`, or `rediss://` for TLS.
    pub(crate) url: Option<String>,
    /// Seed nodes of a Redis Cluster.
    pub(crate) cluster_nodes: Vec<String>,
    /// Sentinels, and the name of the master they watch.
    pub(crate) sentinel_nodes: Vec<String>,
    pub(crate) sentinel_master: Option<String>,
    /// The sentinels' own credentials (`requirepass`, or an ACL user, on the sentinels), which
    /// are not the master's.
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password_env: Option<String>,
    pub(crate) sentinel_password_file: Option<PathBuf>,
    pub(crate) username: Option<String>,
    pub(crate) password_env: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    /// CA certificates (PEM) for `rediss://`; the system's roots otherwise.
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) poll_interval: Option<Dur>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FileBackend {
    #[default]
    Memory,
    Redis,
}

/// `[revocation]`: its presence turns revocation checks on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileRevocation {
    pub(crate) staleness_bound: Dur,
    pub(crate) max_token_lifetime: Dur,
    pub(crate) danger_serve_when_stale: bool,
}

impl Default for FileRevocation {
    fn default() -> Self {
        Self {
            staleness_bound: Dur::secs(10),
            max_token_lifetime: Dur::secs(24 * 3600),
            danger_serve_when_stale: false,
        }
    }
}

/// A route's `rate_limit = { by, requests, per, burst }`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRateLimit {
    #[serde(default = "default_by")]
    pub(crate) by: String,
    pub(crate) requests: u64,
    pub(crate) per: Dur,
    pub(crate) burst: Option<u64>,
}

fn default_by() -> String {
    "sub".into()
}

// === Validated ===

/// A secret read from the environment or a file: never printed, zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(Zeroizing<String>);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The shared key ring's key-encryption key (AES-256): never printed, zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Kek(Zeroizing<[u8; 32]>);

impl Kek {
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreConfig {
    pub(crate) backend: Backend,
    /// Every key and channel starts with `{trustgate:<namespace>}`: one deployment's data apart
    /// from another's, and (the braces are a Cluster hash tag) in one slot, so that scripts
    /// touching several keys run on one node.
    pub(crate) namespace: String,
    /// The longest a store call may take; past it the call counts as failed.
    pub(crate) timeout: Duration,
    /// How often a replica confirms its revocation list and key ring against the store.
    pub(crate) poll_interval: Duration,
}

impl StoreConfig {
    pub(crate) fn is_redis(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    Memory,
    Redis(RedisConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisConfig {
    pub(crate) topology: Topology,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    /// PEM bytes of the CA certificates for TLS.
    pub(crate) ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    Standalone(String),
    Cluster(Vec<String>),
    Sentinel {
        master: String,
        nodes: Vec<String>,
        /// The sentinels' own ACL user and password; the master's are [`RedisConfig`]'s.
        username: Option<String>,
        password: Option<Secret>,
    },
}

/// The store as a message names it: its URLs (which never carry credentials: [`redis_url`]).
impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topology::Standalone(url) => write!(f, "Redis at {url}"),
            Topology::Cluster(nodes) => write!(f, "Redis Cluster at {}", nodes.join(", ")),
            Topology::Sentinel { master, nodes, .. } => write!(
                f,
                "Redis master {master:?} through the sentinels at {}",
                nodes.join(", ")
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevocationConfig {
    pub(crate) staleness_bound: Duration,
    /// Entries by subject (and by `jti` without an `exp`) live this long: no token they cover
    /// outlives it.
    pub(crate) max_token_lifetime: Duration,
    pub(crate) danger_serve_when_stale: bool,
}

/// What a route does besides its trust pattern, by route index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RouteFleet {
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) check_revocation: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) by: RateKey,
    /// Requests per `per`: the steady rate.
    pub(crate) requests: u64,
    pub(crate) per: Duration,
    /// Requests a caller may make at once after being idle (at least 1).
    pub(crate) burst: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RateKey {
    Subject,
    Client,
    Claim(String),
}

// === Validation ===

fn read_secret_file(path: &Path, field: &str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigError::new(format!("{field}: cannot read {}: {err}", path.display()))
    })?;
    let text = Zeroizing::new(text);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ConfigError::new(format!(
            "{field}: {} is empty",
            path.display()
        )));
    }
    Ok(Secret(Zeroizing::new(trimmed.to_owned())))
}

fn read_secret_env(
    name: &str,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    match env(name).map(Zeroizing::new) {
        Some(value) if !value.trim().is_empty() => {
            Ok(Secret(Zeroizing::new(value.trim().to_owned())))
        }
        _ => Err(ConfigError::new(format!(
            "{field} = {name:?}: the environment variable is not set or empty; export it, or use the _file setting"
        ))),
    }
}

/// Redis URLs name the server; credentials come from `password_env`/`password_file`, never from
/// the file itself, where they would be read by everyone who can read the configuration.
fn redis_url(url: &str, field: &str) -> Result<String, ConfigError> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| {
            ConfigError::new(format!(
                "{field} = {url:?}: write redis://host:port (or rediss:// for TLS)"
            ))
        })?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(ConfigError::new(format!(
            "{field}: the URL carries credentials; remove them and set store.username and store.password_env or store.password_file"
        )));
    }
    if authority.is_empty() {
        return Err(ConfigError::new(format!("{field} = {url:?} has no host")));
    }
    Ok(url.to_owned())
}

/// `urls` of one topology, each checked by [`redis_url`], all with one scheme: TLS is a property
/// of the deployment, and a list that mixes `redis://` and `rediss://` would send credentials in
/// clear to some nodes.
fn redis_urls(urls: &[String], field: &str) -> Result<Vec<String>, ConfigError> {
    let urls = urls
        .iter()
        .map(|u| redis_url(u, field))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = urls.iter().filter(|u| u.starts_with("rediss://")).count();
    if tls != 0 && tls != urls.len() {
        return Err(ConfigError::new(format!(
            "{field} mixes redis:// and rediss:// URLs; use rediss:// for every node or for none"
        )));
    }
    Ok(urls)
}

/// A password from `<field>_env` or `<field>_file` (at most one of them), if either is set.
fn password(
    from_env: Option<&str>,
    from_file: Option<&Path>,
    field: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    match (from_env, from_file) {
        (Some(_), Some(_)) => Err(ConfigError::new(format!(
            "{field}_env and {field}_file are both set; set one"
        ))),
        (Some(name), None) => read_secret_env(name, &format!("{field}_env"), env).map(Some),
        (None, Some(path)) => {
            read_secret_file(&super::resolve(base, path), &format!("{field}_file")).map(Some)
        }
        (None, None) => Ok(None),
    }
}

pub(crate) fn store_config(
    file: FileStore,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreConfig, ConfigError> {
    let timeout = file.timeout.map_or(Duration::from_millis(250), |d| d.0);
    let poll_interval = file.poll_interval.map_or(Duration::from_secs(1), |d| d.0);
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(5) {
        return Err(ConfigError::new(
            "store.timeout must be between 10ms and 5s: every store call waits at most this long",
        ));
    }
    if poll_interval < Duration::from_millis(50) || poll_interval > Duration::from_secs(60) {
        return Err(ConfigError::new(
            "store.poll_interval must be between 50ms and 60s",
        ));
    }
    let redis_only = file.url.is_some()
        || !file.cluster_nodes.is_empty()
        || !file.sentinel_nodes.is_empty()
        || file.sentinel_master.is_some()
        || file.sentinel_username.is_some()
        || file.sentinel_password_env.is_some()
        || file.sentinel_password_file.is_some()
        || file.username.is_some()
        || file.password_env.is_some()
        || file.password_file.is_some()
        || file.ca_file.is_some();
    let backend = match file.backend {
        FileBackend::Memory => {
            if redis_only {
                return Err(ConfigError::new(
                    "store: url, cluster_nodes, sentinel_*, username, password_* and ca_file only apply with backend = \"redis\"",
                ));
            }
            Backend::Memory
        }
        FileBackend::Redis => {
            let topology = match (
                &file.url,
                file.cluster_nodes.is_empty(),
                file.sentinel_nodes.is_empty(),
            ) {
                (Some(url), true, true) => {
                    Topology::Standalone(redis_url(url, "store.url")?)
                }
                (None, false, true) => {
                    Topology::Cluster(redis_urls(&file.cluster_nodes, "store.cluster_nodes")?)
                }
                (None, true, false) => Topology::Sentinel {
                    master: file.sentinel_master.clone().ok_or_else(|| {
                        ConfigError::new(
                            "store.sentinel_nodes needs store.sentinel_master, the name the sentinels know the master by",
                        )
                    })?,
                    nodes: redis_urls(&file.sentinel_nodes, "store.sentinel_nodes")?,
                    username: file.sentinel_username.clone(),
                    password: password(
                        file.sentinel_password_env.as_deref(),
                        file.sentinel_password_file.as_deref(),
                        "store.sentinel_password",
                        base,
                        env,
                    )?,
                },
                _ => {
                    return Err(ConfigError::new(
                        "store: with backend = \"redis\" set exactly one of url (one server), cluster_nodes (Redis Cluster) or sentinel_nodes (Sentinel)",
                    ));
                }
            };
            let sentinel_only = file.sentinel_master.is_some()
                || file.sentinel_username.is_some()
                || file.sentinel_password_env.is_some()
                || file.sentinel_password_file.is_some();
            if sentinel_only && !matches!(topology, Topology::Sentinel { .. }) {
                return Err(ConfigError::new(
                    "store.sentinel_master, sentinel_username and sentinel_password_* only apply with store.sentinel_nodes",
                ));
            }
            let password = password(
                file.password_env.as_deref(),
                file.password_file.as_deref(),
                "store.password",
                base,
                env,
            )?;
            let ca_pem = file
                .ca_file
                .as_ref()
                .map(|path| {
                    let path = super::resolve(base, path);
                    std::fs::read(&path).map_err(|err| {
                        ConfigError::new(format!(
                            "store.ca_file: cannot read {}: {err}",
                            path.display()
                        ))
                    })
                })
                .transpose()?;
            Backend::Redis(RedisConfig {
                topology,
                username: file.username,
                password,
                ca_pem,
            })
        }
    };
    let namespace = match (&backend, file.namespace) {
        (_, Some(ns)) => {
            if ns.is_empty()
                || ns.len() > 64
                || !ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                return Err(ConfigError::new(format!(
                    "store.namespace {ns:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
                )));
            }
            ns
        }
        (Backend::Memory, None) => "default".into(),
        (Backend::Redis(_), None) => {
            return Err(ConfigError::new(
                "store.namespace is required with backend = \"redis\": it keeps this deployment's keys, revocations and limits apart from any other sharing the server; e.g. namespace = \"prod-eu\"",
            ));
        }
    };
    Ok(StoreConfig {
        backend,
        namespace,
        timeout,
        poll_interval,
    })
}

pub(crate) fn revocation_config(
    file: FileRevocation,
    store: &StoreConfig,
) -> Result<RevocationConfig, ConfigError> {
    let min = store.poll_interval * 2;
    if file.staleness_bound.0 < min {
        return Err(ConfigError::new(format!(
            "revocation.staleness_bound {:?} is under twice store.poll_interval ({min:?}): a replica confirms its list once per poll interval, so a shorter bound would refuse requests while the store is fine",
            file.staleness_bound.0
        )));
    }
    if file.max_token_lifetime.0 < Duration::from_secs(60) {
        return Err(ConfigError::new(
            "revocation.max_token_lifetime must be at least 1m: it must cover the longest token lifetime of every issuer",
        ));
    }
    Ok(RevocationConfig {
        staleness_bound: file.staleness_bound.0,
        max_token_lifetime: file.max_token_lifetime.0,
        danger_serve_when_stale: file.danger_serve_when_stale,
    })
}

/// The key-encryption key: 32 bytes, written as base64 (standard or URL-safe, padded or not)
/// in the file or the variable, e.g. from `openssl rand -base64 32`.
pub(crate) fn kek(
    file: Option<&Path>,
    env_name: Option<&str>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Kek>, ConfigError> {
    let (secret, field) = match (file, env_name) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "internal_issuer: set kek_file or kek_env, not both",
            ));
        }
        (Some(path), None) => (
            read_secret_file(&super::resolve(base, path), "internal_issuer.kek_file")?,
            "internal_issuer.kek_file",
        ),
        (None, Some(name)) => (
            read_secret_env(name, "internal_issuer.kek_env", env)?,
            "internal_issuer.kek_env",
        ),
        (None, None) => return Ok(None),
    };
    let text = secret.expose().trim_end_matches('=');
    let decoded = Zeroizing::new(
        base64_simd::STANDARD_NO_PAD
            .decode_to_vec(text)
            .or_else(|_| base64_simd::URL_SAFE_NO_PAD.decode_to_vec(text))
            .map_err(|_| {
                ConfigError::new(format!(
                    "{field}: not base64; write 32 random bytes as base64, e.g. from `openssl rand -base64 32`"
                ))
            })?,
    );
    let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
        ConfigError::new(format!(
            "{field}: the key is {} bytes; AES-256 needs exactly 32 (`openssl rand -base64 32`)",
            decoded.len()
        ))
    })?;
    Ok(Some(Kek(Zeroizing::new(bytes))))
}

pub(crate) fn admin_token(path: Option<&Path>, base: &Path) -> Result<Option<Secret>, ConfigError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let token = read_secret_file(&super::resolve(base, path), "admin.token_file")?;
    if token.expose().len() < 32 {
        return Err(ConfigError::new(
            "admin.token_file: the token is shorter than 32 characters; use e.g. `openssl rand -hex 32`",
        ));
    }
    Ok(Some(token))
}

/// A route's fleet settings, checked against what the route and the file allow.
pub(crate) fn route_fleet(
    name: &str,
    validates: bool,
    rate_limit: Option<&FileRateLimit>,
    check_revocation: Option<bool>,
    revocation: Option<&RevocationConfig>,
    extra_claims: &dyn Fn(&str) -> bool,
) -> Result<RouteFleet, ConfigError> {
    let err = |message: String| ConfigError::new(format!("route {name:?}: {message}"));
    if check_revocation.is_some() && !validates {
        return Err(err(
            "check_revocation only applies to routes where the gateway validates tokens".into(),
        ));
    }
    if check_revocation == Some(true) && revocation.is_none() {
        return Err(err(
            "check_revocation = true needs a [revocation] section".into()
        ));
    }
    let rate_limit = match rate_limit {
        None => None,
        Some(file) => {
            if !validates {
                return Err(err(
                    "rate_limit limits callers by their token, so it only applies to routes where the gateway validates tokens".into(),
                ));
            }
            let by = match file.by.as_str() {
                "sub" => RateKey::Subject,
                "client" => RateKey::Client,
                other => match other.strip_prefix("claim:") {
                    Some(claim) if extra_claims(claim) => RateKey::Claim(claim.to_owned()),
                    Some(claim) => {
                        return Err(err(format!(
                            "rate_limit.by = \"claim:{claim}\" but no issuer of this route maps it; add it under [issuer.claims.extra]"
                        )));
                    }
                    None => {
                        return Err(err(format!(
                            "rate_limit.by = {other:?}: use \"sub\", \"client\" or \"claim:<name>\""
                        )));
                    }
                },
            };
            if file.requests == 0 || file.per.0 < Duration::from_millis(1) {
                return Err(err(
                    "rate_limit needs requests of at least 1 and per of at least 1ms".into(),
                ));
            }
            let burst = file.burst.unwrap_or(file.requests);
            if burst == 0 || burst > 1_000_000 || file.requests > 1_000_000_000 {
                return Err(err(
                    "rate_limit.burst must be between 1 and 1000000, requests at most 1000000000"
                        .into(),
                ));
            }
            Some(RateLimit {
                by,
                requests: file.requests,
                per: file.per.0,
                burst,
            })
        }
    };
    Ok(RouteFleet {
        rate_limit,
        check_revocation: validates && revocation.is_some() && check_revocation != Some(false),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret(Zeroizing::new("hunter2".into()));
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let kek = Kek(Zeroizing::new([7; 32]));
        assert_eq!(format!("{kek:?}"), "Kek([redacted])");
    }

    #[test]
    fn redis_urls_never_carry_credentials() {
        assert!(redis_url("redis://127.0.0.1:6379/0", "f").is_ok());
        assert!(redis_url("rediss://redis.internal:6380", "f").is_ok());
        let err = redis_url("redis://user:secret@host:6379", "f").unwrap_err();
        assert!(err.0.contains("password_env"), "{err}");
        assert!(!err.0.contains("secret"), "{err}");
        assert!(redis_url("http://host", "f").is_err());
        assert!(redis_url("redis://", "f").is_err());
    }

    #[test]
    fn the_nodes_of_a_topology_share_one_scheme() {
        let urls = |list: &[&str]| list.iter().map(|u| (*u).to_owned()).collect::<Vec<_>>();
        assert!(redis_urls(&urls(&["redis://a:1", "redis://b:1"]), "f").is_ok());
        assert!(redis_urls(&urls(&["rediss://a:1", "rediss://b:1"]), "f").is_ok());
        let err = redis_urls(&urls(&["rediss://a:1", "redis://b:1"]), "f").unwrap_err();
        assert!(err.0.contains("mixes redis:// and rediss://"), "{err}");
    }

    #[test]
    fn sentinel_credentials_are_the_sentinels_own_and_only_with_sentinels() {
        let base = Path::new(".");
        let env = |name: &str| match name {
            "M" => Some("master-pass".to_owned()),
            "S" => Some(" sentinel-pass\n".to_owned()),
            _ => None,
        };
        let file = |extra: &[(&str, &str)]| {
            let mut table = String::from("backend = \"redis\"\nnamespace = \"n\"\n");
            for (key, value) in extra {
                table.push_str(&format!("{key} = {value}\n"));
            }
            toml::from_str::<FileStore>(&table).unwrap()
        };
        let sentinels = [
            ("sentinel_nodes", "[\"redis://127.0.0.1:26379\"]"),
            ("sentinel_master", "\"m\""),
            ("password_env", "\"M\""),
        ];
        let config = store_config(
            file(
                &[
                    &sentinels[..],
                    &[
                        ("sentinel_password_env", "\"S\""),
                        ("sentinel_username", "\"watch\""),
                    ],
                ]
                .concat(),
            ),
            base,
            &env,
        )
        .unwrap();
        let Backend::Redis(redis) = config.backend else {
            panic!("not redis");
        };
        assert_eq!(
            redis.password.as_ref().map(Secret::expose),
            Some("master-pass")
        );
        let Topology::Sentinel {
            username, password, ..
        } = redis.topology
        else {
            panic!("not sentinel");
        };
        assert_eq!(username.as_deref(), Some("watch"));
        assert_eq!(password.as_ref().map(Secret::expose), Some("sentinel-pass"));

        let error = |extra: &[(&str, &str)]| store_config(file(extra), base, &env).unwrap_err().0;
        let both = error(
            &[
                &sentinels[..],
                &[
                    ("sentinel_password_env", "\"S\""),
                    ("sentinel_password_file", "\"/s\""),
                ],
            ]
            .concat(),
        );
        assert!(
            both.contains(
                "store.sentinel_password_env and store.sentinel_password_file are both set"
            ),
            "{both}"
        );
        let unset = error(&[&sentinels[..], &[("sentinel_password_env", "\"NOPE\"")]].concat());
        assert!(
            unset.contains("store.sentinel_password_env = \"NOPE\""),
            "{unset}"
        );
        let standalone = error(&[
            ("url", "\"redis://127.0.0.1:6379\""),
            ("sentinel_password_env", "\"S\""),
        ]);
        assert!(
            standalone.contains("only apply with store.sentinel_nodes"),
            "{standalone}"
        );
        let memory = store_config(
            toml::from_str::<FileStore>("sentinel_username = \"watch\"").unwrap(),
            base,
            &env,
        )
        .unwrap_err()
        .0;
        assert!(
            memory.contains("only apply with backend = \"redis\""),
            "{memory}"
        );
    }

    #[test]
    fn the_kek_is_32_bytes_of_base64() {
        let base = Path::new(".");
        let env = |value: &'static str| move |name: &str| (name == "K").then(|| value.to_owned());
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let kek = kek(None, Some("K"), base, &env(key)).unwrap().unwrap();
        assert_eq!(kek.bytes()[31], 31);
        let short = kek_err(None, Some("K"), base, &env("AAEC"));
        assert!(short.contains("32"), "{short}");
        let missing = kek_err(None, Some("NOPE"), base, &env(key));
        assert!(missing.contains("not set"), "{missing}");
    }

    fn kek_err(
        file: Option<&Path>,
        name: Option<&str>,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> String {
        kek(file, name, base, env).unwrap_err().0
    }
}
