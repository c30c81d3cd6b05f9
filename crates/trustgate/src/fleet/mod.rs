//! What replicas of one deployment share (`[store]`): the revocation list, the internal key
//! ring, per-caller rate limits. With `backend = "memory"` (the default) each of them is this
//! process's own, as for a single replica.
//!
//! A [`Fleet`] is made once per process (like the signer), so reloads keep the store
//! connection, the revocation list and the key ring; each configuration's runtime takes its
//! per-route parts from it ([`Fleet::route_revocations`], [`Fleet::limiters`]).

pub(crate) mod admin;
pub(crate) mod keyring;
pub(crate) mod metrics;
pub(crate) mod ratelimit;
pub(crate) mod revocation;
pub(crate) mod revoke_cli;
pub(crate) mod store;

use std::sync::Arc;

use trustgate_core::InternalSigner;
use trustgate_edge::decision::Trace;
use trustgate_edge::{Decision, GatewayError, RateLimitState, Refusal, RevocationCheck, Step};

use self::keyring::KeyRingSync;
use self::metrics::{FleetGauges, FleetMetrics};
use self::ratelimit::{RouteLimiter, Verdict};
use self::revocation::{Revocations, RouteRevocations};
use self::store::{RedisStore, wall_ms};
use crate::config::{
    Backend, Config, ConfigError, RateLimit, RedisConfig, RevocationConfig, StoreConfig,
};
use crate::server::StartError;

/// The shared state of this process.
pub(crate) struct Fleet {
    pub(crate) store_config: StoreConfig,
    pub(crate) revocation_config: Option<RevocationConfig>,
    pub(crate) store: Option<Arc<RedisStore>>,
    pub(crate) revocations: Option<Arc<Revocations>>,
    pub(crate) keyring: Option<Arc<KeyRingSync>>,
    pub(crate) signer: Option<Arc<InternalSigner>>,
    pub(crate) metrics: Arc<FleetMetrics>,
    /// The rate limiters of the configuration in force, by route name and limit: a reload keeps
    /// a route's limiter (and so every caller's bucket in this process) when neither changed.
    limiters: std::sync::Mutex<Vec<(String, RateLimit, Arc<RouteLimiter>)>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("redis", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

/// What could not be done with the store, and its error, as the kind of failure it is: the
/// store down or out of reach is not the file's fault ([`store::StoreError::is_unavailable`]).
fn store_failure(store: &RedisConfig, what: &str, err: &store::StoreError) -> StartError {
    let topology = &store.topology;
    if err.is_unavailable() {
        StartError::StoreUnavailable(format!("[store] {topology} is unavailable: {what} ({err})"))
    } else {
        StartError::Config(ConfigError(format!("[store] {topology}: {what} ({err})")))
    }
}

/// How `start` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `serve`: background sync tasks for the life of the process.
    Serve,
    /// `explain`: one snapshot of the revocation list, no tasks.
    Once,
    /// `check`: no store calls.
    Offline,
}

impl Fleet {
    /// Connects to the store (lazily: Redis may be down) and starts the sync tasks.
    pub(crate) async fn start(
        config: &Config,
        metrics: Arc<FleetMetrics>,
        signer: Option<&Arc<InternalSigner>>,
        mode: Mode,
    ) -> Result<Arc<Self>, StartError> {
        let redis = match &config.store.backend {
            Backend::Redis(redis) => Some(redis),
            Backend::Memory => None,
        };
        let store = match (redis, mode) {
            (Some(redis), Mode::Serve | Mode::Once) => Some(Arc::new(
                RedisStore::connect(&config.store, redis, Arc::clone(&metrics))
                    .await
                    .map_err(|err| store_failure(redis, "cannot connect", &err))?,
            )),
            _ => None,
        };
        let revocations = config
            .revocation
            .clone()
            .map(|revocation| Revocations::new(revocation, store.clone(), Arc::clone(&metrics)));
        let keyring = match (
            &store,
            signer,
            config
                .internal
                .as_ref()
                .and_then(|i| i.kek.as_ref().map(|k| (i, k))),
        ) {
            (Some(store), Some(signer), Some((internal, kek))) => Some(
                KeyRingSync::new(
                    Arc::clone(store),
                    Arc::clone(signer),
                    kek,
                    &config.store.namespace,
                    internal,
                    config.store.poll_interval,
                )
                .map_err(|err| ConfigError(format!("internal_issuer: {err}")))?,
            ),
            _ => None,
        };
        match mode {
            Mode::Serve => {
                if let Some(revocations) = &revocations {
                    // One bounded attempt before serving, so a healthy fleet starts fresh.
                    let _ = revocations.snapshot().await;
                    revocations.spawn(config.store.poll_interval);
                }
                if let Some(keyring) = &keyring {
                    keyring.start().await;
                }
            }
            Mode::Once => {
                if let (Some(revocations), Some(redis)) = (&revocations, redis)
                    && let Err(err) = revocations.snapshot().await
                {
                    return Err(store_failure(
                        redis,
                        "cannot read the revocation list",
                        &err,
                    ));
                }
            }
            Mode::Offline => {}
        }
        let fleet = Arc::new(Self {
            store_config: config.store.clone(),
            revocation_config: config.revocation.clone(),
            store,
            revocations,
            keyring,
            signer: signer.cloned(),
            metrics: Arc::clone(&metrics),
            limiters: std::sync::Mutex::new(Vec::new()),
        });
        metrics.set_gauges(Box::new(Gauges(Arc::clone(&fleet))));
        Ok(fleet)
    }

    /// Settings that live as long as the process: a reload that changes them is refused.
    pub(crate) fn differs(&self, config: &Config) -> bool {
        self.store_config != config.store || self.revocation_config != config.revocation
    }

    /// The engine's revocation check for `config`'s routes.
    pub(crate) fn route_revocations(&self, config: &Config) -> Option<Arc<dyn RevocationCheck>> {
        let list = self.revocations.clone()?;
        Some(Arc::new(RouteRevocations {
            list,
            routes: config
                .route_fleet
                .iter()
                .map(|r| r.check_revocation)
                .collect(),
        }))
    }

    /// Each route's rate limiter, by route index.
    pub(crate) fn limiters(&self, config: &Config) -> Vec<Option<Arc<RouteLimiter>>> {
        // Building a runtime is not on the request path. A poisoned lock only loses the reuse, as
        // does a reload refused after this point (the next one starts from its limiters).
        let mut kept = self
            .limiters
            .lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default();
        let mut current = Vec::new();
        let limiters = config
            .routes
            .iter()
            .zip(&config.route_fleet)
            .map(|(route, fleet)| {
                let limit = fleet.rate_limit.clone()?;
                let limiter = match kept
                    .iter()
                    .position(|(name, old, _)| *name == route.name && *old == limit)
                {
                    Some(at) => kept.swap_remove(at).2,
                    None => Arc::new(RouteLimiter::new(
                        &route.name,
                        &config.store.namespace,
                        limit.clone(),
                        self.store.clone(),
                        &self.metrics,
                    )),
                };
                current.push((route.name.clone(), limit, Arc::clone(&limiter)));
                Some(limiter)
            })
            .collect();
        if let Ok(mut kept) = self.limiters.lock() {
            *kept = current;
        }
        limiters
    }

    /// Lines for `/readyz`, and whether this replica is ready as far as the fleet goes.
    pub(crate) fn readiness(&self) -> (bool, String) {
        let mut ready = true;
        let mut text = String::new();
        if let Some(store) = &self.store {
            text.push_str(if store.is_up() {
                "store up\n"
            } else {
                "store down\n"
            });
        }
        if let Some(revocations) = &self.revocations {
            let fresh = revocations.is_fresh();
            if !fresh && !revocations.config().danger_serve_when_stale {
                ready = false;
            }
            text.push_str(&format!(
                "{} revocations entries={} age={:.1}s\n",
                if fresh { "ready" } else { "stale" },
                revocations.len(),
                revocations.staleness_secs()
            ));
        }
        if let Some(state) = self.signer.as_ref().and_then(|s| s.shared_state()) {
            let synced = self.keyring.as_ref().map_or(0, |k| k.last_sync_ms());
            let age = if synced == 0 {
                "never".to_owned()
            } else {
                format!("{:.1}s", (wall_ms() - synced) as f64 / 1000.0)
            };
            match state.signing_kid {
                Some(kid) => text.push_str(&format!(
                    "ready keyring signing kid={kid} keys={} synced={age} sign_limit_ms={}\n",
                    state.keys, state.sign_limit_ms
                )),
                None => {
                    ready = false;
                    text.push_str(&format!(
                        "not-ready keyring not signing (no ring read, or past its limit) keys={}\n",
                        state.keys
                    ));
                }
            }
        }
        (ready, text)
    }
}

struct Gauges(Arc<Fleet>);

impl FleetGauges for Gauges {
    fn revocations(&self) -> Option<(usize, f64)> {
        let revocations = self.0.revocations.as_ref()?;
        let staleness = revocations.staleness_secs();
        Some((
            revocations.len(),
            if staleness.is_finite() {
                staleness
            } else {
                -1.0
            },
        ))
    }

    fn keyring(&self) -> Option<(usize, bool, f64)> {
        let state = self.0.signer.as_ref()?.shared_state()?;
        let left = (state.sign_limit_ms.saturating_sub(wall_ms())).max(0) as f64 / 1000.0;
        Some((state.keys, state.signing_kid.is_some(), left))
    }

    fn store_up(&self) -> Option<bool> {
        self.0.store.as_ref().map(|s| s.is_up())
    }
}

/// The rate limit of the decided route, after the decision: `Ok` with the state to report (if
/// the route has a limit), or the 429 refusal.
pub(crate) async fn admit(
    limiters: &[Option<Arc<RouteLimiter>>],
    decision: &Decision,
    trace: &mut Trace<'_>,
) -> Result<Option<RateLimitState>, Refusal> {
    let Some(limiter) = usize::try_from(decision.route.index)
        .ok()
        .and_then(|i| limiters.get(i))
        .and_then(Option::as_ref)
    else {
        return Ok(None);
    };
    match limiter.check(decision.token.as_ref()).await {
        Verdict::Allowed(state) => {
            if let Some(trace) = trace.as_mut() {
                trace.push(format!("rate limit: allowed ({} left)", state.remaining));
            }
            Ok(Some(state))
        }
        Verdict::Limited(state) => {
            if let Some(trace) = trace.as_mut() {
                trace.push(format!(
                    "rate limit: exceeded; retry after {} s",
                    state.retry_after_secs
                ));
            }
            Err(Refusal {
                route: Some(Arc::clone(&decision.route)),
                step: Step::Authorize,
                error: GatewayError::RateLimited(state),
            })
        }
    }
}
