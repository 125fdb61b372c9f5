//! What an agent sends the operator: a batch of entries and its capture statistics. Batches carry the
//! agent's run id and a sequence number so that a batch sent twice (the reply was lost) counts once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entry::Entry;

/// The path the operator serves ingest on.
pub const INGEST_PATH: &str = "/api/v1/ingest";
/// The audience of the ServiceAccount token an agent shows the operator (a projected token): the operator
/// asks the API server to accept it for this audience only, so API-server tokens are refused and an
/// ingest token is worth nothing to the API server.
pub const INGEST_AUDIENCE: &str = "faultline.dev/ingest";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    /// The node the agent runs on.
    pub node: String,
    /// Unique per agent process: restarts start a new sequence.
    pub agent_run: String,
    /// 1, 2, 3, … per run; a batch whose sequence was already accepted is acknowledged and ignored.
    pub seq: u64,
    #[serde(default)]
    pub stats: AgentStats,
    #[serde(default)]
    pub entries: Vec<Entry>,
    /// The node's own addresses (not loopback's): an entry's end at one of them is the node itself — the
    /// kubelet, a host-network pod — not a pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_addresses: Vec<std::net::IpAddr>,
    /// Recordings of error entries' flows (TapConfig `recorder.mode: errors`): entry id → pcap file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "base64_map")]
    pub pcaps: BTreeMap<String, Vec<u8>>,
}

/// pcap bytes travel as base64 strings in the JSON batch.
mod base64_map {
    use std::collections::BTreeMap;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, STANDARD.encode(v))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        m.into_iter().map(|(k, v)| STANDARD.decode(v).map(|b| (k, b)).map_err(serde::de::Error::custom)).collect()
    }
}

/// Cumulative counters of one agent run. Missing counters read as zero, so agents and operators of
/// neighbouring versions understand each other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentStats {
    /// Packets seen on the captured interfaces.
    pub received: u64,
    /// Dropped by the kernel before the agent read them.
    pub kernel_dropped: u64,
    /// Dropped because the engine's queue was full.
    pub queue_dropped: u64,
    /// Entries dropped because the agent's outbox was over budget (the operator was unreachable).
    pub buffer_dropped: u64,
    pub entries: u64,
    pub decode_errors: u64,
    pub streams_timed_out: u64,
    pub missed_bytes: u64,
    /// Set when the requested capture backend was replaced (e.g. PF_RING module missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_note: Option<String>,
}

impl AgentStats {
    /// Packets lost before analysis, over packets seen.
    pub fn drop_ratio(&self) -> f64 {
        let lost = self.kernel_dropped + self.queue_dropped;
        if self.received == 0 {
            0.0
        } else {
            lost as f64 / self.received as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcaps_round_trip_as_base64() {
        let mut b = Batch { node: "n".into(), agent_run: "r".into(), seq: 1, ..Batch::default() };
        b.pcaps.insert("r-1".into(), vec![0xd4, 0xc3, 0xb2, 0xa1, 0, 255]);
        let json = serde_json::to_string(&b).expect("serialises");
        assert!(json.contains(r#""pcaps":{"r-1":"1MOyoQD/"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Batch>(&json).expect("parses"), b);
    }
}
