//! Counters the engine keeps so that nothing it drops is dropped silently (SPEC §3.3).

use serde::{Deserialize, Serialize};

/// The struct, and a sum of two that names every field (a field added later cannot be forgotten).
macro_rules! counters {
    ($(#[$outer:meta])* pub struct $name:ident { $($(#[$doc:meta])* pub $field:ident: u64,)* }) => {
        $(#[$outer])*
        pub struct $name { $($(#[$doc])* pub $field: u64,)* }

        impl std::ops::AddAssign<&$name> for $name {
            /// Shards' statistics add up to the node's.
            fn add_assign(&mut self, other: &$name) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

counters! {
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Frames with more encapsulations (VXLAN, Geneve, IP-in-IP) than overlays nest.
    pub tunnels_too_deep: u64,
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
    /// RSTs outside the receiver's window (stale, blind, or from a middlebox that lost state), and RSTs in
    /// SYN-SENT that do not acknowledge the SYN: ignored (RFC 5961), the connection goes on.
    pub rst_out_of_window: u64,
    /// Connections ended by an RST that was a close, not an error: sent by a side that had already sent
    /// its FIN (its socket was closed), or answering the peer's FIN with every byte acknowledged.
    pub closed_by_reset: u64,
    /// ACKs answering a SYN without acknowledging it (stale TIME_WAIT state, port reuse behind SNAT).
    pub challenge_acks: u64,
    /// FINs the capture missed, known from the peer's acknowledgement of them.
    pub fins_inferred: u64,
    /// Last FINs never retransmitted whose acknowledgement the capture never saw: capture loss, not
    /// `LastAck`.
    pub unacked_fins: u64,
    /// TCP bytes the capture never saw (sequence gaps), as Zeek's `missed_bytes`.
    pub missed_bytes: u64,
    /// Streams whose protocol was not identified within `tcpStreamChannelTimeoutMs`.
    pub streams_timed_out: u64,
    /// Gaps that hid HTTP message boundaries: the parser looked for the next message.
    pub http_resyncs: u64,
    /// HTTP exchanges lost to capture loss (the request or the response fell in a gap): counted, not
    /// reported as half connections.
    pub http_lost_exchanges: u64,
    /// Responses before the first request of a connection picked up mid-stream: counted, not reported.
    pub http_early_responses: u64,
    /// Out-of-order segments not held because they lay beyond the receiver's window.
    pub segments_out_of_window: u64,
    /// Times the engine's budget of out-of-order bytes (all connections together) made a stream give up
    /// its holes early.
    pub reassembly_over_budget: u64,
    /// Streams whose dissector stopped because the same budget (out-of-order bytes and dissectors'
    /// buffers together) was spent while it held more than 16 KiB: reassembled, no longer read.
    pub dissector_over_budget: u64,
    /// Copies of a packet already handled, seen on another interface of the node: dropped.
    pub duplicate_packets: u64,
    /// Copies of a packet seen under another 4-tuple of its connection (before and after SNAT or a
    /// Service's DNAT, or half translated back): dropped. A packet seen only under such a tuple is handled
    /// as its connection's.
    pub nat_copies: u64,
    /// Packets not fingerprinted for copy detection because its window was full.
    pub copy_fingerprints_saturated: u64,
    /// Sharded engines only: tuples of one NATed connection whose pairs were decided on two shards before
    /// a packet linked them (more than two tuples seen, or addresses rewritten mid-stream). The
    /// connection may be reported otherwise than one engine would.
    pub nat_tuples_apart: u64,
    /// DNS queries seen (copies included).
    pub dns_queries: u64,
    /// Datagrams to or from a DNS server that do not parse as DNS.
    pub dns_malformed: u64,
    /// DNS answers to no query seen (the query was before the capture, or not captured).
    pub dns_unmatched_responses: u64,
    /// Answers to later copies of a query already answered: one exchange.
    pub dns_duplicate_answers: u64,
    /// NXDOMAIN answers followed by the next search domain: reported without error.
    pub dns_search_steps: u64,
    /// DNS queries not tracked because too many were waiting for answers.
    pub dns_untracked: u64,
    /// DNS-over-TCP streams no longer read (capture loss hid message boundaries).
    pub dns_tcp_streams_lost: u64,
    /// TLS streams whose handshake stopped making sense (or was cut by capture loss): not dissected further.
    pub tls_broken: u64,
    /// HTTP/2 connections whose header blocks stopped being decoded: capture loss outside a DATA payload
    /// (HPACK state is gone), a block or table over the bounds, or (mid-stream) an entry from before.
    pub http2_broken: u64,
    /// HTTP/2 streams open on those connections: counted, not reported.
    pub http2_lost_streams: u64,
    /// HTTP/2 header blocks not decoded on those connections.
    pub http2_blocks_undecoded: u64,
    /// HTTP/2 directions read from a frame boundary found mid-stream (picked up late, or after loss).
    pub http2_resynced: u64,
    /// HTTP/2 streams still open when their client left (its GOAWAY, close or reset): not reported.
    pub http2_cut_by_client: u64,
    /// HTTP/2 client cancels of streams whose request was never seen (mid-stream).
    pub http2_cancels_unseen: u64,
    /// Capture gaps inside HTTP/2 DATA payloads, passed over without harm.
    pub http2_gaps_skipped: u64,
    /// HTTP/2 streams not tracked, or header fields not kept, over the per-connection bounds.
    pub http2_over_limit: u64,
    /// HTTP/2 streams above a GOAWAY's last stream id (not processed; clients retry them).
    pub http2_refused_by_goaway: u64,
    /// Redis commands (PostgreSQL, MySQL calls) dropped because capture loss may have hidden their answers.
    pub redis_calls_lost: u64,
    pub postgresql_calls_lost: u64,
    pub mysql_calls_lost: u64,
    pub amqp_calls_lost: u64,
    pub kafka_calls_lost: u64,
    /// Redis replies (PostgreSQL, MySQL answers) to requests never seen: picked up mid-stream.
    pub redis_replies_unpaired: u64,
    pub postgresql_answers_unpaired: u64,
    pub mysql_answers_unpaired: u64,
    pub amqp_answers_unpaired: u64,
    pub kafka_answers_unpaired: u64,
    /// Kafka responses of an API not read here, or cut short by the bytes kept before their codes.
    pub kafka_responses_unread: u64,
    /// Calls not tracked over the per-connection bound (`calls::MAX_WAITING`).
    pub redis_calls_over_limit: u64,
    pub postgresql_calls_over_limit: u64,
    pub mysql_calls_over_limit: u64,
    pub amqp_calls_over_limit: u64,
    pub kafka_calls_over_limit: u64,
    /// Entries emitted.
    pub entries: u64,
}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_adds_every_counter() {
        let mut v = serde_json::to_value(Stats::default()).expect("stats");
        let map = v.as_object_mut().expect("an object");
        map.values_mut().enumerate().for_each(|(i, n)| *n = (i as u64 + 1).into());
        let each: Stats = serde_json::from_value(v.clone()).expect("read back");
        let mut sum = each.clone();
        sum += &each;
        let summed = serde_json::to_value(&sum).expect("stats");
        for (name, n) in v.as_object().expect("an object") {
            assert_eq!(summed[name].as_u64(), n.as_u64().map(|n| 2 * n), "{name}");
        }
    }
}
