//! The decision endpoint (`[forward_auth]`): trustgate's decisions for the proxy already in front
//! of the services (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`, Envoy's HTTP
//! ext_authz), on a listener of its own.
//!
//! The proxy describes the original request (`trustgate_edge::forward_auth::describe`); the same
//! engine as the reverse proxy's decides; the answer is `200` with the headers the proxy must set
//! and, in `x-envoy-auth-headers-to-remove`, the ones it must remove, or the route's refusal
//! (RFC 6750 `401`/`403` with `WWW-Authenticate`), which the proxies pass to the client.
//!
//! Envoy's gRPC ext_authz (`ext_authz.rs`) is another door to the same [`decide`], with its own
//! way of reading the request and of answering.
//!
//! Authorization and Cookie are always stated when the upstream is to receive them, so a proxy
//! that sets headers only from this answer (nginx) forwards exactly what the reverse proxy would.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use trustgate_core::{AuthError, RequestProblem};
use trustgate_edge::forward_auth::{
    Convention, DescribeError, Described, Edits, HEADERS_TO_REMOVE, describe, joined,
};
use trustgate_edge::headers;
use trustgate_edge::{GatewayError, Outcome, RequestHead, TargetForwarding};

use crate::gateway::Gateway;
use crate::record::{self, Door, Origin};
use crate::runtime::Runtime;
use crate::telemetry::RequestTrace;

/// Serves the decision endpoint until the process ends.
///
/// The listener takes the public listener's limits (`[server]`: `max_connections`,
/// `header_read_timeout`, `idle_timeout`, `max_header_bytes`, `max_headers`), read once at start
/// like the listener itself: any peer can open a connection before its first check is refused,
/// so silence, a slow or endless header block, or idleness must not hold it
/// (`limits::serve_watched`), and connections beyond the limit are closed.
pub(crate) async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let server = gateway.runtime.load().config.server.clone();
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let builder = Arc::new(crate::limits::limited_builder(&server));
    let watch = crate::limits::Watch::of(&server);
    loop {
        let (stream, peer, permit) =
            crate::limits::accept_within(&listener, &limit, "decision endpoint").await;
        let gateway = Arc::clone(&gateway);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let gateway = Arc::clone(&gateway);
                async move { Ok::<_, Infallible>(answer(&gateway, req, peer.ip()).await) }
            });
            crate::limits::serve_watched(stream, watch, service, |io, service| {
                builder.serve_connection(io, service)
            })
            .await;
        });
    }
}

/// One check, in its trace when `[telemetry]` is on.
async fn answer(gateway: &Gateway, req: Request<Incoming>, peer: IpAddr) -> Response<Full<Bytes>> {
    let rt = gateway.runtime.load_full();
    let (parts, _body) = req.into_parts();
    let Some(tracing) = rt.tracing.as_ref() else {
        return check(&rt, &parts, peer, None).await;
    };
    let trace = tracing.begin(
        Door::ForwardAuth,
        &parts.method,
        &parts.headers,
        peer,
        &rt.config.server.trusted_proxies,
    );
    let response = trace.run(check(&rt, &parts, peer, Some(&trace))).await;
    record::status(Some(&trace), response.status());
    response
}

/// One check: describe, decide, answer.
async fn check(
    rt: &Runtime,
    parts: &http::request::Parts,
    peer: IpAddr,
    trace: Option<&RequestTrace>,
) -> Response<Full<Bytes>> {
    let Some(settings) = rt.config.forward_auth.as_ref() else {
        return status_only(StatusCode::NOT_FOUND);
    };
    let origin = Origin {
        door: Door::ForwardAuth,
        peer,
        method: None,
        trace,
    };
    let trusted = settings.trusted_proxies.contains(peer);
    let described = match describe(
        &parts.method,
        &parts.uri,
        &parts.headers,
        trusted,
        settings.convention,
        &settings.envoy_path_prefix,
    ) {
        Ok(described) => described,
        Err(err) => return undescribed(rt, err, &origin).map(Full::new),
    };
    let origin = Origin {
        method: Some(&described.method),
        ..origin
    };
    if let Some(refused) = unremovable_identity_header(rt, &described, &origin) {
        return refused.map(Full::new);
    }
    match decide(rt, &described, &origin).await {
        Verdict::Allowed(mut edits) => {
            state_kept_credentials(&mut edits, &described);
            if described.convention == Convention::Envoy {
                edits.remove_client_forwarding_headers(&described.headers);
            }
            allowed(edits)
        }
        Verdict::Refused(response) => response.map(Full::new),
    }
}

/// What a check comes to, whichever door it came through.
pub(crate) enum Verdict {
    /// Allowed: the edits that make the described request what the reverse proxy would forward.
    Allowed(Edits),
    /// Refused: the route's answer (`GatewayError::to_response`), which the client gets.
    Refused(Response<Bytes>),
}

/// Decides a described request with the engine, and records the outcome as the reverse proxy
/// does (`record`). Every door asks here, so there is one set of rules.
pub(crate) async fn decide(rt: &Runtime, described: &Described, origin: &Origin<'_>) -> Verdict {
    let head = RequestHead {
        method: &described.method,
        uri: &described.uri,
        headers: &described.headers,
        peer: origin.peer,
        // The proxy in front forwards the target as the client wrote it.
        target: TargetForwarding::AsReceived,
    };
    let decided = match rt.engine.decide(head, None).await {
        Ok(decision) => crate::fleet::admit(&rt.limiters, &decision, &mut None)
            .await
            .map(|_| decision),
        Err(refusal) => Err(refusal),
    };
    match decided {
        Ok(decision) => {
            if let Some(route_rt) = rt.route(&decision.route) {
                route_rt.metrics.record(Outcome::Allowed);
            }
            record::allowed(rt, origin, &decision);
            Verdict::Allowed(Edits::of(&rt.engine, &decision, &described.headers))
        }
        Err(refusal) => {
            record::refused(rt, origin, &refusal);
            Verdict::Refused(refusal.error.to_response())
        }
    }
}

/// The answer to a check whose original request cannot be read: `403` to a peer that is not a
/// trusted proxy (its description proves nothing), `400` to an ambiguous or malformed one.
pub(crate) fn undescribed(
    rt: &Runtime,
    err: DescribeError,
    origin: &Origin<'_>,
) -> Response<Bytes> {
    let (label, outcome) = match err {
        DescribeError::UntrustedPeer => ("untrusted_forwarder", Outcome::Forbidden),
        DescribeError::Ambiguous => ("ambiguous_description", Outcome::BadRequest),
        DescribeError::Malformed => ("malformed_description", Outcome::BadRequest),
    };
    tracing::warn!(target: "trustgate::audit", peer = %origin.peer, reason = label, door = origin.door.as_str(), "decision endpoint refused a check");
    rt.metrics.unrouted(label);
    record::refused_unread(rt, origin, label, outcome);
    match err {
        DescribeError::UntrustedPeer => {
            let mut response = Response::new(Bytes::from_static(br#"{"error":"forbidden"}"#));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        DescribeError::Ambiguous | DescribeError::Malformed => {
            GatewayError::BadPath("bad_description").to_response()
        }
    }
}

/// A client identity header the calling proxy's snippet cannot remove is refused rather than
/// forwarded with a header nobody removed. Both proxies remove names as Go's net/http and nginx
/// key them, where `_` is not `-`: Caddy's `request_header -X-User-*` left `X_user_id` in
/// place in a test run, and nginx's `proxy_set_header X-User-Id ""` does not touch `x_user_id`
/// (nginx drops such names by default; `underscores_in_headers on` would pass them). nginx
/// removes only exact names (the snippet lists them), so for it a name matched only by a prefix
/// rule is refused too. The forwarded-headers proxies remove the prefixes: Caddy's snippet
/// lists them, and Traefik is configured with them (docs/forward-auth/traefik.md). Envoy
/// removes whatever it is told. The same holds for the URI-override and forwarding headers the
/// snippets remove by name: their `_` spellings (`X_Original_Url`, `X_Forwarded_For`), which
/// CGI-style upstreams read as the real thing, are refused too.
fn unremovable_identity_header(
    rt: &Runtime,
    described: &Described,
    origin: &Origin<'_>,
) -> Option<Response<Bytes>> {
    let prefixes_removable = match described.convention {
        Convention::Envoy => return None,
        Convention::Nginx => false,
        Convention::ForwardedHeaders => true,
    };
    let policy = &rt.engine.identity_headers;
    let unremovable = described.headers.keys().any(|name| {
        let bytes = name.as_str().as_bytes();
        let underscore = name.as_str().contains('_');
        let identity = policy.is_identity_header(name);
        let gateway_only =
            headers::is_uri_override_name(bytes) || headers::is_forwarding_header_name(bytes);
        (underscore && (identity || gateway_only))
            // nginx's snippet sets the exact names and the assertion header from the answer.
            || (identity
                && !(prefixes_removable
                    || policy.is_exact_identity_header(name)
                    || name.as_str() == trustgate_core::ASSERTION_HEADER))
    });
    if !unremovable {
        return None;
    }
    tracing::warn!(
        target: "trustgate::audit",
        convention = described.convention.as_str(),
        "client sent an identity header the proxy cannot remove by name; refused"
    );
    rt.metrics.unrouted("client_identity_header");
    record::refused_unread(rt, origin, "client_identity_header", Outcome::BadRequest);
    Some(
        GatewayError::Auth(AuthError::InvalidRequest(
            RequestProblem::ClientIdentityHeader,
        ))
        .to_response(),
    )
}

/// States Authorization and Cookie even when the upstream keeps the client's values, so a proxy
/// that sets them only from this answer passes them on unchanged.
fn state_kept_credentials(edits: &mut Edits, described: &Described) {
    for name in [AUTHORIZATION, COOKIE] {
        let decided = edits.remove.contains(&name) || edits.set.iter().any(|(set, _)| *set == name);
        if decided {
            continue;
        }
        // Several Authorization headers never reach here: a validating route refuses them, and
        // on other routes they pass as one folded field.
        if let Some(value) = joined(&described.headers, &name) {
            edits.set.push((name, value));
        }
    }
}

fn allowed(edits: Edits) -> Response<Full<Bytes>> {
    let mut response = status_only(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in edits.set {
        headers.insert(name, value);
    }
    if !edits.remove.is_empty() {
        let list = edits
            .remove
            .iter()
            .map(|name| name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(value) = HeaderValue::from_str(&list) {
            headers.insert(HEADERS_TO_REMOVE, value);
        }
    }
    response
}

fn status_only(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
