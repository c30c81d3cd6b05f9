//! # trustgate-service
//!
//! Authentication for services behind (or without) the trustgate gateway: a tower [`Layer`](tower_layer::Layer)
//! ([`TrustgateLayer`]) that runs the trustgate-core engine, and an axum extractor ([`Caller`])
//! that hands the verified caller to handlers.
//!
//! ## Modes (the four trust patterns)
//! | constructor | accepts | checked against |
//! |---|---|---|
//! | [`TrustgateLayer::jwt`] | `Authorization: Bearer` JWT from an external issuer (patterns 1 and 2) | the issuer's keys by OIDC discovery, `aud` = this service |
//! | [`TrustgateLayer::gateway_assertion`] | `X-Trustgate-Assertion` (pattern 2, trusting the gateway) | the gateway's internal issuer, `typ: trustgate-assertion+jwt`, `htm`/`htu` = this request, lifetime ≤ 60 s, each `jti` accepted once |
//! | [`TrustgateLayer::identity_headers`] | identity headers plus `X-Trustgate-Assertion` (pattern 3) | as above, and every header listed in `hdr` present once with exactly that value (headers it does not list reach the handler as they came: read identity from [`Caller`]) |
//! | [`TrustgateLayer::internal_tokens`] | `Authorization: Bearer` internal token (pattern 4) | the gateway's internal issuer, `typ: internal+jwt`, `aud` = this service |
//! | [`TrustgateLayer::danger_trust_identity_headers_without_assertion`] | identity headers alone | nothing: it trusts the network |
//!
//! ## Design
//! - **One engine.** Every mode but the danger one is a trustgate-core `Validator` with one issuer
//!   found by discovery: strict parsing, the key decides the algorithm, keys refreshed in the
//!   background without locks, verified tokens cached (time claims re-checked on every hit).
//! - **Verified is a type.** Handlers get a [`Caller`], which only the layer creates; in the
//!   assertion modes its identity comes from the signed assertion, never from the headers.
//! - **A caller is someone.** In the assertion modes, the gateway also signs an assertion for a
//!   request without a token on a route with `allow_anonymous`; the layer refuses it like a
//!   request without a credential (401) unless [`Builder::allow_anonymous`] is set, and then
//!   [`Caller::is_anonymous`] tells it apart and every guard refuses it with 401. A verified
//!   token need not name a user, though: a client-credentials token may have no `sub`, so
//!   [`Caller::subject`] is an `Option`. A handler that acts for a user takes the subject from
//!   [`Caller::require_subject`] (403 when there is none).
//! - **One error mapping.** Every refusal, in the layer and in the guards
//!   ([`Caller::require_subject`], [`Caller::require_role`], [`Caller::require_scope`],
//!   [`Caller::require_tenant`]), is answered
//!   by `AuthError::to_response`: 401 `invalid_token` (or a bare `Bearer` challenge when no
//!   credential was sent), 403 `insufficient_scope`, 400 `invalid_request` (two credentials), 503
//!   when the issuer's keys are unavailable. Bodies never name the token, a claim or the reason;
//!   the reason is logged at debug level.
//! - **gRPC is refused the gRPC way.** A gRPC call (`content-type: application/grpc…`) gets the
//!   same decision through `AuthError::to_grpc_response`: HTTP 200, trailers-only, `grpc-status`
//!   16 `UNAUTHENTICATED`, 7 `PERMISSION_DENIED`, 3 `INVALID_ARGUMENT` or 14 `UNAVAILABLE`, with
//!   `WWW-Authenticate` kept as metadata. In the assertion modes a call is bound like any
//!   request: `htm` is `POST` and `htu` the call's path, `/package.Service/Method`.
//! - **Checked once, at the start.** The layer decides when a request arrives. A response that
//!   keeps going (a gRPC stream, a streamed HTTP body, a WebSocket) is not cut when the token
//!   expires, and neither is it by the gateway. A handler that serves one for longer than a
//!   token lives bounds it with [`Caller::expires_at`] (in the assertion modes the assertion's
//!   expiry, at most 30 s after the gateway signed it).
//! - **Any response body.** A refusal is returned as the inner service's own response type; its
//!   body is made by [`RefusalBody`], implemented for axum's, tonic's and hyper's usual bodies.
//! - **Safe by default.** The only way to skip the gateway's proof has `danger` in its name.
//! - **Every request, preflights too.** A browser's CORS preflight (`OPTIONS` without
//!   credentials) is refused like any request without a token. A service that browsers call
//!   across origins puts its CORS layer outside this one, so that it answers preflights first:
//!   in axum, `.layer(auth)` and then `.layer(cors)` (the last layer added runs first).
//!
//! ## Features
//! - `redis`: [`RedisReplayStore`], the assertion replay store replicas share.
//! - `axum` (default): the [`Caller`] extractor, `IntoResponse` for [`Rejection`], and the
//!   `OriginalUri` a nested axum router leaves. Without it the crate is a plain tower layer; a
//!   handler reads the [`Caller`] from the request extensions.
//! - `tonic`: [`RefusalBody`] for `tonic::body::Body` (so the layer goes on a tonic server),
//!   `Caller::from_grpc`, `From<Rejection> for tonic::Status` (guards answer
//!   `PERMISSION_DENIED`), and `NamedService` for a layered generated service.
//! - `opentelemetry`: a `trustgate.service` span that continues the request's `traceparent`,
//!   whoever sent it (there is no peer allow-list here, unlike the gateway's `trust_incoming`):
//!   a service that clients reach directly should use a sampler that does not follow the parent.
//!
//! Spans (with or without `opentelemetry`): `trustgate.service` at INFO, one per request, and
//! under it the validation steps (`validate`, `cache`, `signature`, `claims`) at DEBUG, so that
//! a service logging at INFO does not make them on every request (target `trustgate_core`).
//!
//! ## Example (axum)
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use serde_json::{Value, json};
//! use trustgate_service::{Caller, Rejection, TrustgateLayer};
//!
//! async fn me(caller: Caller) -> Result<Json<Value>, Rejection> {
//!     caller.require_scope("profile:read")?;
//!     // A valid token need not name a user (a client-credentials token, say): 403 then.
//!     let subject = caller.require_subject()?;
//!     Ok(Json(json!({ "subject": subject, "tenant": caller.tenant() })))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = TrustgateLayer::jwt("https://idp.example", "users-api").await?;
//! let app: Router = Router::new().route("/users/me", get(me)).layer(auth);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Example (tonic)
//! The layer goes on the whole server (`Server::builder().layer(auth)`), or on one generated
//! service (`.add_service(auth.layer(EchoServer::new(echo)))`, with `tower_layer::Layer`).
//! Handlers find the caller in the request's extensions; a guard's `?` answers
//! `PERMISSION_DENIED` (`UNAUTHENTICATED` for an anonymous caller). `examples/grpc-echo` is a complete service.
//! ```no_run
//! # #[cfg(feature = "tonic")]
//! # mod grpc {
//! use tonic::{Request, Response, Status};
//! use trustgate_service::{Caller, TrustgateLayer};
//!
//! // In the `impl` of a generated service trait.
//! async fn whoami(request: Request<()>) -> Result<Response<String>, Status> {
//!     let caller = Caller::from_grpc(&request)?;
//!     caller.require_scope("profile:read")?;
//!     Ok(Response::new(caller.require_subject()?.to_owned()))
//! }
//!
//! async fn run(routes: tonic::service::Routes) -> Result<(), Box<dyn std::error::Error>> {
//!     let auth = TrustgateLayer::jwt("https://idp.example", "users-api").await?;
//!     tonic::transport::Server::builder()
//!         .layer(auth)
//!         .add_routes(routes)
//!         .serve("127.0.0.1:50051".parse()?)
//!         .await?;
//!     Ok(())
//! }
//! # }
//! ```
#![forbid(unsafe_code)]

mod authenticate;
mod body;
mod caller;
#[cfg(feature = "tonic")]
mod grpc;
mod headers;
mod layer;
mod mode;
mod replay;
mod request;
mod service;
#[cfg(feature = "opentelemetry")]
mod trace;

pub use body::RefusalBody;
pub use caller::{Caller, Rejection};
pub use headers::HeaderMapping;
pub use layer::{Builder, SetupError, TrustgateLayer};
pub use mode::Mode;
#[cfg(feature = "redis")]
pub use replay::RedisReplayStore;
pub use replay::{ReplayStore, ReplayStoreError};
pub use service::{ResponseFuture, TrustgateService};
