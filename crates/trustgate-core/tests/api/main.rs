//! API tests of trustgate-core, one test binary with a module per area: key sets and their
//! sources, validation rules, parser property tests and Wycheproof conformance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod cache;
mod jwks;
mod proptest_parse;
mod validate;
mod wycheproof;
