//! Capture files: classic pcap and pcapng headers, records and blocks.
#![no_main]

use faultline_core::pcap::PcapReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = PcapReader::new(data) {
        while let Ok(Some(rec)) = r.next_record() {
            assert!(rec.data.len() <= faultline_core::pcap::MAX_RECORD);
        }
    }
});
