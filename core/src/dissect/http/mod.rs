//! HTTP/1.x: recognising it by content (any port), framing messages in each direction, and pairing
//! requests with responses, including pipelining, 1xx, HEAD, 204/304, chunked and close-delimited bodies.

mod detect;
mod dissector;
mod entries;
mod parser;

pub use detect::{looks_like_request, looks_like_response, proxy_header_len, proxy_header_size};
pub use dissector::{HttpDissector, HttpOutcome, Upgrade};

use super::http2::Http2Dissector;
use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector, Verdict, PROBE_LIMIT};
use crate::engine::stats::Stats;
use crate::time::Timestamp;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Http, probe, start, summary, answered_by: Some(answered_by) };

/// A status line from the server: a request no probe recognised (`GET/`, `OPTIONSHTTP/1.1`) answered by
/// HTTP is HTTP, and the server's verdict is reported (SPEC §3.5, "HTTP/1.x by either side").
fn answered_by(server_first: &[u8]) -> bool {
    looks_like_response(server_first) == Verdict::Yes
}

/// A request line from the client, or a status line from the server — and, mid-stream while roles are a
/// guess, a request line from the side taken for the server, which proves the guess wrong. Empty lines
/// before a message are allowed (RFC 9112 §2.2).
fn probe(p: &Probe<'_>) -> Claim {
    let lead = p.bytes.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    let rest = &p.bytes[lead..];
    let (own, other) = match p.dir {
        Direction::ToServer => (looks_like_request(rest), looks_like_response(rest)),
        Direction::ToClient => (looks_like_response(rest), looks_like_request(rest)),
    };
    match (own, other) {
        (Verdict::Yes, _) => Claim::Yes { flipped: false, lead },
        (_, Verdict::Yes) if !p.roles_settled => Claim::Yes { flipped: true, lead },
        (Verdict::NeedMore, _) | (_, Verdict::NeedMore) if p.skipped + p.bytes.len() < PROBE_LIMIT => Claim::NeedMore,
        _ => Claim::No,
    }
}

/// What HTTP dropped on purpose.
fn summary(s: &Stats) -> String {
    format!(
        "{} HTTP exchanges lost to capture gaps, {} HTTP responses before the first request",
        s.http_lost_exchanges, s.http_early_responses
    )
}

fn start(p: &Probe<'_>) -> Box<dyn StreamDissector> {
    Box::new(HttpDissector::new(p.midstream))
}

impl HttpDissector {
    /// What one call found: its counters into the engine's, its outcomes as entries.
    fn report(&mut self, outcomes: Vec<HttpOutcome>, found: &mut Found<'_>) {
        self.drain_counters(found.stats);
        entries::emit(outcomes, found);
    }
}

impl StreamDissector for HttpDissector {
    fn buffered(&self) -> usize {
        HttpDissector::buffered(self)
    }

    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        let mut o = Vec::new();
        self.on_data(dir, ts, bytes, &mut o);
        self.report(o, found);
    }

    fn gap(&mut self, dir: Direction, len: u64, ts: Timestamp, found: &mut Found<'_>) {
        let mut o = Vec::new();
        self.on_gap(dir, len, ts, &mut o);
        self.report(o, found);
    }

    fn end(&mut self, dir: Direction, ts: Timestamp, found: &mut Found<'_>) {
        let mut o = Vec::new();
        self.on_end(dir, ts, &mut o);
        self.report(o, found);
    }

    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>) {
        let mut o = Vec::new();
        self.on_close(ts, ending.words(), &mut o);
        self.report(o, found);
    }

    fn check(&mut self, now: Timestamp, found: &mut Found<'_>) {
        let mut o = Vec::new();
        self.check(now, found.cfg.pair_timeout_ms, &mut o);
        self.report(o, found);
    }

    fn answered_all(&self) -> bool {
        !self.awaits_response()
    }

    /// Upgraded to HTTP/2 (`h2c`): the rest of the connection is HTTP/2's, from the server's bytes that
    /// followed the 101 on. With HTTP/2 not dissected, the upgrade is an exchange like any other, and the
    /// rest is not read.
    fn take_over(&mut self, ts: Timestamp, found: &mut Found<'_>) -> Option<Box<dyn StreamDissector>> {
        let up = self.take_h2c()?;
        if !found.cfg.dissectors.contains(Dissector::Http2) {
            let Upgrade { req_ts, request, resp_ts, response, .. } = up;
            entries::emit(vec![HttpOutcome::Pair { req_ts, request, resp_ts, response, late: None }], found);
            return None;
        }
        let mut h2 = Box::new(Http2Dissector::upgraded(up.req_ts, up.request));
        h2.data(Direction::ToClient, ts, &up.rest, found);
        Some(h2)
    }
}
