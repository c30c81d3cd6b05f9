//! The request path. Trust boundaries are crossed in this order, and the order is the design:
//!
//! 1. **Framing** (`sanitize::check_framing`): ambiguous Content-Length / Transfer-Encoding is
//!    refused before anything reads the request.
//! 2. **Sanitization** (`sanitize`): every client-supplied identity header, URI-override header and
//!    hop-by-hop header (including those named in `Connection`) is removed — on every route,
//!    before routing, so no later step and no error path can see client-made identity.
//! 3. **Normalization and routing** (`path`, `router`): the route is chosen on the normalized path,
//!    and the normalized path is exactly what is forwarded.
//! 4. **Trust pattern** (this module): validate the token where the route says so, check coarse
//!    authorization, then forward the token, or replace it with identity headers built from the
//!    verified claims.
//! 5. **Forwarding headers**: X-Forwarded-* are set by the gateway itself.
//!
//! [`prepare`] does steps 1–5 on the request head only; [`handle`] adds the upstream exchange.
//! `trustgate explain` runs the same [`prepare`] with a trace.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, HOST, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use trustgate_core::{AuthError, Reason, RequestProblem, VerifiedToken, query_has_access_token};

use crate::auth::{TokenSource, authorize, extract_token, remove_cookie};
use crate::config::{Pattern, SanitizeMode};
use crate::error::GatewayError;
use crate::internal;
use crate::metrics::Outcome;
use crate::path;
use crate::router::{host_without_port, request_host};
use crate::runtime::{RouteRuntime, Runtime};
use crate::sanitize;
use crate::upstream::{RequestBody, UpstreamBody};

/// The response body: streamed from the upstream, or a small fixed body made here.
pub(crate) type Body = Either<UpstreamBody, Full<Bytes>>;

/// What the connection layer knows about a request: the downstream peer and scheme, and the
/// verdict of the framing check on the request's raw head bytes (`h1_framing`; `Ok` when there
/// is none, as for HTTP/2). Passed by value rather than in request extensions, whose first insert
/// costs three allocations per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    pub(crate) peer: IpAddr,
    pub(crate) proto: &'static str,
    pub(crate) raw_framing: Result<(), sanitize::FramingError>,
}

/// Step-by-step notes for `trustgate explain`. `None` on the request path.
pub(crate) type Trace<'a> = Option<&'a mut Vec<String>>;

macro_rules! note {
    ($trace:expr, $($arg:tt)*) => {
        if let Some(trace) = $trace.as_mut() {
            trace.push(format!($($arg)*));
        }
    };
}

/// What [`prepare`] decided.
pub(crate) struct Prepared {
    pub(crate) route: Arc<RouteRuntime>,
    pub(crate) token: Option<VerifiedToken>,
    pub(crate) upgrade: Option<HeaderValue>,
}

/// A refusal, with the route if one had been chosen (for per-route metrics).
pub(crate) struct Refusal {
    pub(crate) route: Option<Arc<RouteRuntime>>,
    pub(crate) error: GatewayError,
}

fn refuse(route: Option<&Arc<RouteRuntime>>, error: impl Into<GatewayError>) -> Refusal {
    Refusal {
        route: route.cloned(),
        error: error.into(),
    }
}

/// Headers a client may not remove through `Connection`, because the gateway reads them.
fn protected(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "cookie" | "host" | "content-length" | "content-type"
    )
}

/// Steps 1–5 on the request head. On success `parts` is the request the upstream will receive.
pub(crate) async fn prepare(
    rt: &Runtime,
    parts: &mut Parts,
    conn: ConnInfo,
    mut trace: Trace<'_>,
) -> Result<Prepared, Refusal> {
    // 1. Framing: on the raw head bytes (hyper has already merged or dropped some framing
    // headers from `parts.headers`; see `h1_framing`), then on the parsed headers.
    if let Err(err) = conn
        .raw_framing
        .and_then(|()| sanitize::check_framing(&parts.headers))
    {
        note!(trace, "framing: refused ({err})");
        return Err(refuse(None, GatewayError::Framing("bad_framing")));
    }
    note!(trace, "framing: ok");

    // 2. Sanitization, before routing.
    if rt.config.sanitize.mode == SanitizeMode::Reject
        && rt.identity_headers.contains_any(&parts.headers)
    {
        tracing::warn!(
            target: "trustgate::audit",
            peer = %conn.peer,
            "client sent an identity header; refused (sanitize.mode = reject)"
        );
        note!(
            trace,
            "sanitize: client sent an identity header; refused (reject mode)"
        );
        return Err(refuse(
            None,
            AuthError::InvalidRequest(RequestProblem::ClientIdentityHeader),
        ));
    }
    let stripped = rt.identity_headers.strip(&mut parts.headers);
    let overrides = sanitize::strip_uri_overrides(&mut parts.headers);
    if stripped > 0 {
        tracing::debug!(target: "trustgate::audit", peer = %conn.peer, stripped, "removed client identity headers");
    }
    note!(
        trace,
        "sanitize: removed {stripped} client identity header value(s) and {overrides} URI-override header(s)"
    );
    let hop = sanitize::remove_hop_by_hop(&mut parts.headers, &protected);
    note!(
        trace,
        "hop-by-hop: removed Connection and the headers it names"
    );

    // 3. Normalization and routing.
    // Authority-form (CONNECT) and asterisk-form targets have no path to route on: refuse them
    // rather than defaulting to "/", which would send them to the catch-all route.
    let Some(target) = parts.uri.path_and_query().map(|pq| pq.as_str()) else {
        note!(
            trace,
            "path: no origin-form path (CONNECT or authority-form); refused"
        );
        return Err(refuse(None, GatewayError::BadPath("bad_path")));
    };
    if parts.method == http::Method::CONNECT {
        note!(trace, "method: CONNECT is not proxied");
        return Err(refuse(None, GatewayError::BadPath("connect")));
    }
    let normalized = match path::normalize(target, rt.double_slash) {
        Ok(normalized) => normalized,
        Err(err) => {
            note!(trace, "path: refused ({err})");
            return Err(refuse(None, GatewayError::BadPath("bad_path")));
        }
    };
    note!(
        trace,
        "path: {target:?} normalized to {:?}",
        normalized.path()
    );
    // One host for routing and for forwarding, validated before either.
    let Ok(host_header) = request_host(&parts.uri, &parts.headers) else {
        note!(trace, "host: not a host with an optional port; refused");
        return Err(refuse(None, GatewayError::BadPath("bad_host")));
    };
    let host = || {
        host_header
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(host_without_port)
    };
    // The host is compared only if some route is bound to one.
    let selected = if rt.router.binds_hosts() {
        rt.router.select(host().as_deref(), normalized.path())
    } else {
        rt.router.select(None, normalized.path())
    };
    let Some((prefix, route)) = selected else {
        note!(
            trace,
            "route: none matches host {} and path {:?}",
            host()
                .as_deref()
                .map_or("(none)".to_owned(), |h| format!("{h:?}")),
            normalized.path()
        );
        return Err(refuse(None, GatewayError::NoRoute));
    };
    let route = Arc::clone(route);
    let config = &route.config;
    note!(
        trace,
        "route: {:?} (prefix {prefix:?}, pattern {}, upstream {:?})",
        config.name,
        config.pattern.name(),
        config.upstream
    );

    // 4. Trust pattern.
    let mut token = None;
    let mut internal_authorization = None;
    let mut strip_unchecked_authorization = false;
    if config.pattern.validates() {
        // A token in the URL is never taken and never forwarded (RFC 6750 §2.3 is off).
        if parts.uri.query().is_some_and(query_has_access_token) {
            note!(trace, "token: an access_token query parameter; refused");
            return Err(refuse(
                Some(&route),
                AuthError::InvalidRequest(RequestProblem::TokenInQuery),
            ));
        }
        let found = extract_token(&parts.headers, config.token_cookie.as_deref())
            .map_err(|err| refuse(Some(&route), err))?;
        // On forward-token routes the upstream receives exactly the one token that was checked:
        // an Authorization value that is not it (another scheme, on an anonymous request or next
        // to a cookie token) is not passed on. Removed below, once the token text is released.
        strip_unchecked_authorization = config.pattern == Pattern::ForwardToken
            && !matches!(found, Some((_, TokenSource::Header)));
        match found {
            None if config.allow_anonymous => {
                note!(trace, "token: none; anonymous access allowed on this route");
            }
            None => {
                note!(trace, "token: none; refused");
                return Err(refuse(Some(&route), AuthError::MissingToken));
            }
            Some((text, source)) => {
                note!(trace, "token: found in {source} ({} bytes)", text.len());
                let verified = match rt.validator.validate(text).await {
                    Ok(verified) => verified,
                    Err(err) => {
                        if let AuthError::InvalidToken(reason) = err {
                            rt.metrics.validation_failure(reason.as_str());
                        }
                        note!(trace, "validate: failed ({})", err.label());
                        return Err(refuse(Some(&route), err));
                    }
                };
                note!(
                    trace,
                    "validate: signature ok (issuer {:?}, kid {}, {}); claims ok",
                    verified.issuer(),
                    verified
                        .key_id()
                        .map_or("(none)".to_owned(), |kid| format!("{kid:?}")),
                    verified.algorithm()
                );
                if !config.issuers.iter().any(|iss| iss == verified.issuer()) {
                    rt.metrics
                        .validation_failure(Reason::IssuerNotAccepted.as_str());
                    note!(
                        trace,
                        "issuer: {:?} is not accepted on this route",
                        verified.issuer()
                    );
                    return Err(refuse(
                        Some(&route),
                        AuthError::InvalidToken(Reason::IssuerNotAccepted),
                    ));
                }
                if let Err(err) = authorize(&verified, &config.require) {
                    note!(trace, "authorize: route requirements not met");
                    return Err(refuse(Some(&route), err));
                }
                note!(trace, "authorize: ok");
                if config.pattern == Pattern::InternalToken {
                    // Minted (or reused) while the external token text is still borrowed.
                    let signer = rt
                        .signer
                        .as_deref()
                        .ok_or_else(|| refuse(Some(&route), GatewayError::Internal))?;
                    let value = rt
                        .minted
                        .authorization(signer, text, route.index, config, &verified)
                        .map_err(|err| refuse(Some(&route), err))?;
                    note!(
                        trace,
                        "internal token: for audience {:?}, ttl {:?}",
                        config.service,
                        config.internal_ttl
                    );
                    internal_authorization = Some(value);
                }
                token = Some(verified);
            }
        }
    } else {
        note!(
            trace,
            "token: not checked by the gateway on pattern {}",
            config.pattern.name()
        );
    }
    if strip_unchecked_authorization {
        parts.headers.remove(AUTHORIZATION);
    }
    if config.pattern == Pattern::InternalToken {
        // External identity never crosses into the mesh: the external token is replaced.
        parts.headers.remove(AUTHORIZATION);
        if let Some(cookie) = &config.token_cookie {
            remove_cookie(&mut parts.headers, cookie);
        }
        if let Some(value) = internal_authorization {
            parts.headers.insert(AUTHORIZATION, value);
        }
    }
    if config.pattern == Pattern::IdentityHeaders {
        // The raw token never crosses this boundary: identity travels as headers built from the
        // verified claims only.
        parts.headers.remove(AUTHORIZATION);
        if let Some(cookie) = &config.token_cookie {
            remove_cookie(&mut parts.headers, cookie);
        }
        if let Some(verified) = &token {
            let identity = verified.identity();
            for (name, field) in &config.headers {
                // `insert` replaces: there is exactly one value, ours.
                match identity.header_value(field) {
                    Some(value) => {
                        parts.headers.insert(name.clone(), value);
                    }
                    None => {
                        parts.headers.remove(name);
                    }
                }
            }
        }
        note!(
            trace,
            "identity: removed the token; injected {} identity header(s)",
            config.headers.len()
        );
    }

    // 5. Forwarding headers and the upstream target.
    // The same host the route was chosen on (`request_host`): reading it twice once let
    // `GET http://public.example/x` + `Host: internal.example` be routed as the public host but
    // reach the upstream as the internal one.
    sanitize::set_forwarding_headers(
        &mut parts.headers,
        conn.peer,
        conn.proto,
        host_header.as_ref(),
        &rt.trusted_proxies,
    );
    let upstream = &route.upstream.config;
    let target = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone());
    // Usually the client's target is already in normal form and is forwarded as it came, without
    // rebuilding (or re-validating) its text.
    let unchanged = config.rewrite.is_none()
        && normalized.path() == parts.uri.path()
        && normalized.query() == parts.uri.query();
    let target = match parts.uri.path_and_query() {
        Some(original) if unchanged => target.path_and_query(original.clone()),
        _ => {
            let mut path_and_query = match &config.rewrite {
                Some(replacement) => path::rewrite(normalized.path(), prefix, replacement),
                None => normalized.path().to_owned(),
            };
            if let Some(query) = normalized.query() {
                path_and_query.push('?');
                path_and_query.push_str(query);
            }
            target.path_and_query(path_and_query)
        }
    };
    parts.uri = target
        .build()
        .map_err(|_| refuse(Some(&route), GatewayError::BadPath("bad_path")))?;
    // A request that named no host at all (HTTP/1.0) still reaches the upstream with one.
    let host = match host_header {
        Some(host) if upstream.preserve_host => host,
        _ => upstream.host_header.clone(),
    };
    parts.headers.insert(HOST, host);
    parts.version = Version::HTTP_11;
    if hop.te_trailers {
        // `TE` is hop-by-hop: the client's willingness to accept trailers is restated for the next
        // hop, and `trailers` is the only TE value ever forwarded.
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let upgrade = hop.upgrade;
    if let Some(protocol) = &upgrade {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(UPGRADE, protocol.clone());
    }
    if config.assertion {
        let signer = rt
            .signer
            .as_deref()
            .ok_or_else(|| refuse(Some(&route), GatewayError::Internal))?;
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let value = internal::assertion(
            signer,
            config,
            &parts.method,
            path_and_query,
            &parts.headers,
            token.as_ref(),
        )
        .map_err(|err| refuse(Some(&route), err))?;
        parts.headers.insert(internal::assertion_header(), value);
        note!(
            trace,
            "assertion: signed for audience {:?}, binding method, path and identity headers",
            config.service
        );
    }
    note!(trace, "forward: {} {}", parts.method, parts.uri);
    Ok(Prepared {
        route,
        token,
        upgrade,
    })
}

fn fixed(response: Response<Bytes>) -> Response<Body> {
    response.map(|body| Either::Right(Full::new(body)))
}

/// Serves one request: [`prepare`], then the upstream exchange.
///
/// `tunnel_slot` is the connection's slot under `max_connections`, given with requests that ask
/// for an upgrade: an upgraded tunnel holds it until the tunnel closes.
pub(crate) async fn handle(
    rt: Arc<Runtime>,
    mut req: Request<Incoming>,
    conn: ConnInfo,
    tunnel_slot: Option<Arc<OwnedSemaphorePermit>>,
) -> Response<Body> {
    // Read only for the access log: with it off, a clock read per request is spared.
    let started = rt.config.log.access.then(Instant::now);
    // Not before the raw framing verdict: a refused head is answered by `prepare` (400, close).
    if conn.raw_framing.is_ok()
        && let Some(response) = internal_endpoint_on_edge(&rt, &req)
    {
        return fixed(response);
    }
    let downstream_upgrade = req
        .headers()
        .contains_key(UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let method = req.method().clone();
    let downstream_h1 = req.version() < http::Version::HTTP_2;
    let (mut parts, body) = req.into_parts();
    let prepared = match prepare(&rt, &mut parts, conn, None).await {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let outcome = refusal.error.outcome();
            match &refusal.route {
                Some(route) => route.metrics.record(outcome),
                None => rt.metrics.unrouted(refusal.error.label()),
            }
            let response = refusal.error.to_response();
            access_log(
                &rt,
                refusal.route.as_deref(),
                &method,
                response.status(),
                None,
                refusal.error.label(),
                started,
            );
            return fixed(response);
        }
    };
    let route = prepared.route;
    let upstream = &route.upstream;
    // An HTTP/1 chunked body's first frame is read before any upstream connection is used: a
    // malformed chunk is the client's error (400), not the upstream's (502). HTTP/2 has no chunk
    // syntax to get wrong, and a stream may wait for the response before it sends anything.
    let body = RequestBody::new(body);
    let body = if downstream_h1 {
        body.read_ahead().await
    } else {
        Ok(body)
    };
    let body = match body {
        Ok(body) => body,
        Err(err) => {
            tracing::debug!(route = %route.config.name, error = %err, "request body refused");
            return upstream_error(
                &rt,
                &route,
                &method,
                &prepared.token,
                GatewayError::Framing("bad_body"),
                started,
            );
        }
    };
    let body_failed = body.failure_flag();
    let request = Request::from_parts(parts, body);
    // One clock read serves the latency histogram and the idle list's timeout check.
    let sent = Instant::now();
    let result = tokio::time::timeout(
        upstream.config.response_timeout,
        upstream.send(request, prepared.upgrade.is_some(), sent),
    )
    .await;
    route
        .metrics
        .upstream_seconds
        .observe(sent.elapsed().as_secs_f64());
    let mut response = match result {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            tracing::debug!(route = %route.config.name, error = %err, "upstream request failed");
            // The client's malformed body, not the upstream, ended the exchange.
            let error = if body_failed.is_some_and(|failed| failed.load(Ordering::Relaxed)) {
                GatewayError::Framing("bad_body")
            } else {
                GatewayError::UpstreamUnavailable
            };
            return upstream_error(&rt, &route, &method, &prepared.token, error, started);
        }
        Err(_) => {
            return upstream_error(
                &rt,
                &route,
                &method,
                &prepared.token,
                GatewayError::UpstreamTimeout,
                started,
            );
        }
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let (Some(_), Some(downstream)) = (&prepared.upgrade, downstream_upgrade)
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let _slot = tunnel_slot;
            if let (Ok(down), Ok(up)) = tokio::join!(downstream, upstream_upgrade) {
                let mut down = hyper_util::rt::TokioIo::new(down);
                let mut up = hyper_util::rt::TokioIo::new(up);
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
    } else {
        strip_response_hop_by_hop(response.headers_mut());
    }
    route.metrics.record(Outcome::Allowed);
    access_log(
        &rt,
        Some(&route),
        &method,
        response.status(),
        prepared.token.as_ref(),
        "allowed",
        started,
    );
    response.map(Either::Left)
}

/// The internal issuer's discovery and JWKS, on the public listener only when configured.
fn internal_endpoint_on_edge(rt: &Runtime, req: &Request<Incoming>) -> Option<Response<Bytes>> {
    let internal = rt.config.internal.as_ref()?;
    if !internal.serve_on_edge || req.method() != http::Method::GET {
        return None;
    }
    let signer = rt.signer.as_deref()?;
    crate::admin::internal_issuer_document(signer, req.uri().path())
}

fn upstream_error(
    rt: &Runtime,
    route: &RouteRuntime,
    method: &http::Method,
    token: &Option<VerifiedToken>,
    error: GatewayError,
    started: Option<Instant>,
) -> Response<Body> {
    route.metrics.record(error.outcome());
    let response = error.to_response();
    access_log(
        rt,
        Some(route),
        method,
        response.status(),
        token.as_ref(),
        error.label(),
        started,
    );
    fixed(response)
}

fn strip_response_hop_by_hop(headers: &mut HeaderMap) {
    let _ = sanitize::remove_hop_by_hop(headers, &|_| false);
}

fn access_log(
    rt: &Runtime,
    route: Option<&RouteRuntime>,
    method: &http::Method,
    status: StatusCode,
    token: Option<&VerifiedToken>,
    decision: &str,
    started: Option<Instant>,
) {
    if !rt.config.log.access {
        return;
    }
    tracing::info!(
        target: "trustgate::access",
        route = route.map_or("-", |r| r.config.name.as_str()),
        method = %method,
        status = status.as_u16(),
        subject = token.and_then(|t| t.identity().subject()).unwrap_or("-"),
        issuer = token.map_or("-", |t| t.issuer()),
        decision,
        micros = started.map_or(0, |started| started.elapsed().as_micros() as u64),
    );
}
