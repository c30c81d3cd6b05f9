//! The decision engine: one function from a request head to a [`Decision`].
//!
//! Every front door asks it: the reverse proxy applies the decision to the request it forwards,
//! `trustgate explain` prints it, and a decision endpoint can answer with its header edits. No
//! front door re-implements a rule. The engine reads the head only; it never writes the request,
//! and it does no I/O of its own (the validator may wait for one rate-limited key refetch).
//!
//! The steps run in this order, and the order is the design:
//!
//! 1. **Sanitization** (`headers`): in reject mode, a client identity header is refused here. In
//!    strip mode, [`Decision::apply`] removes them, with the URI-override headers.
//! 2. **Normalization and routing** (`path`, `router`): the route is chosen on the normalized path
//!    and the request's host, each read once; the normalized path is the one forwarded.
//! 3. **Token** (`token`): on validating routes, exactly one token in RFC 6750's form, or none.
//! 4. **Validation and authorization** (trustgate-core, `trust::Requirements`).
//! 5. **The pattern's edits** (`trust`): what happens to the caller's credentials, the injected
//!    identity, the minted internal token and the assertion.

mod edits;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use tracing::field::Empty;
use trustgate_core::{
    AuthError, InternalSigner, Reason, RequestProblem, Validator, VerifiedToken,
    query_has_access_token,
};

use crate::error::GatewayError;
use crate::headers::{IdentityHeaderPolicy, is_forwarding_header_name, is_uri_override};
use crate::mint::{self, MintCache};
use crate::path::{self, DoubleSlash};
use crate::route::Route;
use crate::router::{Router, host_without_port, request_host};
use crate::token::{TokenSource, extract_token};
use crate::trust::{ForwardToken, Trust, Validation};

/// What the gateway does with a client identity header (`sanitize.mode`).
#[derive(Debug, serde::Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SanitizeMode {
    /// Remove it and go on (the default).
    #[default]
    Strip,
    /// Answer 400.
    Reject,
}

/// Everything a decision reads besides the request: one per configuration.
pub struct Engine {
    /// Routes by host and normalized path prefix.
    pub router: Router<Route>,
    /// Which headers only the gateway may set.
    pub identity_headers: IdentityHeaderPolicy,
    /// Strip or refuse client identity headers.
    pub sanitize: SanitizeMode,
    /// What normalization does with `//`.
    pub double_slash: DoubleSlash,
    /// Token validation, with the issuers' keys.
    pub validator: Validator,
    /// The gateway's own signer, if an internal issuer is configured.
    pub signer: Option<Arc<InternalSigner>>,
    /// Minted internal tokens, reused until shortly before they expire.
    pub minted: MintCache,
    /// Revoked tokens, checked after validation on every request (cache hits included), if
    /// revocation is configured.
    pub revocations: Option<Arc<dyn RevocationCheck>>,
}

/// The revocation list as the engine asks it: a local, in-memory answer, never a round trip to
/// a store, since it runs on every request of every route that checks revocations.
pub trait RevocationCheck: Send + Sync {
    /// Whether `token`, just validated for `route`, may pass.
    ///
    /// # Errors
    /// [`Revoked`] when an entry covers the token; [`Revoked::Stale`] when the route checks
    /// revocations and the list is older than its staleness bound.
    fn check(&self, route: &Route, token: &VerifiedToken) -> Result<(), Revoked>;
}

/// Why [`RevocationCheck::check`] refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Its `jti` is on the list.
    ByTokenId,
    /// Its subject was revoked, and it was issued at or before the cut-off.
    BySubject,
    /// The list is too old to say (fail closed).
    Stale,
    /// It lives longer than `revocation.max_token_lifetime`, or its lifetime cannot be told (no
    /// `exp` or no `iat`): a revocation, kept that long, could lapse while the token is still
    /// valid (fail closed).
    OutlivesRevocations,
}

impl Revoked {
    /// For `explain` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Revoked::ByTokenId => "revoked by jti",
            Revoked::BySubject => "revoked by subject (issued before the cut-off)",
            Revoked::Stale => "revocation list older than its staleness bound",
            Revoked::OutlivesRevocations => {
                "lifetime longer than revocation.max_token_lifetime, which a revocation is kept"
            }
        }
    }
}

impl From<Revoked> for GatewayError {
    fn from(revoked: Revoked) -> Self {
        match revoked {
            Revoked::ByTokenId | Revoked::BySubject => {
                AuthError::InvalidToken(Reason::Revoked).into()
            }
            Revoked::Stale => GatewayError::RevocationStale,
            Revoked::OutlivesRevocations => AuthError::InvalidToken(Reason::LifetimeTooLong).into(),
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sanitize", &self.sanitize)
            .field("double_slash", &self.double_slash)
            .finish_non_exhaustive()
    }
}

/// The parts of a request a decision reads.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target as received.
    pub uri: &'a Uri,
    /// The request headers as received (after the framing check).
    pub headers: &'a HeaderMap,
    /// The downstream peer, for the audit log.
    pub peer: IpAddr,
    /// What the upstream will receive as the target.
    pub target: TargetForwarding,
}

/// Which target the upstream receives, and so which one must be judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForwarding {
    /// The normalized one: the reverse proxy forwards the path it routed on.
    Normalized,
    /// The one received: a proxy in front that asked the decision endpoint forwards the target
    /// as the client wrote it. A target normalization would change is refused
    /// (`target_not_normalized`), since the path judged would not be the path served:
    /// `/admin/%2e%2e/public`, judged as the public `/public`, reaches an upstream that does not
    /// resolve `%2e%2e` as a path under `/admin`.
    AsReceived,
}

/// The step at which a request was refused: for metrics, `explain` and traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ambiguous message framing (a front door's check, before the engine).
    Framing,
    /// A client identity header in reject mode.
    Sanitize,
    /// The target cannot be normalized safely (or is CONNECT).
    Path,
    /// The host is not `host [":" port]`.
    Host,
    /// No route matches.
    Route,
    /// The token is missing, duplicated, malformed or in the query.
    Token,
    /// Validation failed.
    Validate,
    /// A valid token from an issuer this route does not accept.
    Issuer,
    /// The token is revoked, or the revocation list is too old to say.
    Revocation,
    /// The route's requirements are not met.
    Authorize,
    /// The internal token or assertion could not be signed.
    Sign,
}

impl Step {
    /// A stable label, for the audit log and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Framing => "framing",
            Step::Sanitize => "sanitize",
            Step::Path => "path",
            Step::Host => "host",
            Step::Route => "route",
            Step::Token => "token",
            Step::Validate => "validate",
            Step::Issuer => "issuer",
            Step::Revocation => "revocation",
            Step::Authorize => "authorize",
            Step::Sign => "sign",
        }
    }
}

/// A refusal: the error to answer with, the step, and the route if one had been chosen.
#[derive(Debug)]
pub struct Refusal {
    /// The route, once chosen (for per-route metrics).
    pub route: Option<Arc<Route>>,
    /// Where the request was refused.
    pub step: Step,
    /// The answer, through the one error mapping (`GatewayError::to_response`).
    pub error: GatewayError,
}

/// What happens to the caller's credentials on the way upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Passed as they came: public and service-validates routes, and forward-token routes whose
    /// Authorization header carried the checked token.
    Keep,
    /// Forward-token: the Authorization value was not the checked token, so it is removed.
    DropAuthorization,
    /// Identity-headers: the token is removed (header and cookie), identity headers injected.
    Identity,
    /// Internal-token: the external token is removed, this internal one set as Authorization.
    Internal(HeaderValue),
}

/// A header change a decision makes, as a decision endpoint would list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Remove every value of this header.
    Remove(HeaderName),
    /// Remove the route's token cookie from the Cookie header.
    RemoveCookie(String),
    /// Set this header to exactly this value.
    Set(HeaderName, HeaderValue),
}

/// The engine's answer to a request it lets through.
#[derive(Debug)]
pub struct Decision {
    /// The route chosen.
    pub route: Arc<Route>,
    /// The verified token, when the route validated one.
    pub token: Option<VerifiedToken>,
    /// The request's host (validated), for routing and forwarding alike.
    pub host: Option<HeaderValue>,
    /// The forwarded path and query, when it differs from the request target's; `None` forwards
    /// the target's own path and query.
    pub rewritten_target: Option<String>,
    /// What happens to the caller's credentials.
    pub credentials: Credentials,
    /// The signed assertion, on routes that have one.
    pub assertion: Option<HeaderValue>,
}

/// Step-by-step notes for `trustgate explain`. `None` on the request path.
pub type Trace<'a> = Option<&'a mut Vec<String>>;

macro_rules! note {
    ($trace:expr, $($arg:tt)*) => {
        if let Some(trace) = $trace.as_mut() {
            trace.push(format!($($arg)*));
        }
    };
}

fn refuse(route: Option<&Arc<Route>>, step: Step, error: impl Into<GatewayError>) -> Refusal {
    Refusal {
        route: route.cloned(),
        step,
        error: error.into(),
    }
}

impl Engine {
    /// Decides what happens to the request `head`.
    ///
    /// # Errors
    /// A [`Refusal`] with the answer to send.
    pub async fn decide(
        &self,
        head: RequestHead<'_>,
        mut trace: Trace<'_>,
    ) -> Result<Decision, Refusal> {
        // 1. Sanitization: decided before routing, so no route and no error path is spared.
        // Each step has a span (for OpenTelemetry, `trustgate telemetry`): reason codes, route
        // and pattern, never a token or a claim value. Made only when wanted
        // (`trustgate_core::steps`): without telemetry, or for an unsampled request, none is.
        let span = trustgate_core::step_span!("sanitize", trustgate.reason = Empty);
        if self.sanitize == SanitizeMode::Reject && self.identity_headers.contains_any(head.headers)
        {
            span.record("trustgate.reason", "client_identity_header");
            tracing::warn!(
                target: "trustgate::audit",
                peer = %head.peer,
                "client sent an identity header; refused (sanitize.mode = reject)"
            );
            note!(
                trace,
                "sanitize: client sent an identity header; refused (reject mode)"
            );
            return Err(refuse(
                None,
                Step::Sanitize,
                AuthError::InvalidRequest(RequestProblem::ClientIdentityHeader),
            ));
        }
        drop(span);
        if trace.is_some() {
            let (identity, overrides) = self.count_removals(head.headers);
            note!(
                trace,
                "sanitize: removed {identity} client identity header value(s) and {overrides} URI-override header(s)"
            );
        }

        // 2. Normalization and routing.
        let (route, normalized, host) = self.route(head, &mut trace)?;

        // 3–4. Token, validation, authorization.
        let (token, text, found_in_header) = self.authenticate(head, &route, &mut trace).await?;

        // 5. The pattern's edits.
        let rewritten_target = forwarded_target(head.uri, &route, &normalized);
        let credentials = match &route.trust {
            Trust::Public | Trust::ServiceValidates => Credentials::Keep,
            Trust::ForwardToken(_) if ForwardToken::drops_authorization(found_in_header) => {
                Credentials::DropAuthorization
            }
            Trust::ForwardToken(_) => Credentials::Keep,
            Trust::IdentityHeaders(pattern) => {
                note!(
                    trace,
                    "identity: removed the token; injected {} identity header(s)",
                    pattern.headers.len()
                );
                Credentials::Identity
            }
            Trust::InternalToken(pattern) => {
                let (Some(verified), Some(text), Some(signer)) =
                    (&token, text, self.signer.as_deref())
                else {
                    return Err(refuse(Some(&route), Step::Sign, GatewayError::Internal));
                };
                let span = trustgate_core::step_span!("mint", trustgate.reason = Empty);
                let value = span
                    .in_scope(|| {
                        self.minted
                            .authorization(signer, text, route.index, pattern, verified)
                    })
                    .map_err(|err| {
                        span.record("trustgate.reason", err.label());
                        refuse(Some(&route), Step::Sign, err)
                    })?;
                note!(
                    trace,
                    "internal token: for audience {:?}, ttl {:?}",
                    pattern.service,
                    pattern.ttl
                );
                Credentials::Internal(value)
            }
        };
        let assertion = match route.trust.assertion() {
            None => None,
            Some(assertion) => {
                let signer = self
                    .signer
                    .as_deref()
                    .ok_or_else(|| refuse(Some(&route), Step::Sign, GatewayError::Internal))?;
                let path_and_query = rewritten_target
                    .as_deref()
                    .or_else(|| head.uri.path_and_query().map(|pq| pq.as_str()))
                    .unwrap_or("/");
                let injected = match &route.trust {
                    Trust::IdentityHeaders(pattern) => Some(pattern),
                    _ => None,
                };
                let span = trustgate_core::step_span!("assertion", trustgate.reason = Empty);
                let value = span
                    .in_scope(|| {
                        mint::assertion(
                            signer,
                            &assertion.service,
                            head.method,
                            path_and_query,
                            injected,
                            token.as_ref(),
                        )
                    })
                    .map_err(|err| {
                        span.record("trustgate.reason", err.label());
                        refuse(Some(&route), Step::Sign, err)
                    })?;
                note!(
                    trace,
                    "assertion: signed for audience {:?}, binding method, path and identity headers",
                    assertion.service
                );
                Some(value)
            }
        };
        Ok(Decision {
            route,
            token,
            host,
            rewritten_target,
            credentials,
            assertion,
        })
    }

    /// Step 2, in its span: the route and pattern chosen, or the reason there is none.
    #[allow(clippy::type_complexity)]
    fn route(
        &self,
        head: RequestHead<'_>,
        trace: &mut Trace<'_>,
    ) -> Result<(Arc<Route>, path::NormalizedPath, Option<HeaderValue>), Refusal> {
        let span = trustgate_core::step_span!(
            "route",
            trustgate.route = Empty,
            trustgate.pattern = Empty,
            trustgate.reason = Empty,
        );
        let _entered = span.enter();
        let routed = self.select_route(head, trace);
        match &routed {
            Ok((route, ..)) => {
                span.record("trustgate.route", route.name.as_str());
                span.record("trustgate.pattern", route.trust.name());
            }
            Err(refusal) => {
                span.record("trustgate.reason", refusal.error.label());
            }
        }
        routed
    }

    /// Step 2: the route for the normalized path and the request's host.
    #[allow(clippy::type_complexity)]
    fn select_route(
        &self,
        head: RequestHead<'_>,
        trace: &mut Trace<'_>,
    ) -> Result<(Arc<Route>, path::NormalizedPath, Option<HeaderValue>), Refusal> {
        // Authority-form (CONNECT) and asterisk-form targets have no path to route on: refuse them
        // rather than defaulting to "/", which would send them to the catch-all route.
        let Some(target) = head.uri.path_and_query().map(|pq| pq.as_str()) else {
            note!(
                trace,
                "path: no origin-form path (CONNECT or authority-form); refused"
            );
            return Err(refuse(None, Step::Path, GatewayError::BadPath("bad_path")));
        };
        if head.method == Method::CONNECT {
            note!(trace, "method: CONNECT is not proxied");
            return Err(refuse(None, Step::Path, GatewayError::BadPath("connect")));
        }
        let normalized = path::normalize(target, self.double_slash).map_err(|err| {
            note!(trace, "path: refused ({err})");
            refuse(None, Step::Path, GatewayError::BadPath("bad_path"))
        })?;
        note!(
            trace,
            "path: {target:?} normalized to {:?}",
            normalized.path()
        );
        if head.target == TargetForwarding::AsReceived
            && (normalized.path() != head.uri.path() || normalized.query() != head.uri.query())
        {
            note!(
                trace,
                "path: forwarded as received, so it must already be in normal form; refused"
            );
            return Err(refuse(
                None,
                Step::Path,
                GatewayError::BadPath("target_not_normalized"),
            ));
        }
        // One host for routing and for forwarding, validated before either: reading it twice once
        // let `GET http://public.example/x` + `Host: internal.example` be routed as the public
        // host but reach the upstream as the internal one.
        let Ok(host) = request_host(head.uri, head.headers) else {
            note!(trace, "host: not a host with an optional port; refused");
            return Err(refuse(None, Step::Host, GatewayError::BadPath("bad_host")));
        };
        let host_name = || {
            host.as_ref()
                .and_then(|h| h.to_str().ok())
                .map(host_without_port)
        };
        // The host is compared only if some route is bound to one.
        let selected = if self.router.binds_hosts() {
            self.router
                .select(host_name().as_deref(), normalized.path())
        } else {
            self.router.select(None, normalized.path())
        };
        let Some((_, route)) = selected else {
            note!(
                trace,
                "route: none matches host {} and path {:?}",
                host_name()
                    .as_deref()
                    .map_or("(none)".to_owned(), |h| format!("{h:?}")),
                normalized.path()
            );
            return Err(refuse(None, Step::Route, GatewayError::NoRoute));
        };
        note!(
            trace,
            "route: {:?} (prefix {:?}, pattern {}, upstream {:?})",
            route.name,
            route.prefix,
            route.trust.name(),
            route.upstream
        );
        Ok((Arc::clone(route), normalized, host))
    }

    /// Steps 3–4: the token, if the route validates one. Returns it with its text (pattern 4
    /// keys minted tokens by it) and whether it came in the Authorization header.
    async fn authenticate<'h>(
        &self,
        head: RequestHead<'h>,
        route: &Arc<Route>,
        trace: &mut Trace<'_>,
    ) -> Result<(Option<VerifiedToken>, Option<&'h str>, bool), Refusal> {
        let Some(validation) = route.trust.validation() else {
            note!(
                trace,
                "token: not checked by the gateway on pattern {}",
                route.trust.name()
            );
            return Ok((None, None, false));
        };
        // The steps before and after the await are functions of their own: their spans then
        // never live across it, and the request's future stays as small as it was.
        let Some((text, source)) = find_token(head, route, validation, trace)? else {
            return Ok((None, None, false));
        };
        let verified = self.validator.validate(text).await.map_err(|err| {
            note!(trace, "validate: failed ({})", err.label());
            refuse(Some(route), Step::Validate, err)
        })?;
        note!(
            trace,
            "validate: signature ok (issuer {:?}, kid {}, {}); claims ok",
            verified.issuer(),
            verified
                .key_id()
                .map_or("(none)".to_owned(), |kid| format!("{kid:?}")),
            verified.algorithm()
        );
        require(
            route,
            validation,
            self.revocations.as_deref(),
            &verified,
            trace,
        )?;
        Ok((Some(verified), Some(text), source == TokenSource::Header))
    }

    /// How many client identity header values and URI-override headers [`Decision::apply`]
    /// removes from `headers`.
    fn count_removals(&self, headers: &HeaderMap) -> (usize, usize) {
        let mut counts = (0, 0);
        for name in headers.keys() {
            if self.identity_headers.is_identity_header(name) {
                counts.0 += headers.get_all(name).iter().count();
            } else if is_uri_override(name) {
                counts.1 += headers.get_all(name).iter().count();
            }
        }
        counts
    }

    /// The client-sent header names every forwarded request loses, whatever the route: identity
    /// headers, URI overrides, and the `_` spellings of forwarding headers (`X_Forwarded_For`,
    /// which CGI-style upstreams read as the real one; the `-` spellings are the calling proxy's
    /// own to set). A decision endpoint lists them for the proxy that forwards.
    pub fn client_headers_removed<'h>(
        &self,
        headers: &'h HeaderMap,
    ) -> impl Iterator<Item = &'h HeaderName> + use<'h, '_> {
        headers.keys().filter(|name| {
            self.identity_headers.is_identity_header(name)
                || is_uri_override(name)
                || (name.as_str().contains('_')
                    && is_forwarding_header_name(name.as_str().as_bytes()))
        })
    }
}

/// Step 3: the route's token, in RFC 6750's form, or none when the route allows anonymous
/// callers.
fn find_token<'h>(
    head: RequestHead<'h>,
    route: &Arc<Route>,
    validation: &Validation,
    trace: &mut Trace<'_>,
) -> Result<Option<(&'h str, TokenSource)>, Refusal> {
    let span = trustgate_core::step_span!(
        "token",
        trustgate.token.source = Empty,
        trustgate.reason = Empty,
    );
    let _entered = span.enter();
    let refused = |refusal: Refusal| {
        span.record("trustgate.reason", refusal.error.label());
        refusal
    };
    // A token in the URL is never taken and never forwarded (RFC 6750 §2.3 is off).
    if head.uri.query().is_some_and(query_has_access_token) {
        note!(trace, "token: an access_token query parameter; refused");
        return Err(refused(refuse(
            Some(route),
            Step::Token,
            AuthError::InvalidRequest(RequestProblem::TokenInQuery),
        )));
    }
    let found = extract_token(head.headers, validation.token_cookie.as_deref())
        .map_err(|err| refused(refuse(Some(route), Step::Token, err)))?;
    let Some((text, source)) = found else {
        span.record("trustgate.token.source", "none");
        if route.trust.allows_anonymous() {
            note!(trace, "token: none; anonymous access allowed on this route");
            return Ok(None);
        }
        note!(trace, "token: none; refused");
        return Err(refused(refuse(
            Some(route),
            Step::Token,
            AuthError::MissingToken,
        )));
    };
    span.record("trustgate.token.source", source.as_str());
    note!(trace, "token: found in {source} ({} bytes)", text.len());
    Ok(Some((text, source)))
}

/// Step 4, after validation: the route accepts the token's issuer, and its requirements hold.
fn require(
    route: &Arc<Route>,
    validation: &Validation,
    revocations: Option<&dyn RevocationCheck>,
    verified: &VerifiedToken,
    trace: &mut Trace<'_>,
) -> Result<(), Refusal> {
    let span = trustgate_core::step_span!("require", trustgate.reason = Empty);
    let _entered = span.enter();
    if !validation
        .issuers
        .iter()
        .any(|iss| iss == verified.issuer())
    {
        span.record("trustgate.reason", "issuer_not_accepted");
        note!(
            trace,
            "issuer: {:?} is not accepted on this route",
            verified.issuer()
        );
        return Err(refuse(
            Some(route),
            Step::Issuer,
            AuthError::InvalidToken(Reason::IssuerNotAccepted),
        ));
    }
    if let Some(revocations) = revocations {
        match revocations.check(route, verified) {
            Ok(()) => note!(trace, "revocation: not revoked"),
            Err(revoked) => {
                span.record("trustgate.reason", revoked.as_str());
                note!(trace, "revocation: refused ({})", revoked.as_str());
                return Err(refuse(Some(route), Step::Revocation, revoked));
            }
        }
    }
    if let Err(err) = validation.require.check(verified) {
        span.record("trustgate.reason", err.label());
        note!(trace, "authorize: route requirements not met");
        return Err(refuse(Some(route), Step::Authorize, err));
    }
    note!(trace, "authorize: ok");
    Ok(())
}

/// The forwarded path and query when it differs from the request target's. Usually the client's
/// target is already in normal form and is forwarded as it came, without rebuilding (or
/// re-validating) its text.
fn forwarded_target(uri: &Uri, route: &Route, normalized: &path::NormalizedPath) -> Option<String> {
    let unchanged = route.rewrite.is_none()
        && normalized.path() == uri.path()
        && normalized.query() == uri.query();
    if unchanged && uri.path_and_query().is_some() {
        return None;
    }
    let mut path_and_query = match &route.rewrite {
        Some(replacement) => path::rewrite(normalized.path(), &route.prefix, replacement),
        None => normalized.path().to_owned(),
    };
    if let Some(query) = normalized.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    Some(path_and_query)
}
