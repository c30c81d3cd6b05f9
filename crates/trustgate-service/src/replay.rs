//! Single use of gateway assertions.
//!
//! The gateway mints a fresh assertion, with a random `jti`, for every request it forwards, bound
//! to that request's method, target and identity headers and valid for 30 s. Someone who captures
//! one on the way to the service could still send it again, for the same method and target,
//! within that window. So the service remembers the `jti` of every assertion it accepted and
//! refuses a second use.
//!
//! An id is kept until its assertion can no longer pass (its `exp` plus the leeway); after that
//! the validator refuses the assertion before this check is reached, and the id is dropped. Memory
//! is bounded by the capacity: when it is full of ids still live, the oldest is forgotten first,
//! so the capacity should cover the requests of one assertion lifetime plus leeway (35 s). Ids
//! are forgotten strictly in arrival order: a cache that ranks entries by use (as a CLOCK-PRO
//! cache does) would keep the first ids it saw and forget the newest, which are the ones worth
//! replaying.
//!
//! That memory is per process. Replicas of a service share what they have seen through a
//! [`ReplayStore`] ([`Builder::shared_replay_store`](crate::Builder::shared_replay_store); with the
//! `redis` feature, [`RedisReplayStore`]: `SET NX` with an expiry that lasts until the
//! assertion's `exp` plus the leeway, on the layer's clock). The process's own cache stays the
//! first level: a replay to the same replica is refused without a round trip, and only a first
//! sighting asks the store.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use trustgate_core::SharedClock;

/// A store of assertion ids shared by the replicas of a service.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `jti` for `ttl` and answers whether this is its first use anywhere. An error
    /// (the store cannot be reached) refuses the request: single use cannot be shown.
    fn first_use<'a>(
        &'a self,
        jti: &'a str,
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<bool, ReplayStoreError>> + Send + 'a>>;
}

/// The shared store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("the assertion replay store cannot be reached: {0}")]
pub struct ReplayStoreError(pub String);

/// How many assertion ids a layer remembers by default: 35 s of about 2,900 requests per second.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

pub(crate) struct SeenAssertions {
    seen: Mutex<Remembered>,
    capacity: usize,
    shared: Option<Arc<dyn ReplayStore>>,
    /// The validator's clock and leeway: an id is kept for as long as its assertion can pass.
    clock: SharedClock,
    leeway: Duration,
}

/// The ids of this process, each with the time (Unix ms) until which its assertion can pass.
#[derive(Default)]
struct Remembered {
    until: HashMap<Arc<str>, i64>,
    /// The same ids in arrival order: the front is forgotten first.
    arrivals: VecDeque<Arc<str>>,
}

impl std::fmt::Debug for SeenAssertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remembered = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .arrivals
            .len();
        f.debug_struct("SeenAssertions")
            .field("remembered", &remembered)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl SeenAssertions {
    /// `clock` and `leeway` are the validator's.
    pub(crate) fn new(
        capacity: usize,
        shared: Option<Arc<dyn ReplayStore>>,
        clock: SharedClock,
        leeway: Duration,
    ) -> Self {
        Self {
            seen: Mutex::default(),
            capacity: capacity.max(1),
            shared,
            clock,
            leeway,
        }
    }

    /// [`SeenAssertions::first_use`] here, then, for a first sighting here, in the shared store.
    /// The id is kept until the assertion can no longer pass: `exp_secs` (the verified `exp`)
    /// plus the validator's leeway, on the validator's clock.
    pub(crate) async fn first_use_anywhere(
        &self,
        jti: &str,
        exp_secs: i64,
    ) -> Result<bool, ReplayStoreError> {
        let now_ms = self.clock.now_millis();
        let leeway_ms = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);
        // A second more: `exp` may be fractional, and `exp_secs` is rounded down.
        let until_ms = exp_secs
            .saturating_add(1)
            .saturating_mul(1000)
            .saturating_add(leeway_ms);
        // At least a millisecond: Redis refuses an expiry of 0.
        let ttl = Duration::from_millis(
            u64::try_from(until_ms.saturating_sub(now_ms))
                .unwrap_or(0)
                .max(1),
        );
        if !self.first_use(jti, now_ms, until_ms) {
            return Ok(false);
        }
        match &self.shared {
            None => Ok(true),
            Some(store) => store.first_use(jti, ttl).await,
        }
    }

    /// Records `jti`, live until `until_ms`, and returns whether this is its first use. The
    /// check and the insert happen under one lock, so of requests racing with the same `jti`
    /// exactly one is admitted. No I/O happens under the lock.
    pub(crate) fn first_use(&self, jti: &str, now_ms: i64, until_ms: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Remembered { until, arrivals } = &mut *seen;
        if until.contains_key(jti) {
            return false;
        }
        // Expired ids at the front go (a later one that expired earlier waits for its turn:
        // lifetimes are all about the same), then the oldest while there is no room.
        while let Some(oldest) = arrivals.front() {
            let expired = until.get(oldest).is_none_or(|&t| t <= now_ms);
            if !expired && arrivals.len() < self.capacity {
                break;
            }
            if let Some(oldest) = arrivals.pop_front() {
                until.remove(&oldest);
            }
        }
        let jti: Arc<str> = Arc::from(jti);
        until.insert(Arc::clone(&jti), until_ms);
        arrivals.push_back(jti);
        true
    }
}

/// The shared store on Redis (feature `redis`): `SET <prefix><jti> 1 NX PX <ttl>`, one round
/// trip per first sighting, cut at a timeout.
#[cfg(feature = "redis")]
pub struct RedisReplayStore {
    connection: redis::aio::ConnectionManager,
    prefix: String,
    timeout: Duration,
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
impl RedisReplayStore {
    /// A store on `connection`, its keys under `{trustgate:<namespace>}:assertion:` (the same
    /// namespace convention as the gateway's store), each call cut at `timeout`.
    pub fn new(
        connection: redis::aio::ConnectionManager,
        namespace: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            connection,
            prefix: format!("{{trustgate:{namespace}}}:assertion:"),
            timeout,
        }
    }
}

#[cfg(feature = "redis")]
impl ReplayStore for RedisReplayStore {
    fn first_use<'a>(
        &'a self,
        jti: &'a str,
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<bool, ReplayStoreError>> + Send + 'a>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let mut cmd = redis::cmd("SET");
            cmd.arg(format!("{}{jti}", self.prefix))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms);
            let set = tokio::time::timeout(
                self.timeout,
                cmd.query_async::<Option<String>>(&mut connection),
            )
            .await
            .map_err(|_| ReplayStoreError("timed out".into()))?
            .map_err(|err| ReplayStoreError(err.to_string()))?;
            Ok(set.is_some())
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use trustgate_core::Clock as _;

    /// A store that has seen what its set holds.
    struct Shared(std::sync::Mutex<std::collections::HashSet<String>>);

    impl ReplayStore for Shared {
        fn first_use<'a>(
            &'a self,
            jti: &'a str,
            _ttl: Duration,
        ) -> Pin<Box<dyn Future<Output = Result<bool, ReplayStoreError>> + Send + 'a>> {
            Box::pin(async move { Ok(self.0.lock().unwrap().insert(jti.to_owned())) })
        }
    }

    const LEEWAY: Duration = Duration::from_secs(5);

    fn seen_at(
        capacity: usize,
        shared: Option<Arc<dyn ReplayStore>>,
    ) -> (SeenAssertions, trustgate_core::ManualClock) {
        let clock = trustgate_core::ManualClock::at_secs(1_000_000);
        let seen = SeenAssertions::new(capacity, shared, Arc::new(clock.clone()), LEEWAY);
        (seen, clock)
    }

    /// `first_use` for an assertion expiring 30 s from the clock's now.
    fn fresh(seen: &SeenAssertions, jti: &str) -> bool {
        let now_ms = seen.clock.now_millis();
        seen.first_use(jti, now_ms, now_ms + 35_000)
    }

    #[tokio::test]
    async fn a_shared_store_refuses_what_another_replica_accepted() {
        let shared: Arc<dyn ReplayStore> = Arc::new(Shared(Default::default()));
        let (one, clock) = seen_at(16, Some(Arc::clone(&shared)));
        let (two, _) = seen_at(16, Some(shared));
        let exp = clock.now_secs() + 30;
        assert!(one.first_use_anywhere("a", exp).await.unwrap());
        assert!(!two.first_use_anywhere("a", exp).await.unwrap());
        assert!(!one.first_use_anywhere("a", exp).await.unwrap());
        assert!(two.first_use_anywhere("b", exp).await.unwrap());
    }

    /// What the shared store is asked to keep: until `exp` (plus the second `exp` may have been
    /// rounded down) plus the validator's leeway, on the validator's clock, not the system's.
    #[tokio::test]
    async fn the_shared_store_keeps_an_id_for_as_long_as_its_assertion_can_pass() {
        struct Ttls(std::sync::Mutex<Vec<Duration>>);
        impl ReplayStore for Ttls {
            fn first_use<'a>(
                &'a self,
                _jti: &'a str,
                ttl: Duration,
            ) -> Pin<Box<dyn Future<Output = Result<bool, ReplayStoreError>> + Send + 'a>>
            {
                self.0.lock().unwrap().push(ttl);
                Box::pin(async { Ok(true) })
            }
        }
        let ttls = Arc::new(Ttls(Default::default()));
        let clock = trustgate_core::ManualClock::at_secs(1_000_000);
        let seen = SeenAssertions::new(
            16,
            Some(Arc::clone(&ttls) as Arc<dyn ReplayStore>),
            Arc::new(clock.clone()),
            Duration::from_secs(30),
        );
        assert!(seen.first_use_anywhere("a", 1_000_020).await.unwrap());
        // Already expired by the clock, within the leeway: kept for the leeway's rest.
        assert!(seen.first_use_anywhere("b", 999_990).await.unwrap());
        // Long past: the store still gets an expiry Redis accepts.
        assert!(seen.first_use_anywhere("c", 1).await.unwrap());
        assert_eq!(
            *ttls.0.lock().unwrap(),
            [
                Duration::from_secs(51),
                Duration::from_secs(21),
                Duration::from_millis(1)
            ]
        );
    }

    #[test]
    fn each_id_is_accepted_once() {
        let (seen, _) = seen_at(16, None);
        assert!(fresh(&seen, "a"));
        assert!(!fresh(&seen, "a"));
        assert!(fresh(&seen, "b"));
        assert!(!fresh(&seen, "b"));
        assert!(!fresh(&seen, "a"));
    }

    /// Full, the memory forgets the oldest ids, never the newest: after any number of ids, the
    /// last `capacity` are all refused a second time. (The CLOCK-PRO cache used before kept the
    /// first ids it saw and remembered only about 3 % of the capacity of the newest.)
    #[test]
    fn once_full_the_newest_ids_are_remembered_and_the_oldest_forgotten() {
        let capacity = 10_000;
        let (seen, _) = seen_at(capacity, None);
        for i in 0..3 * capacity {
            assert!(fresh(&seen, &format!("old-{i}")));
        }
        for i in 0..capacity {
            assert!(fresh(&seen, &format!("new-{i}")), "new-{i}");
        }
        let replayed = (0..capacity)
            .filter(|i| fresh(&seen, &format!("new-{i}")))
            .count();
        assert_eq!(replayed, 0);
        assert!(fresh(&seen, "old-0"));
        assert!(fresh(&seen, &format!("old-{}", 3 * capacity - 1)));
    }

    /// An id whose assertion can no longer pass makes room at once: a quiet moment empties the
    /// memory, and a full memory of expired ids forgets none of the live ones.
    #[test]
    fn expired_ids_go_first() {
        let (seen, clock) = seen_at(4, None);
        assert!(fresh(&seen, "a"));
        assert!(fresh(&seen, "b"));
        clock.advance_secs(36);
        assert!(fresh(&seen, "c"));
        assert_eq!(seen.seen.lock().unwrap().arrivals.len(), 1);
        assert!(fresh(&seen, "d"));
        assert!(fresh(&seen, "e"));
        assert!(fresh(&seen, "f"));
        // Full of live ids: `c`, the oldest, is forgotten for `g`.
        assert!(fresh(&seen, "g"));
        for live in ["d", "e", "f", "g"] {
            assert!(!fresh(&seen, live), "{live}");
        }
    }

    #[test]
    fn concurrent_uses_of_one_id_admit_exactly_one() {
        let (seen, _) = seen_at(1024, None);
        let seen = std::sync::Arc::new(seen);
        for round in 0..50 {
            let jti = format!("j{round}");
            let admitted: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| usize::from(fresh(&seen, &jti))))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(admitted, 1, "round {round}");
        }
    }
}
