//! Everything a request needs, built from one configuration and swapped atomically on reload.
//!
//! A request loads the current `Arc<Runtime>` once and uses it to the end, so a reload never
//! changes the rules under a request in flight, and old runtimes are dropped when their last
//! request finishes.

use std::collections::HashMap;
use std::sync::Arc;

use trustgate_core::{InternalSigner, SystemClock, Validator};
use trustgate_edge::Engine;
use trustgate_edge::mint::MintCache;
use trustgate_edge::router::Router;

use crate::audit;
use crate::config::{Config, ConfigError};
use crate::metrics::{Metrics, RouteMetrics};
use crate::telemetry::RequestTracing;
use crate::upstream::Upstream;

/// The process's observers of decisions, made once at start and shared by every runtime:
/// `[telemetry]`'s sampling and propagation, and `[audit]`'s queue. Changing either needs a
/// restart (the subscriber and the writer live as long as the process).
#[derive(Debug, Clone, Default)]
pub(crate) struct Observers {
    pub(crate) tracing: Option<Arc<RequestTracing>>,
    pub(crate) audit: Option<audit::Sink>,
}

/// What the proxy keeps per route besides the route itself: its upstream and its metrics, at the
/// route's `index`.
#[derive(Debug)]
pub(crate) struct RouteRuntime {
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) metrics: RouteMetrics,
}

/// The request-serving state for one configuration.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    /// Each route's rate limiter, by route index.
    pub(crate) limiters: Vec<Option<Arc<crate::fleet::ratelimit::RouteLimiter>>>,
    /// The decision engine: routes, sanitization, validation and the patterns' edits.
    pub(crate) engine: Engine,
    /// Per route, by `Route::index`.
    pub(crate) routes: Vec<RouteRuntime>,
    pub(crate) metrics: Arc<Metrics>,
    /// Request traces, with `[telemetry]`.
    pub(crate) tracing: Option<Arc<RequestTracing>>,
    /// The audit log, with `[audit]`.
    pub(crate) audit: Option<audit::Sink>,
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
        fleet: &crate::fleet::Fleet,
        observers: &Observers,
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
        for route in &config.routes {
            let upstream = upstreams.get(&route.upstream).cloned().ok_or_else(|| {
                ConfigError(format!(
                    "route {:?}: upstream {:?} is not defined",
                    route.name, route.upstream
                ))
            })?;
            routes.push(RouteRuntime {
                upstream,
                metrics: metrics.route(&route.name),
            });
        }
        let engine = Engine {
            router: Router::new(config.routes.iter().map(|route| {
                (
                    route.host.clone(),
                    route.prefix.clone(),
                    Arc::new(route.clone()),
                )
            })),
            identity_headers: config.sanitize.policy.clone(),
            sanitize: config.sanitize.mode,
            double_slash: config.server.double_slash,
            validator,
            signer,
            revocations: fleet.route_revocations(&config),
            minted: MintCache::new(
                config.validator.cache.max_entries.max(16),
                config
                    .internal
                    .as_ref()
                    .is_none_or(|i| i.cache_minted_tokens),
            ),
        };
        Ok(Self {
            limiters: fleet.limiters(&config),
            engine,
            routes,
            metrics,
            config,
            tracing: observers.tracing.clone(),
            audit: observers.audit.clone(),
        })
    }

    /// The proxy's state for `route`.
    pub(crate) fn route(&self, route: &trustgate_edge::Route) -> Option<&RouteRuntime> {
        self.routes.get(usize::try_from(route.index).ok()?)
    }

    /// Fetches remote keys and starts background refresh. Returns whether every issuer is ready.
    pub(crate) async fn start(&self) -> bool {
        self.engine.validator.start().await
    }

    /// Makes this runtime's validator the one metrics report on. Called once the runtime is in
    /// force, never for a refused reload.
    pub(crate) fn publish_metrics(&self) {
        self.metrics.set_validator(&self.engine.validator);
    }
}
