//! `cargo +nightly fuzz run splitter`: the body is `harness::splitter` (what it checks is said there).
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::splitter(data));
