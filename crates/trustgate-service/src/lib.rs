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
//! | [`TrustgateLayer::identity_headers`] | identity headers plus `X-Trustgate-Assertion` (pattern 3) | as above, and every header listed in `hdr` present once with exactly that value |
//! | [`TrustgateLayer::internal_tokens`] | `Authorization: Bearer` internal token (pattern 4) | the gateway's internal issuer, `typ: internal+jwt`, `aud` = this service |
//! | [`TrustgateLayer::danger_trust_identity_headers_without_assertion`] | identity headers alone | nothing: it trusts the network |
//!
//! ## Design
//! - **One engine.** Every mode but the danger one is a trustgate-core `Validator` with one issuer
//!   found by discovery: strict parsing, the key decides the algorithm, keys refreshed in the
//!   background without locks, verified tokens cached (time claims re-checked on every hit).
//! - **Verified is a type.** Handlers get a [`Caller`], which only the layer creates; in the
//!   assertion modes its identity comes from the signed assertion, never from the headers.
//! - **One error mapping.** Every refusal, in the layer and in the guards
//!   ([`Caller::require_role`], [`Caller::require_scope`], [`Caller::require_tenant`]), is answered
//!   by `AuthError::to_response`: 401 `invalid_token` (or a bare `Bearer` challenge when no
//!   credential was sent), 403 `insufficient_scope`, 400 `invalid_request` (two credentials), 503
//!   when the issuer's keys are unavailable. Bodies never name the token, a claim or the reason;
//!   the reason is logged at debug level.
//! - **Safe by default.** The only way to skip the gateway's proof has `danger` in its name.
//!
//! ## Features
//! - `axum` (default): the [`Caller`] extractor, `IntoResponse` for [`Rejection`], and the
//!   `OriginalUri` a nested axum router leaves. Without it the crate is a plain tower layer; a
//!   handler reads the [`Caller`] from the request extensions.
//!
//! ## Example
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use serde_json::{Value, json};
//! use trustgate_service::{Caller, Rejection, TrustgateLayer};
//!
//! async fn me(caller: Caller) -> Result<Json<Value>, Rejection> {
//!     caller.require_scope("profile:read")?;
//!     Ok(Json(json!({ "subject": caller.subject(), "tenant": caller.tenant() })))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = TrustgateLayer::jwt("https://idp.example", "users-api").await?;
//! let app: Router = Router::new().route("/users/me", get(me)).layer(auth);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod authenticate;
mod caller;
mod headers;
mod layer;
mod mode;
mod replay;
mod request;
mod service;
#[cfg(feature = "opentelemetry")]
mod trace;

pub use caller::{Caller, Rejection};
pub use headers::HeaderMapping;
pub use layer::{Builder, SetupError, TrustgateLayer};
pub use mode::Mode;
pub use service::{ResponseFuture, TrustgateService};
