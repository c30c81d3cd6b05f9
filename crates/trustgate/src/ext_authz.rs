//! Envoy's gRPC ext_authz (`forward_auth.grpc_listen`): `envoy.service.auth.v3.Authorization/
//! Check`, served with tonic over the official Envoy protos (`envoy-types`).
//!
//! The check's `attributes.request.http` is the original request
//! (`trustgate_edge::forward_auth::describe_attributes`); the same function as the HTTP decision
//! endpoint decides it (`forward_auth::decide`); the answer is a `CheckResponse`: `OK` with the
//! headers Envoy sets and removes, or the route's refusal as a `DeniedHttpResponse`.
//!
//! Every answer is a `CheckResponse`, never a gRPC error status: Envoy treats a failed call as
//! the authorization service being down, and with `failure_mode_allow: true` lets the request
//! through. A refusal carried in the response is enforced whatever that setting says, so it
//! fails closed. That holds for calls tonic refuses before the handler runs, too (a
//! `CheckRequest` over [`MAX_CHECK_BYTES`], one that does not decode): [`FailClosed`] answers
//! them with a denial.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc;
use http::{Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::Code;
use trustgate_edge::forward_auth::{DescribeError, Described, Edits, describe_attributes};
use trustgate_edge::{GatewayError, Outcome};

use crate::forward_auth::{Verdict, decide, undescribed};
use crate::gateway::Gateway;
use crate::record::{self, Door, Origin};
use crate::runtime::Runtime;
use crate::telemetry::RequestTrace;

/// The largest `CheckRequest` read. Envoy sends the request head (its own limit is 60 KiB by
/// default, `max_request_headers_kb`) and a body only with `with_request_body`, which trustgate
/// does not read; 1 MiB covers a head at Envoy's largest setting with room to spare, and bounds
/// what one call can make the gateway buffer.
const MAX_CHECK_BYTES: usize = 1024 * 1024;

/// The bytes of `CheckRequest` messages the door reads and holds at once, every connection's
/// together. tonic holds a message until it is whole, so without a bound one client that starts
/// 200 messages of just under [`MAX_CHECK_BYTES`] on a connection and never finishes them made
/// the gateway hold 194 MiB, and `max_connections` such clients far more than any host has. 32
/// messages of the largest size, or thousands of usual ones (a few KiB: Envoy sends the
/// request's head). A check whose bytes would take the door past it is refused at once with a
/// denial, never an error status ([`FailClosed`]): 503 `temporarily_unavailable`, since the
/// request it describes is not at fault, counted as `overloaded`.
const HELD_CHECK_BYTES: usize = 32 * MAX_CHECK_BYTES;

/// Serves the gRPC ext_authz service until the process ends. One HTTP/2 connection per client,
/// with the client's address known to every check on it.
///
/// Like the HTTP door it takes the public listener's `max_connections`, `max_header_bytes`,
/// `header_read_timeout` and `idle_timeout`, so connections that never send a check cannot pile
/// up: any peer can connect before its first check is refused. A connection whose first check
/// has not come within `header_read_timeout`, or with no check in flight for `idle_timeout`, is
/// closed (`limits::serve_watched`), whether or not it answers pings.
pub(crate) async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let server = gateway.runtime.load().config.server.clone();
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // No keep-alive pings: the idle watch finds a dead peer, and an acknowledged ping every
    // half timeout would move bytes for a check whose body never comes, which the watch counts
    // as progress.
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    let http2 = Arc::new(http2);
    let watch = crate::limits::Watch::of(&server);
    let held = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer, permit) =
            crate::limits::accept_within(&listener, &limit, "ext_authz").await;
        let check = Check {
            gateway: Arc::clone(&gateway),
            peer: peer.ip(),
        };
        let service = FailClosed {
            inner: AuthorizationServer::new(check).max_decoding_message_size(MAX_CHECK_BYTES),
            gateway: Arc::clone(&gateway),
            peer: peer.ip(),
            held: Arc::clone(&held),
        };
        let http2 = Arc::clone(&http2);
        tokio::spawn(async move {
            let _permit = permit;
            crate::limits::serve_watched(
                stream,
                watch,
                TowerToHyperService::new(service),
                |io, service| http2.serve_connection(io, service),
            )
            .await;
        });
    }
}

/// The path of the one method Envoy calls.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The ext_authz service, with any gRPC error status tonic answers a `Check` call with before
/// the handler runs (the handler itself never returns one) turned into a `CheckResponse` that
/// denies: 400 `bad_request`, as for a check that does not describe a request, or 503
/// `temporarily_unavailable` when the call's body was ended because the door was full.
///
/// It also counts every call's body against the door's [`HELD_CHECK_BYTES`] ([`Held`]).
#[derive(Clone)]
struct FailClosed<S> {
    inner: S,
    gateway: Arc<Gateway>,
    peer: IpAddr,
    /// The bytes the door's calls hold (see [`Held`]), shared by every connection.
    held: Arc<AtomicUsize>,
}

impl<S, B> tower_service::Service<http::Request<B>> for FailClosed<S>
where
    S: tower_service::Service<
            http::Request<Held<B>>,
            Response = Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let check = request.uri().path() == CHECK_PATH;
        let held = Arc::clone(&self.held);
        // Set by the body when the door is full, so that the denial says why.
        let full = Arc::new(AtomicBool::new(false));
        let answered = self.inner.call(request.map(|body| Held {
            inner: body,
            door: held,
            mine: 0,
            full: Arc::clone(&full),
        }));
        let gateway = Arc::clone(&self.gateway);
        let peer = self.peer;
        Box::pin(async move {
            let response = answered.await?;
            // A handler's answer carries its status in the trailers; one in the head is tonic's
            // trailers-only error.
            let error_status = response
                .headers()
                .get("grpc-status")
                .is_some_and(|status| status != "0");
            if !(check && error_status) {
                return Ok(response);
            }
            let rt = gateway.runtime.load_full();
            let origin = Origin {
                door: Door::ExtAuthz,
                peer,
                method: None,
                trace: None,
            };
            let refusal = if full.load(Ordering::Relaxed) {
                door_full(&rt, &origin)
            } else {
                undescribed(&rt, DescribeError::Malformed, &origin)
            };
            Ok(grpc_ok(&denied(&refusal)))
        })
    }
}

/// A call's body, each byte it yields counted in the door's total until the body is dropped
/// (tonic drops it once it has the message, or has refused it). A byte that would take the total
/// past [`HELD_CHECK_BYTES`] ends the body with an error instead, which tonic answers with an
/// error status and [`FailClosed`] turns into a denial.
struct Held<B> {
    inner: B,
    door: Arc<AtomicUsize>,
    /// This body's share of `door`.
    mine: usize,
    /// Set when this body was ended because the door was full.
    full: Arc<AtomicBool>,
}

/// What [`Held`] ends a body with once the door holds [`HELD_CHECK_BYTES`].
#[derive(Debug)]
struct DoorFull;

impl std::fmt::Display for DoorFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the ext_authz door holds as many check bytes as it may")
    }
}

impl std::error::Error for DoorFull {}

impl<B> http_body::Body for Held<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len();
            // Counted before it is judged, so that concurrent bodies cannot all pass on one
            // reading of the total; `Drop` gives it back either way.
            let before = this.door.fetch_add(len, Ordering::Relaxed);
            this.mine += len;
            if before.saturating_add(len) > HELD_CHECK_BYTES {
                this.full.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(Box::new(DoorFull))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Held<B> {
    fn drop(&mut self) {
        self.door.fetch_sub(self.mine, Ordering::Relaxed);
    }
}

/// A check refused because the door holds [`HELD_CHECK_BYTES`]: logged, counted
/// (`trustgate_rejected_before_routing_total{reason="overloaded"}`) and audited as its own
/// reason, answered 503 so that the client may try again.
fn door_full(rt: &Runtime, origin: &Origin<'_>) -> Response<Bytes> {
    let error = GatewayError::Overloaded;
    tracing::warn!(
        target: "trustgate::audit",
        peer = %origin.peer,
        reason = error.label(),
        door = origin.door.as_str(),
        "decision endpoint refused a check: the door holds as many unfinished check bytes as it may"
    );
    rt.metrics.unrouted(error.label());
    record::refused_unread(rt, origin, error.label(), error.outcome());
    error.to_response()
}

/// `message` as a whole gRPC response: its one length-prefixed message, then `grpc-status: 0`.
fn grpc_ok(message: &CheckResponse) -> Response<tonic::body::Body> {
    use prost::Message as _;
    let encoded = message.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + encoded.len());
    framed.push(0); // not compressed
    framed.extend_from_slice(
        &u32::try_from(encoded.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(&encoded);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(framed))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut response = Response::new(tonic::body::Body::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The service on one connection: the peer is the Envoy that asks.
struct Check {
    gateway: Arc<Gateway>,
    peer: IpAddr,
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let rt = self.gateway.runtime.load_full();
        let (metadata, _, request) = request.into_parts();
        let Some(tracing) = rt.tracing.as_ref() else {
            let response = answer(&rt, &request, self.peer, None).await;
            return Ok(tonic::Response::new(response));
        };
        // The trace Envoy propagates on the check call itself, not the one its client sent.
        let trace = tracing.begin(
            Door::ExtAuthz,
            &http::Method::POST,
            &metadata.into_headers(),
            self.peer,
            &rt.config.server.trusted_proxies,
        );
        let response = trace
            .run(answer(&rt, &request, self.peer, Some(&trace)))
            .await;
        Ok(tonic::Response::new(response))
    }
}

/// One check: describe, decide, answer.
async fn answer(
    rt: &Runtime,
    request: &CheckRequest,
    peer: IpAddr,
    trace: Option<&RequestTrace>,
) -> CheckResponse {
    let origin = Origin {
        door: Door::ExtAuthz,
        peer,
        method: None,
        trace,
    };
    let Some(settings) = rt.config.forward_auth.as_ref() else {
        // A reload removed `[forward_auth]`; the listener stays bound until restart.
        return denied(&GatewayError::NoRoute.to_response());
    };
    let trusted = settings.trusted_proxies.contains(peer);
    let described = match describe(request, trusted) {
        Ok(described) => described,
        // An untrusted peer gets a 403 `DeniedHttpResponse` like any refusal, not a gRPC error
        // status: an Envoy that is not ours may still run with `failure_mode_allow`, and this
        // way it refuses the request it asked about instead of letting it through.
        Err(err) => return denied(&undescribed(rt, err, &origin)),
    };
    let origin = Origin {
        method: Some(&described.method),
        ..origin
    };
    match decide(rt, &described, &origin).await {
        Verdict::Allowed(mut edits) => match ok({
            edits.remove_client_forwarding_headers(&described.headers);
            edits
        }) {
            Some(response) => response,
            None => {
                tracing::warn!(
                    "an identity header value is not UTF-8 and cannot be sent to Envoy; refused"
                );
                rt.metrics.unrouted("unencodable_edit");
                record::refused_unread(rt, &origin, "unencodable_edit", Outcome::Unavailable);
                denied(&GatewayError::Internal.to_response())
            }
        },
        Verdict::Refused(response) => denied(&response),
    }
}

/// The original request from the check's HTTP attributes. Its headers come from `header_map`
/// (Envoy's `encode_raw_headers`: raw bytes, repeated names kept apart) or from `headers` (names
/// lower-cased, repeated names joined with `,`); Envoy fills one, so both filled is ambiguous.
fn describe(request: &CheckRequest, trusted: bool) -> Result<Described, DescribeError> {
    if !trusted {
        return Err(DescribeError::UntrustedPeer);
    }
    let Some(http) = request
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.request.as_ref())
        .and_then(|request| request.http.as_ref())
    else {
        return Err(DescribeError::Malformed);
    };
    let HttpRequest {
        method,
        path,
        host,
        headers,
        header_map,
        ..
    } = http;
    let raw = header_map
        .as_ref()
        .map(|map| &map.headers[..])
        .unwrap_or_default();
    if !raw.is_empty() && !headers.is_empty() {
        return Err(DescribeError::Ambiguous);
    }
    if raw.is_empty() {
        let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        describe_attributes(method, path, host, pairs, trusted)
    } else {
        let pairs = raw.iter().map(|h| {
            // Envoy fills `raw_value` with `encode_raw_headers`; `value` otherwise.
            let value = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value[..]
            };
            (h.key.as_str(), value)
        });
        describe_attributes(method, path, host, pairs, trusted)
    }
}

/// `OK` with the edits, or `None` when a value to set is not UTF-8 (the protos' header values
/// are strings). Dropping such an edit would leave the client's own value of that header in
/// place, so the caller refuses instead.
fn ok(edits: Edits) -> Option<CheckResponse> {
    let headers = edits
        .set
        .iter()
        .map(|(name, value)| {
            Some(set(
                name.as_str(),
                std::str::from_utf8(value.as_bytes()).ok()?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    let headers_to_remove = edits
        .remove
        .iter()
        .map(|name| name.as_str().to_owned())
        .collect();
    Some(CheckResponse {
        status: Some(rpc::Status {
            code: Code::Ok as i32,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..Default::default()
        })),
        ..Default::default()
    })
}

/// A header Envoy sets, replacing any value the request has. Only `append_action` is stated:
/// Envoy refuses an option with both it and the deprecated `append`, and versions that predate
/// `append_action` read an unset `append` in an `OkHttpResponse` as "replace", too.
/// `keep_empty_value`: an empty value is set as it is, as the reverse proxy would forward it,
/// rather than taken as "remove".
fn set(name: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value: value.to_owned(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: true,
        ..Default::default()
    }
}

/// The refusal `response` as Envoy sends it to the client: its status, headers and body. The
/// gRPC code says the same for Envoy's logs and stats; any code but `OK` denies.
fn denied(response: &Response<Bytes>) -> CheckResponse {
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        // Envoy frames the response itself.
        .filter(|(name, _)| {
            ![
                header::CONNECTION,
                header::CONTENT_LENGTH,
                header::TRANSFER_ENCODING,
            ]
            .contains(name)
        })
        // The one error mapping writes ASCII values only; a value that is not text is left out
        // rather than sent altered.
        .filter_map(|(name, value)| Some(set(name.as_str(), value.to_str().ok()?)))
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc_code(status) as i32,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(status.as_u16()),
            }),
            headers,
            body: String::from_utf8_lossy(response.body()).into_owned(),
        })),
        ..Default::default()
    }
}

/// The gRPC code that names an HTTP refusal.
fn grpc_code(status: StatusCode) -> Code {
    match status {
        StatusCode::BAD_REQUEST => Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::INTERNAL_SERVER_ERROR => Code::Internal,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            Code::Unavailable
        }
        // 403, and any other refusal: still a denial.
        _ => Code::PermissionDenied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_grpc_code_and_keep_the_http_answer() {
        let response = GatewayError::Auth(trustgate_core::AuthError::MissingToken).to_response();
        let check = denied(&response);
        assert_eq!(
            check.status.as_ref().unwrap().code,
            Code::Unauthenticated as i32
        );
        let Some(HttpResponse::DeniedResponse(d)) = check.http_response else {
            panic!("not denied: {check:?}");
        };
        assert_eq!(d.status.unwrap().code, 401);
        let names: Vec<&str> = d
            .headers
            .iter()
            .map(|h| h.header.as_ref().unwrap().key.as_str())
            .collect();
        assert!(names.contains(&"www-authenticate"), "{names:?}");
        assert_eq!(grpc_code(StatusCode::FORBIDDEN), Code::PermissionDenied);
        assert_eq!(grpc_code(StatusCode::BAD_REQUEST), Code::InvalidArgument);
    }

    #[test]
    fn an_edit_that_is_not_utf8_is_not_dropped_but_refused() {
        let edits = Edits {
            remove: vec![],
            set: vec![(
                http::HeaderName::from_static("x-user-id"),
                http::HeaderValue::from_bytes(b"\xff").unwrap(),
            )],
        };
        assert!(ok(edits).is_none());
    }
}
