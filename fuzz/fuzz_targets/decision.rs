//! cargo-fuzz target: see [`trustgate_fuzz::decision`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trustgate_fuzz::decision(data));
