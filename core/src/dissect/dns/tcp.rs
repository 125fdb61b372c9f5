//! DNS over TCP (RFC 1035 §4.2.2): each message behind a two-byte length, in both directions of a
//! connection. The messages go to the same exchange tracker as UDP's, so that a truncated UDP answer
//! followed by the same question over TCP is one exchange.

use crate::time::Timestamp;

/// A message is at most 65,535 bytes; a direction holds at most one message and its length.
const MAX_BUFFERED: usize = 65_537;

/// Whether `b`, the first bytes a client sent on a connection, look like a DNS query over TCP: a length,
/// then a header with QR clear, a standard query, one question and no answers.
pub fn looks_like_query(b: &[u8]) -> crate::dissect::http::Verdict {
    use crate::dissect::http::Verdict;
    if b.len() < 14 {
        return Verdict::NeedMore;
    }
    let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let h = &b[2..14];
    let flags = u16::from_be_bytes([h[2], h[3]]);
    let count = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let query = flags & 0x8000 == 0 && (flags >> 11) & 0x0f == 0 && flags & 0x0070 == 0;
    if len >= 17 && query && count(4) == 1 && count(6) == 0 && count(8) == 0 && count(10) <= 1 {
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
        loop {
            let buf = &mut self.bufs[usize::from(!from_client)];
            if buf.len() < 2 {
                return;
            }
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if buf.len() < 2 + len {
                return;
            }
            let msg = buf[2..2 + len].to_vec();
            buf.drain(..2 + len);
            self.messages.push((from_client, ts, msg));
        }
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
