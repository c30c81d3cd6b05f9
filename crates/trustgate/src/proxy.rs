//! The reverse proxy: the front door that forwards.
//!
//! 1. **Framing** (`trustgate_edge::framing`): ambiguous Content-Length / Transfer-Encoding is
//!    refused before anything reads the request.
//! 2. **The decision** (`trustgate_edge::Engine::decide`): sanitization, normalization, routing,
//!    the token, validation, authorization and the trust pattern's edits, on the head only.
//! 3. **Applying it, and this hop's own headers**: hop-by-hop headers out (including those named
//!    in `Connection`), the decision's edits (client identity and URI-override headers out, the
//!    credentials as the pattern says, identity in), X-Forwarded-* set by the gateway itself, the
//!    upstream's target and Host.
//!
//! [`prepare`] does steps 1–3 on the request head only; [`handle`] adds the upstream exchange.
//! `trustgate explain` runs the same [`prepare`] with a trace.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use trustgate_core::VerifiedToken;
use trustgate_edge::decision::Trace;
use trustgate_edge::framing::{self, FramingError};
use trustgate_edge::headers::{self, Message};
use trustgate_edge::{
    Decision, GatewayError, Outcome, Refusal, RequestHead, Route, Step, TargetForwarding,
};

use crate::config::UpstreamProtocol;
use crate::connections::ConnectionSlot;
use crate::record::{self, Door, Origin};
use crate::runtime::{RouteRuntime, Runtime};
use crate::telemetry::RequestTrace;
use crate::upstream::{RequestBody, TrailerFilter, UpstreamBody};

/// The response body: streamed from the upstream, or a small fixed body made here.
pub(crate) type Body = Either<UpstreamBody, Full<Bytes>>;

/// What the connection layer knows about a request: the downstream peer and scheme, and the
/// verdict of the framing check on the request's raw head bytes (`framing::h1`; `Ok` when there
/// is none, as for HTTP/2). Passed by value rather than in request extensions, whose first insert
/// costs three allocations per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    pub(crate) peer: IpAddr,
    pub(crate) proto: &'static str,
    pub(crate) raw_framing: Result<(), FramingError>,
}

/// What [`prepare`] decided, and the connection-level part of the request it keeps.
pub(crate) struct Prepared {
    pub(crate) decision: Decision,
    pub(crate) upgrade: Option<HeaderValue>,
    /// The caller's rate limit on a route that has one, stated on the response.
    pub(crate) rate_limit: Option<trustgate_edge::RateLimitState>,
}

/// Whether [`prepare`] runs the route's rate limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RateLimitStep {
    /// Run it: the request is real and spends the caller's budget.
    Admit,
    /// Leave it out, saying so in the trace: the request is `explain`'s synthetic one.
    Skip,
}

/// The request head through the gateway: framing, the decision engine, then the decision and
/// this hop's own headers applied. On success `parts` is the request the upstream will receive.
///
/// `drop_trace_context`: the client's `traceparent` and `tracestate` are not believed
/// ([`RequestTrace::replaces_client_context`]) and go with the identity headers, and so does its
/// `baggage`: services' propagators read it with the trace, and act on or record its entries. So
/// does its context in the other common formats (B3, Jaeger, Datadog, …): a service whose
/// propagator reads one of those first would continue the client's trace, not the gateway's.
///
/// `rate_limit`: whether the route's rate limiter runs. The gateway always runs it; `explain`
/// does not, since running it spends the caller's budget (in Redis, every replica's).
pub(crate) async fn prepare(
    rt: &Runtime,
    parts: &mut Parts,
    conn: ConnInfo,
    drop_trace_context: bool,
    rate_limit: RateLimitStep,
    mut trace: Trace<'_>,
) -> Result<Prepared, Refusal> {
    check_framing(parts, conn, &mut trace)?;
    let head = RequestHead {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        peer: conn.peer,
        // `retarget` forwards the path the engine routed on.
        target: TargetForwarding::Normalized,
    };
    let decision = rt.engine.decide(head, trace.as_deref_mut()).await?;
    let rate_limit = match rate_limit {
        RateLimitStep::Admit => crate::fleet::admit(&rt.limiters, &decision, &mut trace).await?,
        RateLimitStep::Skip => {
            let limited = usize::try_from(decision.route.index)
                .ok()
                .and_then(|i| rt.limiters.get(i))
                .is_some_and(Option::is_some);
            if let (true, Some(trace)) = (limited, trace.as_mut()) {
                trace.push(
                    "rate limit: not evaluated by explain (it would spend the caller's budget)"
                        .to_owned(),
                );
            }
            None
        }
    };
    let hop = headers::remove_hop_by_hop(&mut parts.headers, Message::Request);
    if let Some(trace) = trace.as_mut() {
        trace.push("hop-by-hop: removed Connection and the headers it names".to_owned());
    }
    decision.apply_removing(&rt.engine, &mut parts.headers, |name| {
        drop_trace_context && crate::telemetry::is_client_trace_context(name)
    });
    headers::set_forwarding_headers(
        &mut parts.headers,
        conn.peer,
        conn.proto,
        decision.host.as_ref(),
        &rt.config.server.trusted_proxies,
    );
    let protocol = retarget(rt, parts, &decision)?;
    // `TE` is hop-by-hop: the client's willingness to accept trailers is restated for the next
    // hop, and `trailers` is the only TE value ever forwarded. Its sender also names it in
    // `Connection` (RFC 9110 §10.1.4), which HTTP/2 does not have.
    let te_option = hop.te_trailers && protocol == UpstreamProtocol::Http1;
    if hop.te_trailers {
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    // `Trailer` too: the declared fields that the trailer filter lets through.
    headers::restate_request_trailers(
        &rt.engine.identity_headers,
        &mut parts.headers,
        &hop.trailer_names,
    );
    if let Some(protocol) = &hop.upgrade {
        let options = if te_option { "upgrade, te" } else { "upgrade" };
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static(options));
        parts.headers.insert(UPGRADE, protocol.clone());
    } else if te_option {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("te"));
    }
    if let Some(trace) = trace.as_mut() {
        trace.push(format!("forward: {} {}", parts.method, parts.uri));
    }
    Ok(Prepared {
        decision,
        upgrade: hop.upgrade,
        rate_limit,
    })
}

/// Framing, on the raw head bytes (hyper has already merged or dropped some framing headers from
/// `parts.headers`; see `framing::h1`), then on the parsed headers.
fn check_framing(parts: &Parts, conn: ConnInfo, trace: &mut Trace<'_>) -> Result<(), Refusal> {
    let checked = conn
        .raw_framing
        .and_then(|()| framing::check_framing(&parts.headers));
    if let Some(trace) = trace.as_mut() {
        trace.push(match checked {
            Ok(()) => "framing: ok".to_owned(),
            Err(err) => format!("framing: refused ({err})"),
        });
    }
    checked.map_err(|_| Refusal {
        route: None,
        step: Step::Framing,
        error: GatewayError::Framing("bad_framing"),
    })
}

/// Points the request at the route's upstream: its target (the normalized or rewritten path), its
/// Host and HTTP/1.1. Returns the upstream's protocol.
fn retarget(
    rt: &Runtime,
    parts: &mut Parts,
    decision: &Decision,
) -> Result<UpstreamProtocol, Refusal> {
    let Some(upstream) = rt.route(&decision.route).map(|r| &r.upstream.config) else {
        return Err(internal_refusal(&decision.route));
    };
    let target = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone());
    let target = match (&decision.rewritten_target, parts.uri.path_and_query()) {
        (None, Some(original)) => target.path_and_query(original.clone()),
        (Some(rewritten), _) => target.path_and_query(rewritten.as_str()),
        (None, None) => target.path_and_query("/"),
    };
    parts.uri = target.build().map_err(|_| Refusal {
        route: Some(Arc::clone(&decision.route)),
        step: Step::Path,
        error: GatewayError::BadPath("bad_path"),
    })?;
    // A request that named no host at all (HTTP/1.0) still reaches the upstream with one.
    let host = match &decision.host {
        Some(host) if upstream.preserve_host => host.clone(),
        _ => upstream.host_header.clone(),
    };
    parts.headers.insert(HOST, host);
    // An HTTP/2 request going into an HTTP/1.1 connection has one `Cookie` field (RFC 9113
    // §8.2.3).
    if parts.version == Version::HTTP_2 && upstream.protocol == UpstreamProtocol::Http1 {
        headers::join_cookie_fields(&mut parts.headers);
    }
    parts.version = Version::HTTP_11;
    Ok(upstream.protocol)
}

fn internal_refusal(route: &Arc<Route>) -> Refusal {
    Refusal {
        route: Some(Arc::clone(route)),
        step: Step::Sign,
        error: GatewayError::Internal,
    }
}

fn fixed(response: Response<Bytes>) -> Response<Body> {
    response.map(|body| Either::Right(Full::new(body)))
}

/// Serves one request: [`prepare`], then the upstream exchange.
///
/// `tunnel_slot` is the connection's slot under `max_connections`, given with requests that ask
/// for an upgrade: an upgraded tunnel holds it until the tunnel closes.
///
/// With `[telemetry]`, the request's trace is begun here and kept in this future (its spans
/// boxed); only a sampled request's decision (`prepare`) runs inside its span, and its upstream
/// span is begun and ended around the exchange without wrapping it. One function, not a traced
/// wrapper around an untraced one: hyper moves each request's future, and a nested or boxed copy
/// of it cost thousands of instructions per request (callgrind).
pub(crate) async fn handle(
    rt: Arc<Runtime>,
    mut req: Request<Incoming>,
    conn: ConnInfo,
    tunnel_slot: Option<Arc<ConnectionSlot>>,
) -> Response<Body> {
    // Kept in the request's future (which hyper moves): a few bytes, its spans boxed when sampled.
    let mut trace = rt.tracing.as_ref().map(|tracing| {
        tracing.begin(
            Door::Proxy,
            req.method(),
            req.headers(),
            conn.peer,
            &rt.config.server.trusted_proxies,
        )
    });
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
    let downstream_h1 = req.version() < http::Version::HTTP_2;
    // A gRPC client reads refusals from `grpc-status`; its deadline bounds the wait upstream.
    let exchange = Exchange::new(&req, started);
    let (mut parts, body) = req.into_parts();
    // A sampled request's decision runs in its span, with the steps' spans made, boxed so that
    // the sampled arm does not widen every request's future. The result is matched at once: a
    // named result would be kept in the request's future across the awaits below, as would a
    // local `Origin` (they are made where they are used).
    let drop_trace_context = trace
        .as_ref()
        .is_some_and(RequestTrace::replaces_client_context);
    let prepared = match match trace.as_ref().filter(|trace| trace.sampled()) {
        Some(trace) => {
            let mut decision = Box::pin(prepare(
                &rt,
                &mut parts,
                conn,
                drop_trace_context,
                RateLimitStep::Admit,
                None,
            ));
            trustgate_core::steps::traced(trace.span(), decision.as_mut()).await
        }
        None => {
            prepare(
                &rt,
                &mut parts,
                conn,
                drop_trace_context,
                RateLimitStep::Admit,
                None,
            )
            .await
        }
    } {
        Ok(prepared) => prepared,
        Err(refusal) => {
            let origin = proxy_origin(conn.peer, &exchange, trace.as_ref());
            return refused(&rt, &refusal, &exchange, &origin);
        }
    };
    record::allowed(
        &rt,
        &proxy_origin(conn.peer, &exchange, trace.as_ref()),
        &prepared.decision,
    );
    let Some(route_rt) = rt.route(&prepared.decision.route) else {
        let refusal = internal_refusal(&prepared.decision.route);
        let origin = proxy_origin(conn.peer, &exchange, trace.as_ref());
        return refused(&rt, &refusal, &exchange, &origin);
    };
    let route = &prepared.decision.route;
    let token = &prepared.decision.token;
    let upstream = &route_rt.upstream;
    // An HTTP/2 request whose stream ended with its head has no body, and hyper would send it to
    // an HTTP/1.1 upstream with neither `Content-Length` nor `Transfer-Encoding`. A method that
    // defines content gets `Content-Length: 0`, as RFC 9110 §8.6 asks of a sender (servers that
    // insist on a length answer 411 without it).
    if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
        && !downstream_h1
        && upstream.config.protocol == UpstreamProtocol::Http1
        && http_body::Body::is_end_stream(&body)
        && !parts.headers.contains_key(CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    // An HTTP/1 chunked body's first frame is read before any upstream connection is used: a
    // malformed chunk is the client's error (400), not the upstream's (502). HTTP/2 has no chunk
    // syntax to get wrong, and a stream may wait for the response before it sends anything.
    // The wait for that first frame is bounded like the head's (`header_read_timeout`).
    let body = RequestBody::new(body, || Arc::clone(&rt) as Arc<dyn TrailerFilter>);
    let body = if downstream_h1 {
        body.read_ahead(rt.config.server.header_read_timeout).await
    } else {
        Ok(body)
    };
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            return upstream_error(
                &rt,
                route,
                route_rt,
                token,
                error,
                &exchange,
                trace.as_ref(),
            );
        }
    };
    let body_failed = body.failure_flag();
    // The upstream exchange's span (sampled requests only), kept in the trace, and the trace
    // handed on in `traceparent`.
    if let Some(trace) = trace.as_mut() {
        trace.begin_upstream(&upstream.config.id, &mut parts.headers);
    }
    let request = Request::from_parts(parts, body);
    // One clock read serves the latency histogram and the idle list's timeout check.
    let sent = Instant::now();
    let wait = match exchange.deadline {
        Some(deadline) => deadline.min(upstream.config.response_timeout),
        None => upstream.config.response_timeout,
    };
    let send = tokio::time::timeout(
        wait,
        upstream.send(request, prepared.upgrade.is_some(), sent),
    );
    // Not entered while it runs: the upstream span's start and end are its duration, and
    // nothing below makes spans of ours (a wrapper would also grow every request's future).
    let result = send.await;
    let trace = trace.as_ref();
    route_rt
        .metrics
        .upstream_seconds
        .observe(sent.elapsed().as_secs_f64());
    let mut response = match result {
        Ok(Ok(response)) => {
            record::upstream(trace, Ok(response.status()));
            response
        }
        Ok(Err(err)) => {
            tracing::debug!(route = %route.name, error = %err, "upstream request failed");
            // The client's malformed body, not the upstream, ended the exchange.
            let error = if body_failed.is_some_and(|failed| failed.load(Ordering::Relaxed)) {
                GatewayError::Framing("bad_body")
            } else {
                GatewayError::UpstreamUnavailable
            };
            record::upstream(trace, Err(error.label()));
            return upstream_error(&rt, route, route_rt, token, error, &exchange, trace);
        }
        Err(_) => {
            let error = GatewayError::UpstreamTimeout;
            record::upstream(trace, Err(error.label()));
            return upstream_error(&rt, route, route_rt, token, error, &exchange, trace);
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
    } else if let Err(err) = forwardable_response_head(response.headers_mut()) {
        // The upstream's response cannot be framed for the client; its connection goes with the
        // dropped body.
        tracing::debug!(route = %route.name, error = %err, "upstream response refused");
        let error = GatewayError::UpstreamUnavailable;
        record::upstream(trace, Err(error.label()));
        return upstream_error(&rt, route, route_rt, token, error, &exchange, trace);
    }
    if let Some(state) = &prepared.rate_limit {
        state.write_headers(response.headers_mut(), false);
    }
    route_rt.metrics.record(Outcome::Allowed);
    access_log(
        &rt,
        Some(route),
        &exchange,
        response.status(),
        token.as_ref(),
        "allowed",
    );
    record::status(trace, response.status());
    response.map(Either::Left)
}

/// Who asked, for the decision's record.
fn proxy_origin<'a>(
    peer: std::net::IpAddr,
    exchange: &'a Exchange,
    trace: Option<&'a RequestTrace>,
) -> Origin<'a> {
    Origin {
        door: Door::Proxy,
        peer,
        method: Some(&exchange.method),
        trace,
    }
}

/// The internal issuer's discovery and JWKS, on the public listener only when configured.
/// Answered before anything else the proxy does (`trustgate explain` asks it too).
pub(crate) fn internal_endpoint_on_edge<B>(
    rt: &Runtime,
    req: &Request<B>,
) -> Option<Response<Bytes>> {
    let internal = rt.config.internal.as_ref()?;
    if !internal.serve_on_edge || req.method() != http::Method::GET {
        return None;
    }
    let signer = rt.engine.signer.as_deref()?;
    crate::internal_issuer::internal_issuer_document(signer, req.uri().path())
}

/// What the gateway needs to answer a request itself and log it: the method, whether it is a
/// gRPC call (refusals are then HTTP 200 with `grpc-status`) and its deadline, and when it
/// started (for the access log). `trustgate explain` makes one too, so that it shows the answer
/// the gateway would give ([`Exchange::response`]).
#[derive(Debug)]
pub(crate) struct Exchange {
    method: http::Method,
    grpc: bool,
    /// A gRPC call's `grpc-timeout`.
    deadline: Option<std::time::Duration>,
    started: Option<Instant>,
}

impl Exchange {
    pub(crate) fn new<B>(req: &Request<B>, started: Option<Instant>) -> Self {
        let grpc = trustgate_core::is_grpc(req.headers());
        Self {
            method: req.method().clone(),
            grpc,
            deadline: grpc
                .then(|| trustgate_core::grpc_timeout(req.headers()))
                .flatten(),
            started,
        }
    }

    /// The gateway's own answer for `error`: as gRPC status for a gRPC call.
    pub(crate) fn response(&self, error: GatewayError) -> Response<Bytes> {
        if self.grpc {
            error.to_grpc_response()
        } else {
            error.to_response()
        }
    }
}

/// The proxy's one trailer policy: request trailers lose what the head would (see
/// `trustgate_edge::headers::sanitize_request_trailers`).
impl TrailerFilter for Runtime {
    fn sanitize(&self, trailers: &mut HeaderMap) {
        let removed = headers::sanitize_request_trailers(&self.engine.identity_headers, trailers);
        if removed > 0 {
            tracing::debug!(target: "trustgate::audit", removed, "removed request trailers a client may not send upstream");
        }
    }
}

/// The answer to a refused request, counted, audited and logged.
fn refused(
    rt: &Runtime,
    refusal: &Refusal,
    exchange: &Exchange,
    origin: &Origin<'_>,
) -> Response<Body> {
    record::refused(rt, origin, refusal);
    let response = exchange.response(refusal.error);
    record::status(origin.trace, response.status());
    access_log(
        rt,
        refusal.route.as_deref(),
        exchange,
        response.status(),
        None,
        refusal.error.label(),
    );
    fixed(response)
}

fn upstream_error(
    rt: &Runtime,
    route: &Route,
    route_rt: &RouteRuntime,
    token: &Option<VerifiedToken>,
    error: GatewayError,
    exchange: &Exchange,
    trace: Option<&RequestTrace>,
) -> Response<Body> {
    route_rt.metrics.record(error.outcome());
    let response = exchange.response(error);
    record::status(trace, response.status());
    access_log(
        rt,
        Some(route),
        exchange,
        response.status(),
        token.as_ref(),
        error.label(),
    );
    fixed(response)
}

/// An upstream response's head as the client gets it: hop-by-hop headers out (and the
/// `Content-Length` of a response framed by `Transfer-Encoding`), the trailer declaration
/// restated, and one `Content-Length` value.
fn forwardable_response_head(headers: &mut HeaderMap) -> Result<(), FramingError> {
    let hop = headers::remove_hop_by_hop(headers, Message::Response);
    headers::restate_response_trailers(headers, &hop.trailer_names);
    if hop.content_length_repeated {
        framing::single_content_length(headers)?;
    }
    Ok(())
}

fn access_log(
    rt: &Runtime,
    route: Option<&Route>,
    exchange: &Exchange,
    status: StatusCode,
    token: Option<&VerifiedToken>,
    decision: &str,
) {
    if !rt.config.log.access {
        return;
    }
    tracing::info!(
        target: "trustgate::access",
        route = route.map_or("-", |r| r.name.as_str()),
        method = %exchange.method,
        status = status.as_u16(),
        subject = token.and_then(|t| t.identity().subject()).unwrap_or("-"),
        issuer = token.map_or("-", |t| t.issuer()),
        decision,
        micros = exchange.started.map_or(0, |started| started.elapsed().as_micros() as u64),
    );
}
