//! Errors-only recording (SPEC §6): the last packets of each flow in a small ring, so that an error entry
//! can come with a pcap of its flow up to and including the error. Bounded three ways — packets and bytes
//! per flow, and flows — so recording never grows without end.

use std::collections::{HashMap, VecDeque};

use crate::flow::FlowKey;
use crate::pcap::to_pcap;
use crate::time::Timestamp;
use crate::wire::LinkType;

pub(crate) struct FlowRecorder {
    rings: HashMap<FlowKey, Ring, foldhash::fast::RandomState>,
    max_flows: usize,
    max_packets: usize,
    max_bytes: usize,
    tick: u64,
}

struct Ring {
    link: LinkType,
    frames: VecDeque<(Timestamp, Vec<u8>)>,
    bytes: usize,
    last_use: u64,
}

impl FlowRecorder {
    pub fn new(max_flows: usize, max_packets: usize, max_bytes: usize) -> FlowRecorder {
        FlowRecorder { rings: HashMap::default(), max_flows, max_packets, max_bytes, tick: 0 }
    }

    pub fn push(&mut self, key: FlowKey, link: LinkType, ts: Timestamp, frame: &[u8]) {
        self.tick += 1;
        if !self.rings.contains_key(&key) && self.rings.len() >= self.max_flows {
            if let Some(oldest) = self.rings.iter().min_by_key(|(_, r)| r.last_use).map(|(k, _)| *k) {
                self.rings.remove(&oldest);
            }
        }
        let ring =
            self.rings.entry(key).or_insert_with(|| Ring { link, frames: VecDeque::new(), bytes: 0, last_use: 0 });
        ring.last_use = self.tick;
        let frame = &frame[..frame.len().min(self.max_bytes)];
        ring.bytes += frame.len();
        ring.frames.push_back((ts, frame.to_vec()));
        while ring.frames.len() > self.max_packets || ring.bytes > self.max_bytes {
            match ring.frames.pop_front() {
                Some((_, f)) => ring.bytes -= f.len(),
                None => break,
            }
        }
    }

    /// The flow's packets so far, as a pcap file.
    pub fn pcap(&self, key: &FlowKey) -> Option<Vec<u8>> {
        let ring = self.rings.get(key)?;
        Some(to_pcap(ring.link, ring.frames.iter().map(|(ts, f)| (*ts, f.as_slice()))))
    }
}
