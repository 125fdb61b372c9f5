//! TLS handshakes (SPEC §3.5), read and never decrypted: the ClientHello (SNI, versions offered), the
//! ServerHello (the version chosen) and alerts sent in the clear. A handshake fails with a fatal alert
//! (named per RFC 8446 §6, with the side that sent it), with the ClientHello answered by nothing but a close
//! or a reset, or with no ServerHello within `tlsHandshakeTimeoutMs`. A completed handshake is no entry.
//! After the ServerHello of TLS 1.3 (and after ChangeCipherSpec in TLS 1.2) records are encrypted: alerts
//! there cannot be read, and are not guessed at.

pub mod names;

use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector, Verdict};
use crate::engine::stats::Stats;
use crate::entry::{EntryError, ErrorType, Protocol, Side, TlsInfo};
use crate::time::Timestamp;

pub const REGISTRATION: Registration = Registration { dissector: Dissector::Tls, probe, start, summary };

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
    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        self.on_data(dir.to_server(), ts, bytes);
        self.report(found);
    }

    fn gap(&mut self, _: Direction, _: u64, _: Timestamp, found: &mut Found<'_>) {
        self.on_gap();
        self.report(found);
    }

    /// The server closed its side without answering the ClientHello.
    fn end(&mut self, dir: Direction, ts: Timestamp, found: &mut Found<'_>) {
        if dir == Direction::ToClient {
            self.on_close(ts, "a close (FIN) from the server", Some(Side::Server), false);
            self.report(found);
        }
    }

    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>) {
        let by = match ending {
            Ending::Reset(_) => Some(Side::Server),
            _ => None,
        };
        self.on_close(ts, ending.words(), by, ending == Ending::CaptureEnded);
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
}

/// Bytes of handshake messages buffered per direction to read a ClientHello or ServerHello that spans
/// records or segments; beyond, the handshake is not dissected (counted).
const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

/// A handshake that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFailure {
    /// When the ClientHello was sent (or the alert, when no ClientHello was seen).
    pub start: Timestamp,
    /// When the failure was seen or decided.
    pub decided: Timestamp,
    pub sni: Option<String>,
    pub version: Option<String>,
    /// The alert's name, for a fatal alert.
    pub alert: Option<String>,
    /// Who sent the alert (or who closed or reset the connection).
    pub by: Option<Side>,
    pub msg: String,
}

/// One direction's record layer: bytes in, whole records out.
#[derive(Default)]
struct Records {
    buf: Vec<u8>,
    /// Handshake message bytes (records of type 22, in order) not yet parsed.
    handshake: Vec<u8>,
    /// Everything after this point is encrypted.
    encrypted: bool,
}

#[derive(Default)]
pub struct TlsDissector {
    /// [client→server, server→client]
    dirs: [Records; 2],
    client_hello: Option<Timestamp>,
    server_hello: bool,
    sni: Option<String>,
    /// The highest version offered, then the one chosen.
    version: Option<u16>,
    /// Dissection ended: a failure was reported, the handshake completed, or the stream broke.
    done: bool,
    pub failures: Vec<TlsFailure>,
    /// Streams whose bytes stopped making sense as TLS (or overflowed the buffer): not dissected further.
    pub broken: u64,
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

impl TlsDissector {
    /// Bytes of direction `from_client`.
    pub fn on_data(&mut self, from_client: bool, ts: Timestamp, data: &[u8]) {
        if self.done {
            return;
        }
        let d = usize::from(!from_client);
        if self.dirs[d].buf.len() + data.len() > MAX_HANDSHAKE_BYTES {
            self.stop_broken();
            return;
        }
        self.dirs[d].buf.extend_from_slice(data);
        loop {
            let r = &mut self.dirs[d];
            if r.buf.len() < 5 {
                return;
            }
            let (kind, major, len) = (r.buf[0], r.buf[1], usize::from(u16::from_be_bytes([r.buf[3], r.buf[4]])));
            if major != 3 || !(20..=24).contains(&kind) || len > (1 << 14) + 2048 {
                self.stop_broken();
                return;
            }
            if r.buf.len() < 5 + len {
                return;
            }
            let body: Vec<u8> = r.buf[5..5 + len].to_vec();
            r.buf.drain(..5 + len);
            self.on_record(from_client, ts, kind, &body);
            if self.done {
                return;
            }
        }
    }

    fn on_record(&mut self, from_client: bool, ts: Timestamp, kind: u8, body: &[u8]) {
        let d = usize::from(!from_client);
        match kind {
            // ChangeCipherSpec: what this side sends next is encrypted (TLS 1.2; a 1.3 middlebox-compat
            // CCS changes nothing that was not already encrypted).
            20 => self.dirs[d].encrypted = true,
            // An alert in the clear (encrypted ones are longer than two bytes): fatal ends the handshake.
            21 if !self.dirs[d].encrypted && body.len() == 2 && (body[0] == 2 || names::always_fatal(body[1])) => {
                self.fail(ts, Some(names::alert(body[1])), Some(side(from_client)));
            }
            22 if !self.dirs[d].encrypted => {
                self.dirs[d].handshake.extend_from_slice(body);
                self.parse_handshake(from_client, ts);
            }
            23 => {
                self.dirs[d].encrypted = true;
                if self.server_hello && !from_client {
                    // Application data from the server: the handshake is over.
                    self.done = true;
                }
            }
            _ => {}
        }
    }

    fn parse_handshake(&mut self, from_client: bool, ts: Timestamp) {
        let d = usize::from(!from_client);
        loop {
            let h = &self.dirs[d].handshake;
            if h.len() < 4 {
                return;
            }
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            if h.len() < 4 + len {
                if len > MAX_HANDSHAKE_BYTES {
                    self.stop_broken();
                }
                return;
            }
            let (kind, msg) = (h[0], h[4..4 + len].to_vec());
            self.dirs[d].handshake.drain(..4 + len);
            match (kind, from_client) {
                (1, true) if self.client_hello.is_none() => {
                    self.client_hello = Some(ts);
                    if let Some(hello) = hello(&msg, true) {
                        self.sni = hello.sni;
                        self.version = Some(hello.version);
                    }
                }
                (2, false) => {
                    self.server_hello = true;
                    if let Some(hello) = hello(&msg, false) {
                        self.version = Some(hello.version);
                        if hello.version == 0x0304 {
                            // Everything after the ServerHello is encrypted in TLS 1.3, both ways.
                            self.dirs[0].encrypted = true;
                            self.dirs[1].encrypted = true;
                            self.done = true;
                            return;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The handshake completed, or the connection carries something we can no longer read.
    /// A handshake began and has neither completed nor failed.
    pub fn in_handshake(&self) -> bool {
        self.identified() && !self.done
    }

    pub fn identified(&self) -> bool {
        self.server_hello || self.client_hello.is_some()
    }

    /// Bytes the capture lost: handshake messages cannot be resynchronised.
    pub fn on_gap(&mut self) {
        if !self.done && !self.server_hello {
            self.stop_broken();
        }
    }

    /// The connection closed (`reset`: by an RST from `by`), or the capture ended (`by` = None,
    /// `capture_end`).
    pub fn on_close(&mut self, ts: Timestamp, why: &str, by: Option<Side>, capture_end: bool) {
        if self.done || capture_end || self.server_hello {
            return;
        }
        if self.client_hello.is_some() {
            let msg = format!("no ServerHello: the ClientHello was answered by {why}");
            self.fail_msg(ts, None, by, msg);
        }
    }

    /// No ServerHello within `timeout_ms` of the ClientHello.
    pub fn check(&mut self, now: Timestamp, timeout_ms: u64) {
        if self.done || self.server_hello {
            return;
        }
        if let Some(start) = self.client_hello {
            let deadline = start.plus_millis(timeout_ms);
            if now >= deadline {
                let msg = format!("no ServerHello within tlsHandshakeTimeoutMs ({timeout_ms} ms)");
                self.fail_msg(deadline, None, None, msg);
            }
        }
    }

    fn fail(&mut self, ts: Timestamp, alert: Option<&'static str>, by: Option<Side>) {
        let msg = alert.unwrap_or("alert").to_owned();
        self.fail_msg(ts, alert, by, msg);
    }

    fn fail_msg(&mut self, ts: Timestamp, alert: Option<&'static str>, by: Option<Side>, msg: String) {
        self.failures.push(TlsFailure {
            start: self.client_hello.unwrap_or(ts),
            decided: ts,
            sni: self.sni.clone(),
            version: self.version.map(names::version),
            alert: alert.map(str::to_owned),
            by,
            msg,
        });
        self.done = true;
    }

    fn stop_broken(&mut self) {
        self.broken += 1;
        self.done = true;
        self.dirs = Default::default();
    }
}

fn side(from_client: bool) -> Side {
    if from_client {
        Side::Client
    } else {
        Side::Server
    }
}

struct Hello {
    version: u16,
    sni: Option<String>,
}

/// Reads a ClientHello (`client`) or ServerHello body: the version (from supported_versions when present)
/// and, from a ClientHello, the server name. `None` when it does not parse.
fn hello(b: &[u8], client: bool) -> Option<Hello> {
    let mut r = Reader(b);
    let legacy = r.u16()?;
    r.skip(32)?; // random
    let sid = r.u8()?;
    r.skip(usize::from(sid))?;
    if client {
        let suites = r.u16()?;
        r.skip(usize::from(suites))?;
        let comp = r.u8()?;
        r.skip(usize::from(comp))?;
    } else {
        r.skip(3)?; // cipher suite, compression method
    }
    let mut out = Hello { version: legacy, sni: None };
    let Some(ext_len) = r.u16() else { return Some(out) };
    let mut exts = Reader(r.take(usize::from(ext_len))?);
    while let (Some(kind), Some(len)) = (exts.u16(), exts.u16()) {
        let mut e = Reader(exts.take(usize::from(len))?);
        match kind {
            0 if client => {
                // server_name: a list of (type, name); type 0 is a host name.
                let _list = e.u16()?;
                if e.u8()? == 0 {
                    let n = e.u16()?;
                    let name = e.take(usize::from(n))?;
                    if name.iter().all(|c| c.is_ascii_graphic()) {
                        out.sni = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
                    }
                }
            }
            43 if client => {
                // supported_versions: the highest offered (GREASE values ignored).
                let n = e.u8()?;
                let mut list = Reader(e.take(usize::from(n))?);
                while let Some(v) = list.u16() {
                    if v & 0x0f0f != 0x0a0a && v > out.version && v <= 0x0304 {
                        out.version = v;
                    }
                }
            }
            43 => out.version = e.u16()?,
            _ => {}
        }
    }
    Some(out)
}

/// Bounds-checked reads over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}
