//! API tests of trustgate-service, one test binary with a module per mode: external JWTs,
//! identity headers, internal tokens, the guards, refusals of gRPC calls, and the spans the layer
//! makes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

mod external_jwt;
mod grpc;
mod guards;
mod identity_headers;
mod internal_token;
mod spans;
