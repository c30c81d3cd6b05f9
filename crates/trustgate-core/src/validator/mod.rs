//! The validator: from untrusted token text to a [`VerifiedToken`], or a coarse [`AuthError`].
//!
//! The order of checks is fixed and matters:
//! 1. size limit, then the verified-token cache;
//! 2. strict parsing of the three segments (header and payload JSON);
//! 3. the issuer, chosen by exact `iss`, and its algorithm allow-list (a disallowed `alg` never
//!    causes a key fetch);
//! 4. key selection by `kid` and `alg` among that issuer's keys only, with one rate-limited
//!    single-flight refetch for an unknown `kid`;
//! 5. the signature; only then
//! 6. the claims, and the identity mapping with header-safety checks.

mod settings;

pub use settings::{ConfigError, IssuerConfig, ValidatorOptions};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::HeaderValue;

use crate::alg::Algorithm;
use crate::cache::{CacheStats, Lookup, VerifiedCache};
use crate::claims::{AudiencePolicy, ClaimsPolicy};
use crate::clock::SharedClock;
use crate::error::{AuthError, Reason};
use crate::fetch::Fetcher;
use crate::identity::{ClaimMapping, Identity};
use crate::json::{self, Json};
use crate::jws::{self, UnverifiedJws};
use crate::key::VerifyingKey;
use crate::source::{IssuerKeys, KeySource, OnDemand};
use crate::verified::VerifiedToken;

/// Whether validation may still wait for a refetch of an unknown `kid`.
#[derive(Clone, Copy)]
enum Refetch {
    Allowed,
    /// The one refetch has happened; a `kid` still unknown is refused.
    Done,
}

/// A token the published keys did not decide.
enum Undecided {
    Refused(AuthError),
    /// Its `kid` is not in the issuer's published key set, or no key under it verifies (an issuer
    /// that keeps a fixed `kid` replaces the key under it); one refetch may bring the key. Without
    /// it, the token is refused for `reason`.
    UnknownKid {
        keys: Arc<IssuerKeys>,
        kid: String,
        reason: Reason,
    },
}

impl From<AuthError> for Undecided {
    fn from(error: AuthError) -> Self {
        Undecided::Refused(error)
    }
}

impl From<Reason> for Undecided {
    fn from(reason: Reason) -> Self {
        Undecided::Refused(reason.into())
    }
}

struct IssuerEntry {
    name: Arc<str>,
    /// `name` as a header value, encoded once; `None` if the issuer has bytes a header refuses.
    name_header: Option<HeaderValue>,
    keys: Arc<IssuerKeys>,
    algorithms: Vec<Algorithm>,
    claims: ClaimsPolicy,
    mapping: ClaimMapping,
    max_kidless: usize,
}

struct Inner {
    issuers: HashMap<Box<str>, Arc<IssuerEntry>>,
    order: Vec<Arc<IssuerEntry>>,
    cache: Option<VerifiedCache>,
    clock: SharedClock,
    max_token_bytes: usize,
}

impl Inner {
    /// The issuer named exactly `iss`.
    fn issuer(&self, iss: &str) -> Option<&Arc<IssuerEntry>> {
        // A deployment trusts a handful of issuers, and comparing the name with each costs less
        // than hashing it once with the map's SipHash.
        const SCANNED: usize = 8;
        if self.order.len() <= SCANNED {
            self.order.iter().find(|entry| *entry.name == *iss)
        } else {
            self.issuers.get(iss)
        }
    }
}

/// Validates tokens from a fixed set of issuers. Cheap to clone; clones share keys and cache.
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field(
                "issuers",
                &self
                    .inner
                    .order
                    .iter()
                    .map(|i| &*i.name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The state of one issuer's keys, for readiness and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStatus {
    /// The issuer.
    pub issuer: String,
    /// Published (key, algorithm) entries.
    pub keys: usize,
    /// Whether the keys are usable now (present and not too stale).
    pub usable: bool,
    /// Fetch attempts so far.
    pub fetches: u64,
    /// Failed fetch attempts so far.
    pub fetch_failures: u64,
    /// The published key ids.
    pub kids: Vec<String>,
}

impl Validator {
    /// Builds a validator. Static key sources are read and parsed here; remote ones are fetched by
    /// [`Validator::start`].
    ///
    /// # Errors
    /// [`ConfigError`] describes what to change.
    pub fn new(
        issuers: Vec<IssuerConfig>,
        options: ValidatorOptions,
        clock: SharedClock,
    ) -> Result<Self, ConfigError> {
        let fetcher = Fetcher::new(options.fetch.clone())?;
        let mut map = HashMap::new();
        let mut order = Vec::new();
        for config in issuers {
            if config.algorithms.is_empty() {
                return Err(ConfigError::NoAlgorithms(config.issuer));
            }
            if config.claims.audience == AudiencePolicy::Required
                && config.claims.audiences.is_empty()
            {
                return Err(ConfigError::NoAudiences(config.issuer));
            }
            if config
                .claims
                .audiences
                .iter()
                .any(|audience| audience.trim().is_empty())
            {
                return Err(ConfigError::EmptyAudience(config.issuer));
            }
            if config.max_kidless_candidates == 0 {
                return Err(ConfigError::ZeroKidlessCandidates(config.issuer));
            }
            if config.refresh.min_interval > config.refresh.max_interval {
                return Err(ConfigError::InvertedRefreshBounds(config.issuer));
            }
            if matches!(config.source, KeySource::Discovery)
                && !(config.issuer.starts_with("https://") || config.issuer.starts_with("http://"))
            {
                return Err(ConfigError::DiscoveryNeedsUrl(config.issuer));
            }
            let name: Arc<str> = Arc::from(config.issuer.as_str());
            let keys = IssuerKeys::new(
                Arc::clone(&name),
                config.algorithms.clone(),
                &config.source,
                &fetcher,
                config.refresh.clone(),
                Arc::clone(&clock),
            )
            .map_err(|source| ConfigError::StaticKeys {
                issuer: config.issuer.clone(),
                source,
            })?;
            let entry = Arc::new(IssuerEntry {
                name_header: crate::identity::encode_header(&name).ok(),
                name,
                keys: Arc::new(keys),
                algorithms: config.algorithms,
                claims: config.claims,
                mapping: config.mapping,
                max_kidless: config.max_kidless_candidates,
            });
            if map
                .insert(Box::from(config.issuer.as_str()), Arc::clone(&entry))
                .is_some()
            {
                return Err(ConfigError::DuplicateIssuer(config.issuer));
            }
            order.push(entry);
        }
        let cache = options
            .cache
            .enabled
            .then(|| VerifiedCache::new(&options.cache));
        Ok(Self {
            inner: Arc::new(Inner {
                issuers: map,
                order,
                cache,
                clock,
                max_token_bytes: options.max_token_bytes,
            }),
        })
    }

    /// Fetches every remote issuer's keys once (concurrently), then starts the background refresh
    /// loops. Returns whether every issuer has usable keys. An issuer that is down is retried in
    /// the background with backoff; requests for it get [`AuthError::KeysUnavailable`] meanwhile.
    ///
    /// Must be called within a Tokio runtime.
    pub async fn start(&self) -> bool {
        let mut tasks = Vec::new();
        for entry in &self.inner.order {
            let keys = Arc::clone(&entry.keys);
            tasks.push(tokio::spawn(async move {
                let first = keys.refresh().await;
                keys.spawn_refresh_loop(first);
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        self.is_ready()
    }

    /// Whether every issuer has usable keys.
    pub fn is_ready(&self) -> bool {
        self.inner
            .order
            .iter()
            .all(|entry| entry.keys.usable(&entry.keys.load()))
    }

    /// Key and fetch status per issuer.
    pub fn issuer_status(&self) -> Vec<IssuerStatus> {
        self.inner
            .order
            .iter()
            .map(|entry| {
                let state = entry.keys.load();
                let (fetches, fetch_failures) = entry.keys.fetch_counts();
                IssuerStatus {
                    issuer: entry.name.to_string(),
                    keys: state.keys.len(),
                    usable: entry.keys.usable(&state),
                    fetches,
                    fetch_failures,
                    kids: state.keys.kids().map(str::to_owned).collect(),
                }
            })
            .collect()
    }

    /// The configured issuers, in configuration order.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner.order.iter().map(|e| &*e.name)
    }

    /// Cache counters (all zero when the cache is off).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner
            .cache
            .as_ref()
            .map(VerifiedCache::stats)
            .unwrap_or_default()
    }

    /// Validates a token: signature, issuer, claims and identity mapping.
    ///
    /// A cache hit returns without awaiting. A miss may await one single-flight key refetch when
    /// the `kid` is unknown, or when no key under it verifies (an issuer may replace the key
    /// under a fixed `kid`), bounded by the fetch timeout and rate-limited per issuer.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] with the reason, or [`AuthError::KeysUnavailable`].
    pub async fn validate(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        // Decided without an await when it can be: only the rare refetch is a future, boxed, and
        // nothing else is kept across its await (this future lives inside every request future
        // of the gateway, which hyper moves).
        let refetch = match self.validate_or_refetch(token) {
            Ok(decided) => return decided,
            Err(refetch) => refetch,
        };
        refetch.await
    }

    /// [`Validator::validate`] up to its one await: the decision, or the refetch to wait for.
    #[allow(clippy::type_complexity)]
    fn validate_or_refetch<'a>(
        &'a self,
        token: &'a str,
    ) -> Result<
        Result<VerifiedToken, AuthError>,
        Pin<Box<impl Future<Output = Result<VerifiedToken, AuthError>> + 'a>>,
    > {
        // Spans carry reason codes, the issuer (once it is one of ours) and the key id (once it
        // is one of the issuer's published ones): never token text or a claim value. Made only
        // when wanted (`crate::steps`).
        let span = crate::step_span!("validate", trustgate.reason = tracing::field::Empty);
        match span.in_scope(|| self.validate_now(token)) {
            Ok(verified) => Ok(Ok(verified)),
            Err(Undecided::Refused(error)) => {
                span.record("trustgate.reason", error.label());
                Ok(Err(error))
            }
            Err(Undecided::UnknownKid { keys, kid, reason }) => Err(Box::pin(
                self.validate_after_refetch(token, keys, kid, reason, span),
            )),
        }
    }

    /// Validation without waiting: the cache, then the published keys. Only a `kid` the issuer
    /// has not published is left undecided.
    fn validate_now(&self, token: &str) -> Result<VerifiedToken, Undecided> {
        if token.len() > self.inner.max_token_bytes {
            return Err(AuthError::from(Reason::TooLarge).into());
        }
        if let Some(cache) = &self.inner.cache {
            let span = crate::step_span!("cache", trustgate.cache = tracing::field::Empty);
            let _entered = span.enter();
            let lookup = cache.lookup(token, self.inner.clock.now_millis());
            span.record(
                "trustgate.cache",
                match &lookup {
                    Lookup::Hit(_) => "hit",
                    Lookup::Refused(_) => "refused",
                    Lookup::Miss => "miss",
                },
            );
            match lookup {
                // Trust in a cached token ends with trust in its issuer's keys: past the maximum
                // staleness, uncached tokens get KeysUnavailable, and so must cached ones.
                Lookup::Hit(verified) if !verified.issuer_keys_usable_now() => {
                    return Err(AuthError::KeysUnavailable.into());
                }
                Lookup::Hit(verified) => return Ok(verified),
                Lookup::Refused(reason) => return Err(AuthError::from(reason).into()),
                Lookup::Miss => {}
            }
        }
        let verified = self.validate_with_published_keys(token, Refetch::Allowed)?;
        if let Some(cache) = &self.inner.cache {
            cache.insert(token, verified.clone());
        }
        Ok(verified)
    }

    /// Waits for the one rate-limited refetch that may bring an unknown `kid`, then validates the
    /// token again, against the key set published by then. The parse is repeated: this path runs
    /// at most once per issuer and cooldown window, and the common path then needs no state kept
    /// across an await (no boxed future, no moves of the decoded token).
    async fn validate_after_refetch(
        &self,
        token: &str,
        keys: Arc<IssuerKeys>,
        kid: String,
        reason: Reason,
        span: tracing::Span,
    ) -> Result<VerifiedToken, AuthError> {
        let why = if reason == Reason::UnknownKey {
            OnDemand::UnknownKid
        } else {
            OnDemand::ReplacedKey
        };
        let found =
            tracing::Instrument::instrument(keys.await_unknown_kid(&kid, why), span.clone()).await;
        let result = if found {
            match span.in_scope(|| self.validate_with_published_keys(token, Refetch::Done)) {
                Ok(verified) => Ok(verified),
                Err(Undecided::Refused(error)) => Err(error),
                Err(Undecided::UnknownKid { reason, .. }) => Err(reason.into()),
            }
        } else {
            Err(reason.into())
        };
        match &result {
            Ok(verified) => {
                if let Some(cache) = &self.inner.cache {
                    cache.insert(token, verified.clone());
                }
            }
            Err(error) => {
                span.record("trustgate.reason", error.label());
            }
        }
        result
    }

    /// Everything validation does, without waiting: against the keys published now. Only a `kid`
    /// the issuer has not published is left undecided, for the caller to refetch once.
    fn validate_with_published_keys(
        &self,
        token: &str,
        refetch: Refetch,
    ) -> Result<VerifiedToken, Undecided> {
        let span = crate::step_span!(
            "signature",
            trustgate.issuer = tracing::field::Empty,
            trustgate.kid = tracing::field::Empty,
            trustgate.alg = tracing::field::Empty,
            trustgate.reason = tracing::field::Empty,
        );
        let entered = span.enter();
        let refused = |error: Undecided| {
            if let Undecided::Refused(error) = &error {
                span.record("trustgate.reason", error.label());
            }
            error
        };
        let jws =
            jws::parse_compact(token, self.inner.max_token_bytes).map_err(|e| refused(e.into()))?;
        let signature = jws.signature().map_err(|e| refused(e.into()))?;
        let claims = json::parse_borrowed(&jws.payload).map_err(|e| refused(e.into()))?;
        let entry = claims
            .get("iss")
            .and_then(Json::as_str)
            .and_then(|iss| self.inner.issuer(iss))
            .ok_or_else(|| refused(Reason::UnknownIssuer.into()))?;
        // The issuer's configured name, not the token's bytes: recorded only once it is ours.
        span.record("trustgate.issuer", &*entry.name);
        span.record("trustgate.alg", jws.header.alg.name());
        if !entry.algorithms.contains(&jws.header.alg) {
            return Err(refused(Reason::AlgorithmNotAllowed.into()));
        }
        let key = {
            let state = entry.keys.load();
            if !entry.keys.usable(&state) {
                return Err(refused(AuthError::KeysUnavailable.into()));
            }
            let kid = jws.header.kid.as_deref();
            match state.keys.pool(kid) {
                Some(pool) => {
                    match verify_with(pool, kid.is_none(), &jws, &signature, entry.max_kidless) {
                        Ok(key) => key,
                        // The key under this `kid` may have been replaced under the same `kid`: a
                        // rate-limited refetch as for an unknown one, in a window of its own
                        // (`OnDemand`), so that forgeries cannot use up a rotation's.
                        Err(AuthError::InvalidToken(
                            reason @ (Reason::BadSignature | Reason::NoMatchingKey),
                        )) if matches!(refetch, Refetch::Allowed)
                            && let Some(kid) = kid =>
                        {
                            return Err(Undecided::UnknownKid {
                                keys: Arc::clone(&entry.keys),
                                kid: kid.to_owned(),
                                reason,
                            });
                        }
                        Err(error) => return Err(refused(error.into())),
                    }
                }
                // No key carries the token's `kid` (a token without one gets every key).
                None => {
                    return Err(refused(match refetch {
                        Refetch::Allowed => Undecided::UnknownKid {
                            keys: Arc::clone(&entry.keys),
                            kid: kid.unwrap_or_default().to_owned(),
                            reason: Reason::UnknownKey,
                        },
                        Refetch::Done => Reason::UnknownKey.into(),
                    }));
                }
            }
        };
        // The key's own id, which the issuer published (a token's `kid` that matched nothing is
        // the client's text, and is not recorded).
        if let Some(kid) = key.kid() {
            span.record("trustgate.kid", kid);
        }
        drop(entered);
        let span = crate::step_span!("claims", trustgate.reason = tracing::field::Empty);
        let _entered = span.enter();
        let refused = |error: AuthError| {
            span.record("trustgate.reason", error.label());
            Undecided::Refused(error)
        };
        // Read after the signature, as late as it can be.
        let now_ms = self.inner.clock.now_millis();
        let times = entry
            .claims
            .check(jws.header.typ.as_deref(), &claims, now_ms)
            .map_err(|e| refused(e.into()))?;
        let identity = Identity::from_claims(
            Arc::clone(&entry.name),
            entry.name_header.clone(),
            &claims,
            &entry.mapping,
        )
        .map_err(|e| refused(e.into()))?;
        drop(claims);
        Ok(VerifiedToken::new(
            Arc::clone(&entry.name),
            Arc::clone(&entry.keys),
            jws.payload,
            identity,
            times,
            key,
        ))
    }

    /// Checks only the JWS layer (shape, encoding, header rules, key selection and signature)
    /// against the first issuer's keys, without any claim rule. Reached only through
    /// `danger::verify_signature_only`.
    #[cfg(feature = "danger")]
    pub(crate) fn verify_signature_only(
        &self,
        token: &str,
    ) -> Result<(Vec<u8>, Option<String>), Reason> {
        let entry = self.inner.order.first().ok_or(Reason::UnknownIssuer)?;
        let jws = jws::parse_compact(token, self.inner.max_token_bytes)?;
        let signature = jws.signature()?;
        if !entry.algorithms.contains(&jws.header.alg) {
            return Err(Reason::AlgorithmNotAllowed);
        }
        let state = entry.keys.load();
        let kid = jws.header.kid.as_deref();
        let pool = state.keys.pool(kid).ok_or(Reason::UnknownKey)?;
        let key =
            verify_with(pool, kid.is_none(), &jws, &signature, entry.max_kidless).map_err(|e| {
                match e {
                    AuthError::InvalidToken(reason) => reason,
                    _ => Reason::BadSignature,
                }
            })?;
        Ok((jws.payload, key.kid().map(str::to_owned)))
    }
}

/// Checks the signature against the keys of `pool` whose algorithm is the token's `alg`: the key
/// decides the algorithm. A token without `kid` is tried against at most `max_kidless` of them.
fn verify_with(
    pool: &[Arc<VerifyingKey>],
    kidless: bool,
    jws: &UnverifiedJws<'_>,
    signature: &[u8],
    max_kidless: usize,
) -> Result<Arc<VerifyingKey>, AuthError> {
    let cap = if kidless { max_kidless } else { usize::MAX };
    let alg = jws.header.alg;
    let candidates = pool.iter().filter(|key| key.algorithm() == alg);
    let mut tried = 0usize;
    for key in candidates.take(cap) {
        tried += 1;
        if key.verify(jws.signing_input, signature) {
            return Ok(Arc::clone(key));
        }
    }
    if tried == 0 {
        Err(Reason::NoMatchingKey.into())
    } else {
        Err(Reason::BadSignature.into())
    }
}
