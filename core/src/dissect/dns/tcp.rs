//! DNS over TCP (RFC 1035 §4.2.2): each message behind a two-byte length, in both directions of a
//! connection. The messages go to the same exchange tracker as UDP's, so that a truncated UDP answer
//! followed by the same question over TCP is one exchange.

use crate::dissect::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector, Verdict};
use crate::engine::stats::Stats;
use crate::time::Timestamp;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Dns, probe, start, summary, answered_by: None };

/// A query from the client (not behind a PROXY header). A query is under 256 bytes nearly always: a first
/// byte of 0 is worth waiting on.
fn probe(p: &Probe<'_>) -> Claim {
    if p.skipped > 0 || p.dir != Direction::ToServer {
        return Claim::No;
    }
    match looks_like_query(p.bytes) {
        Verdict::Yes => Claim::Yes { flipped: false, lead: 0 },
        Verdict::NeedMore if p.bytes.first() == Some(&0) => Claim::NeedMore,
        Verdict::NeedMore | Verdict::No => Claim::No,
    }
}

/// What DNS, over UDP and TCP, could not pair or read, and what it found not to be errors.
fn summary(s: &Stats) -> String {
    format!(
        "{} DNS queries, {} DNS search steps, {} DNS answers to retransmitted queries, {} DNS answers without a \
         query, {} malformed DNS datagrams, {} DNS queries not tracked, {} DNS-over-TCP streams not dissected",
        s.dns_queries,
        s.dns_search_steps,
        s.dns_duplicate_answers,
        s.dns_unmatched_responses,
        s.dns_malformed,
        s.dns_untracked,
        s.dns_tcp_streams_lost
    )
}

fn start(_: &Probe<'_>) -> Box<dyn StreamDissector> {
    Box::<DnsStream>::default()
}

/// A message is at most 65,535 bytes; a direction holds at most one message and its length.
const MAX_BUFFERED: usize = 65_537;

/// Whether `b`, the first bytes a client sent on a connection, look like a DNS request over TCP: a
/// length, then a header with QR clear and one question — a QUERY with no answer or authority records,
/// or a NOTIFY or UPDATE (whose zone is the question). Any other header flags are accepted: `dig +tcp`
/// sets AD, validating resolvers CD.
pub fn looks_like_query(b: &[u8]) -> Verdict {
    if b.len() < 14 {
        return Verdict::NeedMore;
    }
    let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let h = &b[2..14];
    let flags = u16::from_be_bytes([h[2], h[3]]);
    let count = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let request = flags & 0x8000 == 0 && count(4) == 1 && len >= 17;
    let fits = match (flags >> 11) & 0x0f {
        0 => count(6) == 0 && count(8) == 0 && count(10) <= 2,
        4 | 5 => true,
        _ => false,
    };
    if request && fits {
        Verdict::Yes
    } else {
        Verdict::No
    }
}

/// The two directions' framing.
#[derive(Default)]
pub struct DnsStream {
    /// [client→server, server→client]
    bufs: [Vec<u8>; 2],
    /// A gap or a length that cannot be: the stream is no longer read.
    broken: bool,
    /// Whole messages since the last `take`: (from the client, when, bytes).
    pub messages: Vec<(bool, Timestamp, Vec<u8>)>,
    /// Streams that stopped being readable (gaps, overflow): counted by the caller.
    pub lost: u64,
}

impl DnsStream {
    pub fn on_data(&mut self, from_client: bool, ts: Timestamp, data: &[u8]) {
        if self.broken {
            return;
        }
        let buf = &mut self.bufs[usize::from(!from_client)];
        if buf.len() + data.len() > MAX_BUFFERED + 65_536 {
            self.stop();
            return;
        }
        buf.extend_from_slice(data);
        // Every whole message, then what is left moved to the front once: linear in the bytes.
        let mut at = 0;
        while let Some(len) = buf.get(at..at + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) {
            let Some(msg) = buf.get(at + 2..at + 2 + len) else { break };
            self.messages.push((from_client, ts, msg.to_vec()));
            at += 2 + len;
        }
        buf.drain(..at);
    }

    /// Bytes the capture lost: message boundaries are gone.
    pub fn on_gap(&mut self) {
        if !self.broken {
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.broken = true;
        self.lost += 1;
        self.bufs = Default::default();
    }
}

impl DnsStream {
    /// What one call framed: each whole message to the engine's exchange tracker, streams no longer
    /// readable counted.
    fn report(&mut self, found: &mut Found<'_>) {
        found.stats.dns_tcp_streams_lost += std::mem::take(&mut self.lost);
        for (from_client, ts, msg) in std::mem::take(&mut self.messages) {
            let dir = if from_client { Direction::ToServer } else { Direction::ToClient };
            found.dns_message(dir, ts, &msg);
        }
    }
}

impl StreamDissector for DnsStream {
    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        self.on_data(dir.to_server(), ts, bytes);
        self.report(found);
    }

    fn gap(&mut self, _: Direction, _: u64, _: Timestamp, found: &mut Found<'_>) {
        self.on_gap();
        self.report(found);
    }

    fn end(&mut self, _: Direction, _: Timestamp, _: &mut Found<'_>) {}

    fn close(&mut self, _: Timestamp, _: Ending, _: &mut Found<'_>) {}

    /// Unanswered queries are the exchange tracker's to time.
    fn check(&mut self, _: Timestamp, _: &mut Found<'_>) {}

    fn answered_all(&self) -> bool {
        true
    }

    fn buffered(&self) -> usize {
        self.bufs.iter().map(Vec::len).sum()
    }
}
