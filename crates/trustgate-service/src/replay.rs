//! Single use of gateway assertions.
//!
//! The gateway mints a fresh assertion, with a random `jti`, for every request it forwards, bound
//! to that request's method, target and identity headers and valid for 30 s. Someone who captures
//! one on the way to the service could still send it again, for the same method and target,
//! within that window. So the service remembers the `jti` of every assertion it accepted and
//! refuses a second use.
//!
//! Entries need no expiry of their own: once the assertion expires, the validator refuses it
//! before this check is reached. Memory is bounded by the capacity; beyond it older `jti`s are
//! forgotten, so the capacity should cover the requests of one assertion lifetime plus leeway
//! (35 s).
//!
//! That memory is per process. Replicas of a service share what they have seen through a
//! [`ReplayStore`] ([`Builder::shared_replay_store`](crate::Builder::shared_replay_store); with the
//! `redis` feature, [`RedisReplayStore`]: `SET NX` with the assertion's remaining lifetime as
//! expiry). The process's own cache stays the first level: a replay to the same replica is
//! refused without a round trip, and only a first sighting asks the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::{Cache, GuardResult};

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
    seen: Cache<String, ()>,
    shared: Option<Arc<dyn ReplayStore>>,
}

impl std::fmt::Debug for SeenAssertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenAssertions")
            .field("remembered", &self.seen.len())
            .finish()
    }
}

impl SeenAssertions {
    pub(crate) fn new(capacity: usize, shared: Option<Arc<dyn ReplayStore>>) -> Self {
        Self {
            seen: Cache::new(capacity.max(1)),
            shared,
        }
    }

    /// [`SeenAssertions::first_use`] here, then, for a first sighting here, in the shared store.
    pub(crate) async fn first_use_anywhere(
        &self,
        jti: &str,
        ttl: Duration,
    ) -> Result<bool, ReplayStoreError> {
        if !self.first_use(jti) {
            return Ok(false);
        }
        match &self.shared {
            None => Ok(true),
            Some(store) => store.first_use(jti, ttl).await,
        }
    }

    /// Records `jti` and returns whether this is its first use. Of requests racing with the same
    /// `jti`, one is admitted; the others find its placeholder and are refused without waiting.
    pub(crate) fn first_use(&self, jti: &str) -> bool {
        match self.seen.get_value_or_guard(jti, Some(Duration::ZERO)) {
            GuardResult::Guard(placeholder) => {
                let _ = placeholder.insert(());
                true
            }
            GuardResult::Value(()) | GuardResult::Timeout => false,
        }
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

    #[tokio::test]
    async fn a_shared_store_refuses_what_another_replica_accepted() {
        let shared: Arc<dyn ReplayStore> = Arc::new(Shared(Default::default()));
        let one = SeenAssertions::new(16, Some(Arc::clone(&shared)));
        let two = SeenAssertions::new(16, Some(shared));
        let ttl = Duration::from_secs(35);
        assert!(one.first_use_anywhere("a", ttl).await.unwrap());
        assert!(!two.first_use_anywhere("a", ttl).await.unwrap());
        assert!(!one.first_use_anywhere("a", ttl).await.unwrap());
        assert!(two.first_use_anywhere("b", ttl).await.unwrap());
    }

    #[test]
    fn each_id_is_accepted_once() {
        let seen = SeenAssertions::new(16, None);
        assert!(seen.first_use("a"));
        assert!(!seen.first_use("a"));
        assert!(seen.first_use("b"));
        assert!(!seen.first_use("b"));
        assert!(!seen.first_use("a"));
    }

    #[test]
    fn concurrent_uses_of_one_id_admit_exactly_one() {
        let seen = std::sync::Arc::new(SeenAssertions::new(1024, None));
        for round in 0..50 {
            let jti = format!("j{round}");
            let admitted: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| usize::from(seen.first_use(&jti))))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(admitted, 1, "round {round}");
        }
    }
}
