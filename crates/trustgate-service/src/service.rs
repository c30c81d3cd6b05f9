//! The service the layer wraps around an inner service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;
use trustgate_core::is_grpc;

use crate::authenticate::Authenticator;
use crate::body::RefusalBody;

/// The service made by [`TrustgateLayer`](crate::TrustgateLayer): authenticates, then calls the
/// inner service with a [`Caller`](crate::Caller) in the request extensions, or answers the
/// rejection itself.
///
/// The refusal has the inner service's response type: its body is built by [`RefusalBody`]. A
/// gRPC call (`content-type: application/grpc…`) is refused the gRPC way, by
/// `AuthError::to_grpc_response` (HTTP 200, `grpc-status` 16, 7, 3 or 14, `WWW-Authenticate`
/// kept); any other request by `AuthError::to_response` (RFC 6750).
#[derive(Debug, Clone)]
pub struct TrustgateService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> TrustgateService<S> {
    pub(crate) fn new(inner: S, auth: Arc<Authenticator>) -> Self {
        Self { inner, auth }
    }
}

/// The response future of [`TrustgateService`].
pub struct ResponseFuture<T, E> {
    inner: Pin<Box<dyn Future<Output = Result<T, E>> + Send>>,
}

impl<T, E> std::fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, B, ResBody> Service<Request<B>> for TrustgateService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: RefusalBody + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request; a fresh clone stays behind.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let auth = Arc::clone(&self.auth);
        // The service side of a trace: which mode decided, and on a refusal why. Reason codes,
        // the issuer and the key id only, never the token or a claim value.
        // `Span::none()` when no subscriber wants it: see `trustgate_core::steps::unless_disabled`.
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            trustgate_core::steps::unless_disabled(tracing::info_span!(
                "trustgate.service",
                otel.kind = "server",
                trustgate.mode = auth.mode().as_str(),
                trustgate.outcome = tracing::field::Empty,
                trustgate.reason = tracing::field::Empty,
                trustgate.issuer = tracing::field::Empty,
                trustgate.kid = tracing::field::Empty,
            ))
        } else {
            tracing::Span::none()
        };
        #[cfg(feature = "opentelemetry")]
        crate::trace::continue_trace(&span, request.headers());
        let recorded = span.clone();
        ResponseFuture {
            inner: Box::pin(tracing::Instrument::instrument(
                async move {
                    let (mut parts, body) = request.into_parts();
                    match auth.authenticate(&parts).await {
                        Ok(caller) => {
                            recorded.record("trustgate.outcome", "allowed");
                            if let Some(token) = caller.token() {
                                recorded.record("trustgate.issuer", token.issuer());
                                if let Some(kid) = token.key_id() {
                                    recorded.record("trustgate.kid", kid);
                                }
                            }
                            parts.extensions.insert(caller);
                            inner.call(Request::from_parts(parts, body)).await
                        }
                        Err(error) => {
                            recorded.record("trustgate.outcome", "refused");
                            recorded.record("trustgate.reason", error.label());
                            // A gRPC client reads `grpc-status`, not the HTTP status.
                            let grpc = is_grpc(&parts.headers);
                            tracing::debug!(
                                mode = auth.mode().as_str(),
                                error = error.label(),
                                status = error.status().as_u16(),
                                grpc,
                                "request refused"
                            );
                            let response = if grpc {
                                error.to_grpc_response()
                            } else {
                                error.to_response()
                            };
                            Ok(response.map(ResBody::from_refusal))
                        }
                    }
                },
                span,
            )),
        }
    }
}

/// Lets a layered generated service be added to a tonic router on its own
/// (`Server::builder().add_service(layer.layer(EchoServer::new(echo)))`), so that only some of a
/// server's services require authentication.
#[cfg(feature = "tonic")]
impl<S: tonic::server::NamedService> tonic::server::NamedService for TrustgateService<S> {
    const NAME: &'static str = S::NAME;
}
