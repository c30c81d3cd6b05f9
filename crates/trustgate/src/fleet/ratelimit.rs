//! Per-caller rate limits: GCRA (the generic cell rate algorithm) in Redis, one EVALSHA per
//! request on the routes that have a limit, and `governor`'s GCRA in this process while Redis
//! cannot be reached.
//!
//! A caller is the token's subject, client id or a mapped claim. Its key is a digest (no
//! subject is stored in clear, and every key has the same size); the digest is the key's Cluster
//! hash tag, so callers spread over the slots. The script reads the server's clock (`TIME`), so
//! replicas with skewed clocks still share one schedule.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{Quota, RateLimiter, clock::Clock as _};
use prometheus_client::metrics::counter::Counter;
use trustgate_core::VerifiedToken;
use trustgate_edge::RateLimitState;

use super::metrics::FleetMetrics;
use super::store::RedisStore;
use crate::config::{RateKey, RateLimit};

// KEYS[1] the caller's theoretical arrival time (µs); ARGV[1] emission interval T (µs, with a
// fraction: `per / requests` is rarely a whole number of microseconds, and rounding it down let
// callers through faster than the configured rate), ARGV[2] burst B. Allowed while the new TAT
// is at most T·B ahead of now.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat + interval - now
if ahead > tolerance then
  return {0, 0, math.ceil(ahead - tolerance), math.ceil(tat - now)}
end
-- Near now (~2^50 us) a double's step is 0.25 us, so tat + interval rounds: never downwards.
local new_tat = tat + interval
if new_tat - tat < interval then
  local _, e = math.frexp(new_tat)
  new_tat = new_tat + 2 ^ (e - 53)
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(ahead / 1000) + 1000)
return {1, math.floor((tolerance - ahead) / interval), 0, math.ceil(ahead)}
";

type Local = RateLimiter<
    [u8; 16],
    governor::state::keyed::DefaultKeyedStateStore<[u8; 16]>,
    governor::clock::DefaultClock,
    governor::middleware::StateInformationMiddleware,
>;

/// One route's limiter.
pub(crate) struct RouteLimiter {
    limit: RateLimit,
    /// `trustgate:<namespace>:rl:<route>:`
    key_prefix: String,
    store: Option<Arc<RedisStore>>,
    script: redis::Script,
    local: Local,
    /// The emission interval `per / requests`, rounded up to whole nanoseconds (never faster
    /// than configured).
    interval_ns: u64,
    /// `RateLimit-Policy`'s quota and window: the steady rate over a whole number of seconds.
    advertised: (u64, u64),
    burst: String,
    interval: String,
    checks: AtomicU64,
    counters: [Counter; 4],
}

impl std::fmt::Debug for RouteLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLimiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// What a check came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed(RateLimitState),
    Limited(RateLimitState),
}

fn secs_up(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

/// The policy as `RateLimit-Policy` states it, `(q, w)`: the header's window is whole seconds,
/// so a `per` that is not is stated over the next whole second, with the quota that window
/// really allows, rounded down (`10` per `500ms` is `q=20;w=1`, `3` per `1500ms` is `q=4;w=2`).
/// Stating `q=requests` with `per` rounded would tell a client it may send more than it can
/// (`1500ms` as `w=1`) or less (`500ms` as `w=1`).
fn advertised(requests: u64, per: Duration) -> (u64, u64) {
    const NS: u128 = 1_000_000_000;
    let per_ns = per.as_nanos().max(1);
    let window_secs = per_ns.div_ceil(NS).max(1);
    let quota = u128::from(requests).saturating_mul(window_secs * NS) / per_ns;
    (
        u64::try_from(quota).unwrap_or(u64::MAX),
        u64::try_from(window_secs).unwrap_or(u64::MAX),
    )
}

impl RouteLimiter {
    pub(crate) fn new(
        route: &str,
        namespace: &str,
        limit: RateLimit,
        store: Option<Arc<RedisStore>>,
        metrics: &FleetMetrics,
    ) -> Self {
        let per_ns = u64::try_from(limit.per.as_nanos()).unwrap_or(u64::MAX);
        let interval_ns = per_ns.div_ceil(limit.requests).max(1);
        let burst = NonZeroU32::new(u32::try_from(limit.burst).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_nanos(interval_ns))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let counter = |decision, source| metrics.rate_limit_counter(route, decision, source);
        Self {
            key_prefix: format!("trustgate:{namespace}:rl:{route}:"),
            store,
            script: redis::Script::new(GCRA),
            local: RateLimiter::keyed(quota).with_middleware(),
            interval_ns,
            advertised: advertised(limit.requests, limit.per),
            burst: limit.burst.to_string(),
            interval: format!("{}.{:03}", interval_ns / 1000, interval_ns % 1000),
            checks: AtomicU64::new(0),
            counters: [
                counter("allowed", "redis"),
                counter("limited", "redis"),
                counter("allowed", "local"),
                counter("limited", "local"),
            ],
            limit,
        }
    }

    /// The caller's key: a digest of the key claim (or of nothing, for callers without one, who
    /// then share one bucket).
    fn caller(&self, token: Option<&VerifiedToken>) -> [u8; 16] {
        let identity = token.map(VerifiedToken::identity);
        let value = match &self.limit.by {
            RateKey::Subject => identity.and_then(|i| i.subject()),
            RateKey::Client => identity.and_then(|i| i.client()),
            RateKey::Claim(name) => identity.and_then(|i| i.claim(name)),
        };
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(token.map_or("", VerifiedToken::issuer).as_bytes());
        context.update(b"\0");
        context.update(value.unwrap_or("").as_bytes());
        let digest = context.finish();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_ref()[..16]);
        key
    }

    fn state(&self, remaining: u64, retry_us: u64, reset_us: u64) -> RateLimitState {
        RateLimitState {
            quota: self.advertised.0,
            window_secs: self.advertised.1,
            remaining,
            reset_secs: secs_up(reset_us),
            retry_after_secs: secs_up(retry_us).max(u64::from(retry_us > 0)),
        }
    }

    /// Checks one request: Redis when it is reachable, else this process's limiter.
    pub(crate) async fn check(&self, token: Option<&VerifiedToken>) -> Verdict {
        let caller = self.caller(token);
        if let Some(store) = &self.store
            && store.worth_trying()
        {
            let mut key = String::with_capacity(self.key_prefix.len() + 34);
            key.push_str(&self.key_prefix);
            key.push('{');
            for byte in caller {
                key.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
                key.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
            }
            key.push('}');
            let result: Result<(u8, u64, u64, u64), _> = store
                .script(
                    "rate_limit",
                    &self.script,
                    &[&key],
                    &[&self.interval, &self.burst],
                )
                .await;
            match result {
                Ok((1, remaining, _, reset)) => {
                    self.counters[0].inc();
                    return Verdict::Allowed(self.state(remaining, 0, reset));
                }
                Ok((_, _, retry, reset)) => {
                    self.counters[1].inc();
                    return Verdict::Limited(self.state(0, retry, reset));
                }
                Err(err) => {
                    tracing::debug!(error = %err, "rate limit store call failed; limiting in this process");
                }
            }
        }
        self.check_local(caller)
    }

    fn check_local(&self, caller: [u8; 16]) -> Verdict {
        // Forget idle callers now and then, so the map does not grow without bound.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.local.retain_recent();
        }
        match self.local.check_key(&caller) {
            Ok(snapshot) => {
                self.counters[2].inc();
                let remaining = u64::from(snapshot.remaining_burst_capacity());
                let used = self.limit.burst.saturating_sub(remaining);
                Verdict::Allowed(self.state(
                    remaining,
                    0,
                    used.saturating_mul(self.interval_ns) / 1000,
                ))
            }
            Err(not_until) => {
                self.counters[3].inc();
                let clock = governor::clock::DefaultClock::default();
                let wait = not_until.wait_time_from(clock.now());
                let wait_us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX).max(1);
                Verdict::Limited(self.state(0, wait_us, wait_us))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{RateKey, RateLimit};

    fn limiter(requests: u64, per: Duration) -> RouteLimiter {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = FleetMetrics::register(&mut registry);
        RouteLimiter::new(
            "r",
            "ns",
            RateLimit {
                by: RateKey::Subject,
                requests,
                per,
                burst: 1,
            },
            None,
            &metrics,
        )
    }

    /// The emission interval sent to Redis, times `requests`, covers `per`: a caller is never
    /// let through faster than the configured rate. Truncating the interval to whole
    /// microseconds let `600000 per 1s` through at 1000000/s, and `501 per 1ms` at 1000/ms.
    #[test]
    fn the_interval_never_lets_a_caller_above_the_configured_rate() {
        for (requests, per) in [
            (600_000, Duration::from_secs(1)),
            (501, Duration::from_millis(1)),
            (300_000, Duration::from_secs(1)),
            (3, Duration::from_secs(1)),
            (7, Duration::from_millis(10)),
        ] {
            let limiter = limiter(requests, per);
            let interval_us: f64 = limiter.interval.parse().unwrap();
            let per_us = per.as_micros() as f64;
            assert!(
                interval_us * requests as f64 >= per_us,
                "{requests} per {per:?}: interval {interval_us} µs allows {} per {per:?}",
                per_us / interval_us
            );
        }
    }

    /// `RateLimit-Policy` never states a rate other than the one enforced: `per` rounded to
    /// whole seconds with `q = requests` told a `1500ms` policy's clients they could send 1.5×
    /// what they can, and a `500ms` one's half.
    #[test]
    fn the_advertised_policy_states_the_enforced_rate_in_whole_seconds() {
        for (requests, per, expected) in [
            (100, Duration::from_secs(60), (100, 60)),
            (20, Duration::from_secs(10), (20, 10)),
            (10, Duration::from_millis(500), (20, 1)),
            (3, Duration::from_millis(1500), (4, 2)),
            (1, Duration::from_millis(1), (1000, 1)),
            (7, Duration::from_nanos(1), (7_000_000_000, 1)),
            (u64::MAX, Duration::from_nanos(1), (u64::MAX, 1)),
        ] {
            assert_eq!(
                advertised(requests, per),
                expected,
                "{requests} per {per:?}"
            );
            let state = limiter(requests, per).state(0, 0, 0);
            assert_eq!((state.quota, state.window_secs), expected);
        }
    }
}
