//! Both directions of an HTTP connection. Each chunk starts with a control byte: direction, and whether
//! to send data, a gap, an end, or a timer check.
#![no_main]

use faultline_core::http::{Dir, HttpDissector};
use faultline_core::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    let mut rest = data;
    let mut t = 0;
    while let Some((&ctl, tail)) = rest.split_first() {
        let len = usize::from(ctl >> 3).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        t += 1;
        let ts = Timestamp::from_millis(t);
        let dir = if ctl & 1 == 0 { Dir::ClientToServer } else { Dir::ServerToClient };
        match (ctl >> 1) & 3 {
            0 | 1 => d.on_data(dir, ts, chunk, &mut out),
            2 => {
                d.on_gap(dir, len as u64);
            }
            _ => {
                if ctl & 0x80 == 0 {
                    d.on_end(dir, ts, &mut out)
                } else {
                    d.check(ts, 3, &mut out)
                }
            }
        }
    }
    d.on_close(Timestamp::from_millis(t + 1), "capture ended", &mut out);
});
