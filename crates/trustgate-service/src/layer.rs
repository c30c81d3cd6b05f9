//! The layer, its builder and its setup errors.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use trustgate_core::{
    ASSERTION_LEEWAY, ASSERTION_MAX_LIFETIME, ASSERTION_REQUIRED_CLAIMS, ASSERTION_TYP, Algorithm,
    ClaimMapping, ConfigError, INTERNAL_TOKEN_TYP, IssuerConfig, KeySource, SharedClock,
    SystemClock, Validator, ValidatorOptions,
};

use crate::authenticate::Authenticator;
use crate::headers::HeaderMapping;
use crate::mode::Mode;
use crate::replay::SeenAssertions;
use crate::service::TrustgateService;

/// A tower [`Layer`] that authenticates every request before the inner service sees it.
///
/// Each constructor fixes one [`Mode`]. A request that passes every check of that mode reaches the
/// inner service with a [`Caller`](crate::Caller) in its extensions; any other request is answered
/// by trustgate-core's RFC 6750 mapping (401, 400 or 503; a gRPC call gets the same decision as
/// HTTP 200 with `grpc-status` 16, 3 or 14) and never reaches it. The check happens once, when
/// the request arrives: a streamed response or a gRPC stream goes on after the token expires
/// unless the handler bounds it ([`Caller::expires_at`](crate::Caller::expires_at)). Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct TrustgateLayer {
    auth: Arc<Authenticator>,
}

impl TrustgateLayer {
    /// Pattern 1 (and pattern 2, validating the forwarded token again): accepts JWTs from
    /// `issuer` whose `aud` names `audience`. The keys are found by OIDC discovery and kept fresh
    /// in the background; `exp` is required, RS256 and ES256 are allowed. See
    /// [`Builder::jwt`] to change algorithms, `typ`, claim mapping, leeway or clock.
    ///
    /// # Errors
    /// [`SetupError`] when the configuration is invalid or no keys could be fetched at start.
    pub async fn jwt(issuer: &str, audience: &str) -> Result<Self, SetupError> {
        Builder::jwt(issuer, audience).build().await
    }

    /// Pattern 4: accepts internal tokens minted by the gateway whose internal issuer is
    /// `internal_issuer` (a URL serving discovery), for `service_id`, with header
    /// `typ: internal+jwt`, signed with EdDSA or ES256. An external token is refused: its `iss`
    /// and `typ` differ.
    ///
    /// # Errors
    /// [`SetupError`] when the configuration is invalid or no keys could be fetched at start.
    pub async fn internal_tokens(
        internal_issuer: &str,
        service_id: &str,
    ) -> Result<Self, SetupError> {
        Builder::internal_tokens(internal_issuer, service_id)
            .build()
            .await
    }

    /// Pattern 2, trusting the gateway instead of validating the forwarded token again: requires an
    /// `X-Trustgate-Assertion` signed by `internal_issuer` for `service_id`
    /// (`typ: trustgate-assertion+jwt`), at most 60 s long with 5 s of leeway, whose `htm` and
    /// `htu` equal this request's method and path with query. Headers it lists in `hdr` must be
    /// present with exactly those values. The identity comes from the assertion. An assertion
    /// for an anonymous request (no `ext_iss`) is refused, 401; see [`Builder::allow_anonymous`].
    ///
    /// # Errors
    /// [`SetupError`] when the configuration is invalid or no keys could be fetched at start.
    pub async fn gateway_assertion(
        internal_issuer: &str,
        service_id: &str,
    ) -> Result<Self, SetupError> {
        Builder::gateway_assertion(internal_issuer, service_id)
            .build()
            .await
    }

    /// Pattern 3: identity headers injected by the gateway, accepted only with a gateway assertion
    /// (checked as in [`TrustgateLayer::gateway_assertion`]) whose `hdr` lists every injected
    /// header; each must appear exactly once with exactly that value. The identity handlers see
    /// comes from the verified assertion, never from the headers themselves. An assertion for an
    /// anonymous request is refused, 401; see [`Builder::allow_anonymous`].
    ///
    /// # Errors
    /// [`SetupError`] when the configuration is invalid or no keys could be fetched at start.
    pub async fn identity_headers(
        internal_issuer: &str,
        service_id: &str,
    ) -> Result<Self, SetupError> {
        Builder::identity_headers(internal_issuer, service_id)
            .build()
            .await
    }

    /// **Dangerous.** Builds the identity from request headers named by `mapping`, with no proof
    /// that the gateway wrote them.
    ///
    /// This trusts the network: anyone who can send a request to this service without going
    /// through the gateway (another pod, a port-forward, a misrouted load balancer, an SSRF in a
    /// neighbour) can claim to be any user with any role. The values are still checked byte by byte
    /// (printable ASCII, strict `%XX` decoding, a duplicate is 400) and an `access_token` in the
    /// query is refused as in every mode, which stops header smuggling, not impersonation. Prefer
    /// [`TrustgateLayer::identity_headers`], which requires the gateway's signed assertion for the
    /// same headers.
    pub fn danger_trust_identity_headers_without_assertion(mapping: HeaderMapping) -> Self {
        tracing::warn!(
            subject_header = mapping.subject.as_str(),
            "trusting identity headers without a gateway assertion: any client that reaches this \
             service directly can impersonate any user"
        );
        Self {
            auth: Arc::new(Authenticator::DangerHeaders(mapping)),
        }
    }

    /// The mode this layer enforces.
    pub fn mode(&self) -> Mode {
        self.auth.mode()
    }

    /// The validator, for readiness checks, key status and cache statistics (`None` in
    /// [`Mode::DangerTrustedHeaders`]).
    pub fn validator(&self) -> Option<&Validator> {
        self.auth.validator()
    }

    /// Whether the layer can accept requests now: its issuer has usable keys. Always `true` in
    /// [`Mode::DangerTrustedHeaders`].
    pub fn is_ready(&self) -> bool {
        self.auth.validator().is_none_or(Validator::is_ready)
    }
}

impl<S> Layer<S> for TrustgateLayer {
    type Service = TrustgateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrustgateService::new(inner, Arc::clone(&self.auth))
    }
}

/// Builds a [`TrustgateLayer`] with settings beyond the one-line constructors.
///
/// ```no_run
/// # async fn run() -> Result<(), trustgate_service::SetupError> {
/// use std::time::Duration;
/// use trustgate_core::Algorithm;
/// use trustgate_service::Builder;
///
/// let layer = Builder::jwt("https://idp.example", "users-api")
///     .algorithms([Algorithm::ES256])
///     .required_typ("at+jwt")
///     .leeway(Duration::from_secs(30))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct Builder {
    mode: Mode,
    issuer: String,
    audience: String,
    algorithms: Option<Vec<Algorithm>>,
    required_typ: Option<String>,
    mapping: Option<ClaimMapping>,
    leeway: Option<Duration>,
    clock: Option<SharedClock>,
    options: ValidatorOptions,
    require_keys_at_start: bool,
    remembered_assertions: usize,
    shared_replay_store: Option<Arc<dyn crate::replay::ReplayStore>>,
    allow_anonymous: bool,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("mode", &self.mode)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Builder {
    fn new(mode: Mode, issuer: &str, audience: &str) -> Self {
        Self {
            mode,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            algorithms: None,
            required_typ: None,
            mapping: None,
            leeway: None,
            clock: None,
            options: ValidatorOptions::default(),
            require_keys_at_start: true,
            remembered_assertions: crate::replay::DEFAULT_CAPACITY,
            shared_replay_store: None,
            allow_anonymous: false,
        }
    }

    /// See [`TrustgateLayer::jwt`].
    pub fn jwt(issuer: &str, audience: &str) -> Self {
        Self::new(Mode::ExternalJwt, issuer, audience)
    }

    /// See [`TrustgateLayer::internal_tokens`].
    pub fn internal_tokens(internal_issuer: &str, service_id: &str) -> Self {
        Self::new(Mode::InternalToken, internal_issuer, service_id)
    }

    /// See [`TrustgateLayer::gateway_assertion`].
    pub fn gateway_assertion(internal_issuer: &str, service_id: &str) -> Self {
        Self::new(Mode::GatewayAssertion, internal_issuer, service_id)
    }

    /// See [`TrustgateLayer::identity_headers`].
    pub fn identity_headers(internal_issuer: &str, service_id: &str) -> Self {
        Self::new(Mode::IdentityHeaders, internal_issuer, service_id)
    }

    /// The algorithm allow-list. Defaults: RS256 and ES256 for external JWTs; EdDSA and ES256 for
    /// the gateway's internal tokens and assertions.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Requires this header `typ` on external JWTs (for example `at+jwt`, RFC 9068). The gateway
    /// modes have a fixed `typ`; setting it there makes [`Builder::build`] fail.
    pub fn required_typ(mut self, typ: impl Into<String>) -> Self {
        self.required_typ = Some(typ.into());
        self
    }

    /// How external JWT claims become the identity (default: `sub`, `roles`, `scope`/`scp`,
    /// `tenant_id`, `client_id`/`azp`). The gateway modes use the contract's claim names; setting
    /// it there makes [`Builder::build`] fail.
    pub fn claim_mapping(mut self, mapping: ClaimMapping) -> Self {
        self.mapping = Some(mapping);
        self
    }

    /// Clock skew allowed on `exp`, `nbf` and `iat`. Defaults: 60 s for tokens, 5 s for
    /// assertions.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// The clock every time check reads (default: the system clock). For tests.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Token size limit, verified-token cache and key-fetch limits (timeouts, extra CAs).
    pub fn validator_options(mut self, options: ValidatorOptions) -> Self {
        self.options = options;
        self
    }

    /// Builds the layer even when the issuer's keys cannot be fetched at start. Requests are then
    /// answered 503 until a background refetch succeeds. By default [`Builder::build`] fails
    /// instead, so a misconfigured service does not start.
    pub fn start_without_keys(mut self) -> Self {
        self.require_keys_at_start = false;
        self
    }

    /// How many gateway assertion ids the layer remembers to refuse a second use of one
    /// (default 100,000: 35 s of about 2,900 requests per second). An id is kept until its
    /// assertion's `exp` plus the leeway; when the memory is full of ids still live, the oldest
    /// is forgotten. Cover the requests this process serves in 35 s (the gateway's 30 s assertion
    /// lifetime plus 5 s of leeway). Only the assertion modes use it.
    pub fn remembered_assertions(mut self, capacity: usize) -> Self {
        self.remembered_assertions = capacity;
        self
    }

    /// Shares the assertion ids this layer accepted with the other replicas of the service
    /// (with the `redis` feature, [`RedisReplayStore`](crate::RedisReplayStore)), so that an
    /// assertion accepted by one replica is refused by every other. The process's own memory
    /// stays the first level. When the store cannot answer, the request is refused (503): single
    /// use cannot be shown. Only the assertion modes use it.
    pub fn shared_replay_store(mut self, store: Arc<dyn crate::replay::ReplayStore>) -> Self {
        self.shared_replay_store = Some(store);
        self
    }

    /// Admits the gateway's assertions for anonymous requests. On a route with
    /// `allow_anonymous = true`, the gateway forwards a request that carries no token with an
    /// assertion that vouches for no one (no `sub`, no `ext_iss`, no roles): it proves that the
    /// request came through the gateway, not that anyone signed in. By default the layer answers
    /// such a request as one without a credential (401 with a bare `Bearer` challenge), so that
    /// a handler that takes a [`Caller`](crate::Caller) always has an authenticated one. With
    /// this setting it reaches the handler with a caller for whom
    /// [`Caller::is_anonymous`](crate::Caller::is_anonymous) is `true`, and whom every guard
    /// refuses with 401. Only the assertion modes use it: in the bearer-token modes a request
    /// without a token is always refused.
    pub fn allow_anonymous(mut self) -> Self {
        self.allow_anonymous = true;
        self
    }

    /// Validates the configuration, fetches the issuer's keys once and starts their background
    /// refresh. Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// - [`SetupError::Config`]: the issuer, audience or options are invalid (for example, an
    ///   issuer that is not an https URL, or http to a host other than loopback);
    /// - [`SetupError::NotForMode`]: a setting that the chosen mode fixes;
    /// - [`SetupError::KeysUnavailable`]: no usable keys at start (unless
    ///   [`Builder::start_without_keys`]).
    pub async fn build(self) -> Result<TrustgateLayer, SetupError> {
        let mode = self.mode;
        let mut config = IssuerConfig::new(&*self.issuer, [&*self.audience], KeySource::Discovery);
        match mode {
            Mode::ExternalJwt => {
                config.claims.required_typ = self.required_typ;
                if let Some(mapping) = self.mapping {
                    config.mapping = mapping;
                }
            }
            _ => {
                if self.required_typ.is_some() {
                    return Err(SetupError::NotForMode {
                        setting: "required_typ",
                        mode,
                    });
                }
                if self.mapping.is_some() {
                    return Err(SetupError::NotForMode {
                        setting: "claim_mapping",
                        mode,
                    });
                }
                config.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256];
                if mode == Mode::InternalToken {
                    config.claims.required_typ = Some(INTERNAL_TOKEN_TYP.to_owned());
                } else {
                    config.claims.required_typ = Some(ASSERTION_TYP.to_owned());
                    config.claims.max_lifetime = Some(ASSERTION_MAX_LIFETIME);
                    config.claims.leeway = ASSERTION_LEEWAY;
                    config.claims.required_claims =
                        ASSERTION_REQUIRED_CLAIMS.map(str::to_owned).to_vec();
                }
            }
        }
        if let Some(algorithms) = self.algorithms {
            config.algorithms = algorithms;
        }
        if let Some(leeway) = self.leeway {
            config.claims.leeway = leeway;
        }
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let leeway = config.claims.leeway;
        let validator = Validator::new(vec![config], self.options, Arc::clone(&clock))?;
        if !validator.start().await && self.require_keys_at_start {
            return Err(SetupError::KeysUnavailable {
                issuer: self.issuer,
            });
        }
        let auth = match mode {
            Mode::GatewayAssertion | Mode::IdentityHeaders => Authenticator::Assertion {
                mode,
                validator,
                require_headers: mode == Mode::IdentityHeaders,
                allow_anonymous: self.allow_anonymous,
                seen: SeenAssertions::new(
                    self.remembered_assertions,
                    self.shared_replay_store,
                    clock,
                    leeway,
                ),
            },
            _ => Authenticator::Bearer { mode, validator },
        };
        Ok(TrustgateLayer {
            auth: Arc::new(auth),
        })
    }
}

/// Why a [`TrustgateLayer`] could not be built. Written for the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The issuer configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A setting that this mode fixes by the gateway contract.
    #[error(
        "{setting} cannot be set in {mode} mode: the gateway contract fixes it; remove the call"
    )]
    NotForMode {
        /// The builder method.
        setting: &'static str,
        /// The mode.
        mode: Mode,
    },
    /// The first fetch of the issuer's keys failed or returned no usable key.
    #[error(
        "no usable keys for issuer {issuer:?} at start: check that {issuer}/.well-known/openid-configuration \
         is reachable and its jwks_uri serves keys, or call Builder::start_without_keys() to answer 503 until it does"
    )]
    KeysUnavailable {
        /// The issuer.
        issuer: String,
    },
}
