//! Where an issuer's keys come from, and how they are kept fresh.
//!
//! Each issuer's current [`KeySet`] sits behind an [`ArcSwap`]. Requests load it without locking;
//! a refresh builds a complete new set off to the side and swaps it in. No lock is ever held across
//! I/O: refreshes are single-flight through an atomic flag, and waiters are woken through a `watch`
//! channel when a fetch finishes. An unknown kid waits for a fetch that started after it arrived,
//! never for one that may have read the key set before the issuer published that kid.

mod settings;

use settings::static_pem_keys;
pub use settings::{KeySource, PemKey, RefreshError, RefreshPolicy, StaticKeyError};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::sync::watch;

use crate::alg::Algorithm;
use crate::clock::SharedClock;
use crate::fetch::Fetcher;
use crate::json;
use crate::keyset::KeySet;

/// A published key set and when it was obtained.
#[derive(Debug)]
pub(crate) struct KeyState {
    pub(crate) keys: KeySet,
    /// Milliseconds since the epoch of the last successful fetch; `None` for static sources.
    fetched_at_ms: Option<i64>,
}

const NEGATIVE_KID_CAPACITY: usize = 1024;

enum Remote {
    JwksUrl(String),
    Discovery {
        discovered: Mutex<Option<Discovered>>,
    },
}

/// The `jwks_uri` discovery last gave, and when it was read. An issuer may move its keys to a new
/// URI and leave the old one answering with the old set, so the document is read again once the
/// answer is `max_interval` old.
#[derive(Clone)]
struct Discovered {
    jwks_uri: String,
    read_at_ms: i64,
}

/// The live keys of one issuer.
pub(crate) struct IssuerKeys {
    issuer: Arc<str>,
    allowed: Vec<Algorithm>,
    remote: Option<(Fetcher, Remote)>,
    policy: RefreshPolicy,
    clock: SharedClock,
    state: ArcSwap<KeyState>,
    /// Held by the one task running refreshes (single flight).
    in_flight: AtomicBool,
    /// Set by an on-demand request; the running task fetches once more before it lets go, so a
    /// request that arrives during a fetch always gets a fetch that started after it.
    rerun: AtomicBool,
    /// When each kind of on-demand refetch last claimed its window ([`OnDemand`]).
    last_on_demand_ms: [AtomicI64; 2],
    failures_in_row: AtomicU64,
    /// The number of the latest refresh to start; refreshes run one at a time, in order.
    started: AtomicU64,
    /// The number of the latest refresh to finish, for waiters.
    finished: watch::Sender<u64>,
    negative_kids: Mutex<HashMap<Box<str>, i64>>,
    fetches: AtomicU64,
    fetch_failures: AtomicU64,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer)
            .field("keys", &self.state.load().keys.len())
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    /// Builds the key holder. Static sources are parsed here, once; remote sources start empty.
    pub(crate) fn new(
        issuer: Arc<str>,
        allowed: Vec<Algorithm>,
        source: &KeySource,
        fetcher: &Fetcher,
        policy: RefreshPolicy,
        clock: SharedClock,
    ) -> Result<Self, StaticKeyError> {
        let (keys, remote) = match source {
            KeySource::Jwks(text) => (
                KeySet::from_jwks(text.as_bytes(), &allowed, &issuer, None)?,
                None,
            ),
            KeySource::JwksFile(path) => {
                let text = std::fs::read(path).map_err(|source| StaticKeyError::Read {
                    path: path.clone(),
                    source,
                })?;
                (KeySet::from_jwks(&text, &allowed, &issuer, None)?, None)
            }
            KeySource::Pem(pems) => (static_pem_keys(pems)?, None),
            KeySource::JwksUrl(url) => (
                KeySet::default(),
                Some((fetcher.clone(), Remote::JwksUrl(url.clone()))),
            ),
            KeySource::Discovery => (
                KeySet::default(),
                Some((
                    fetcher.clone(),
                    Remote::Discovery {
                        discovered: Mutex::new(None),
                    },
                )),
            ),
        };
        let (finished, _) = watch::channel(0);
        Ok(Self {
            issuer,
            allowed,
            remote,
            policy,
            clock,
            state: ArcSwap::from_pointee(KeyState {
                keys,
                fetched_at_ms: None,
            }),
            in_flight: AtomicBool::new(false),
            rerun: AtomicBool::new(false),
            last_on_demand_ms: [AtomicI64::new(i64::MIN / 2), AtomicI64::new(i64::MIN / 2)],
            failures_in_row: AtomicU64::new(0),
            started: AtomicU64::new(0),
            finished,
            negative_kids: Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
            fetch_failures: AtomicU64::new(0),
        })
    }

    pub(crate) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The current key set. Lock-free.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<KeyState>> {
        self.state.load()
    }

    /// Whether the current key set may be used now.
    pub(crate) fn usable_now(&self) -> bool {
        self.usable(&self.load())
    }

    /// Whether `state` may be used now: it has keys and is within the maximum staleness.
    pub(crate) fn usable(&self, state: &KeyState) -> bool {
        if state.keys.is_empty() {
            return false;
        }
        match state.fetched_at_ms {
            None => !self.is_remote(),
            Some(at) => {
                let age = self.clock.now_millis().saturating_sub(at);
                age <= duration_millis(self.policy.max_staleness)
            }
        }
    }

    pub(crate) fn fetch_counts(&self) -> (u64, u64) {
        (
            self.fetches.load(Ordering::Relaxed),
            self.fetch_failures.load(Ordering::Relaxed),
        )
    }

    /// Fetches and publishes a new key set now. A failure leaves the current set in place.
    pub(crate) async fn refresh(&self) -> Result<Option<Duration>, RefreshError> {
        let Some((fetcher, remote)) = &self.remote else {
            return Ok(None);
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_key_set(fetcher, remote).await;
        match result {
            Ok((keys, max_age)) => {
                let now = self.clock.now_millis();
                let previous = self.state.load_full();
                previous.keys.retire_missing(&keys);
                let count = keys.len();
                self.state.store(Arc::new(KeyState {
                    keys,
                    fetched_at_ms: Some(now),
                }));
                self.failures_in_row.store(0, Ordering::Relaxed);
                self.clear_negative_kids();
                tracing::debug!(issuer = %self.issuer, keys = count, "published key set");
                Ok(max_age)
            }
            Err(err) => {
                self.fetch_failures.fetch_add(1, Ordering::Relaxed);
                self.failures_in_row.fetch_add(1, Ordering::Relaxed);
                if let Remote::Discovery { discovered } = remote {
                    // Discover again next time: the jwks_uri itself may have moved.
                    if let Ok(mut known) = discovered.lock() {
                        *known = None;
                    }
                }
                tracing::warn!(issuer = %self.issuer, error = %err, "key refresh failed; keeping the previous keys");
                Err(err)
            }
        }
    }

    async fn fetch_key_set(
        &self,
        fetcher: &Fetcher,
        remote: &Remote,
    ) -> Result<(KeySet, Option<Duration>), RefreshError> {
        let jwks_uri = match remote {
            Remote::JwksUrl(url) => url.clone(),
            Remote::Discovery { discovered } => self.jwks_uri(fetcher, discovered).await?,
        };
        let fetched = fetcher.get(&jwks_uri).await?;
        let previous = self.state.load();
        let keys = KeySet::from_jwks(
            &fetched.body,
            &self.allowed,
            &self.issuer,
            Some(&previous.keys),
        )?;
        Ok((keys, fetched.max_age))
    }

    /// The `jwks_uri` to fetch: the one discovery last gave while it is less than `max_interval`
    /// old, else the document's current one. If reading the document again fails, the known URI
    /// is fetched (keys keep refreshing through an outage of the discovery endpoint alone) and
    /// the document is tried again after another `max_interval`.
    async fn jwks_uri(
        &self,
        fetcher: &Fetcher,
        discovered: &Mutex<Option<Discovered>>,
    ) -> Result<String, RefreshError> {
        // Copied out: no lock is held across the fetch.
        let known = discovered.lock().ok().and_then(|known| known.clone());
        let now = self.clock.now_millis();
        if let Some(known) = &known
            && now.saturating_sub(known.read_at_ms) < duration_millis(self.policy.max_interval)
        {
            return Ok(known.jwks_uri.clone());
        }
        let jwks_uri = match (self.discover(fetcher).await, known) {
            (Ok(jwks_uri), _) => jwks_uri,
            (Err(err), Some(known)) => {
                tracing::warn!(issuer = %self.issuer, error = %err, "reading the discovery document again failed; fetching the jwks_uri it gave before");
                known.jwks_uri
            }
            (Err(err), None) => return Err(err),
        };
        if let Ok(mut slot) = discovered.lock() {
            *slot = Some(Discovered {
                jwks_uri: jwks_uri.clone(),
                read_at_ms: now,
            });
        }
        Ok(jwks_uri)
    }

    async fn discover(&self, fetcher: &Fetcher) -> Result<String, RefreshError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let fetched = fetcher.get(&url).await?;
        let doc = json::parse_object(&fetched.body).map_err(|_| RefreshError::BadDiscovery)?;
        match doc.get("issuer") {
            Some(Value::String(found)) if **found == *self.issuer => {}
            Some(Value::String(found)) => {
                return Err(RefreshError::IssuerMismatch {
                    found: found.clone(),
                });
            }
            _ => return Err(RefreshError::BadDiscovery),
        }
        match doc.get("jwks_uri") {
            Some(Value::String(uri)) => Ok(uri.clone()),
            _ => Err(RefreshError::BadDiscovery),
        }
    }

    /// How long to wait before the next background refresh.
    fn next_delay(&self, outcome: &Result<Option<Duration>, RefreshError>) -> Duration {
        match outcome {
            // Not `clamp`, which panics on inverted bounds (`Validator::new` refuses them, and
            // this task must not die if it ever met them): the upper bound wins.
            Ok(max_age) => max_age
                .unwrap_or(self.policy.default_interval)
                .max(self.policy.min_interval)
                .min(self.policy.max_interval),
            Err(_) => {
                let failures = self.failures_in_row.load(Ordering::Relaxed).min(16);
                let backoff = self
                    .policy
                    .retry_base
                    .saturating_mul(1u32 << failures.saturating_sub(1));
                backoff.min(self.policy.default_interval)
            }
        }
    }

    /// Starts the background refresh loop. The loop holds only a weak reference and ends when the
    /// validator is dropped.
    pub(crate) fn spawn_refresh_loop(
        self: &Arc<Self>,
        first: Result<Option<Duration>, RefreshError>,
    ) {
        if !self.is_remote() {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let mut delay = self.next_delay(&first);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(delay).await;
                let Some(this) = weak.upgrade() else { break };
                let outcome = this.refresh_single_flight().await;
                delay = this.next_delay(&outcome);
            }
        });
    }

    /// Runs a refresh unless one is already in flight, and wakes waiters when it ends.
    async fn refresh_single_flight(&self) -> Result<Option<Duration>, RefreshError> {
        if self
            .in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Ok(None);
        }
        self.run_refreshes().await
    }

    /// Refreshes until no on-demand request is pending. The caller holds `in_flight`; this lets
    /// it go.
    async fn run_refreshes(&self) -> Result<Option<Duration>, RefreshError> {
        loop {
            self.rerun.store(false, Ordering::SeqCst);
            let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
            let outcome = self.refresh().await;
            self.in_flight.store(false, Ordering::SeqCst);
            self.finished.send_replace(number);
            // A request that set `rerun` after this refresh began needs one more. Whoever takes
            // `in_flight` back runs it; if a new requester took it first, it runs it.
            if !self.rerun.load(Ordering::SeqCst)
                || self
                    .in_flight
                    .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
            {
                return outcome;
            }
        }
    }

    /// Handles a `kid` that is not in the current key set: waits for one rate-limited,
    /// single-flight refetch that started after this call, and negatively caches the kid if it is
    /// still unknown.
    ///
    /// A refresh already in flight does not count as that refetch: it may have read the key set
    /// before the issuer published this kid. The request then asks the running task for one more
    /// fetch, which the cooldown allows at most once per window as ever.
    ///
    /// Returns `true` if the kid is in the key set published while waiting (the caller looks
    /// again). `why` says which window of refetches the request may use.
    pub(crate) async fn await_unknown_kid(self: &Arc<Self>, kid: &str, why: OnDemand) -> bool {
        if !self.is_remote() || self.is_negative(kid) {
            return false;
        }
        let span = crate::step_span!(
            "jwks_fetch",
            trustgate.issuer = &*self.issuer,
            trustgate.jwks.outcome = tracing::field::Empty,
        );
        let found = tracing::Instrument::instrument(self.refetch_for(kid, why), span.clone()).await;
        span.record("trustgate.jwks.outcome", found.as_str());
        found == Refetched::Found
    }

    /// [`IssuerKeys::await_unknown_kid`] after its cheap checks.
    async fn refetch_for(self: &Arc<Self>, kid: &str, why: OnDemand) -> Refetched {
        let mut finished = self.finished.subscribe();
        // Refreshes numbered up to `arrived` may have started before this request.
        let arrived = self.started.load(Ordering::SeqCst);
        let (wait_for, fetches) = if self.claim_on_demand_window(why) {
            self.rerun.store(true, Ordering::SeqCst);
            let runner_idle = self
                .in_flight
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if runner_idle {
                let this = Arc::clone(self);
                // The fetch runs in a task of its own; its span hangs under the request's.
                let span = crate::step_span!("jwks_refresh");
                tokio::spawn(tracing::Instrument::instrument(
                    async move {
                        let _ = this.run_refreshes().await;
                    },
                    span,
                ));
            }
            // With a refresh in flight, ours runs after it.
            (arrived + 1, if runner_idle { 1 } else { 2 })
        } else if self.in_flight.load(Ordering::SeqCst) {
            // No refetch of our own within the cooldown; the one in flight may still bring it.
            (arrived, 1)
        } else {
            self.add_negative(kid);
            return Refetched::Cooldown;
        };
        let timeout = self
            .remote
            .as_ref()
            .map_or(Duration::ZERO, |(f, _)| f.options().timeout);
        // The fetches themselves end within their timeout; the request waits for them no longer
        // than `unknown_kid_wait`, whichever is shorter.
        let deadline = (timeout.saturating_mul(fetches) + Duration::from_millis(250))
            .min(self.policy.unknown_kid_wait);
        let done = tokio::time::timeout(deadline, finished.wait_for(|&n| n >= wait_for))
            .await
            .is_ok_and(|seen| seen.is_ok());
        if done && self.load().keys.pool(Some(kid)).is_some() {
            return Refetched::Found;
        }
        self.add_negative(kid);
        if done {
            Refetched::NotFound
        } else {
            Refetched::TimedOut
        }
    }

    /// Claims this cooldown window's on-demand refetch of kind `why`. Returns whether this
    /// caller got it.
    fn claim_on_demand_window(&self, why: OnDemand) -> bool {
        let now = self.clock.now_millis();
        let cooldown = duration_millis(self.policy.unknown_kid_cooldown);
        // Invariant: `OnDemand`'s discriminants are 0 and 1, the array's two indices.
        let window = &self.last_on_demand_ms[why as usize];
        let last = window.load(Ordering::Acquire);
        now.saturating_sub(last) >= cooldown
            && window
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    fn is_negative(&self, kid: &str) -> bool {
        let now = self.clock.now_millis();
        let Ok(mut negative) = self.negative_kids.lock() else {
            return false;
        };
        match negative.get(kid) {
            Some(&until) if until > now => true,
            Some(_) => {
                negative.remove(kid);
                false
            }
            None => false,
        }
    }

    fn add_negative(&self, kid: &str) {
        let until = self
            .clock
            .now_millis()
            .saturating_add(duration_millis(self.policy.unknown_kid_cooldown));
        if let Ok(mut negative) = self.negative_kids.lock() {
            if negative.len() >= NEGATIVE_KID_CAPACITY {
                // A flood of random kids cannot grow memory: the cache is bounded and simply
                // restarts. The cooldown, not this cache, is what bounds fetches.
                negative.clear();
            }
            negative.insert(Box::from(kid), until);
        }
    }

    fn clear_negative_kids(&self) {
        if let Ok(mut negative) = self.negative_kids.lock() {
            negative.clear();
        }
    }
}

/// Why a request asks for an on-demand refetch. Each kind has its own window of one refetch per
/// `unknown_kid_cooldown`: tokens whose signature fails under a known `kid` (forgeries, another
/// environment's tokens, or a key replaced under the same `kid`) cannot use up the refetch a new
/// `kid` needs at a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum OnDemand {
    /// No key carries the token's `kid`.
    UnknownKid = 0,
    /// A key carries it, and does not verify the signature.
    ReplacedKey = 1,
}

/// What waiting for a key set refetch came to, for its span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refetched {
    /// The new key set has the `kid`.
    Found,
    /// The refetch ended without it.
    NotFound,
    /// The wait ended before the refetch did.
    TimedOut,
    /// No refetch was allowed within the cooldown.
    Cooldown,
}

impl Refetched {
    fn as_str(self) -> &'static str {
        match self {
            Refetched::Found => "found",
            Refetched::NotFound => "not_found",
            Refetched::TimedOut => "timed_out",
            Refetched::Cooldown => "cooldown",
        }
    }
}

fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
