//! The fleet's metrics: store latency and errors, pub/sub lag, the revocation list's size and
//! staleness, rate-limit decisions and the key ring's state. Counters and histograms are
//! updated where things happen; the gauges are read from the live state at scrape time.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    route: String,
    decision: &'static str,
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// What the gauges read at scrape time.
pub(crate) trait FleetGauges: Send + Sync {
    /// (entries, seconds since the last confirmed sync), when revocation is on.
    fn revocations(&self) -> Option<(usize, f64)>;
    /// (keys in the ring, 1 if a key may sign now, seconds until this replica stops minting
    /// without a refresh), with a shared ring.
    fn keyring(&self) -> Option<(usize, bool, f64)>;
    /// 1 when the last store call succeeded, with a Redis store.
    fn store_up(&self) -> Option<bool>;
}

/// The fleet's live metrics; survives reloads.
pub(crate) struct FleetMetrics {
    store_seconds: Family<OpLabel, Histogram>,
    store_errors: Family<OpLabel, Counter>,
    pubsub_lag: Histogram,
    rate_limit: Family<DecisionLabel, Counter>,
    revocation_refusals: Family<ReasonLabel, Counter>,
    gauges: Arc<ArcSwapOption<Box<dyn FleetGauges>>>,
}

impl std::fmt::Debug for FleetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetMetrics").finish_non_exhaustive()
    }
}

impl FleetMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Arc<Self> {
        let store_seconds = Family::<OpLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ])
        });
        registry.register(
            "store_duration_seconds",
            "Time of each call to the shared store, by operation (failures included)",
            store_seconds.clone(),
        );
        let store_errors = Family::<OpLabel, Counter>::default();
        registry.register(
            "store_errors",
            "Failed or timed-out calls to the shared store, by operation",
            store_errors.clone(),
        );
        let pubsub_lag = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ]);
        registry.register(
            "revocation_pubsub_lag_seconds",
            "From a revocation's publication (its writer's clock) to this replica applying it",
            pubsub_lag.clone(),
        );
        let rate_limit = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "rate_limit_decisions",
            "Rate-limit decisions by route, decision (allowed, limited) and source (redis, local)",
            rate_limit.clone(),
        );
        let revocation_refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "revocation_refusals",
            "Requests refused by the revocation check: revoked (401) or stale (503)",
            revocation_refusals.clone(),
        );
        let gauges = Arc::new(ArcSwapOption::empty());
        registry.register_collector(Box::new(GaugeCollector {
            gauges: Arc::clone(&gauges),
        }));
        Arc::new(Self {
            store_seconds,
            store_errors,
            pubsub_lag,
            rate_limit,
            revocation_refusals,
            gauges,
        })
    }

    pub(crate) fn store_call(&self, op: &'static str, seconds: f64, ok: bool) {
        self.store_seconds
            .get_or_create(&OpLabel { op })
            .observe(seconds);
        if !ok {
            self.store_errors.get_or_create(&OpLabel { op }).inc();
        }
    }

    pub(crate) fn pubsub_lag(&self, seconds: f64) {
        self.pubsub_lag.observe(seconds.max(0.0));
    }

    /// The counter of one (route, decision, source), made once per route at configuration.
    pub(crate) fn rate_limit_counter(
        &self,
        route: &str,
        decision: &'static str,
        source: &'static str,
    ) -> Counter {
        self.rate_limit
            .get_or_create(&DecisionLabel {
                route: route.to_owned(),
                decision,
                source,
            })
            .clone()
    }

    pub(crate) fn revocation_refusal(&self, reason: &'static str) {
        self.revocation_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn set_gauges(&self, gauges: Box<dyn FleetGauges>) {
        self.gauges.store(Some(Arc::new(gauges)));
    }
}

#[derive(Debug)]
struct GaugeCollector {
    gauges: Arc<ArcSwapOption<Box<dyn FleetGauges>>>,
}

impl std::fmt::Debug for dyn FleetGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FleetGauges")
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    prometheus_client::metrics::gauge::ConstGauge::new(value).encode(metric)
}

impl Collector for GaugeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(gauges) = self.gauges.load_full() else {
            return Ok(());
        };
        if let Some(up) = gauges.store_up() {
            let metric = encoder.encode_descriptor(
                "store_up",
                "1 when the last call to the shared store succeeded",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(up)).encode(metric)?;
        }
        if let Some((entries, staleness)) = gauges.revocations() {
            let metric = encoder.encode_descriptor(
                "revocations",
                "Entries in this replica's revocation list",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(entries as i64).encode(metric)?;
            gauge(
                &mut encoder,
                "revocation_staleness_seconds",
                "Seconds since this replica last confirmed its revocation list with the store",
                staleness,
            )?;
        }
        if let Some((keys, signing, left)) = gauges.keyring() {
            let metric = encoder.encode_descriptor(
                "keyring_keys",
                "Keys in the shared internal key ring as this replica holds it",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(keys as i64).encode(metric)?;
            let metric = encoder.encode_descriptor(
                "keyring_signing",
                "1 when a key of the shared ring may sign now on this replica",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(signing)).encode(metric)?;
            gauge(
                &mut encoder,
                "keyring_signing_seconds_left",
                "Seconds until this replica refuses to mint unless it refreshes the ring",
                left,
            )?;
        }
        Ok(())
    }
}
