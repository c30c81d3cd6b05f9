//! The Redis store: one connection (standalone, Cluster or Sentinel) shared by every task, a
//! deadline on every call, and the names of every key and channel.
//!
//! Nothing here waits without a bound: each call is cut at `store.timeout`, the connection is
//! made lazily (a replica starts while Redis is down) and reconnects in the background, and a
//! failure marks the store down for a moment so that the request path (rate limits) stops
//! paying the timeout and uses its local fallback at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, RedisFuture, Script, Value};

use super::metrics::FleetMetrics;
use crate::config::{RedisConfig, StoreConfig, Topology};

/// Why a store call failed. The message is for logs; it names no secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("store call timed out")]
    Timeout,
    #[error("store: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("store: {0}")]
    Data(String),
}

impl StoreError {
    /// Whether the store is down or out of reach (no connection, a timeout, a cluster with no
    /// node to ask), as opposed to refusing what was asked (credentials, permissions) or
    /// answering nonsense: the first may pass on its own, the others need a person.
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout => true,
            StoreError::Redis(err) => {
                err.is_io_error()
                    || err.is_timeout()
                    || err.is_connection_dropped()
                    || err.is_cluster_error()
                    || err.kind() == redis::ErrorKind::ClusterConnectionNotFound
            }
            StoreError::Data(_) => false,
        }
    }
}

/// Milliseconds on a monotonic clock, for deadlines and staleness: a wall-clock step must not
/// make a stale list look fresh.
pub(crate) fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch.
pub(crate) fn wall_ms() -> i64 {
    use trustgate_core::Clock as _;
    trustgate_core::SystemClock.now_millis()
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

/// A Sentinel-managed master: resolved through the sentinels, and again after any failure (the
/// master may have moved).
struct SentinelConn {
    client: tokio::sync::Mutex<redis::sentinel::SentinelClient>,
    current: ArcSwapOption<MultiplexedConnection>,
}

impl SentinelConn {
    async fn connection(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        if let Some(conn) = self.current.load_full() {
            return Ok((*conn).clone());
        }
        let mut client = self.client.lock().await;
        if let Some(conn) = self.current.load_full() {
            return Ok((*conn).clone());
        }
        let master = client.async_get_client().await?;
        let conn = master.get_multiplexed_async_connection().await?;
        self.current.store(Some(Arc::new(conn.clone())));
        Ok(conn)
    }
}

/// The connection the pub/sub task subscribes on.
enum PubSubSource {
    /// One server; or a Cluster's seed nodes: PUBLISH reaches every node of a cluster, so
    /// subscribing on any one of them hears all.
    Seeds(Vec<redis::Client>),
    Sentinel(Arc<SentinelConn>),
}

/// A connected (or connecting) Redis store.
pub(crate) struct RedisStore {
    conn: Conn,
    pubsub: PubSubSource,
    prefix: String,
    timeout: Duration,
    up: AtomicBool,
    /// Until this instant (`mono_ms`) the request path does not try the store.
    down_until: AtomicI64,
    metrics: Arc<FleetMetrics>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How long the request path leaves the store alone after a failure.
const DOWN_FOR_MS: i64 = 1000;

fn info(url: &str, config: &RedisConfig) -> Result<redis::ConnectionInfo, redis::RedisError> {
    let info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    Ok(info.set_redis_settings(settings))
}

fn client(url: &str, config: &RedisConfig) -> Result<redis::Client, redis::RedisError> {
    let info = info(url, config)?;
    match &config.ca_pem {
        Some(pem) if url.starts_with("rediss://") => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        _ => redis::Client::open(info),
    }
}

impl RedisStore {
    /// Builds the client without waiting for Redis: connections are made on first use and
    /// remade after failures.
    pub(crate) async fn connect(
        store: &StoreConfig,
        config: &RedisConfig,
        metrics: Arc<FleetMetrics>,
    ) -> Result<Self, StoreError> {
        let timeout = store.timeout;
        let (conn, pubsub) = match &config.topology {
            Topology::Standalone(url) => {
                let client = client(url.as_str(), config)?;
                let manager = ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout))
                        .set_number_of_retries(1)
                        .set_max_delay(Duration::from_millis(500)),
                )?;
                (Conn::Single(manager), PubSubSource::Seeds(vec![client]))
            }
            Topology::Cluster(nodes) => {
                let mut builder = redis::cluster::ClusterClientBuilder::new(
                    nodes
                        .iter()
                        .map(|url| info(url, config))
                        .collect::<Result<Vec<_>, _>>()?,
                )
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1);
                if nodes.iter().any(|n| n.starts_with("rediss://")) {
                    builder = builder.tls(redis::TlsMode::Secure);
                    if let Some(pem) = &config.ca_pem {
                        builder = builder.certs(redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(pem.clone()),
                        });
                    }
                }
                let cluster = builder.build()?;
                // The cluster connection is made now, but bounded: a replica must start while
                // the cluster is down, so a failure here is retried by the first calls.
                let conn = tokio::time::timeout(timeout * 4, cluster.get_async_connection())
                    .await
                    .map_err(|_| StoreError::Timeout)??;
                let seeds = nodes
                    .iter()
                    .map(|url| client(url, config))
                    .collect::<Result<Vec<_>, _>>()?;
                (Conn::Cluster(conn), PubSubSource::Seeds(seeds))
            }
            Topology::Sentinel {
                master,
                nodes,
                username: sentinel_username,
                password: sentinel_password,
            } => {
                let addrs = nodes
                    .iter()
                    .map(|url| {
                        url.as_str()
                            .into_connection_info()
                            .map(|i| i.addr().clone())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = redis::sentinel::SentinelClientBuilder::new(
                    addrs,
                    master.clone(),
                    redis::sentinel::SentinelServerType::Master,
                )?;
                if let Some(user) = &config.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &config.password {
                    builder = builder.set_client_to_redis_password(password.expose());
                }
                // The sentinels' own credentials, when they require them: a sentinel's
                // `requirepass` is its own, usually not the master's.
                if let Some(user) = sentinel_username {
                    builder = builder.set_client_to_sentinel_username(user);
                }
                if let Some(password) = sentinel_password {
                    builder = builder.set_client_to_sentinel_password(password.expose());
                }
                // `rediss://` sentinels mean TLS to the master too: the address the sentinels
                // give carries no scheme, and without this the master connection, with the
                // password on it, would be plaintext. (The configuration refuses mixed schemes.)
                if nodes.iter().any(|n| n.starts_with("rediss://")) {
                    builder = builder
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure);
                    if let Some(pem) = &config.ca_pem {
                        let certificates = || redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(pem.clone()),
                        };
                        builder = builder
                            .set_client_to_sentinel_certificates(certificates())
                            .set_client_to_redis_certificates(certificates());
                    }
                }
                let sentinel = Arc::new(SentinelConn {
                    client: tokio::sync::Mutex::new(builder.build()?),
                    current: ArcSwapOption::empty(),
                });
                (
                    Conn::Sentinel(Arc::clone(&sentinel)),
                    PubSubSource::Sentinel(sentinel),
                )
            }
        };
        Ok(Self {
            conn,
            pubsub,
            prefix: format!("{{trustgate:{}}}", store.namespace),
            timeout,
            up: AtomicBool::new(false),
            down_until: AtomicI64::new(0),
            metrics,
        })
    }

    /// The name of a key or channel of this deployment.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// Whether the last call succeeded.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether the request path should try the store now (it failed less than a second ago).
    pub(crate) fn worth_trying(&self) -> bool {
        mono_ms() >= self.down_until.load(Ordering::Relaxed)
    }

    fn record(&self, op: &'static str, started: Instant, ok: bool) {
        self.metrics
            .store_call(op, started.elapsed().as_secs_f64(), ok);
        self.up.store(ok, Ordering::Relaxed);
        if !ok {
            self.down_until
                .store(mono_ms() + DOWN_FOR_MS, Ordering::Relaxed);
        }
    }

    async fn run<T, F>(&self, op: &'static str, call: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(StoreError::Redis(err)),
            Err(_) => Err(StoreError::Timeout),
        };
        self.record(op, started, result.is_ok());
        if result.is_err()
            && let Conn::Sentinel(sentinel) = &self.conn
        {
            // The master may have moved: ask the sentinels again on the next call.
            sentinel.current.store(None);
        }
        result
    }

    /// One command.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        self.run(op, async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// A Lua script by EVALSHA (EVAL once if the server does not know it yet): one round trip.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        self.run(op, async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// A fresh subscription to `channel`. Its messages arrive on the returned stream.
    pub(crate) async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, StoreError> {
        let connect = async {
            match &self.pubsub {
                PubSubSource::Seeds(seeds) => {
                    let mut last = None;
                    for seed in seeds {
                        match seed.get_async_pubsub().await {
                            Ok(pubsub) => return Ok(pubsub),
                            Err(err) => last = Some(err),
                        }
                    }
                    Err(last.unwrap_or_else(|| {
                        redis::RedisError::from((redis::ErrorKind::Client, "no seed nodes"))
                    }))
                }
                PubSubSource::Sentinel(sentinel) => {
                    let mut client = sentinel.client.lock().await;
                    client.async_get_client().await?.get_async_pubsub().await
                }
            }
        };
        let mut pubsub = tokio::time::timeout(self.timeout * 4, connect)
            .await
            .map_err(|_| StoreError::Timeout)??;
        tokio::time::timeout(self.timeout, pubsub.subscribe(channel))
            .await
            .map_err(|_| StoreError::Timeout)??;
        Ok(pubsub)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
            Conn::Sentinel(sentinel) => Box::pin(async move {
                let mut conn = sentinel.connection().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(sentinel) => Box::pin(async move {
                let mut conn = sentinel.connection().await?;
                conn.req_packed_commands(cmd, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}
