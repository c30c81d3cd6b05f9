//! The verified-token cache.
//!
//! The same token is presented dozens of times in a user journey; verifying its signature every
//! time is wasted work. Entries are keyed by the whole token text: the table locates an entry by a
//! randomly seeded hash and then compares all bytes, so no hash collision can make one token
//! borrow another's verification. Only tokens that verified are inserted, so a flood of invalid
//! tokens costs CPU but never memory here. Bounded by entry count and by bytes.
//!
//! A hit is re-checked before use: time claims against the clock (an entry is dropped once its
//! `exp` passes), and the verifying key must still be published (an entry is dropped when its key
//! leaves the key set). The validator also refuses a hit with `KeysUnavailable` while the issuer's
//! keys are older than the maximum staleness, exactly as it refuses an uncached token then.

use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::error::Reason;
use crate::verified::VerifiedToken;

/// Bounds for the verified-token cache.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Whether the cache is used (default `true`).
    pub enabled: bool,
    /// The maximum number of entries (default 10 000). Each entry is charged at least
    /// `max_bytes / max_entries` against `max_bytes`, which is how the count is bounded; below 2
    /// nothing is cached.
    pub max_entries: usize,
    /// The maximum memory, estimated from token and claim sizes (default 32 MiB).
    pub max_bytes: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: 10_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Weighs an entry by its estimated bytes, and at least `floor`: quick_cache bounds only the
/// total weight (its item count is a sizing hint), so charging every entry at least
/// `max_bytes / max_entries` is what keeps the count within `max_entries`.
#[derive(Clone)]
struct TokenWeighter {
    floor: u64,
}

impl Weighter<Box<str>, VerifiedToken> for TokenWeighter {
    fn weight(&self, token: &Box<str>, verified: &VerifiedToken) -> u64 {
        ((token.len() + verified.approx_size()) as u64).max(self.floor)
    }
}

pub(crate) struct VerifiedCache {
    entries: Cache<Box<str>, VerifiedToken, TokenWeighter>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What a lookup found.
pub(crate) enum Lookup {
    Hit(VerifiedToken),
    /// Cached, but its time claims now fail: the token is refused without re-verifying.
    Refused(Reason),
    Miss,
}

impl VerifiedCache {
    pub(crate) fn new(options: &CacheOptions) -> Self {
        Self {
            entries: Cache::with_weighter(
                options.max_entries,
                options.max_bytes,
                TokenWeighter {
                    floor: options
                        .max_bytes
                        .div_ceil(u64::try_from(options.max_entries.max(1)).unwrap_or(u64::MAX)),
                },
            ),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn lookup(&self, token: &str, now_ms: i64) -> Lookup {
        let Some(found) = self.entries.get(token) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Lookup::Miss;
        };
        if found.key_retired() {
            self.entries.remove(token);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Lookup::Miss;
        }
        match found.times().check(now_ms) {
            Ok(()) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Hit(found)
            }
            Err(reason) => {
                self.entries.remove(token);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Refused(reason)
            }
        }
    }

    pub(crate) fn insert(&self, token: &str, verified: VerifiedToken) {
        self.entries.insert(Box::from(token), verified);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.len() as u64,
            bytes: self.entries.weight(),
        }
    }
}

/// Counters of the verified-token cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Current entries.
    pub entries: u64,
    /// Current weight charged: estimated bytes, each entry at least `max_bytes / max_entries`.
    pub bytes: u64,
}
