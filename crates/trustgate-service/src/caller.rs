//! The verified caller, as handlers see it, and the rejection that guards return.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[cfg(feature = "axum")]
use axum::extract::FromRequestParts;
#[cfg(feature = "axum")]
use axum::response::{IntoResponse, Response};
#[cfg(feature = "axum")]
use http::request::Parts;
use serde_json::{Map, Value};
use trustgate_core::{AuthError, Identity, VerifiedToken};

use crate::headers::HeaderIdentity;
use crate::mode::Mode;

/// Who is calling, as established by the [`TrustgateLayer`](crate::TrustgateLayer).
///
/// The layer puts a `Caller` in the request extensions only after the request passed every check
/// of its [`Mode`]; handlers take it as an axum extractor. There is no public constructor.
///
/// In every mode but [`Mode::DangerTrustedHeaders`], the identity comes from a token whose
/// signature and claims were verified ([`Caller::token`]); in that danger mode it comes from
/// request headers and [`Caller::token`] is `None`.
///
/// A verified caller is not always a user. A token need not name a subject: a client-credentials
/// token names a client ([`Caller::client`]), and an internal token carries `sub` only if the
/// gateway's route forwards it. A handler that acts for a user takes the subject from
/// [`Caller::require_subject`], which refuses a caller without one, rather than from
/// [`Caller::subject`]. In the assertion modes with
/// [`Builder::allow_anonymous`](crate::Builder::allow_anonymous), a caller may even be
/// anonymous ([`Caller::is_anonymous`]): every guard refuses it with 401.
///
/// ```no_run
/// use axum::Json;
/// use serde_json::{Value, json};
/// use trustgate_service::{Caller, Rejection};
///
/// async fn create_course(caller: Caller) -> Result<Json<Value>, Rejection> {
///     caller.require_role("instructor")?;
///     let instructor = caller.require_subject()?;
///     Ok(Json(json!({ "created_by": instructor, "tenant": caller.tenant() })))
/// }
/// ```
#[derive(Clone)]
pub struct Caller {
    mode: Mode,
    proof: Proof,
}

#[derive(Clone)]
enum Proof {
    Token(VerifiedToken),
    Headers(Arc<HeaderIdentity>),
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Claims may be personal data; only the mode and subject are shown.
        f.debug_struct("Caller")
            .field("mode", &self.mode)
            .field("subject", &self.subject())
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub(crate) fn verified(mode: Mode, token: VerifiedToken) -> Self {
        Self {
            mode,
            proof: Proof::Token(token),
        }
    }

    pub(crate) fn from_trusted_headers(identity: HeaderIdentity) -> Self {
        Self {
            mode: Mode::DangerTrustedHeaders,
            proof: Proof::Headers(Arc::new(identity)),
        }
    }

    /// The mode that accepted the request.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The verified token (the external JWT, the internal token, or the gateway assertion), or
    /// `None` in [`Mode::DangerTrustedHeaders`].
    pub fn token(&self) -> Option<&VerifiedToken> {
        match &self.proof {
            Proof::Token(token) => Some(token),
            Proof::Headers(_) => None,
        }
    }

    /// The identity built by trustgate-core from the verified claims, or `None` in
    /// [`Mode::DangerTrustedHeaders`].
    pub fn identity(&self) -> Option<&Identity> {
        self.token().map(VerifiedToken::identity)
    }

    /// The verified claims, or `None` in [`Mode::DangerTrustedHeaders`].
    pub fn claims(&self) -> Option<&Map<String, Value>> {
        self.token().map(VerifiedToken::claims)
    }

    /// The issuer whose signature was verified: the external issuer in [`Mode::ExternalJwt`], the
    /// gateway's internal issuer otherwise; `None` when nothing was verified.
    pub fn issuer(&self) -> Option<&str> {
        self.token().map(VerifiedToken::issuer)
    }

    /// The issuer that authenticated the end user: `iss` in [`Mode::ExternalJwt`], the `ext_iss`
    /// claim of an internal token or assertion otherwise (`None` for an anonymous caller).
    pub fn external_issuer(&self) -> Option<&str> {
        let token = self.token()?;
        if self.mode == Mode::ExternalJwt {
            return Some(token.issuer());
        }
        token.claims().get("ext_iss").and_then(Value::as_str)
    }

    /// The subject, if the token names one. `None` for a token without `sub` (a
    /// client-credentials token, say) and for an anonymous caller; see
    /// [`Caller::require_subject`].
    pub fn subject(&self) -> Option<&str> {
        match &self.proof {
            Proof::Token(token) => token.identity().subject(),
            Proof::Headers(headers) => Some(&headers.subject),
        }
    }

    /// The roles.
    pub fn roles(&self) -> &[String] {
        match &self.proof {
            Proof::Token(token) => token.identity().roles(),
            Proof::Headers(headers) => &headers.roles,
        }
    }

    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().iter().any(|r| r == role)
    }

    /// The scopes.
    pub fn scopes(&self) -> &[String] {
        match &self.proof {
            Proof::Token(token) => token.identity().scopes(),
            Proof::Headers(headers) => &headers.scopes,
        }
    }

    /// Whether the caller has `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().iter().any(|s| s == scope)
    }

    /// The tenant.
    pub fn tenant(&self) -> Option<&str> {
        match &self.proof {
            Proof::Token(token) => token.identity().tenant(),
            Proof::Headers(headers) => headers.tenant.as_deref(),
        }
    }

    /// The OAuth client id.
    pub fn client(&self) -> Option<&str> {
        match &self.proof {
            Proof::Token(token) => token.identity().client(),
            Proof::Headers(headers) => headers.client.as_deref(),
        }
    }

    /// When the proof the layer checked expires: the verified token's `exp` (without the
    /// validator's leeway); `None` in [`Mode::DangerTrustedHeaders`], where nothing was verified.
    ///
    /// The layer checks a request once, when it arrives. A response that keeps going (a gRPC
    /// stream, a streamed HTTP body, a WebSocket) is not cut when the token expires; a handler
    /// that serves one for longer than a token lives bounds it with this instant. In
    /// [`Mode::ExternalJwt`] and [`Mode::InternalToken`] it is the token's own expiry. In the
    /// assertion modes it is the assertion's, at most 30 s after the gateway signed it (and never
    /// after the end user's token): the gateway vouches for the request as it started, and the
    /// service does not learn how long the user's token lives.
    ///
    /// ```no_run
    /// use std::time::SystemTime;
    /// use trustgate_service::Caller;
    ///
    /// async fn serve_stream(caller: &Caller, stream: impl Future<Output = ()>) {
    ///     // What the token has left: nothing once it is past, or when nothing was verified.
    ///     let left = caller
    ///         .expires_at()
    ///         .and_then(|at| at.duration_since(SystemTime::now()).ok())
    ///         .unwrap_or_default();
    ///     // The stream ends when the token does.
    ///     let _ = tokio::time::timeout(left, stream).await;
    /// }
    /// ```
    pub fn expires_at(&self) -> Option<SystemTime> {
        let exp = self.token()?.expires_at()?;
        // A verified `exp` is after the epoch and representable; were it not, an instant already
        // past is the answer that extends nothing.
        Some(
            u64::try_from(exp)
                .ok()
                .and_then(|secs| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
                .unwrap_or(SystemTime::UNIX_EPOCH),
        )
    }

    /// Whether the caller is anonymous: the gateway forwarded a request that carried no token,
    /// on a route with `allow_anonymous`, with an assertion that vouches for no one (it has no
    /// `ext_iss`, the claim the gateway sets whenever the request had a token). Only possible in
    /// the assertion modes with [`Builder::allow_anonymous`](crate::Builder::allow_anonymous);
    /// otherwise the layer refuses such a request.
    pub fn is_anonymous(&self) -> bool {
        matches!(self.mode, Mode::GatewayAssertion | Mode::IdentityHeaders)
            && self.token().is_some_and(vouches_for_no_token)
    }

    /// The subject, for a handler that acts for a user: succeeds only when the token names one.
    ///
    /// ```no_run
    /// use axum::Json;
    /// use serde_json::{Value, json};
    /// use trustgate_service::{Caller, Rejection};
    ///
    /// async fn me(caller: Caller) -> Result<Json<Value>, Rejection> {
    ///     let subject = caller.require_subject()?;
    ///     Ok(Json(json!({ "subject": subject })))
    /// }
    /// ```
    ///
    /// # Errors
    /// A [`Rejection`] that answers 403 `insufficient_scope` for a token without a subject (a
    /// client-credentials token, say), or 401 with a bare `Bearer` challenge for an anonymous
    /// caller.
    pub fn require_subject(&self) -> Result<&str, Rejection> {
        self.subject().ok_or_else(|| self.refusal())
    }

    /// Succeeds when the caller has `role`.
    ///
    /// # Errors
    /// A [`Rejection`] that answers 403 `insufficient_scope`, or 401 for an anonymous caller.
    pub fn require_role(&self, role: &str) -> Result<(), Rejection> {
        self.permit(self.has_role(role))
    }

    /// Succeeds when the caller has `scope`.
    ///
    /// # Errors
    /// A [`Rejection`] that answers 403 `insufficient_scope`, or 401 for an anonymous caller.
    pub fn require_scope(&self, scope: &str) -> Result<(), Rejection> {
        self.permit(self.has_scope(scope))
    }

    /// Succeeds when the caller's tenant is exactly `tenant`. A caller without a tenant fails.
    ///
    /// # Errors
    /// A [`Rejection`] that answers 403 `insufficient_scope`, or 401 for an anonymous caller.
    pub fn require_tenant(&self, tenant: &str) -> Result<(), Rejection> {
        self.permit(self.tenant() == Some(tenant))
    }

    fn permit(&self, allowed: bool) -> Result<(), Rejection> {
        if allowed { Ok(()) } else { Err(self.refusal()) }
    }

    /// A guard's refusal. An anonymous caller sent no credential at all: it is asked to
    /// authenticate (401, bare `Bearer` challenge, RFC 6750 §3.1), as the gateway would ask it on
    /// a route without `allow_anonymous`, rather than told its token is not enough (403).
    fn refusal(&self) -> Rejection {
        if self.is_anonymous() {
            Rejection(AuthError::MissingToken)
        } else {
            Rejection(AuthError::InsufficientScope)
        }
    }
}

/// Whether a verified gateway assertion vouches for no token: the gateway sets `ext_iss` (the
/// issuer of the token it checked) on every assertion for a request that had one, and signs one
/// without any identity for an anonymous request on an `allow_anonymous` route.
pub(crate) fn vouches_for_no_token(token: &VerifiedToken) -> bool {
    token
        .claims()
        .get("ext_iss")
        .and_then(Value::as_str)
        .is_none()
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(caller) => Ok(caller.clone()),
            None => {
                // Fail closed: a handler that asks for a caller on a route the layer does not cover
                // is a wiring mistake, and must not serve anyone.
                tracing::warn!(
                    path = parts.uri.path(),
                    "Caller requested on a route without TrustgateLayer; refusing"
                );
                Err(Rejection(AuthError::MissingToken))
            }
        }
    }
}

/// A refusal, answered with trustgate-core's RFC 6750 mapping ([`AuthError::to_response`]).
///
/// The response names only the RFC 6750 error code; never the token, a claim or the detailed
/// reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection(AuthError);

impl Rejection {
    /// The coarse error behind this rejection.
    pub fn error(&self) -> AuthError {
        self.0
    }
}

impl From<AuthError> for Rejection {
    fn from(error: AuthError) -> Self {
        Self(error)
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Rejection {}

#[cfg(feature = "axum")]
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.0.to_response().map(axum::body::Body::from)
    }
}
