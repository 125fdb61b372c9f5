//! See `harness::stream`: kafka's dissector.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::stream(&faultline_core::dissect::kafka::REGISTRATION, data));
