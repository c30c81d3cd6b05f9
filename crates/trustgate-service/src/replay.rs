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
//! (35 s). This is per process: replicas behind a load balancer do not share
//! what they have seen.

use std::time::Duration;

use quick_cache::sync::{Cache, GuardResult};

/// How many assertion ids a layer remembers by default: 35 s of about 2,900 requests per second.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

pub(crate) struct SeenAssertions {
    seen: Cache<String, ()>,
}

impl std::fmt::Debug for SeenAssertions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenAssertions")
            .field("remembered", &self.seen.len())
            .finish()
    }
}

impl SeenAssertions {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            seen: Cache::new(capacity.max(1)),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_id_is_accepted_once() {
        let seen = SeenAssertions::new(16);
        assert!(seen.first_use("a"));
        assert!(!seen.first_use("a"));
        assert!(seen.first_use("b"));
        assert!(!seen.first_use("b"));
        assert!(!seen.first_use("a"));
    }

    #[test]
    fn concurrent_uses_of_one_id_admit_exactly_one() {
        let seen = std::sync::Arc::new(SeenAssertions::new(1024));
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
