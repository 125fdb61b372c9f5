//! The engine's knobs. Names and defaults follow TapConfig's `spec.timeouts` (SPEC §5), so the operator
//! can pass them through unchanged and `analyze` can take them as flags of the same names.

use faultline_model::dissector::Dissectors;

/// Timeouts in milliseconds of capture time.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// A SYN not answered (by SYN-ACK, RST or ICMP) within this is `SynSent`/`timeout`.
    pub syn_timeout_ms: u64,
    /// After a FIN is acknowledged, how long the peer may stay silent before it is `CloseWait`; how long a
    /// last FIN may stay unacknowledged before `LastAck`.
    pub close_timeout_ms: u64,
    /// How long a request may wait for its response (and a response for its request) before the pair is
    /// declared half (`pair-not-found`).
    pub pair_timeout_ms: u64,
    /// How long a stream may carry payload without its protocol being identified.
    pub tcp_stream_channel_timeout_ms: u64,
    /// A flow with no packets for this long is forgotten (not an error).
    pub idle_timeout_ms: u64,
    /// A DNS query not answered within this is a half connection; copies of a query within it are one
    /// exchange.
    pub dns_timeout_ms: u64,
    /// The protocols dissected (TapConfig `dissectors`); a stream of a protocol left out is reassembled and
    /// counted as unidentified, DNS over UDP left out is not read.
    pub dissectors: Dissectors,
    /// A ClientHello not answered by a ServerHello within this is a failed handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Emit an entry for each stream timeout, not only count it.
    pub show_stream_timeouts: bool,
    /// Report echo and neighbour discovery ICMP messages too.
    pub show_icmp_informational: bool,
    /// The flow table's capacity; beyond it the least recently seen flows are evicted (and counted).
    pub max_flows: usize,
    /// Bytes of out-of-order data held per stream direction before the gap is given up as missed.
    pub max_out_of_order_bytes: usize,
    /// Bytes of out-of-order data held by all streams together; beyond, a stream gives its holes up early
    /// (counted in `reassembly_over_budget`).
    pub max_out_of_order_total: usize,
    /// Node name stamped on every entry (`None` offline).
    pub node: Option<String>,
    /// Put before every entry id, to make ids unique across agents and runs.
    pub id_prefix: String,
    /// Keep the last packets of each flow so that error entries come with a pcap of their flow
    /// (`Engine::take_recordings`).
    pub record_errors: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            syn_timeout_ms: 3_000,
            close_timeout_ms: 5_000,
            pair_timeout_ms: 30_000,
            tcp_stream_channel_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            dns_timeout_ms: 5_000,
            dissectors: Dissectors::ALL,
            tls_handshake_timeout_ms: 10_000,
            show_stream_timeouts: false,
            show_icmp_informational: false,
            max_flows: 500_000,
            max_out_of_order_bytes: 256 * 1024,
            max_out_of_order_total: 64 << 20,
            node: None,
            id_prefix: String::new(),
            record_errors: false,
        }
    }
}

impl EngineConfig {
    /// How often timers are checked, in capture time: a quarter of the shortest timeout, between 10 ms
    /// and 1 s. Entries carry exact times either way; this only bounds how late a timeout is noticed.
    pub fn sweep_interval_ms(&self) -> u64 {
        let shortest = [
            self.syn_timeout_ms,
            self.close_timeout_ms,
            self.pair_timeout_ms,
            self.tcp_stream_channel_timeout_ms,
            self.dns_timeout_ms,
            self.tls_handshake_timeout_ms,
            crate::dissect::dns::SEARCH_STEP_MS,
        ]
        .into_iter()
        .min()
        .unwrap_or(1_000);
        (shortest / 4).clamp(10, 1_000)
    }
}
