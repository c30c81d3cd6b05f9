//! The running gateway: the runtime in force, swapped whole on reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{self, Config, ConfigError, ServerConfig};
use crate::metrics::Metrics;
use crate::runtime::{Observers, Runtime};

/// The running gateway: the current runtime, swapped on reload.
pub(crate) struct Gateway {
    pub(crate) runtime: ArcSwap<Runtime>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) signer: Option<Arc<trustgate_core::InternalSigner>>,
    pub(crate) config_path: Option<PathBuf>,
    /// What replicas share (`[store]`); made once per process.
    pub(crate) fleet: Arc<crate::fleet::Fleet>,
    /// Traces and the audit log; made once per process.
    pub(crate) observers: Observers,
    /// Held for the whole of a reload. SIGHUP and the file watcher reload on their own tasks, and
    /// a rewrite of the file often sets off both: run side by side, each would compare against
    /// the same old configuration (and both warn), and the one that read the file first could
    /// store its runtime last, leaving an older configuration in force.
    pub(crate) reloading: tokio::sync::Mutex<()>,
}

impl Gateway {
    /// Loads and applies the configuration file again. An invalid configuration, or one whose
    /// issuers have no usable keys, is refused and the current one stays in force.
    pub(crate) async fn reload(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.config_path else {
            return Err(ConfigError(
                "this gateway was not started from a file".into(),
            ));
        };
        let _one_at_a_time = self.reloading.lock().await;
        let result = async {
            let config = config::load(path)?;
            for warning in config::warnings(&config.routes) {
                tracing::warn!("{warning}");
            }
            let current = self.runtime.load();
            if listen_addresses(&config) != listen_addresses(&current.config) {
                tracing::warn!(
                    "listen addresses changed; restart to apply them (the rest is applied now)"
                );
            }
            if config.internal != current.config.internal {
                return Err(ConfigError(
                    "[internal_issuer] changed; restart the gateway to apply it (its keys live for the whole process)".into(),
                ));
            }
            if self.fleet.differs(&config) {
                return Err(ConfigError(
                    "[store] or [revocation] changed; restart the gateway to apply them (the store connection and the revocation list live for the whole process)".into(),
                ));
            }
            let runtime = Runtime::build(
                config,
                Arc::clone(&self.metrics),
                self.signer.clone(),
                &self.fleet,
                &self.observers,
            )?;
            if !runtime.start().await {
                return Err(ConfigError(
                    "new configuration refused: not every issuer has usable keys".into(),
                ));
            }
            if config_needs_restart(&current.config, &runtime.config) {
                tracing::warn!(
                    "[server], [log], [telemetry] or [audit] settings changed; restart to apply them (routes, issuers, upstreams and sanitization are applied now)"
                );
            }
            runtime.publish_metrics();
            self.runtime.store(Arc::new(runtime));
            Ok(())
        }
        .await;
        self.metrics.reload(result.is_ok());
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(err) => {
                tracing::error!(error = %err, "configuration reload refused; the previous configuration stays in force")
            }
        }
        result
    }
}

/// The proxy's, the admin API's, and the decision endpoints' (HTTP, gRPC) addresses.
type ListenAddresses = (
    SocketAddr,
    SocketAddr,
    Option<(SocketAddr, Option<SocketAddr>)>,
);

/// Every address the gateway listens on, bound once at start: the proxy, the admin API and the
/// decision endpoints (`[forward_auth]` added or removed counts as a change too).
fn listen_addresses(config: &Config) -> ListenAddresses {
    (
        config.server.listen,
        config.admin_listen,
        config
            .forward_auth
            .as_ref()
            .map(|decisions| (decisions.listen, decisions.grpc_listen)),
    )
}

/// Settings that are read once, when listeners and the runtime start. The listen addresses have
/// a warning of their own ([`listen_addresses`]).
fn config_needs_restart(old: &Config, new: &Config) -> bool {
    server_settings_read_at_start(&old.server) != server_settings_read_at_start(&new.server)
        || old.log != new.log
        || old.telemetry != new.telemetry
        || old.audit != new.audit
}

/// The `[server]` settings a reload cannot apply. Written out field by field, without `..`, so
/// that a new setting has to be sorted into one side or the other.
fn server_settings_read_at_start(server: &ServerConfig) -> impl PartialEq + '_ {
    let ServerConfig {
        // Warned about by `listen_addresses`.
        listen: _,
        tls,
        max_connections,
        max_connections_per_client,
        header_read_timeout,
        idle_timeout,
        max_header_bytes,
        max_headers,
        // Read per request from the runtime, so a reload applies them.
        trusted_proxies: _,
        double_slash: _,
        shutdown_grace,
        worker_threads,
    } = server;
    (
        tls,
        max_connections,
        max_connections_per_client,
        header_read_timeout,
        idle_timeout,
        max_header_bytes,
        max_headers,
        shutdown_grace,
        worker_threads,
    )
}
