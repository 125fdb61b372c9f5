//! See `harness::stream`: redis's dissector.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::stream(&faultline_core::dissect::redis::REGISTRATION, data));
