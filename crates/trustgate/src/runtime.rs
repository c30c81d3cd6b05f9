//! Everything a request needs, built from one configuration and swapped atomically on reload.
//!
//! A request loads the current `Arc<Runtime>` once and uses it to the end, so a reload never
//! changes the rules under a request in flight, and old runtimes are dropped when their last
//! request finishes.

use std::collections::HashMap;
use std::sync::Arc;

use trustgate_core::{InternalSigner, SystemClock, Validator};

use crate::config::{Config, ConfigError, DoubleSlashMode, RouteConfig};
use crate::internal::MintCache;
use crate::metrics::{Metrics, RouteMetrics};
use crate::path::DoubleSlash;
use crate::router::Router;
use crate::sanitize::{IdentityHeaderPolicy, TrustedProxies};
use crate::upstream::Upstream;

/// A route with its resolved upstream and its metrics.
#[derive(Debug)]
pub(crate) struct RouteRuntime {
    /// Position in the configuration; part of the minted-token cache key.
    pub(crate) index: u32,
    pub(crate) config: RouteConfig,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) metrics: RouteMetrics,
}

/// The request-serving state for one configuration.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) router: Router<RouteRuntime>,
    pub(crate) validator: Validator,
    pub(crate) identity_headers: IdentityHeaderPolicy,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) double_slash: DoubleSlash,
    pub(crate) metrics: Arc<Metrics>,
    /// The process's internal signer, if an `[internal_issuer]` is configured.
    pub(crate) signer: Option<Arc<InternalSigner>>,
    pub(crate) minted: MintCache,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("routes", &self.config.routes.len())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds every part that can fail (TLS files, static keys, header policy) without touching
    /// the network. [`Runtime::start`] then fetches remote keys.
    pub(crate) fn build(
        config: Config,
        metrics: Arc<Metrics>,
        signer: Option<Arc<InternalSigner>>,
    ) -> Result<Self, ConfigError> {
        if let Some(signer) = &signer
            && config
                .issuers
                .iter()
                .any(|i| i.config.issuer == signer.issuer())
        {
            return Err(ConfigError(format!(
                "internal issuer {:?} equals an external issuer; internal tokens must be distinguishable at the edge",
                signer.issuer()
            )));
        }
        if config.internal.is_some() != signer.is_some() {
            return Err(ConfigError(
                "[internal_issuer] was added or removed; restart the gateway to apply it".into(),
            ));
        }
        let validator = Validator::new(
            config.issuers.iter().map(|i| i.config.clone()).collect(),
            config.validator.clone(),
            Arc::new(SystemClock),
        )
        .map_err(|err| ConfigError(err.to_string()))?;
        let mut upstreams = HashMap::new();
        for upstream in &config.upstreams {
            upstreams.insert(
                upstream.id.clone(),
                Arc::new(Upstream::new(upstream.clone())?),
            );
        }
        let mut routes = Vec::new();
        for (index, route) in config.routes.iter().enumerate() {
            let upstream = upstreams.get(&route.upstream).cloned().ok_or_else(|| {
                ConfigError(format!(
                    "route {:?}: upstream {:?} is not defined",
                    route.name, route.upstream
                ))
            })?;
            routes.push((
                route.host.clone(),
                route.prefix.clone(),
                Arc::new(RouteRuntime {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    config: route.clone(),
                    upstream,
                    metrics: metrics.route(&route.name),
                }),
            ));
        }
        let identity_headers =
            IdentityHeaderPolicy::new(&config.sanitize.names, &config.sanitize.prefixes)
                .map_err(|err| ConfigError(format!("sanitize: {err}")))?;
        let trusted_proxies = TrustedProxies::new(&config.server.trusted_proxies)
            .map_err(|err| ConfigError(format!("server.trusted_proxies: {err}")))?;
        let double_slash = match config.server.double_slash {
            DoubleSlashMode::Merge => DoubleSlash::Merge,
            DoubleSlashMode::Reject => DoubleSlash::Reject,
        };
        Ok(Self {
            router: Router::new(routes),
            validator,
            identity_headers,
            trusted_proxies,
            double_slash,
            metrics,
            signer,
            minted: MintCache::new(
                config.validator.cache.max_entries.max(16),
                config
                    .internal
                    .as_ref()
                    .is_none_or(|i| i.cache_minted_tokens),
            ),
            config,
        })
    }

    /// Fetches remote keys and starts background refresh. Returns whether every issuer is ready.
    pub(crate) async fn start(&self) -> bool {
        self.validator.start().await
    }

    /// Makes this runtime's validator the one metrics report on. Called once the runtime is in
    /// force, never for a refused reload.
    pub(crate) fn publish_metrics(&self) {
        self.metrics.set_validator(&self.validator);
    }
}
