//! Minting short-lived internal tokens and gateway assertions with the gateway's own keys.
//!
//! Key lifecycle, so that no service ever sees a token whose key it cannot find:
//! - there is always an *active* key (signs) and a *next* key (published, not yet signing);
//! - at each rotation the next key becomes active and a fresh next key is generated, so every key
//!   is in the JWKS for a whole rotation interval before it signs anything;
//! - the previously active key stays published until every token it signed has expired
//!   (`max_token_ttl` after it stopped signing).
//!
//! Private keys never appear in `Debug` output or logs.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::alg::Algorithm;
use crate::clock::SharedClock;

/// The `typ` of internal tokens (pattern 4).
pub const INTERNAL_TOKEN_TYP: &str = "internal+jwt";

/// Settings of the internal signer.
#[derive(Debug, Clone)]
pub struct SignerConfig {
    /// The `iss` of minted tokens; also the base URL of the internal discovery document.
    pub issuer: String,
    /// EdDSA (default) or ES256.
    pub algorithm: Algorithm,
    /// How often the signing key changes.
    pub rotation_interval: Duration,
    /// The longest lifetime of any token this signer mints; retired keys stay published this long.
    pub max_token_ttl: Duration,
}

/// Why minting or key setup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// Less than one second of lifetime would remain under the `exp` it must not outlive.
    #[error("less than one second of lifetime would remain")]
    TooShort,
    /// Only EdDSA and ES256 can sign internal tokens.
    #[error("internal tokens are signed with EdDSA or ES256, not {0}")]
    UnsupportedAlgorithm(Algorithm),
    /// A PEM key is not a PKCS#8 private key for the chosen algorithm.
    #[error("signing key {index}: not a PKCS#8 {alg} private key")]
    BadKey {
        /// Position in the list, from 0.
        index: usize,
        /// The configured algorithm.
        alg: Algorithm,
    },
    /// No key was given.
    #[error("at least one signing key is required")]
    NoKeys,
    /// The crypto library refused (should not happen).
    #[error("key generation or signing failed")]
    Crypto,
    /// A shared key ring has no key that may sign now: the ring was never received, or this
    /// replica has not read its store for longer than its sign limit allows (fail closed).
    #[error("no internal signing key may sign now")]
    NoSigningKey,
}

enum Pair {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
}

struct SigningKey {
    kid: String,
    alg: Algorithm,
    pair: Pair,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private", &"[redacted]")
            .finish()
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

impl SigningKey {
    fn from_pair(alg: Algorithm, pair: Pair) -> Self {
        let public = match &pair {
            Pair::Ed(p) => p.public_key().as_ref().to_vec(),
            Pair::Ec(p) => p.public_key().as_ref().to_vec(),
        };
        // The kid is a digest of the public key: stable across restarts for loaded keys, and
        // never reused for a different key.
        let kid = b64(&digest::digest(&digest::SHA256, &public).as_ref()[..12]);
        let jwk = match &pair {
            Pair::Ed(_) => json!({"kty":"OKP","crv":"Ed25519","x":b64(&public),
                                  "kid":kid,"alg":"EdDSA","use":"sig"}),
            Pair::Ec(_) => {
                let (x, y) = public[1..].split_at(32);
                json!({"kty":"EC","crv":"P-256","x":b64(x),"y":b64(y),
                       "kid":kid,"alg":"ES256","use":"sig"})
            }
        };
        Self {
            kid,
            alg,
            pair,
            jwk,
        }
    }

    fn generate(alg: Algorithm) -> Result<Self, MintError> {
        let rng = SystemRandom::new();
        let pair = match alg {
            Algorithm::EdDSA => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| MintError::Crypto)?;
                Pair::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| MintError::Crypto)?)
            }
            Algorithm::ES256 => {
                let fixed = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(fixed, &rng).map_err(|_| MintError::Crypto)?;
                Pair::Ec(
                    EcdsaKeyPair::from_pkcs8(fixed, pkcs8.as_ref())
                        .map_err(|_| MintError::Crypto)?,
                )
            }
            other => return Err(MintError::UnsupportedAlgorithm(other)),
        };
        Ok(Self::from_pair(alg, pair))
    }

    fn from_pkcs8(alg: Algorithm, der: &[u8], index: usize) -> Result<Self, MintError> {
        let bad = MintError::BadKey { index, alg };
        let pair = match alg {
            Algorithm::EdDSA => Pair::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(|_| bad)?),
            Algorithm::ES256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| bad)?,
            ),
            other => return Err(MintError::UnsupportedAlgorithm(other)),
        };
        Ok(Self::from_pair(alg, pair))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, MintError> {
        match &self.pair {
            Pair::Ed(p) => Ok(p.sign(message).as_ref().to_vec()),
            Pair::Ec(p) => p
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| MintError::Crypto),
        }
    }
}

#[derive(Debug)]
struct KeyRing {
    /// The key that signs, for a ring this process owns; `None` for a shared ring, whose
    /// `scheduled` keys say which one signs when.
    active: Option<Arc<SigningKey>>,
    /// Published but not yet signing; `None` for operator-managed (loaded) keys.
    next: Option<Arc<SigningKey>>,
    /// Keys that stopped signing, with the time (ms) until which they stay published.
    retired: Vec<(Arc<SigningKey>, i64)>,
    /// A shared ring's keys with their signing windows (see [`ScheduledKey`]).
    scheduled: Vec<ScheduledKey>,
    /// A shared ring signs nothing at or after this instant (ms): how far a replica may go on
    /// with the ring it has when it cannot reach the store.
    sign_limit_ms: i64,
    jwks: Bytes,
}

impl KeyRing {
    fn new(
        active: Arc<SigningKey>,
        next: Option<Arc<SigningKey>>,
        retired: Vec<(Arc<SigningKey>, i64)>,
        extra_published: &[Arc<SigningKey>],
    ) -> Self {
        let mut keys = vec![active.jwk.clone()];
        keys.extend(next.iter().map(|k| k.jwk.clone()));
        keys.extend(retired.iter().map(|(k, _)| k.jwk.clone()));
        keys.extend(extra_published.iter().map(|k| k.jwk.clone()));
        let jwks = Bytes::from(json!({ "keys": keys }).to_string());
        Self {
            active: Some(active),
            next,
            retired,
            scheduled: Vec::new(),
            sign_limit_ms: i64::MAX,
            jwks,
        }
    }

    /// A shared ring: every key published until its `published_until_ms` (as of `now`), the one
    /// whose window holds the moment of a mint signing it.
    fn shared(scheduled: Vec<ScheduledKey>, sign_limit_ms: i64, now: i64) -> Self {
        let keys: Vec<Value> = scheduled
            .iter()
            .filter(|k| k.published_until_ms > now)
            .map(|k| k.key.jwk.clone())
            .collect();
        let jwks = Bytes::from(json!({ "keys": keys }).to_string());
        Self {
            active: None,
            next: None,
            retired: Vec::new(),
            scheduled,
            sign_limit_ms,
            jwks,
        }
    }

    /// The key that signs at `now`, if any may.
    fn signing_key(&self, now: i64) -> Option<&Arc<SigningKey>> {
        if let Some(active) = &self.active {
            return Some(active);
        }
        if now >= self.sign_limit_ms {
            return None;
        }
        self.scheduled
            .iter()
            .find(|k| k.signs_from_ms <= now && now < k.signs_until_ms)
            .map(|k| &k.key)
    }
}

/// A key of a ring shared by a fleet of gateways, with the window in which it signs. Every
/// replica holds the same schedule, so all of them switch keys at the same instants without
/// talking to each other at that moment; the store only has to deliver each key before its
/// window opens.
#[derive(Debug, Clone)]
pub struct ScheduledKey {
    key: Arc<SigningKey>,
    signs_from_ms: i64,
    signs_until_ms: i64,
    published_until_ms: i64,
}

impl ScheduledKey {
    /// A key from its PKCS#8 DER, signing in `[signs_from_ms, signs_until_ms)` and published
    /// until `published_until_ms` (milliseconds since the epoch).
    ///
    /// # Errors
    /// [`MintError::BadKey`] if the bytes are not a PKCS#8 key for `alg`.
    pub fn from_pkcs8(
        alg: Algorithm,
        pkcs8: &[u8],
        signs_from_ms: i64,
        signs_until_ms: i64,
        published_until_ms: i64,
    ) -> Result<Self, MintError> {
        Ok(Self {
            key: Arc::new(SigningKey::from_pkcs8(alg, pkcs8, 0)?),
            signs_from_ms,
            signs_until_ms,
            published_until_ms,
        })
    }

    /// The key id: a digest of the public key, the same on every replica.
    pub fn kid(&self) -> &str {
        &self.key.kid
    }

    /// The start of the signing window (ms).
    pub fn signs_from_ms(&self) -> i64 {
        self.signs_from_ms
    }

    /// The end of the signing window (ms, exclusive).
    pub fn signs_until_ms(&self) -> i64 {
        self.signs_until_ms
    }
}

/// A fresh private key for `alg` (EdDSA or ES256) as PKCS#8 DER, for a caller that stores it
/// (encrypted) before anything signs with it. The caller should zeroize the bytes once sealed.
///
/// # Errors
/// [`MintError::UnsupportedAlgorithm`] for other algorithms; [`MintError::Crypto`] if the
/// crypto library fails.
pub fn generate_pkcs8(alg: Algorithm) -> Result<Vec<u8>, MintError> {
    let rng = SystemRandom::new();
    let document = match alg {
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| MintError::Crypto)?,
        Algorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| MintError::Crypto)?
        }
        other => return Err(MintError::UnsupportedAlgorithm(other)),
    };
    Ok(document.as_ref().to_vec())
}

/// What a signer with a shared ring can do now, for readiness and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRingState {
    /// The key that signs now, if any may.
    pub signing_kid: Option<String>,
    /// Keys in the ring (published or scheduled).
    pub keys: usize,
    /// The instant (ms) after which this replica refuses to mint unless the ring is refreshed.
    pub sign_limit_ms: i64,
}

/// A token fresh from the signer.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The compact JWS.
    pub token: String,
    /// `exp`, in milliseconds since the epoch.
    pub expires_at_ms: i64,
}

/// Signs internal tokens and assertions with rotating keys, and publishes their JWKS.
pub struct InternalSigner {
    config: SignerConfig,
    clock: SharedClock,
    ring: ArcSwap<KeyRing>,
    /// When the next rotation is due (ms); `i64::MAX` for operator-managed keys.
    next_rotation_ms: AtomicI64,
    /// When the first published key's publication ends (ms): a retired key of an owned ring, or
    /// any key of a shared ring. It then leaves the JWK Set, without waiting for the next
    /// rotation or install. `i64::MAX` while there is none.
    next_prune_ms: AtomicI64,
    rotating: Mutex<()>,
    /// Keys loaded from files beyond the first: published, never signing.
    extra_published: Vec<Arc<SigningKey>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for InternalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalSigner")
            .field("issuer", &self.config.issuer)
            .field("active_kid", &self.active_kid())
            .finish_non_exhaustive()
    }
}

/// The earliest end of publication among retired keys, `i64::MAX` when there is none.
fn first_end(retired: &[(Arc<SigningKey>, i64)]) -> i64 {
    retired
        .iter()
        .map(|(_, until)| *until)
        .min()
        .unwrap_or(i64::MAX)
}

/// The earliest end of publication after `now` among a shared ring's keys, `i64::MAX` when none.
fn first_publication_end(keys: &[ScheduledKey], now: i64) -> i64 {
    keys.iter()
        .map(|k| k.published_until_ms)
        .filter(|&until| until > now)
        .min()
        .unwrap_or(i64::MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl InternalSigner {
    /// A signer with generated keys that rotate every `rotation_interval`.
    ///
    /// # Errors
    /// [`MintError::UnsupportedAlgorithm`] unless the algorithm is EdDSA or ES256.
    pub fn generate(config: SignerConfig, clock: SharedClock) -> Result<Self, MintError> {
        let active = Arc::new(SigningKey::generate(config.algorithm)?);
        let next = Arc::new(SigningKey::generate(config.algorithm)?);
        let due = clock
            .now_millis()
            .saturating_add(millis(config.rotation_interval));
        Ok(Self {
            ring: ArcSwap::from_pointee(KeyRing::new(active, Some(next), Vec::new(), &[])),
            next_rotation_ms: AtomicI64::new(due),
            next_prune_ms: AtomicI64::new(i64::MAX),
            rotating: Mutex::new(()),
            extra_published: Vec::new(),
            rng: SystemRandom::new(),
            config,
            clock,
        })
    }

    /// A signer with operator-managed PKCS#8 PEM keys: the first signs, all are published.
    /// Keys are read once per process. Rotate with two rolling restarts: first add the new key
    /// second (published, not signing); once services' JWKS caches have refreshed, restart with it
    /// first; remove the old key after `max_token_ttl`.
    ///
    /// # Errors
    /// [`MintError`] if a key does not parse for the configured algorithm.
    pub fn from_pem(
        config: SignerConfig,
        pems: &[String],
        clock: SharedClock,
    ) -> Result<Self, MintError> {
        use rustls_pki_types::PrivatePkcs8KeyDer;
        use rustls_pki_types::pem::PemObject;
        let mut keys = Vec::new();
        for (index, pem) in pems.iter().enumerate() {
            let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
                MintError::BadKey {
                    index,
                    alg: config.algorithm,
                }
            })?;
            keys.push(Arc::new(SigningKey::from_pkcs8(
                config.algorithm,
                der.secret_pkcs8_der(),
                index,
            )?));
        }
        let mut keys = keys.into_iter();
        let active = keys.next().ok_or(MintError::NoKeys)?;
        let extra: Vec<_> = keys.collect();
        Ok(Self {
            ring: ArcSwap::from_pointee(KeyRing::new(active, None, Vec::new(), &extra)),
            next_rotation_ms: AtomicI64::new(i64::MAX),
            next_prune_ms: AtomicI64::new(i64::MAX),
            rotating: Mutex::new(()),
            extra_published: extra,
            rng: SystemRandom::new(),
            config,
            clock,
        })
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The longest TTL this signer may mint.
    pub fn max_token_ttl(&self) -> Duration {
        self.config.max_token_ttl
    }

    /// The current JWK Set (active, next and still-valid retired keys).
    pub fn jwks(&self) -> Bytes {
        self.rotate_if_due();
        self.ring.load().jwks.clone()
    }

    /// The kid that signs now (empty when no key may sign).
    pub fn active_kid(&self) -> String {
        let now = self.clock.now_millis();
        self.ring
            .load()
            .signing_key(now)
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    /// A signer whose keys come from a ring shared by a fleet ([`InternalSigner::install`]).
    /// It refuses to mint ([`MintError::NoSigningKey`]) until a ring is installed.
    pub fn shared(config: SignerConfig, clock: SharedClock) -> Self {
        Self {
            ring: ArcSwap::from_pointee(KeyRing::shared(Vec::new(), i64::MIN, 0)),
            next_rotation_ms: AtomicI64::new(i64::MAX),
            next_prune_ms: AtomicI64::new(i64::MAX),
            rotating: Mutex::new(()),
            extra_published: Vec::new(),
            rng: SystemRandom::new(),
            config,
            clock,
        }
    }

    /// Replaces a shared signer's ring: `keys` with their windows, and the instant after which
    /// none may sign (`sign_limit_ms`). The JWK Set is rebuilt from the keys still published.
    /// Ignored by a signer that owns its keys.
    pub fn install(&self, keys: Vec<ScheduledKey>, sign_limit_ms: i64) {
        if self.ring.load().active.is_some() {
            return;
        }
        let now = self.clock.now_millis();
        // Serialized with pruning, which rebuilds the ring; a poisoned lock still installs.
        let _guard = self
            .rotating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.next_prune_ms
            .store(first_publication_end(&keys, now), Ordering::Release);
        self.ring
            .store(Arc::new(KeyRing::shared(keys, sign_limit_ms, now)));
    }

    /// A shared signer's state; `None` for a signer that owns its keys.
    pub fn shared_state(&self) -> Option<SharedRingState> {
        let ring = self.ring.load();
        if ring.active.is_some() {
            return None;
        }
        let now = self.clock.now_millis();
        Some(SharedRingState {
            signing_kid: ring.signing_key(now).map(|k| k.kid.clone()),
            keys: ring.scheduled.len(),
            sign_limit_ms: ring.sign_limit_ms,
        })
    }

    /// The OIDC discovery document for the internal issuer.
    pub fn discovery_document(&self) -> String {
        let issuer = self.config.issuer.trim_end_matches('/');
        json!({
            "issuer": self.config.issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": [self.config.algorithm.name()],
            "response_types_supported": [],
            "subject_types_supported": ["public"],
        })
        .to_string()
    }

    /// Rotates now if the interval has passed, and drops from the JWK Set the retired keys
    /// whose tokens have all expired. Cheap when neither is due: two atomic loads.
    pub fn rotate_if_due(&self) {
        let now = self.clock.now_millis();
        let due = |at: &AtomicI64| now >= at.load(Ordering::Acquire);
        if !due(&self.next_rotation_ms) && !due(&self.next_prune_ms) {
            return;
        }
        let Ok(_guard) = self.rotating.lock() else {
            return;
        };
        if !due(&self.next_rotation_ms) {
            if due(&self.next_prune_ms) {
                self.prune_retired(now);
            }
            return;
        }
        let ring = self.ring.load_full();
        let (Some(active), Some(next)) = (ring.active.clone(), ring.next.clone()) else {
            return;
        };
        let Ok(fresh) = SigningKey::generate(self.config.algorithm) else {
            tracing::error!("internal key generation failed; keeping the current key");
            return;
        };
        // The old active key signed tokens up to now; they expire within max_token_ttl.
        let keep_until = now.saturating_add(millis(self.config.max_token_ttl) + 60_000);
        let mut retired: Vec<_> = ring
            .retired
            .iter()
            .filter(|(_, until)| *until > now)
            .cloned()
            .collect();
        tracing::info!(old = %active.kid, new = %next.kid, "rotated internal signing key");
        retired.push((active, keep_until));
        self.next_prune_ms
            .store(first_end(&retired), Ordering::Release);
        self.ring.store(Arc::new(KeyRing::new(
            next,
            Some(Arc::new(fresh)),
            retired,
            &self.extra_published,
        )));
        self.next_rotation_ms.store(
            now.saturating_add(millis(self.config.rotation_interval)),
            Ordering::Release,
        );
    }

    /// Rebuilds an owned ring without the retired keys whose publication ended at `now`. Called
    /// under the rotation lock.
    fn prune_retired(&self, now: i64) {
        let ring = self.ring.load_full();
        let Some(active) = ring.active.clone() else {
            // A shared ring: rebuilt from its keys as of now, as an install would.
            self.next_prune_ms.store(
                first_publication_end(&ring.scheduled, now),
                Ordering::Release,
            );
            self.ring.store(Arc::new(KeyRing::shared(
                ring.scheduled.clone(),
                ring.sign_limit_ms,
                now,
            )));
            return;
        };
        let retired: Vec<_> = ring
            .retired
            .iter()
            .filter(|(_, until)| *until > now)
            .cloned()
            .collect();
        self.next_prune_ms
            .store(first_end(&retired), Ordering::Release);
        self.ring.store(Arc::new(KeyRing::new(
            active,
            ring.next.clone(),
            retired,
            &self.extra_published,
        )));
    }

    /// Mints a token: sets `iss`, `aud`, `iat`, `nbf`, `exp` and a unique `jti` over `claims`
    /// (which may not override them). `ttl` is capped at the signer's maximum.
    ///
    /// # Errors
    /// [`MintError::Crypto`] if signing fails.
    pub fn mint(
        &self,
        typ: &str,
        audience: &str,
        ttl: Duration,
        claims: Map<String, Value>,
    ) -> Result<Minted, MintError> {
        self.mint_within(typ, audience, ttl, None, claims)
    }

    /// [`InternalSigner::mint`], with `exp` never later than `not_after` (seconds since the
    /// epoch): a token minted from an external token must not outlive it, or pattern 4 would
    /// extend a credential beyond what its issuer granted.
    ///
    /// # Errors
    /// [`MintError::TooShort`] if less than one second of lifetime would remain;
    /// [`MintError::Crypto`] if signing fails.
    pub fn mint_within(
        &self,
        typ: &str,
        audience: &str,
        ttl: Duration,
        not_after: Option<i64>,
        mut claims: Map<String, Value>,
    ) -> Result<Minted, MintError> {
        self.rotate_if_due();
        let now_ms = self.clock.now_millis();
        let now = now_ms.div_euclid(1000);
        let ttl = ttl.min(self.config.max_token_ttl);
        let exp = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let exp = not_after.map_or(exp, |limit| exp.min(limit));
        if exp.saturating_mul(1000).saturating_sub(now_ms) < 1000 {
            return Err(MintError::TooShort);
        }
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| MintError::Crypto)?;
        claims.insert("iss".into(), json!(self.config.issuer));
        claims.insert("aud".into(), json!(audience));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(b64(jti)));
        let ring = self.ring.load();
        let key = ring.signing_key(now_ms).ok_or(MintError::NoSigningKey)?;
        let header = json!({"alg": key.alg.name(), "kid": key.kid, "typ": typ});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string()),
            b64(Value::Object(claims).to_string())
        );
        let signature = key.sign(signing_input.as_bytes())?;
        Ok(Minted {
            token: format!("{signing_input}.{}", b64(signature)),
            expires_at_ms: exp.saturating_mul(1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::{IssuerConfig, KeySource, Validator, ValidatorOptions};

    fn signer(clock: &ManualClock) -> InternalSigner {
        InternalSigner::generate(
            SignerConfig {
                issuer: "https://trustgate.internal".into(),
                algorithm: Algorithm::EdDSA,
                rotation_interval: Duration::from_secs(3600),
                max_token_ttl: Duration::from_secs(300),
            },
            Arc::new(clock.clone()),
        )
        .unwrap()
    }

    fn validator(jwks: &Bytes, clock: &ManualClock, aud: &str) -> Validator {
        let mut issuer = IssuerConfig::new(
            "https://trustgate.internal",
            [aud],
            KeySource::Jwks(String::from_utf8(jwks.to_vec()).unwrap()),
        );
        issuer.algorithms = vec![Algorithm::EdDSA];
        issuer.claims.required_typ = Some(INTERNAL_TOKEN_TYP.into());
        let mut options = ValidatorOptions::default();
        options.cache.enabled = false;
        Validator::new(vec![issuer], options, Arc::new(clock.clone())).unwrap()
    }

    /// A token minted from another never outlives it, and is refused when under one second of
    /// lifetime would remain.
    #[test]
    fn exp_is_capped_by_not_after_and_refused_under_one_second() {
        let clock = ManualClock::at_secs(1_700_000_000);
        let signer = signer(&clock);
        let ttl = Duration::from_secs(60);
        let exp_of = |minted: Minted| minted.expires_at_ms / 1000;
        let mint =
            |not_after| signer.mint_within(INTERNAL_TOKEN_TYP, "users", ttl, not_after, Map::new());
        assert_eq!(mint(None).map(exp_of), Ok(1_700_000_060));
        assert_eq!(mint(Some(1_700_000_100)).map(exp_of), Ok(1_700_000_060));
        assert_eq!(mint(Some(1_700_000_005)).map(exp_of), Ok(1_700_000_005));
        assert_eq!(mint(Some(1_700_000_001)).map(exp_of), Ok(1_700_000_001));
        assert_eq!(mint(Some(1_700_000_000)).err(), Some(MintError::TooShort));
        assert_eq!(mint(Some(1_699_999_000)).err(), Some(MintError::TooShort));
        // Half a second into the last second: under one second remains.
        clock.advance_millis(500);
        assert_eq!(mint(Some(1_700_000_001)).err(), Some(MintError::TooShort));
        assert_eq!(mint(Some(1_700_000_002)).map(exp_of), Ok(1_700_000_002));
    }

    #[tokio::test]
    async fn minted_tokens_verify_with_the_published_jwks() {
        let clock = ManualClock::at_secs(1_700_000_000);
        let signer = signer(&clock);
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("alice"));
        claims.insert("iss".into(), json!("https://evil")); // overridden
        let minted = signer
            .mint(INTERNAL_TOKEN_TYP, "users", Duration::from_secs(60), claims)
            .unwrap();
        let v = validator(&signer.jwks(), &clock, "users");
        let verified = v.validate(&minted.token).await.unwrap();
        assert_eq!(verified.issuer(), "https://trustgate.internal");
        assert_eq!(verified.identity().subject(), Some("alice"));
        assert_eq!(verified.expires_at(), Some(1_700_000_060));
        // Another service's validator refuses it.
        let other = validator(&signer.jwks(), &clock, "payments");
        assert!(other.validate(&minted.token).await.is_err());
        // TTL is capped.
        let long = signer
            .mint(
                INTERNAL_TOKEN_TYP,
                "users",
                Duration::from_secs(86_400),
                Map::new(),
            )
            .unwrap();
        assert_eq!(long.expires_at_ms, (1_700_000_000 + 300) * 1000);
    }

    /// The kids of the signer's JWK Set, in order.
    fn published_kids(signer: &InternalSigner) -> Vec<String> {
        let doc: Value = serde_json::from_slice(&signer.jwks()).unwrap();
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn rotation_publishes_before_signing_and_keeps_retired_keys() {
        let clock = ManualClock::at_secs(1_700_000_000);
        let signer = signer(&clock);
        let first = signer.active_kid();
        let before = published_kids(&signer);
        assert_eq!(before.len(), 2, "active and next are published");
        let next = before[1].clone();
        clock.advance_secs(3600);
        signer.rotate_if_due();
        assert_eq!(
            signer.active_kid(),
            next,
            "the pre-published key signs next"
        );
        let after = published_kids(&signer);
        assert!(after.contains(&first), "the retired key stays published");
        assert_eq!(after.len(), 3);
        clock.advance_secs(3600);
        signer.rotate_if_due();
        let later = published_kids(&signer);
        assert!(
            !later.contains(&first),
            "retired keys leave after their tokens expired"
        );
    }

    /// The key that stopped signing leaves the JWK Set once every token it signed has expired
    /// (`max_token_ttl` + 60 s after the rotation), not a whole rotation interval later: a
    /// retired key that stays published is one whose leak still forges tokens services accept.
    #[test]
    fn a_retired_key_leaves_the_jwks_once_its_tokens_have_expired() {
        let clock = ManualClock::at_secs(1_700_000_000);
        let signer = signer(&clock);
        let first = signer.active_kid();
        clock.advance_secs(3600);
        signer.rotate_if_due();
        assert!(
            published_kids(&signer).contains(&first),
            "still published right after"
        );
        // max_token_ttl (300 s) + 60 s after the rotation, every token it signed has expired
        // (and passed a 60 s leeway).
        clock.advance_secs(361);
        assert!(
            !published_kids(&signer).contains(&first),
            "the retired key is still published 361 s after it stopped signing"
        );
        assert_eq!(published_kids(&signer).len(), 2, "active and next remain");
    }

    /// A shared ring signs with the key whose window holds the moment, publishes every key
    /// still published, and signs nothing past its limit or before it has a ring.
    #[tokio::test]
    async fn a_shared_ring_signs_by_schedule_and_stops_at_its_limit() {
        let clock = ManualClock::at_secs(1_700_000_000);
        let config = SignerConfig {
            issuer: "https://trustgate.internal".into(),
            algorithm: Algorithm::EdDSA,
            rotation_interval: Duration::from_secs(60),
            max_token_ttl: Duration::from_secs(300),
        };
        let signer = InternalSigner::shared(config, Arc::new(clock.clone()));
        let mint = |s: &InternalSigner| {
            s.mint(
                INTERNAL_TOKEN_TYP,
                "users",
                Duration::from_secs(30),
                Map::new(),
            )
        };
        assert_eq!(mint(&signer).err(), Some(MintError::NoSigningKey));
        let t0 = 1_700_000_000_000;
        let key = |from: i64| {
            let der = generate_pkcs8(Algorithm::EdDSA).unwrap();
            ScheduledKey::from_pkcs8(Algorithm::EdDSA, &der, from, from + 60_000, from + 420_000)
                .unwrap()
        };
        let (a, b) = (key(t0), key(t0 + 60_000));
        let (kid_a, kid_b) = (a.kid().to_owned(), b.kid().to_owned());
        signer.install(vec![a, b], t0 + 120_000);
        let jwks = signer.jwks();
        let v = validator(&jwks, &clock, "users");
        let first = mint(&signer).unwrap();
        assert_eq!(
            v.validate(&first.token).await.unwrap().key_id(),
            Some(&*kid_a)
        );
        clock.advance_secs(60);
        let second = mint(&signer).unwrap();
        let v = validator(&jwks, &clock, "users");
        assert_eq!(
            v.validate(&second.token).await.unwrap().key_id(),
            Some(&*kid_b)
        );
        assert_eq!(signer.shared_state().unwrap().signing_kid, Some(kid_b));
        clock.advance_secs(60);
        assert_eq!(mint(&signer).err(), Some(MintError::NoSigningKey));
        assert_eq!(signer.shared_state().unwrap().signing_kid, None);
    }

    /// A shared ring's JWK Set drops a key when its publication ends, even when no new ring is
    /// installed (a replica cut off from its store keeps serving the JWK Set).
    #[test]
    fn a_shared_ring_unpublishes_a_key_at_its_end_without_a_new_install() {
        let clock = ManualClock::at_secs(1_700_000_000);
        let config = SignerConfig {
            issuer: "https://trustgate.internal".into(),
            algorithm: Algorithm::EdDSA,
            rotation_interval: Duration::from_secs(60),
            max_token_ttl: Duration::from_secs(30),
        };
        let signer = InternalSigner::shared(config, Arc::new(clock.clone()));
        let t0 = 1_700_000_000_000;
        let der = generate_pkcs8(Algorithm::EdDSA).unwrap();
        // Signs in [t0, t0 + 60 s), published until t0 + 150 s.
        let key = ScheduledKey::from_pkcs8(Algorithm::EdDSA, &der, t0, t0 + 60_000, t0 + 150_000)
            .unwrap();
        let kid = key.kid().to_owned();
        signer.install(vec![key], t0 + 60_000);
        let published = |s: &InternalSigner| String::from_utf8(s.jwks().to_vec()).unwrap();
        assert!(published(&signer).contains(&kid));
        clock.advance_secs(151);
        assert!(
            !published(&signer).contains(&kid),
            "a key past its publication end is still in the JWK Set"
        );
    }

    #[test]
    fn debug_never_shows_private_keys() {
        let clock = ManualClock::at_secs(0);
        let signer = signer(&clock);
        let text = format!("{signer:?} {:?}", signer.ring.load().active);
        assert!(text.contains(&signer.active_kid()));
        assert!(text.contains("[redacted]"));
        assert!(!text.contains("\"d\""));
    }
}
