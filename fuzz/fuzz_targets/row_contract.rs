//! `cargo +nightly fuzz run row_contract`: the body is `harness::row_contract` (what it checks is said there).
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::row_contract(data));
