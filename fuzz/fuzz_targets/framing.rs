//! cargo-fuzz target: see [`trustgate_fuzz::framing`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trustgate_fuzz::framing(data));
