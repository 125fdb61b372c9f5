//! Counters the engine keeps so that nothing it drops is dropped silently (SPEC §3.3).

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Frames handed to the engine.
    pub packets: u64,
    /// Frames that did not decode (malformed or truncated headers).
    pub decode_errors: u64,
    /// Frames skipped: not IP, IP fragments, protocols we do not analyse.
    pub not_ip: u64,
    pub fragments: u64,
    pub other_protocols: u64,
    pub tcp_segments: u64,
    pub udp_datagrams: u64,
    pub icmp_messages: u64,
    pub flows_created: u64,
    /// Flows dropped because the table was full (their pending state is lost).
    pub flows_evicted: u64,
    /// Flows forgotten after `idleTimeoutMs` without packets.
    pub flows_expired: u64,
    /// RSTs for connections never seen (after they were forgotten, or scans): not reported.
    pub orphan_resets: u64,
    /// TCP bytes the capture never saw (sequence gaps), as Zeek's `missed_bytes`.
    pub missed_bytes: u64,
    /// Streams whose protocol was not identified within `tcpStreamChannelTimeoutMs`.
    pub streams_timed_out: u64,
    /// HTTP connections whose dissection stopped because a gap lost the message boundaries.
    pub http_desyncs: u64,
    /// Entries emitted.
    pub entries: u64,
}
