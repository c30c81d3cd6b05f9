//! # trustgate-core
//!
//! The JWT validation engine shared by the trustgate gateway and the trustgate-service library.
//! It has no HTTP server; it turns untrusted token text into a [`VerifiedToken`] or a coarse
//! [`AuthError`], and keeps issuers' keys fresh without stalling requests.
//!
//! ## Design
//! - **Parse, don't trust.** Compact JWS only, a size limit before decoding, strict base64url,
//!   strict JSON with duplicate member names refused at every depth, `crit` and `b64` refused,
//!   `jku`/`x5u`/`x5c`/`jwk` never read.
//! - **The key decides the algorithm.** Every key is parsed once into a (kid, key, algorithm)
//!   entry. A token is checked only against its own issuer's entries whose algorithm equals its
//!   `alg`; `none` and HMAC cannot be expressed at all.
//! - **Keys are published, never locked.** Each issuer's key set is swapped atomically
//!   ([`arc_swap`]); unknown `kid`s cause at most one single-flight refetch per cooldown; failed or
//!   empty fetches never replace a good set; stale keys serve up to a maximum staleness.
//! - **Verified is a type.** [`VerifiedToken`] and [`Identity`] have no public constructors.
//! - **One error mapping.** [`AuthError::to_response`] is the only place request errors become
//!   RFC 6750 responses.
//! - **Injected time.** Every time check reads a [`Clock`].
//! - **Dangerous entry points are fenced.** Signature-only verification, for conformance tests and
//!   fuzzing, lives in `danger`, compiled only with the `danger` cargo feature, which only
//!   dev-dependencies enable.
//!
//! ## Example
//! ```
//! use std::sync::Arc;
//! use trustgate_core::{IssuerConfig, KeySource, SystemClock, Validator, ValidatorOptions};
//!
//! let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256",
//!   "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
//!   "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
//! let issuer = IssuerConfig::new("https://idp.example", ["orders"], KeySource::Jwks(jwks.into()));
//! let validator = Validator::new(vec![issuer], ValidatorOptions::default(), Arc::new(SystemClock))?;
//! assert!(validator.is_ready());
//! # Ok::<(), trustgate_core::ConfigError>(())
//! ```
#![forbid(unsafe_code)]

mod alg;
mod assertion;
mod bearer;
mod cache;
mod claims;
mod clock;
#[cfg(feature = "danger")]
pub mod danger;
mod error;
mod fetch;
mod grpc;
mod identity;
mod json;
mod jws;
mod key;
mod keyset;
mod mint;
mod percent;
mod source;
pub mod steps;
mod swar;
mod traceparent;
mod validator;
mod verified;

pub use alg::{Algorithm, UnsupportedAlgorithm};
pub use assertion::{
    ASSERTION_HEADER, ASSERTION_HEADERS_CLAIM, ASSERTION_LEEWAY, ASSERTION_MAX_LIFETIME,
    ASSERTION_METHOD_CLAIM, ASSERTION_REQUIRED_CLAIMS, ASSERTION_TARGET_CLAIM, ASSERTION_TTL,
    ASSERTION_TYP, BindingMismatch, BoundRequest, check_assertion_binding,
};
pub use bearer::{bearer_token, query_has_access_token};
pub use cache::{CacheOptions, CacheStats};
pub use claims::{AudiencePolicy, ClaimsPolicy, ExpiryPolicy};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::{AuthError, Reason, RequestProblem};
pub use fetch::{FetchError, FetchOptions, check_key_url, https_connector};
pub use grpc::{GrpcCode, grpc_refusal, grpc_timeout, is_grpc};
pub use identity::{
    ClaimMapping, ClaimPath, Identity, IdentityField, NumericClaims, encode_header,
};
pub use jws::DEFAULT_MAX_TOKEN_BYTES;
pub use key::{KeyRejection, MIN_RSA_BITS, VerifyingKey};
pub use keyset::JwksError;
pub use mint::{
    INTERNAL_TOKEN_TYP, InternalSigner, MintError, Minted, ScheduledKey, SharedRingState,
    SignerConfig, generate_pkcs8,
};
pub use percent::{
    hex_digit_value, is_unreserved, percent_decode, percent_decode_lenient, percent_encode,
    percent_escape, percent_escaped_byte,
};
pub use source::{KeySource, PemKey, RefreshError, RefreshPolicy, StaticKeyError};
pub use traceparent::{BAGGAGE, TRACEPARENT, TRACESTATE, TraceParent};
pub use validator::{ConfigError, IssuerConfig, IssuerStatus, Validator, ValidatorOptions};
pub use verified::VerifiedToken;
