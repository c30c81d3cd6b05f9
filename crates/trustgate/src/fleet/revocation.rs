//! Revocation: by `jti`, by subject (every token of a subject issued at or before a cut-off),
//! and by internal token (its subject's external tokens issued before it was minted).
//!
//! The request path reads a local copy of the list (`ArcSwap`, no lock, no store round trip).
//! With a Redis store the copy is kept current two ways:
//! - **pub/sub**: each revocation is written by one Lua script that adds it to a sorted set
//!   (scored by when it may be forgotten), increments a version and publishes
//!   `epoch, version, time, entry`; a replica applies a message that follows its version and
//!   resynchronises on a gap;
//! - **polling**: every `store.poll_interval` a replica reads the epoch and version (one MGET);
//!   equal means confirmed, different means a full snapshot.
//!
//! Each confirmation moves the list's freshness deadline to now + `staleness_bound`; past it, a
//! route that checks revocations answers 503 (unless `danger_serve_when_stale`).
//!
//! A revocation is never withdrawn, only forgotten once every token it covers has expired, so a
//! replica's list only grows: what it holds and the store lacks, the store lost. That happens to
//! a Redis restarted without persistence (it comes back empty, with a new *epoch*, the random id
//! kept beside the version), but also to one restarted from an RDB snapshot or an `everysec` AOF
//! older than its last writes, and to a failover onto a replica that lagged: same epoch, older
//! version, fewer entries. Every snapshot therefore writes back the live entries the replica
//! holds that the store lacks, and the replica keeps the union. A revocation survives any of
//! these as long as one replica that held it is running.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use trustgate_core::VerifiedToken;
use trustgate_edge::{RevocationCheck, Revoked, Route};

use super::metrics::FleetMetrics;
use super::store::{RedisStore, StoreError, mono_ms, wall_ms};
use crate::config::RevocationConfig;

/// What a revocation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// One token, by its `jti`.
    Jti,
    /// Every token of a subject with `iat` at or before `cutoff`.
    Sub,
}

/// One revocation, as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) kind: Kind,
    /// The issuer (`iss`) whose token or subject this is.
    pub(crate) iss: String,
    /// The `jti` or the subject.
    pub(crate) value: String,
    /// For `sub`: tokens issued at or before this time (seconds) are revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cutoff: Option<i64>,
    /// When the entry may be forgotten (seconds): every token it covers has expired by then.
    pub(crate) expires_at: i64,
    /// When it was made (seconds).
    pub(crate) created_at: i64,
}

#[derive(Debug, Default)]
struct IssuerEntries {
    jti: HashMap<Box<str>, ()>,
    /// Subject → the latest cut-off.
    sub: HashMap<Box<str>, i64>,
}

/// The local copy of the list.
#[derive(Debug, Default)]
struct List {
    epoch: String,
    version: u64,
    entries: Vec<Entry>,
    by_issuer: HashMap<Box<str>, IssuerEntries>,
}

impl List {
    fn build(epoch: String, version: u64, mut entries: Vec<Entry>) -> Self {
        let now = wall_ms() / 1000;
        entries.retain(|e| e.expires_at > now);
        entries.sort_by(|a, b| (a.created_at, &a.value).cmp(&(b.created_at, &b.value)));
        entries.dedup();
        let mut by_issuer: HashMap<Box<str>, IssuerEntries> = HashMap::new();
        for entry in &entries {
            let issuer = by_issuer.entry(Box::from(entry.iss.as_str())).or_default();
            match entry.kind {
                Kind::Jti => {
                    issuer.jti.insert(Box::from(entry.value.as_str()), ());
                }
                Kind::Sub => {
                    let cutoff = entry.cutoff.unwrap_or(entry.created_at);
                    let slot = issuer
                        .sub
                        .entry(Box::from(entry.value.as_str()))
                        .or_insert(cutoff);
                    *slot = (*slot).max(cutoff);
                }
            }
        }
        Self {
            epoch,
            version,
            entries,
            by_issuer,
        }
    }

    fn with(&self, entry: Entry, version: u64) -> Self {
        let mut entries = self.entries.clone();
        entries.push(entry);
        Self::build(self.epoch.clone(), version, entries)
    }

    fn check(&self, token: &VerifiedToken) -> Result<(), Revoked> {
        if self.by_issuer.is_empty() {
            return Ok(());
        }
        let Some(issuer) = self.by_issuer.get(token.issuer()) else {
            return Ok(());
        };
        if !issuer.sub.is_empty()
            && let Some(subject) = token.identity().subject()
            && let Some(cutoff) = issuer.sub.get(subject)
            // A token without `iat` cannot show it came after the cut-off: revoked.
            && token.issued_at().is_none_or(|iat| iat <= *cutoff)
        {
            return Err(Revoked::BySubject);
        }
        if !issuer.jti.is_empty()
            && let Some(jti) = token.token_id()
            && issuer.jti.contains_key(jti)
        {
            return Err(Revoked::ByTokenId);
        }
        Ok(())
    }
}

// The writer: add, trim what has expired, count, publish; one atomic script, one slot.
/// The margin, past `exp` plus the issuer's leeway (or past the cut-off plus
/// `max_token_lifetime`), for which an entry is kept; and by which a token checked against the
/// list may outlive `max_token_lifetime`. Clocks differ by this much without a revocation lapsing
/// while what it revokes is still accepted.
pub(crate) const LEEWAY_SECS: i64 = 300;

const ADD: &str = r"
redis.call('SET', KEYS[3], ARGV[5], 'NX')
local epoch = redis.call('GET', KEYS[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], epoch .. '\t' .. version .. '\t' .. ARGV[3] .. '\t' .. ARGV[2])
return {epoch, version}
";

// A consistent snapshot: epoch, version and every live entry.
const SNAPSHOT: &str = r"
redis.call('SET', KEYS[3], ARGV[2], 'NX')
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
return {redis.call('GET', KEYS[3]), tonumber(redis.call('GET', KEYS[2]) or '0'), members}
";

// Writing back what a replica holds and the store lost (ZADD of a member already there is a
// no-op), then the snapshot that follows, in the same atomic step.
const RESEED: &str = r"
redis.call('SET', KEYS[3], ARGV[1], 'NX')
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
local version = redis.call('INCR', KEYS[2])
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf')
return {redis.call('GET', KEYS[3]), version, members}
";

struct Keys {
    set: String,
    version: String,
    epoch: String,
    channel: String,
}

/// The revocation list of this process, shared by every runtime (reloads keep it).
pub(crate) struct Revocations {
    list: ArcSwap<List>,
    /// Until when (`mono_ms`) the list counts as confirmed.
    fresh_until: AtomicI64,
    config: RevocationConfig,
    store: Option<Arc<RedisStore>>,
    keys: Option<Keys>,
    /// Asks the poller for a snapshot now (a gap in the messages, a new subscription).
    resync: Notify,
    metrics: Arc<FleetMetrics>,
    scripts: (redis::Script, redis::Script, redis::Script),
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("entries", &self.list.load().entries.len())
            .finish_non_exhaustive()
    }
}

fn random_id() -> String {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 12];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

impl Revocations {
    pub(crate) fn new(
        config: RevocationConfig,
        store: Option<Arc<RedisStore>>,
        metrics: Arc<FleetMetrics>,
    ) -> Arc<Self> {
        let keys = store.as_ref().map(|store| Keys {
            set: store.key("rev"),
            version: store.key("rev:version"),
            epoch: store.key("rev:epoch"),
            channel: store.key("rev:events"),
        });
        // Memory: the list is this process's own, always current. Redis: stale until the first
        // snapshot.
        let fresh_until = if store.is_some() { i64::MIN } else { i64::MAX };
        Arc::new(Self {
            list: ArcSwap::from_pointee(List::default()),
            fresh_until: AtomicI64::new(fresh_until),
            config,
            store,
            keys,
            resync: Notify::new(),
            metrics,
            scripts: (
                redis::Script::new(ADD),
                redis::Script::new(SNAPSHOT),
                redis::Script::new(RESEED),
            ),
        })
    }

    pub(crate) fn config(&self) -> &RevocationConfig {
        &self.config
    }

    fn confirm(&self) {
        let bound = i64::try_from(self.config.staleness_bound.as_millis()).unwrap_or(i64::MAX);
        self.fresh_until
            .store(mono_ms().saturating_add(bound), Ordering::Release);
    }

    /// Whether the list is within its staleness bound.
    pub(crate) fn is_fresh(&self) -> bool {
        mono_ms() < self.fresh_until.load(Ordering::Acquire)
    }

    /// Seconds since the last confirmation (0 for a memory store).
    pub(crate) fn staleness_secs(&self) -> f64 {
        let fresh_until = self.fresh_until.load(Ordering::Acquire);
        if fresh_until == i64::MAX {
            return 0.0;
        }
        if fresh_until == i64::MIN {
            return f64::INFINITY;
        }
        let bound = i64::try_from(self.config.staleness_bound.as_millis()).unwrap_or(i64::MAX);
        let confirmed = fresh_until.saturating_sub(bound);
        (mono_ms().saturating_sub(confirmed)).max(0) as f64 / 1000.0
    }

    pub(crate) fn len(&self) -> usize {
        self.list.load().entries.len()
    }

    pub(crate) fn entries(&self) -> (u64, Vec<Entry>) {
        let list = self.list.load();
        (list.version, list.entries.clone())
    }

    /// The check of one route's request (see [`RouteRevocations`]).
    fn check(&self, token: &VerifiedToken) -> Result<(), Revoked> {
        if !self.is_fresh() && !self.config.danger_serve_when_stale {
            return Err(Revoked::Stale);
        }
        if self.outlives_revocations(token) {
            return Err(Revoked::OutlivesRevocations);
        }
        self.list.load().check(token)
    }

    /// Whether `token` may still be valid when a revocation that covers it has lapsed: entries
    /// are kept `max_token_lifetime` (and 5 minutes of leeway) past the cut-off or the revoking
    /// call, so a token living longer (`exp - iat`), or without `exp`, cannot be revoked for its
    /// whole life. Nor can one without `iat`: `exp - now` says only how long it has left, not how
    /// long ago it was issued, so a token revoked (by subject or `jti`) long before would be
    /// accepted again once its entry had lapsed and `exp - now` had shrunk under the bound.
    fn outlives_revocations(&self, token: &VerifiedToken) -> bool {
        let bound = i64::try_from(self.config.max_token_lifetime.as_secs())
            .unwrap_or(i64::MAX)
            .saturating_add(LEEWAY_SECS);
        match (token.issued_at(), token.expires_at()) {
            (Some(iat), Some(exp)) => exp.saturating_sub(iat) > bound,
            _ => true,
        }
    }

    /// Adds a revocation: to the store (and, through it, every replica), then here.
    pub(crate) async fn add(&self, entry: Entry) -> Result<(), StoreError> {
        let member =
            serde_json::to_string(&entry).map_err(|err| StoreError::Data(err.to_string()))?;
        let (Some(store), Some(keys)) = (&self.store, &self.keys) else {
            // A compare-and-swap: two concurrent calls must not each store the list they loaded,
            // the later one dropping the earlier one's entry after both answered 201.
            self.list
                .rcu(|list| list.with(entry.clone(), list.version + 1));
            return Ok(());
        };
        let now = wall_ms();
        let score = entry.expires_at.saturating_mul(1000).to_string();
        let (epoch, version): (String, u64) = store
            .script(
                "revocation_add",
                &self.scripts.0,
                &[&keys.set, &keys.version, &keys.epoch],
                &[
                    &score,
                    &member,
                    &now.to_string(),
                    &keys.channel,
                    &random_id(),
                ],
            )
            .await?;
        self.apply(&epoch, version, entry);
        Ok(())
    }

    /// Applies an entry numbered `version`. The next version is applied and confirms the list.
    /// Anything else (a gap, another epoch, a version this replica has passed) is added all the
    /// same, since revocations only accumulate, and a snapshot settles the version. The one
    /// exception is the echo of this replica's own [`Revocations::add`], already held.
    fn apply(&self, epoch: &str, version: u64, entry: Entry) {
        // One compare-and-swap (`rcu`): the admin call's own `add` and the subscriber apply
        // entries concurrently, and a plain load-then-store would let one drop the other's.
        let mut next = false;
        let mut resync = false;
        self.list.rcu(|list| {
            next = false;
            resync = false;
            if list.epoch == epoch && version == list.version + 1 {
                next = true;
                return Arc::new(list.with(entry.clone(), version));
            }
            if list.epoch == epoch && version <= list.version && list.entries.contains(&entry) {
                return Arc::clone(list);
            }
            // Kept at the version held: the poll sees that the store's differs.
            resync = true;
            Arc::new(list.with(entry.clone(), list.version))
        });
        if next {
            self.confirm();
        }
        if resync {
            self.resync.notify_one();
        }
    }

    /// One message from the channel: `epoch \t version \t published_ms \t entry`.
    fn on_message(&self, payload: &str) {
        let mut parts = payload.splitn(4, '\t');
        let (Some(epoch), Some(version), Some(published), Some(member)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            tracing::warn!("malformed revocation message; resynchronising");
            self.resync.notify_one();
            return;
        };
        let (Ok(version), Ok(published), Ok(entry)) = (
            version.parse::<u64>(),
            published.parse::<i64>(),
            serde_json::from_str::<Entry>(member),
        ) else {
            tracing::warn!("malformed revocation message; resynchronising");
            self.resync.notify_one();
            return;
        };
        self.metrics
            .pubsub_lag((wall_ms() - published) as f64 / 1000.0);
        self.apply(epoch, version, entry);
    }

    /// Reads the store's whole list and makes it this replica's, together with what this replica
    /// holds: entries the store lacks are written back first (see the module's documentation).
    pub(crate) async fn snapshot(&self) -> Result<(), StoreError> {
        let (Some(store), Some(keys)) = (&self.store, &self.keys) else {
            return Ok(());
        };
        let now = wall_ms();
        let (mut epoch, mut version, mut members): (Option<String>, u64, Vec<String>) = store
            .script(
                "revocation_snapshot",
                &self.scripts.1,
                &[&keys.set, &keys.version, &keys.epoch],
                &[&now.to_string(), &random_id()],
            )
            .await?;
        let lost = lost_entries(&self.list.load(), &members, now / 1000)?;
        if !lost.is_empty() {
            tracing::warn!(
                entries = lost.len(),
                "the store lacks revocations this replica holds (it lost data, or came back from an older copy); writing them back"
            );
            let mut args = vec![random_id(), now.to_string()];
            for (score, member) in lost {
                args.push(score);
                args.push(member);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (epoch, version, members) = store
                .script(
                    "revocation_reseed",
                    &self.scripts.2,
                    &[&keys.set, &keys.version, &keys.epoch],
                    &args,
                )
                .await?;
        }
        let epoch = epoch.unwrap_or_default();
        let stored: Vec<Entry> = members
            .iter()
            .filter_map(|m| serde_json::from_str::<Entry>(m).ok())
            .collect();
        // The union with the list as it is now, not as it was before the round trips: an entry
        // applied from the channel meanwhile stays.
        self.list.rcu(|current| {
            let mut entries = stored.clone();
            entries.extend(current.entries.iter().cloned());
            List::build(epoch.clone(), version, entries)
        });
        self.confirm();
        Ok(())
    }

    /// Confirms the list with one MGET, or takes a snapshot when it differs.
    async fn poll(&self) -> Result<(), StoreError> {
        let (Some(store), Some(keys)) = (&self.store, &self.keys) else {
            return Ok(());
        };
        let (epoch, version): (Option<String>, Option<u64>) = store
            .query(
                "revocation_poll",
                redis::cmd("MGET").arg(&keys.epoch).arg(&keys.version),
            )
            .await?;
        let list = self.list.load();
        if epoch.as_deref() == Some(list.epoch.as_str())
            && version.unwrap_or(0) == list.version
            && !list.epoch.is_empty()
        {
            self.confirm();
            Ok(())
        } else {
            self.snapshot().await
        }
    }

    /// Runs the poller and the subscriber for the life of the process.
    pub(crate) fn spawn(self: &Arc<Self>, poll_interval: std::time::Duration) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let poller = Arc::clone(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match poller.poll().await {
                    Ok(()) if failing => {
                        tracing::info!("revocation list confirmed with the store again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(err) if !failing => {
                        tracing::warn!(error = %err, "cannot confirm the revocation list with the store; routes that check revocations refuse tokens once it is older than revocation.staleness_bound");
                        failing = true;
                    }
                    Err(_) => {}
                }
                tokio::select! {
                    () = tokio::time::sleep(poll_interval) => {}
                    () = poller.resync.notified() => {}
                }
            }
        });
        let subscriber = Arc::clone(self);
        tokio::spawn(async move {
            let Some(channel) = subscriber.keys.as_ref().map(|k| k.channel.clone()) else {
                return;
            };
            loop {
                match store.subscribe(&channel).await {
                    Ok(pubsub) => {
                        // Messages published before the subscription are not delivered: take a
                        // snapshot now so that none is missed.
                        subscriber.resync.notify_one();
                        let mut messages = pubsub.into_on_message();
                        while let Some(message) = futures_util::StreamExt::next(&mut messages).await
                        {
                            if let Ok(payload) = message.get_payload::<String>() {
                                subscriber.on_message(&payload);
                            }
                        }
                        tracing::debug!("revocation subscription closed; resubscribing");
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "cannot subscribe to revocations");
                    }
                }
                tokio::time::sleep(poll_interval.min(std::time::Duration::from_millis(500))).await;
            }
        });
    }
}

/// The live entries of `held` that are not among the store's `members`, as (score, member) for
/// the write-back. Members are compared as the text [`Revocations::add`] stores.
fn lost_entries(
    held: &List,
    members: &[String],
    now_s: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let stored: std::collections::HashSet<&str> = members.iter().map(String::as_str).collect();
    let mut lost = Vec::new();
    for entry in held.entries.iter().filter(|e| e.expires_at > now_s) {
        let member =
            serde_json::to_string(entry).map_err(|err| StoreError::Data(err.to_string()))?;
        if !stored.contains(member.as_str()) {
            lost.push((entry.expires_at.saturating_mul(1000).to_string(), member));
        }
    }
    Ok(lost)
}

/// The engine's view for one configuration: which routes check, over the process's list.
pub(crate) struct RouteRevocations {
    pub(crate) list: Arc<Revocations>,
    /// By route index.
    pub(crate) routes: Vec<bool>,
}

impl RevocationCheck for RouteRevocations {
    fn check(&self, route: &Route, token: &VerifiedToken) -> Result<(), Revoked> {
        let checks = usize::try_from(route.index)
            .ok()
            .and_then(|i| self.routes.get(i))
            .copied()
            .unwrap_or(false);
        if !checks {
            return Ok(());
        }
        let result = self.list.check(token);
        if let Err(revoked) = result {
            self.list.metrics.revocation_refusal(match revoked {
                Revoked::Stale => "stale",
                Revoked::OutlivesRevocations => "lifetime",
                Revoked::ByTokenId | Revoked::BySubject => "revoked",
            });
        }
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(kind: Kind, value: &str, cutoff: Option<i64>) -> Entry {
        Entry {
            kind,
            iss: "https://idp".into(),
            value: value.into(),
            cutoff,
            expires_at: wall_ms() / 1000 + 3600,
            created_at: 1,
        }
    }

    #[test]
    fn the_latest_cutoff_of_a_subject_counts_and_expired_entries_go() {
        let mut expired = entry(Kind::Jti, "old", None);
        expired.expires_at = 10;
        let list = List::build(
            "e".into(),
            3,
            vec![
                entry(Kind::Sub, "alice", Some(100)),
                entry(Kind::Sub, "alice", Some(200)),
                entry(Kind::Jti, "j1", None),
                expired,
            ],
        );
        assert_eq!(list.entries.len(), 3);
        assert_eq!(list.by_issuer["https://idp"].sub["alice"], 200);
        assert!(list.by_issuer["https://idp"].jti.contains_key("j1"));
        assert!(!list.by_issuer["https://idp"].jti.contains_key("old"));
        let next = list.with(entry(Kind::Jti, "j2", None), 4);
        assert_eq!((next.version, next.entries.len()), (4, 4));
    }
}
