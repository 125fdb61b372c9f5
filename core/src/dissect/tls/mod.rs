//! TLS handshakes (SPEC §3.5), read and never decrypted: the ClientHello (SNI, versions offered), the
//! ServerHello (the version chosen), alerts sent in the clear, and the sizes of TLS 1.3's encrypted
//! handshake records. A handshake fails with a fatal alert (named per RFC 8446 §6, with the side that sent
//! it), with an encrypted alert where TLS 1.3 leaves only its size, with the ClientHello answered by
//! something that is not TLS, by nothing but a close or a reset, or not within `tlsHandshakeTimeoutMs`. A
//! completed handshake is no entry.

mod dissector;
mod hello;
pub mod names;

pub use dissector::{TlsDissector, TlsFailure};

use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector, Verdict};
use crate::engine::stats::Stats;
use crate::entry::{EntryError, ErrorType, Protocol, TlsInfo};
use crate::time::Timestamp;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Tls, probe, start, summary, answered_by: None };

/// A handshake record from the client — or, mid-stream while roles are a guess, a ClientHello from the
/// side taken for the server, which proves the guess wrong. Not behind a PROXY header (HTTP's).
fn probe(p: &Probe<'_>) -> Claim {
    if p.skipped > 0 {
        return Claim::No;
    }
    match looks_like_tls(p.bytes) {
        Verdict::Yes if p.dir == Direction::ToServer => Claim::Yes { flipped: false, lead: 0 },
        Verdict::Yes if !p.roles_settled => Claim::Yes { flipped: true, lead: 0 },
        Verdict::Yes | Verdict::No => Claim::No,
        Verdict::NeedMore => Claim::NeedMore,
    }
}

/// What TLS could not read.
fn summary(s: &Stats) -> String {
    format!("{} TLS handshakes not dissected", s.tls_broken)
}

fn start(_: &Probe<'_>) -> Box<dyn StreamDissector> {
    Box::<TlsDissector>::default()
}

impl TlsDissector {
    /// What one call found: streams no longer readable counted, failed handshakes as entries.
    fn report(&mut self, found: &mut Found<'_>) {
        found.stats.tls_broken += std::mem::take(&mut self.broken);
        for f in std::mem::take(&mut self.failures) {
            let mut e = found.entry(Protocol::Tls, f.start, f.decided);
            e.error = Some(EntryError { kind: ErrorType::Tls, msg: f.msg });
            e.tls = Some(TlsInfo { sni: f.sni, version: f.version, alert: f.alert, by: f.by });
            found.out.push(e);
        }
    }
}

impl StreamDissector for TlsDissector {
    fn buffered(&self) -> usize {
        TlsDissector::buffered(self)
    }

    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        self.on_data(dir.to_server(), ts, bytes);
        self.report(found);
    }

    fn gap(&mut self, _: Direction, _: u64, _: Timestamp, found: &mut Found<'_>) {
        self.on_gap();
        self.report(found);
    }

    /// A side closed: what the handshake waited for is decided (the server's close answering a
    /// ClientHello; a side that gave up after an encrypted alert).
    fn end(&mut self, dir: Direction, ts: Timestamp, found: &mut Found<'_>) {
        self.on_fin(ts, dir.to_server(), found.cfg.tls_handshake_timeout_ms);
        self.report(found);
    }

    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>) {
        let by = match ending {
            Ending::Reset(side) => Some(side),
            _ => None,
        };
        let timeout = found.cfg.tls_handshake_timeout_ms;
        self.on_close(ts, ending.words(), by, ending == Ending::CaptureEnded, timeout);
        self.report(found);
    }

    fn check(&mut self, now: Timestamp, found: &mut Found<'_>) {
        self.check(now, found.cfg.tls_handshake_timeout_ms);
        self.report(found);
    }

    fn answered_all(&self) -> bool {
        !self.in_handshake()
    }

    /// Records that look like TLS but carry no hello identify nothing.
    fn identified(&self) -> bool {
        TlsDissector::identified(self)
    }

    fn closing(&self, dir: Direction) -> bool {
        TlsDissector::closing(self, dir.to_server())
    }
}

/// Whether `b` starts like a TLS handshake record: type 22, version 3.x, a plausible length.
pub fn looks_like_tls(b: &[u8]) -> Verdict {
    match b {
        [] => Verdict::NeedMore,
        [22] | [22, 3] => Verdict::NeedMore,
        [22, 3, minor, ..] if *minor <= 4 => Verdict::Yes,
        _ => Verdict::No,
    }
}
