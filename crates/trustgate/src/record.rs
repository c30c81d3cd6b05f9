//! Where every front door records a decision, the same way: the metrics, the audit event
//! (`[audit]`) and the request span's attributes (`[telemetry]`). The reverse proxy, the HTTP
//! decision endpoint and Envoy's gRPC ext_authz all call these, so an allowed or refused request
//! looks the same in each, whichever door it came through.

use std::net::IpAddr;
use std::time::SystemTime;

use http::Method;
use trustgate_core::{AuthError, VerifiedToken};
use trustgate_edge::{Decision, GatewayError, Outcome, Refusal, Route, Step};

use crate::audit::Event;
use crate::runtime::Runtime;
use crate::telemetry::RequestTrace;

/// Which front door decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    /// The reverse proxy.
    Proxy,
    /// The HTTP decision endpoint (`forward_auth.listen`).
    ForwardAuth,
    /// Envoy's gRPC ext_authz (`forward_auth.grpc_listen`).
    ExtAuthz,
}

impl Door {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Door::Proxy => "proxy",
            Door::ForwardAuth => "forward_auth",
            Door::ExtAuthz => "ext_authz",
        }
    }
}

/// What a front door knows about a request besides the decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub(crate) door: Door,
    /// The connected peer (for the decision doors, the proxy that asks).
    pub(crate) peer: IpAddr,
    pub(crate) method: Option<&'a Method>,
    pub(crate) trace: Option<&'a RequestTrace>,
}

/// An allowed decision: its audit event and span attributes. (The proxy counts it as allowed
/// only once the upstream has answered; the decision doors count it at once.)
#[inline]
pub(crate) fn allowed(rt: &Runtime, origin: &Origin<'_>, decision: &Decision) {
    // Every allowed request passes here: with neither a sampled trace nor an audit log, nothing
    // more to do.
    let sampled = origin.trace.filter(|trace| trace.sampled());
    if sampled.is_none() && rt.audit.is_none() {
        return;
    }
    let token = decision.token.as_ref();
    if let Some(trace) = sampled {
        let span = trace.span();
        span.record("trustgate.outcome", Outcome::Allowed.as_str());
        record_route(trace, Some(&decision.route));
        if let Some(token) = token {
            span.record("trustgate.issuer", token.issuer());
            if let Some(kid) = token.key_id() {
                span.record("trustgate.kid", kid);
            }
            if let Some(tracing) = &rt.tracing {
                tracing.record_claims(trace, token);
            }
        }
    }
    audit(
        rt,
        origin,
        Some(&decision.route),
        Outcome::Allowed,
        None,
        token,
    );
}

/// A refusal by the engine (or the proxy's framing check): counted per route (or unrouted) and,
/// for a failed validation, by its reason; then its audit event and span attributes.
pub(crate) fn refused(rt: &Runtime, origin: &Origin<'_>, refusal: &Refusal) {
    let outcome = refusal.error.outcome();
    match refusal.route.as_deref().and_then(|route| rt.route(route)) {
        Some(route_rt) => route_rt.metrics.record(outcome),
        None => rt.metrics.unrouted(refusal.error.label()),
    }
    if matches!(refusal.step, Step::Validate | Step::Issuer)
        && let GatewayError::Auth(AuthError::InvalidToken(reason)) = refusal.error
    {
        rt.metrics.validation_failure(reason.as_str());
    }
    if let Some(trace) = origin.trace {
        record_route(trace, refusal.route.as_ref());
        trace.span().record("trustgate.step", refusal.step.as_str());
    }
    audit(
        rt,
        origin,
        refusal.route.as_ref(),
        outcome,
        Some((refusal.error.label(), Some(refusal.step))),
        None,
    );
}

/// A refusal before the engine could decide (a decision door that cannot read the request it is
/// asked about): the caller counts it; this records its audit event and span attributes.
pub(crate) fn refused_unread(
    rt: &Runtime,
    origin: &Origin<'_>,
    reason: &'static str,
    outcome: Outcome,
) {
    audit(rt, origin, None, outcome, Some((reason, None)), None);
}

/// How the upstream exchange ended, on its span: the response's status, or why there is none.
pub(crate) fn upstream(
    trace: Option<&RequestTrace>,
    ended: Result<http::StatusCode, &'static str>,
) {
    if let Some(span) = trace.and_then(RequestTrace::upstream_span) {
        match ended {
            Ok(status) => span.record("http.response.status_code", status.as_u16()),
            Err(reason) => span.record("trustgate.reason", reason),
        };
    }
}

/// The response status, on the request's span (an error status for a 5xx).
pub(crate) fn status(trace: Option<&RequestTrace>, status: http::StatusCode) {
    if let Some(trace) = trace {
        trace
            .span()
            .record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            trace.span().record("otel.status_code", "ERROR");
        }
    }
}

fn record_route(trace: &RequestTrace, route: Option<&std::sync::Arc<Route>>) {
    if let Some(route) = route {
        trace.span().record("trustgate.route", route.name.as_str());
        trace.span().record("trustgate.pattern", route.trust.name());
    }
}

fn audit(
    rt: &Runtime,
    origin: &Origin<'_>,
    route: Option<&std::sync::Arc<Route>>,
    outcome: Outcome,
    refusal: Option<(&'static str, Option<Step>)>,
    token: Option<&VerifiedToken>,
) {
    if let (Some(trace), Some((reason, _))) = (origin.trace, refusal) {
        trace.span().record("trustgate.outcome", outcome.as_str());
        trace.span().record("trustgate.reason", reason);
    }
    let Some(sink) = &rt.audit else {
        return;
    };
    sink.record(Event {
        time: SystemTime::now(),
        door: origin.door,
        route: route.cloned(),
        method: origin.method.cloned(),
        outcome,
        reason: refusal.map(|(reason, _)| reason),
        step: refusal.and_then(|(_, step)| step),
        token: token.cloned(),
        client: origin.peer,
        trace_id: origin.trace.map(RequestTrace::trace_id),
    });
}
