//! End-to-end tests of the `trustgate` binary, one test binary with a module per area. Each test
//! starts the real binary against real local servers (an issuer, an echo upstream) and checks
//! exact statuses, headers and bytes. Run one area with, for example,
//! `cargo test -p trustgate --test e2e interop_oidc_provider::`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

mod attacks;
mod audit;
mod cli;
#[cfg(feature = "demo")]
mod demo;
mod ext_authz;
mod fleet;
mod forward_auth;
mod grpc;
mod h2_abuse;
mod http2_upstream;
mod internal;
mod interop_joserfc;
mod interop_oidc_provider;
mod jwks_faults;
mod lifecycle;
mod load_faults;
mod observability;
mod paths;
mod patterns;
mod proxying;
mod revocation_api;
mod sanitize;
mod smuggling;
mod telemetry;
mod trust_patterns;
mod upstream_tls;

/// The demo's tests need the binary built with `--features demo` (`scripts/test.sh` passes it; a
/// production build carries no demo issuer). Without the feature this test fails, so they are
/// never skipped unnoticed.
#[cfg(not(feature = "demo"))]
#[test]
fn the_demo_tests_need_the_demo_feature() {
    panic!(
        "the demo's end-to-end tests need `--features demo`: cargo test -p trustgate --features demo (scripts/test.sh does)"
    );
}
