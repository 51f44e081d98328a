//! `cargo +nightly fuzz run encrypted_reader`: the body is `harness::encrypted_reader` (what it checks is said there).
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::encrypted_reader(data));
