//! gRPC through trustgate-service, with real parts: a tonic server with the layer on 127.0.0.1, a
//! tonic client over h2c (and once over TLS), real issuers serving discovery and keys, and the
//! `grpc-echo` binary itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

mod binary;
mod guards;
mod modes;
mod streams;
mod tls;
