//! See `harness::stream`: amqp's dissector.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::stream(&faultline_core::dissect::amqp::REGISTRATION, data));
