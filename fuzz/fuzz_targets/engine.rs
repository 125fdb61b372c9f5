//! Frames through the decoder and the engine. The input is split into frames by a 2-byte length prefix;
//! the first byte picks the link type, so one input exercises whole conversations.
#![no_main]

use faultline_core::wire::LinkType;
use faultline_core::{Engine, EngineConfig, Timestamp};
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 5] =
    [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Loopback];

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else { return };
    let link = LINKS[usize::from(first) % LINKS.len()];
    let mut engine = Engine::new(EngineConfig { max_flows: 16, ..EngineConfig::default() });
    let mut out = Vec::new();
    let mut t = 0u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        t += u64::from(first) * 1_000_000;
        let _ = engine.handle_frame(link, frame, Timestamp(t), &mut out);
        rest = &rest[2 + len..];
    }
    engine.finish(&mut out);
    for e in &out {
        let _ = serde_json_free_render(e);
    }
});

/// Rendering must not panic either; Display of the endpoints is what the table uses.
fn serde_json_free_render(e: &faultline_core::Entry) -> String {
    format!("{} {} {}", e.timestamp, e.src, e.dst)
}
