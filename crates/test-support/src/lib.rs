//! Test fixtures for trustgate: real keys, token forging, a real local issuer and an echo upstream
//! that records exactly what it received. Everything listens on 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod echo;
pub mod issuer;
pub mod keys;

pub use echo::{EchoUpstream, RecordedRequest};
pub use issuer::{Behavior, TestIssuer};
pub use keys::{TestKey, b64, claims, now_secs, token_with_header};
