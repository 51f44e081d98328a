//! `cargo +nightly fuzz run config`: the body is `harness::config` (what it checks is said there).
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::config(data));
