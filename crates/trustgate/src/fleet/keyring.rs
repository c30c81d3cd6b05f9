//! The internal key ring shared by a fleet (pattern 4 and assertions).
//!
//! The ring is one JSON document in the store: every key with its signing window
//! `[signs_from, signs_until)` and the time until which it stays published. Replicas read it
//! every `store.poll_interval` and install it in their `InternalSigner`, which signs with the key
//! whose window holds the moment, so every replica switches at the same instant without talking
//! to the others then, and every replica serves the same JWK Set.
//!
//! - **One writer.** A change (the first ring, a new next key, pruning) is made by the replica
//!   holding a short `SET NX PX` lock, and written with compare-and-set, so exactly one replica
//!   generates each key.
//! - **Published before it signs.** A new key is appended when the last one starts signing, with
//!   its window starting where that one's ends: it is in the JWK Set a whole rotation interval
//!   before it signs. A key stays published `max_ttl` + 60 s after its window. The exception is
//!   a key made because nothing signs now: the first key of a new ring (a new namespace, or a
//!   store without a ring that no running replica holds) or after the whole fleet was down for
//!   two intervals. It signs from the moment it is made, since waiting for it to be seen would
//!   leave the fleet unable to mint meanwhile; a service learns it from the first token that
//!   carries it if it refetches the JWK Set on an unknown kid (`trustgate-service` does, at most
//!   once per `unknown_kid_cooldown`, 30 s), and refuses those tokens until its cached copy
//!   expires (`max-age` 60 s) if it does not.
//! - **Sealed.** Private keys are stored as AES-256-GCM ciphertext under the key-encryption key,
//!   with a random nonce per key and the namespace, kid and window as associated data, so a
//!   ciphertext cannot be moved to another deployment, key id or window. A dump of Redis holds
//!   no usable private key.
//! - **Fail closed.** A replica that cannot reach the store keeps the ring it has and signs
//!   with it for one rotation interval after its last sync (never past the keys it holds);
//!   after that it refuses to mint. Counting from the sync rather than from a key's window means
//!   a late sync near a switch does not stop a replica that holds the next key.
//! - **Only what opens counts.** Nothing but a key's window is sealed, so a replica uses an
//!   entry of the stored ring only once it has opened (or is an entry of the ring it holds, as it
//!   is), and publishes it exactly until `max_ttl` + 60 s after its window, whatever the stored
//!   `published_until` says: a writer of the store cannot take the key that signs out of the JWK
//!   Set, nor keep a retired one in it. An entry that does not open counts as missing.
//! - **Survives a store that lost it.** A replica that finds no ring, or text that is no ring at
//!   all, but holds one writes its copy back (the same ciphertexts) before anything else would
//!   create a new one. A ring that
//!   lacks keys the replica holds, still published, came back from an older copy (an RDB
//!   snapshot, an `everysec` AOF, a failover onto a replica that lagged): the replica adds them
//!   back, so that the key signing now and every key whose tokens are still valid stay in the
//!   JWK Set, and the ring does not start over with a key that was never published.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use trustgate_core::{Algorithm, InternalSigner, ScheduledKey};
use zeroize::Zeroizing;

use super::store::{RedisStore, StoreError, wall_ms};
use crate::config::{InternalIssuerConfig, Kek};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    signs_from: i64,
    signs_until: i64,
    published_until: i64,
    /// base64url(nonce || ciphertext || tag)
    sealed: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RingDoc {
    alg: String,
    /// Which key-encryption key sealed the keys (a digest of it): a replica with another one
    /// says so instead of failing to decrypt.
    kek_id: String,
    keys: Vec<StoredKey>,
}

// Compare-and-set of the ring: written only if it is still what the writer read ('' = absent).
const CAS: &str = r"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
";

const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Keeps this replica's signer in step with the shared ring.
pub(crate) struct KeyRingSync {
    store: Arc<RedisStore>,
    signer: Arc<InternalSigner>,
    kek: LessSafeKey,
    kek_id: String,
    namespace: String,
    alg: Algorithm,
    rotation: i64,
    retire_after: i64,
    poll: Duration,
    /// The wall time (ms) of the last successful sync.
    last_sync: AtomicI64,
    cas: redis::Script,
    unlock: redis::Script,
}

impl std::fmt::Debug for KeyRingSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRingSync")
            .field("kek", &"[redacted]")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The key-encryption key's public name: the first 8 bytes of SHA-256 over a label and the key.
fn kek_id(kek: &Kek) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(b"trustgate kek id\0");
    context.update(kek.bytes());
    let digest = context.finish();
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The associated data of a sealed key: what it may be used as.
fn aad(namespace: &str, kid: &str, signs_from: i64, signs_until: i64) -> Vec<u8> {
    format!("trustgate keyring v1\0{namespace}\0{kid}\0{signs_from}\0{signs_until}").into_bytes()
}

/// What a sync of the ring came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synced {
    Installed,
    /// The store is unreachable or the ring unusable: the installed ring stays.
    Kept,
}

impl KeyRingSync {
    pub(crate) fn new(
        store: Arc<RedisStore>,
        signer: Arc<InternalSigner>,
        kek: &Kek,
        namespace: &str,
        internal: &InternalIssuerConfig,
        poll: Duration,
    ) -> Result<Arc<Self>, StoreError> {
        let key = UnboundKey::new(&AES_256_GCM, kek.bytes())
            .map_err(|_| StoreError::Data("the key-encryption key is unusable".into()))?;
        Ok(Arc::new(Self {
            store,
            signer,
            kek: LessSafeKey::new(key),
            kek_id: kek_id(kek),
            namespace: namespace.to_owned(),
            alg: internal.algorithm,
            rotation: millis(internal.rotation_interval),
            retire_after: millis(internal.max_ttl).saturating_add(RETIRE_MARGIN_MS),
            poll,
            last_sync: AtomicI64::new(0),
            cas: redis::Script::new(CAS),
            unlock: redis::Script::new(UNLOCK),
        }))
    }

    /// The wall time (ms) of the last successful sync, 0 if none.
    pub(crate) fn last_sync_ms(&self) -> i64 {
        self.last_sync.load(Ordering::Relaxed)
    }

    fn seal(&self, pkcs8: &[u8], kid: &str, from: i64, until: i64) -> Result<String, StoreError> {
        seal(&self.kek, &self.namespace, pkcs8, kid, from, until)
    }

    fn open(&self, stored: &StoredKey) -> Result<ScheduledKey, StoreError> {
        open(
            &self.kek,
            &self.namespace,
            self.alg,
            stored,
            self.retire_after,
        )
    }

    fn new_key(&self, from: i64) -> Result<StoredKey, StoreError> {
        let pkcs8 = Zeroizing::new(
            trustgate_core::generate_pkcs8(self.alg)
                .map_err(|err| StoreError::Data(err.to_string()))?,
        );
        let until = from.saturating_add(self.rotation);
        let probe = ScheduledKey::from_pkcs8(self.alg, &pkcs8, from, until, 0)
            .map_err(|err| StoreError::Data(err.to_string()))?;
        let kid = probe.kid().to_owned();
        Ok(StoredKey {
            sealed: self.seal(&pkcs8, &kid, from, until)?,
            kid,
            signs_from: from,
            signs_until: until,
            published_until: until.saturating_add(self.retire_after),
        })
    }

    /// The ring as it should be at `now`: a key signing now, one published to sign next, and
    /// nothing past its publication. `None` when `doc` needs no change.
    fn maintained(&self, doc: Option<&RingDoc>, now: i64) -> Result<Option<RingDoc>, StoreError> {
        let mut keys: Vec<StoredKey> = doc.map(|d| d.keys.clone()).unwrap_or_default();
        let before = keys.len();
        keys.retain(|k| k.published_until > now);
        let mut changed = keys.len() != before || doc.is_none();
        if !keys
            .iter()
            .any(|k| k.signs_from <= now && now < k.signs_until)
        {
            // Nothing signs now (a new ring, or a whole fleet down for two intervals): a key
            // from now, published only now (see the module's documentation). Services learn it
            // on their first unknown kid.
            keys.push(self.new_key(now)?);
            changed = true;
        }
        if !keys.iter().any(|k| k.signs_from > now) {
            let last_end = keys.iter().map(|k| k.signs_until).max().unwrap_or(now);
            keys.push(self.new_key(last_end.max(now))?);
            changed = true;
        }
        if !changed {
            return Ok(None);
        }
        keys.sort_by_key(|k| k.signs_from);
        Ok(Some(RingDoc {
            alg: self.alg.name().to_owned(),
            kek_id: self.kek_id.clone(),
            keys,
        }))
    }

    /// The stored ring, if it is one of this replica's key-encryption key and algorithm.
    fn parse(&self, read: Result<RingDoc, serde_json::Error>) -> Result<RingDoc, StoreError> {
        let doc =
            read.map_err(|err| StoreError::Data(format!("the key ring is not readable: {err}")))?;
        if doc.kek_id != self.kek_id {
            return Err(StoreError::Data(format!(
                "the key ring was sealed with another key-encryption key (id {}, this replica's is {}); every replica of a namespace needs the same internal_issuer.kek_file/kek_env",
                doc.kek_id, self.kek_id
            )));
        }
        if doc.alg != self.alg.name() {
            return Err(StoreError::Data(format!(
                "the key ring holds {} keys and this replica is configured for {}",
                doc.alg,
                self.alg.name()
            )));
        }
        Ok(doc)
    }

    /// Writes `next` over `current` (its text, '' if absent) under the rotation lock.
    async fn write(&self, current: &str, next: &RingDoc) -> Result<bool, StoreError> {
        let ring_key = self.store.key("keyring");
        let lock_key = self.store.key("keyring:lock");
        let token = {
            let mut bytes = [0u8; 12];
            let _ = SystemRandom::new().fill(&mut bytes);
            base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
        };
        let locked: Option<String> = self
            .store
            .query(
                "keyring_lock",
                redis::cmd("SET")
                    .arg(&lock_key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(5000),
            )
            .await?;
        if locked.is_none() {
            // Another replica is writing; its ring arrives on the next sync.
            return Ok(false);
        }
        let text = serde_json::to_string(next).map_err(|err| StoreError::Data(err.to_string()))?;
        let written: Result<i64, StoreError> = self
            .store
            .script("keyring_write", &self.cas, &[&ring_key], &[current, &text])
            .await;
        let _: Result<i64, StoreError> = self
            .store
            .script("keyring_unlock", &self.unlock, &[&lock_key], &[&token])
            .await;
        Ok(written? == 1)
    }

    /// One sync: read, maintain (under the lock), install. `held` is the last ring read and the
    /// keys opened from it, kept by the task.
    async fn sync(&self, held: &mut Held) -> Result<Synced, StoreError> {
        let ring_key = self.store.key("keyring");
        let text: Option<String> = self
            .store
            .query("keyring_read", redis::cmd("GET").arg(&ring_key))
            .await?;
        let now = wall_ms();
        // Text that is no ring at all (cut short, or overwritten by a writer of the store) is
        // lost like a deleted ring: a replica that holds one writes its copy back over it, where
        // before every replica kept its own until the keys ran out and then refused to mint. A
        // readable ring of another key-encryption key or algorithm is not overwritten: that is
        // replicas configured differently, which `parse` reports, and they would overwrite each
        // other's.
        let read = text.as_deref().map(serde_json::from_str::<RingDoc>);
        if let (Some(stored), Some(Err(_)), Some(copy)) = (&text, &read, &held.doc) {
            tracing::warn!(
                "the store's key ring is not readable; writing back this replica's copy"
            );
            let _ = self.write(stored, copy).await?;
            return Ok(Synced::Kept);
        }
        let (doc, ignored) = match read {
            Some(read) => {
                let (doc, ignored) = checked(
                    self.parse(read)?,
                    held,
                    &self.kek,
                    &self.namespace,
                    self.alg,
                    self.retire_after,
                );
                (Some(doc), ignored)
            }
            None => (None, 0),
        };
        let current_text = text.unwrap_or_default();
        let doc = match (doc, &held.doc) {
            (None, Some(copy)) => {
                // The store lost the ring: write back ours (same ciphertexts), then maintain.
                tracing::warn!("the store has no key ring; writing back this replica's copy");
                let _ = self.write("", copy).await?;
                return Ok(Synced::Kept);
            }
            (Some(doc), Some(copy)) => {
                if let Some(restored) = restored(&doc, copy, now) {
                    tracing::warn!(
                        keys = restored.keys.len() - doc.keys.len(),
                        "the store's key ring lacks published keys this replica holds (it came back from an older copy); writing them back"
                    );
                    let _ = self.write(&current_text, &restored).await?;
                    return Ok(Synced::Kept);
                }
                Some(doc)
            }
            (doc, None) => doc,
        };
        let next = match self.maintained(doc.as_ref(), now)? {
            // Entries that do not open were left out: the ring is written without them.
            None if ignored > 0 => doc.clone(),
            next => next,
        };
        let doc = match next {
            Some(next) => {
                if self.write(&current_text, &next).await? {
                    tracing::info!(keys = next.keys.len(), "internal key ring updated");
                    next
                } else {
                    // Someone else changed it first: install what is there now, if anything.
                    match doc {
                        Some(doc) => doc,
                        None => return Ok(Synced::Kept),
                    }
                }
            }
            None => match doc {
                Some(doc) => doc,
                None => return Ok(Synced::Kept),
            },
        };
        self.install(&doc, held, now)?;
        Ok(Synced::Installed)
    }

    fn install(&self, doc: &RingDoc, held: &mut Held, now: i64) -> Result<(), StoreError> {
        let mut keys = Vec::with_capacity(doc.keys.len());
        let mut opened = HashMap::new();
        for stored in &doc.keys {
            let key = match held.opened.remove(&stored.kid) {
                Some(key) => key,
                None => self.open(stored)?,
            };
            opened.insert(stored.kid.clone(), key.clone());
            keys.push(key);
        }
        let limit = sign_limit(&doc.keys, now, self.rotation);
        self.signer.install(keys, limit);
        held.opened = opened;
        held.doc = Some(doc.clone());
        self.last_sync.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// The first sync, bounded, before the gateway serves; then one per poll interval.
    pub(crate) async fn start(self: &Arc<Self>) {
        let mut held = Held::default();
        match self.sync(&mut held).await {
            Ok(Synced::Installed) => {}
            Ok(Synced::Kept) => {
                // A concurrent replica wrote first; read its ring.
                let _ = self.sync(&mut held).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the shared key ring; internal tokens are refused until it is read");
            }
        }
        let sync = Arc::clone(self);
        let tick = self.poll.min(Duration::from_millis(
            u64::try_from(self.rotation / 4).unwrap_or(1000).max(50),
        ));
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(tick).await;
                match sync.sync(&mut held).await {
                    Ok(_) if failing => {
                        tracing::info!("shared key ring read again");
                        failing = false;
                    }
                    Ok(_) => {}
                    Err(err) if !failing => {
                        tracing::warn!(error = %err, "cannot sync the shared key ring; signing goes on with the ring held for one rotation interval after the last sync");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

/// Seals a PKCS#8 key: base64url(nonce || AES-256-GCM(key) || tag), with the namespace, kid and
/// window as associated data.
fn seal(
    kek: &LessSafeKey,
    namespace: &str,
    pkcs8: &[u8],
    kid: &str,
    from: i64,
    until: i64,
) -> Result<String, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| StoreError::Data("no randomness".into()))?;
    let mut buffer = Zeroizing::new(pkcs8.to_vec());
    kek.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad(namespace, kid, from, until)),
        &mut *buffer,
    )
    .map_err(|_| StoreError::Data("sealing failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buffer);
    Ok(base64_simd::URL_SAFE_NO_PAD.encode_to_string(out))
}

/// `doc` as this replica may use it: only keys that open under the key-encryption key for their
/// kid and window (or are the very entries of the ring it holds, which did), each published at
/// least until its window's end plus `retire_after`, and the number of entries left out.
///
/// Nothing but the window is sealed, and the window is checked only by opening, so until then a
/// writer of the store decides what an entry says: with `published_until` lowered (or a window
/// made to look past) the key that signs now was pruned, or dropped from the JWK Set while it
/// still signed, and services refused the tokens it had signed. So no decision (pruning, a missing
/// key to write back, nothing signing now) is made on an entry before it has opened, and the end of
/// publication is never earlier than the sealed window gives, as `new_key` writes it. An entry
/// that does not open is treated as missing: a replica that holds the key writes it back as it
/// was sealed.
fn checked(
    mut doc: RingDoc,
    held: &mut Held,
    kek: &LessSafeKey,
    namespace: &str,
    alg: Algorithm,
    retire_after: i64,
) -> (RingDoc, usize) {
    // Never earlier than `new_key` writes. A later end is kept in the store (a replica with a
    // longer `max_ttl` wrote it; each would otherwise prune and write back in turn), but `open`
    // caps what is published at this one.
    for stored in &mut doc.keys {
        stored.published_until = stored
            .published_until
            .max(stored.signs_until.saturating_add(retire_after));
    }
    let before = doc.keys.len();
    doc.keys.retain(|stored| {
        let known = held.doc.as_ref().is_some_and(|d| {
            d.keys.iter().any(|h| {
                h.kid == stored.kid
                    && h.signs_from == stored.signs_from
                    && h.signs_until == stored.signs_until
                    && h.sealed == stored.sealed
            })
        });
        if known {
            return true;
        }
        match open(kek, namespace, alg, stored, retire_after) {
            Ok(key) => {
                held.opened.insert(stored.kid.clone(), key);
                true
            }
            Err(_) => {
                tracing::warn!(kid = %stored.kid, "a key in the store's ring does not open (altered, or not sealed for this namespace); ignored");
                false
            }
        }
    });
    let ignored = before - doc.keys.len();
    (doc, ignored)
}

/// Opens a sealed key; fails unless the key-encryption key, namespace, kid and window all match.
/// The end of publication is not sealed (only the window is): it is capped at the window's end
/// plus `retire_after`, what `new_key` writes, so a writer of the store cannot keep a retired
/// key in the JWK Set ([`checked`] has already raised a lower one to that).
fn open(
    kek: &LessSafeKey,
    namespace: &str,
    alg: Algorithm,
    stored: &StoredKey,
    retire_after: i64,
) -> Result<ScheduledKey, StoreError> {
    let bad = || StoreError::Data(format!("key {} does not open", stored.kid));
    let bytes = base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(&stored.sealed)
        .map_err(|_| bad())?;
    if bytes.len() < NONCE_LEN + 16 {
        return Err(bad());
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
    let mut buffer = Zeroizing::new(sealed.to_vec());
    let plain = kek
        .open_in_place(
            nonce,
            Aad::from(aad(
                namespace,
                &stored.kid,
                stored.signs_from,
                stored.signs_until,
            )),
            &mut buffer,
        )
        .map_err(|_| bad())?;
    let published_until = stored
        .published_until
        .min(stored.signs_until.saturating_add(retire_after));
    let key = ScheduledKey::from_pkcs8(
        alg,
        plain,
        stored.signs_from,
        stored.signs_until,
        published_until,
    )
    .map_err(|_| bad())?;
    // The kid is a digest of the public key: a stored kid that does not match is not ours.
    if key.kid() != stored.kid {
        return Err(bad());
    }
    Ok(key)
}

/// How long before the end of its publication a key lacking from the store is no longer written
/// back: the margin kept after its last token's expiry (`retire_after`), which also covers the
/// clock skew between replicas, so that a replica whose clock is behind does not put back a key
/// that another has just retired.
const RETIRE_MARGIN_MS: i64 = 60_000;

/// `stored` with the keys of `held` it lacks that are still published at `now`, or `None` when it
/// lacks none. Keys are the same ciphertexts either way: the union of two copies of one ring.
/// Where a window then overlaps another, the signer takes the key whose window starts first,
/// which is the one that was published before it signed.
fn restored(stored: &RingDoc, held: &RingDoc, now: i64) -> Option<RingDoc> {
    let lost: Vec<&StoredKey> = held
        .keys
        .iter()
        .filter(|k| {
            k.published_until > now.saturating_add(RETIRE_MARGIN_MS)
                && !stored.keys.iter().any(|s| s.kid == k.kid)
        })
        .collect();
    if lost.is_empty() {
        return None;
    }
    let mut keys = stored.keys.clone();
    keys.extend(lost.into_iter().cloned());
    keys.sort_by_key(|k| k.signs_from);
    Some(RingDoc {
        keys,
        ..stored.clone()
    })
}

#[derive(Default)]
struct Held {
    doc: Option<RingDoc>,
    opened: HashMap<String, ScheduledKey>,
}

/// Until when a replica may sign with `keys` without another sync at `now`: one `grace` (the
/// rotation interval) after it, and never past the keys it holds, whose windows follow each
/// other from the one current now.
///
/// The grace runs from the sync, not from a key's window: a replica whose syncs come late (a
/// loaded machine, a slow store) signs on across a switch with the next key it already holds,
/// which every replica has published for an interval, instead of refusing requests until its
/// next sync. A replica cut off from the store still stops one interval after it last read it.
fn sign_limit(keys: &[StoredKey], now: i64, grace: i64) -> i64 {
    let Some(current) = keys
        .iter()
        .find(|k| k.signs_from <= now && now < k.signs_until)
    else {
        return now;
    };
    let mut held_until = current.signs_until;
    while let Some(next) = keys.iter().find(|k| k.signs_from == held_until) {
        held_until = next.signs_until;
    }
    held_until.min(now.saturating_add(grace))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn stored(from: i64, until: i64) -> StoredKey {
        StoredKey {
            kid: format!("k{from}"),
            signs_from: from,
            signs_until: until,
            published_until: until + 1000,
            sealed: String::new(),
        }
    }

    #[test]
    fn the_sign_limit_is_one_grace_after_the_sync_within_the_keys_held() {
        let keys = [stored(0, 100), stored(100, 200)];
        // Across the switch, with the next key held.
        assert_eq!(sign_limit(&keys, 10, 100), 110);
        assert_eq!(sign_limit(&keys, 85, 100), 185);
        // Never past the last key held.
        assert_eq!(sign_limit(&keys, 150, 100), 200);
        assert_eq!(sign_limit(&[stored(0, 100)], 90, 100), 100);
        // Nothing signs now: nothing may sign.
        assert_eq!(sign_limit(&keys, 250, 100), 250);
        // A gap in the schedule ends what is held.
        assert_eq!(
            sign_limit(&[stored(0, 100), stored(150, 250)], 90, 100),
            100
        );
    }

    #[test]
    fn a_ring_from_an_older_copy_gets_back_the_published_keys_it_lacks() {
        let doc = |keys: Vec<StoredKey>| RingDoc {
            alg: "EdDSA".into(),
            kek_id: "kek".into(),
            keys,
        };
        let held = doc(vec![stored(0, 100), stored(100, 200), stored(200, 300)]);
        // The store went back to the ring of time 50: the keys of 100 and 200 are gone.
        let older = doc(vec![stored(-100, 0), stored(0, 100)]);
        let now = 150 - RETIRE_MARGIN_MS;
        let ring = restored(&older, &held, now).unwrap();
        let kids: Vec<&str> = ring.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["k-100", "k0", "k100", "k200"]);
        // Nothing is missing from a ring that holds every key, or that lacks only keys no
        // longer published.
        assert_eq!(restored(&held, &held, now), None);
        let mut retired = held.clone();
        retired.keys[0].published_until = 120;
        assert_eq!(
            restored(&doc(retired.keys[1..].to_vec()), &retired, now),
            None
        );
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_kek_namespace_kid_and_window() {
        let kek = |byte: u8| LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[byte; 32]).unwrap());
        let pkcs8 = trustgate_core::generate_pkcs8(Algorithm::EdDSA).unwrap();
        let probe = ScheduledKey::from_pkcs8(Algorithm::EdDSA, &pkcs8, 0, 100, 200).unwrap();
        let sealed = seal(&kek(1), "ns", &pkcs8, probe.kid(), 0, 100).unwrap();
        let stored = StoredKey {
            kid: probe.kid().to_owned(),
            signs_from: 0,
            signs_until: 100,
            published_until: 200,
            sealed,
        };
        let opened = open(&kek(1), "ns", Algorithm::EdDSA, &stored, 1000).unwrap();
        assert_eq!(opened.kid(), probe.kid());
        // The stored text holds no PKCS#8 in clear.
        let raw = base64_simd::URL_SAFE_NO_PAD
            .decode_to_vec(&stored.sealed)
            .unwrap();
        assert!(!raw.windows(16).any(|w| pkcs8.windows(16).any(|p| p == w)));
        assert!(open(&kek(2), "ns", Algorithm::EdDSA, &stored, 1000).is_err());
        assert!(open(&kek(1), "other", Algorithm::EdDSA, &stored, 1000).is_err());
        let moved = StoredKey {
            signs_until: 1000,
            ..stored.clone()
        };
        assert!(open(&kek(1), "ns", Algorithm::EdDSA, &moved, 1000).is_err());
    }

    /// The publication end is not in the associated data: whoever can write the store can set
    /// it. A replica must still drop a key `retire_after` past its window, so a writer of Redis
    /// (with an old ciphertext from a dump, or the ring as it is) cannot keep a retired key in the
    /// JWK Set services trust, indefinitely.
    #[test]
    fn a_tampered_publication_end_does_not_keep_a_retired_key_published() {
        let kek = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
        let pkcs8 = trustgate_core::generate_pkcs8(Algorithm::EdDSA).unwrap();
        let t0: i64 = 1_700_000_000_000;
        let (from, until, retire_after) = (t0, t0 + 3_600_000, 360_000);
        let probe = ScheduledKey::from_pkcs8(Algorithm::EdDSA, &pkcs8, from, until, 0).unwrap();
        let stored = StoredKey {
            kid: probe.kid().to_owned(),
            signs_from: from,
            signs_until: until,
            // What `new_key` wrote was `until + retire_after`; a writer of Redis made it forever.
            published_until: i64::MAX,
            sealed: seal(&kek, "ns", &pkcs8, probe.kid(), from, until).unwrap(),
        };
        let key = open(&kek, "ns", Algorithm::EdDSA, &stored, retire_after).unwrap();
        // A day after the key stopped signing, its last token long expired.
        let now = until + 86_400_000;
        let clock = trustgate_core::ManualClock::at_secs(now / 1000);
        let signer = InternalSigner::shared(
            trustgate_core::SignerConfig {
                issuer: "https://trustgate.internal".into(),
                algorithm: Algorithm::EdDSA,
                rotation_interval: Duration::from_secs(3600),
                max_token_ttl: Duration::from_secs(300),
            },
            Arc::new(clock),
        );
        signer.install(vec![key], now);
        let jwks = String::from_utf8(signer.jwks().to_vec()).unwrap();
        assert!(
            !jwks.contains(probe.kid()),
            "a key retired a day ago is published again: {jwks}"
        );
    }

    /// What a replica uses of the store's ring: keys that open (or entries it holds as they
    /// are), each published at least until its sealed window's end plus `retire_after`, whatever
    /// the stored `published_until`; an entry whose window was altered is left out, and counted.
    #[test]
    fn only_keys_that_open_are_used_and_their_publication_follows_the_window() {
        let kek = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9; 32]).unwrap());
        let retire_after = 70_000;
        let sealed_key = |from: i64, until: i64| {
            let pkcs8 = trustgate_core::generate_pkcs8(Algorithm::EdDSA).unwrap();
            let probe = ScheduledKey::from_pkcs8(Algorithm::EdDSA, &pkcs8, from, until, 0).unwrap();
            StoredKey {
                kid: probe.kid().to_owned(),
                signs_from: from,
                signs_until: until,
                // Lowered by a writer of the store: the key would leave the JWK Set at once.
                published_until: from + 1,
                sealed: seal(&kek, "ns", &pkcs8, probe.kid(), from, until).unwrap(),
            }
        };
        let (current, next) = (sealed_key(0, 100_000), sealed_key(100_000, 200_000));
        let mut altered = sealed_key(200_000, 300_000);
        altered.signs_until = 250_000;
        // Held as it is (an entry of the ring this replica installed): not opened again.
        let mut held_entry = stored(300_000, 400_000);
        held_entry.published_until = 400_000 + retire_after;
        let mut held = Held {
            doc: Some(RingDoc {
                alg: "EdDSA".into(),
                kek_id: "kek".into(),
                keys: vec![held_entry.clone()],
            }),
            opened: HashMap::new(),
        };
        let doc = RingDoc {
            alg: "EdDSA".into(),
            kek_id: "kek".into(),
            keys: vec![current.clone(), next.clone(), altered, held_entry],
        };
        let (doc, ignored) = checked(doc, &mut held, &kek, "ns", Algorithm::EdDSA, retire_after);
        assert_eq!(ignored, 1);
        let kept: Vec<(&str, i64)> = doc
            .keys
            .iter()
            .map(|k| (k.kid.as_str(), k.published_until))
            .collect();
        assert_eq!(
            kept,
            [
                (current.kid.as_str(), 100_000 + retire_after),
                (next.kid.as_str(), 200_000 + retire_after),
                ("k300000", 400_000 + retire_after),
            ]
        );
        // The keys opened here are installed without opening them again, published in full.
        assert_eq!(held.opened.len(), 2);
        let signer = InternalSigner::shared(
            trustgate_core::SignerConfig {
                issuer: "https://trustgate.internal".into(),
                algorithm: Algorithm::EdDSA,
                rotation_interval: Duration::from_secs(100),
                max_token_ttl: Duration::from_secs(10),
            },
            Arc::new(trustgate_core::ManualClock::at_secs(50)),
        );
        signer.install(held.opened.values().cloned().collect(), 100_000);
        let jwks = String::from_utf8(signer.jwks().to_vec()).unwrap();
        assert!(
            jwks.contains(&current.kid) && jwks.contains(&next.kid),
            "{jwks}"
        );
    }

    #[test]
    fn the_aad_binds_namespace_kid_and_window() {
        assert_ne!(aad("a", "k", 0, 1), aad("b", "k", 0, 1));
        assert_ne!(aad("a", "k", 0, 1), aad("a", "j", 0, 1));
        assert_ne!(aad("a", "k", 0, 1), aad("a", "k", 0, 2));
    }
}
