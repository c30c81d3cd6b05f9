//! Prometheus metrics. Per-route counters are created when a configuration is loaded and kept in
//! the route, so the request path increments an atomic and never looks up a label set.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use trustgate_core::Validator;
use trustgate_edge::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOutcome {
    route: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// Every outcome, in the order of a route's counters.
const OUTCOMES: [Outcome; 7] = [
    Outcome::Allowed,
    Outcome::Unauthorized,
    Outcome::Forbidden,
    Outcome::BadRequest,
    Outcome::Unavailable,
    Outcome::UpstreamError,
    Outcome::RateLimited,
];

/// Counters and a latency histogram for one route, created once per configuration.
#[derive(Debug, Clone)]
pub(crate) struct RouteMetrics {
    outcomes: [Counter; 7],
    pub(crate) upstream_seconds: Histogram,
}

impl RouteMetrics {
    pub(crate) fn record(&self, outcome: Outcome) {
        let index = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[index].inc();
    }
}

/// All metrics of the process; survives configuration reloads.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RouteOutcome, Counter>,
    unrouted: Family<ReasonLabel, Counter>,
    failures: Family<ReasonLabel, Counter>,
    upstream_seconds: Family<RouteLabel, Histogram>,
    reloads: Family<ResultLabel, Counter>,
    audit_dropped: Counter,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabel, Counter>,
    validator: Arc<ArcSwapOption<Validator>>,
    /// The fleet's store, revocation, rate-limit and key-ring metrics.
    pub(crate) fleet: Arc<crate::fleet::metrics::FleetMetrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("trustgate");
        let requests = Family::<RouteOutcome, Counter>::default();
        registry.register(
            "requests",
            "Requests by route and outcome",
            requests.clone(),
        );
        let unrouted = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "rejected_before_routing",
            "Requests refused before a route was chosen, by reason",
            unrouted.clone(),
        );
        let failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "validation_failures",
            "Token validation failures by reason",
            failures.clone(),
        );
        let upstream_seconds =
            Family::<RouteLabel, Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Time from sending the request upstream to receiving its response head",
            upstream_seconds.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reload attempts by result",
            reloads.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_dropped",
            "Audit events dropped because the audit queue was full",
            audit_dropped.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Connections open on the proxy listener, an upgraded tunnel counting as its connection",
            connections_open.clone(),
        );
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections to the proxy listener closed at accept, by the limit they were over: max_connections or max_connections_per_client",
            connections_refused.clone(),
        );
        let validator = Arc::new(ArcSwapOption::empty());
        registry.register_collector(Box::new(ValidatorCollector {
            validator: Arc::clone(&validator),
        }));
        let fleet = crate::fleet::metrics::FleetMetrics::register(&mut registry);
        Arc::new(Self {
            registry,
            requests,
            unrouted,
            failures,
            upstream_seconds,
            reloads,
            audit_dropped,
            connections_open,
            connections_refused,
            validator,
            fleet,
        })
    }

    pub(crate) fn route(&self, route: &str) -> RouteMetrics {
        let outcomes = OUTCOMES.map(|outcome| {
            self.requests
                .get_or_create(&RouteOutcome {
                    route: route.to_owned(),
                    outcome: outcome.as_str(),
                })
                .clone()
        });
        let upstream_seconds = self
            .upstream_seconds
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .clone();
        RouteMetrics {
            outcomes,
            upstream_seconds,
        }
    }

    /// Counts a request refused before routing (bad framing, bad path, no route, …).
    pub(crate) fn unrouted(&self, reason: &'static str) {
        self.unrouted.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn validation_failure(&self, reason: &'static str) {
        self.failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// The counter of audit events dropped on a full queue (`trustgate_audit_dropped_total`).
    pub(crate) fn audit_dropped(&self) -> Counter {
        self.audit_dropped.clone()
    }

    /// The gauge of open proxy connections, held by each connection's slot.
    pub(crate) fn connections_open(&self) -> Gauge {
        self.connections_open.clone()
    }

    /// Counts a connection closed at accept for being over `limit`.
    pub(crate) fn connection_refused(&self, limit: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabel { reason: limit })
            .inc();
    }

    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "applied" } else { "refused" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// Points the key and cache gauges at the validator now in force.
    pub(crate) fn set_validator(&self, validator: &Validator) {
        self.validator.store(Some(Arc::new(validator.clone())));
    }

    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Reads key and cache state from the current validator at scrape time.
#[derive(Debug)]
struct ValidatorCollector {
    validator: Arc<ArcSwapOption<Validator>>,
}

impl Collector for ValidatorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(validator) = self.validator.load_full() else {
            return Ok(());
        };
        let status = validator.issuer_status();
        let families: [(&str, &str); 4] = [
            ("jwks_keys", "Published keys per issuer"),
            (
                "jwks_fetches",
                "Key set fetch attempts per issuer (since the last reload)",
            ),
            (
                "jwks_fetch_failures",
                "Failed key set fetches per issuer (since the last reload)",
            ),
            ("issuer_ready", "1 when the issuer has usable keys"),
        ];
        for (index, (name, help)) in families.iter().enumerate() {
            let kind = match index {
                1 | 2 => prometheus_client::metrics::MetricType::Counter,
                _ => prometheus_client::metrics::MetricType::Gauge,
            };
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for issuer in &status {
                let labels = [("issuer", issuer.issuer.as_str())];
                let encoder = family.encode_family(&labels)?;
                match index {
                    0 => ConstGauge::new(issuer.keys as i64).encode(encoder)?,
                    1 => ConstCounter::new(issuer.fetches).encode(encoder)?,
                    2 => ConstCounter::new(issuer.fetch_failures).encode(encoder)?,
                    _ => ConstGauge::new(i64::from(issuer.usable)).encode(encoder)?,
                }
            }
        }
        let stats = validator.cache_stats();
        let hits = encoder.encode_descriptor(
            "token_cache_hits",
            "Verified-token cache hits",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        ConstCounter::new(stats.hits).encode(hits)?;
        let misses = encoder.encode_descriptor(
            "token_cache_misses",
            "Verified-token cache misses",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        ConstCounter::new(stats.misses).encode(misses)?;
        let entries = encoder.encode_descriptor(
            "token_cache_entries",
            "Verified-token cache entries",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(stats.entries as i64).encode(entries)?;
        Ok(())
    }
}
