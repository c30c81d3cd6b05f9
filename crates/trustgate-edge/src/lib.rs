//! trustgate-edge: the gateway's decision engine, and all the code that reads untrusted request
//! bytes without doing I/O of its own.
//!
//! - [`framing`]: one unambiguous message length per request, on the parsed headers and on each
//!   HTTP/1 head's raw bytes;
//! - [`headers`]: identity-header sanitization, hop-by-hop headers, forwarding headers;
//! - [`path`] and [`router`]: normalization and route selection;
//! - [`token`]: finding the one token of a request;
//! - [`trust`]: the route's trust pattern, as a type;
//! - [`decision`]: the engine that turns a request head into a [`decision::Decision`];
//! - [`error`]: the one mapping from a refusal to an HTTP response.
//!
//! The gateway binary, `trustgate explain` and the fuzz targets all use these same modules.
#![forbid(unsafe_code)]

pub mod decision;
pub mod error;
pub mod forward_auth;
pub mod framing;
pub mod headers;
pub mod mint;
pub mod path;
pub mod route;
pub mod router;
pub mod token;
pub mod trust;

pub use decision::{
    Decision, Engine, Refusal, RequestHead, RevocationCheck, Revoked, SanitizeMode, Step,
    TargetForwarding,
};
pub use error::{GatewayError, Outcome, RateLimitState};
pub use route::Route;
pub use trust::Trust;
