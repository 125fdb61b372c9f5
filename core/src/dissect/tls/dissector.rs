//! A TLS handshake read and never decrypted (SPEC §3.5): records split from the stream, the hellos and
//! alerts sent in the clear, and — once TLS 1.3 encrypts the rest of the handshake — the sizes of the
//! records each side sends, which is all that tells a handshake completed from one a side gave up on.
//!
//! TLS 1.3 after the ServerHello: the server sends its flight (certificate and all), then the client its
//! own (Finished, at least 53 bytes; with a certificate for mTLS), then the server answers (session
//! tickets, data). A side whose only record in its turn is alert-sized (at most 24 bytes: an alert, its
//! content type and a 16-byte tag) and that then closes or is closed on before any data gave up: the client
//! after the server's flight rejected the server's certificate; the server after the client's rejected the
//! client's. A small record as the last of a longer turn is a close_notify, not a failure.
//!
//! Buffers: a record is read where it lies in the segment; only one cut by a segment boundary is gathered
//! (at most one record), and application data is passed over by its length, never held.

use super::hello::hello;
use super::names;
use crate::entry::Side;
use crate::time::Timestamp;

/// Bytes of handshake messages buffered per direction to read a hello that spans records or segments;
/// beyond, the handshake is not dissected (counted).
const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;
/// The largest record body TLS allows (2^14 plus expansion).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// The largest TLS 1.3 record that can only be an alert: 2 bytes, the inner content type, a 16-byte tag.
const ALERT_SIZED: usize = 24;
/// How soon after the other side's flight a lone alert-sized record is a verdict on it (certificates
/// are judged at once); later, it is a close.
const VERDICT_WINDOW_MS: u64 = 3_000;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// A handshake that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFailure {
    /// When the ClientHello was sent (or the alert, when no ClientHello was seen).
    pub start: Timestamp,
    /// When the failure was seen or decided.
    pub decided: Timestamp,
    pub sni: Option<String>,
    pub version: Option<String>,
    /// The alert's name, for an alert read in the clear.
    pub alert: Option<String>,
    /// Who sent the alert (or closed or reset the connection).
    pub by: Option<Side>,
    pub msg: String,
}

/// One direction's record layer.
#[derive(Default)]
struct Records {
    /// A record cut by a segment boundary: its header and as much of its body as came.
    partial: Vec<u8>,
    /// Application data still to pass over.
    skip: usize,
    /// Handshake message bytes (records of type 22, in order) not yet parsed.
    handshake: Vec<u8>,
    /// What this side sends is encrypted (after its ChangeCipherSpec in TLS 1.2; after the ServerHello in
    /// TLS 1.3, where records in the clear are still read as they are).
    encrypted: bool,
    /// The first record from this side was seen.
    started: bool,
    /// This side's last record was an alert — in the clear, or encrypted and known by its size (its whole
    /// TLS 1.3 turn; a close_notify after the handshake): it is closing.
    closing: bool,
}

/// Whose turn it is in a TLS 1.3 handshake after the ServerHello, and what the side whose turn it is sent:
/// how many records, and whether the last was alert-sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    Server,
    Client {
        records: u32,
        small: bool,
    },
    ServerReply {
        records: u32,
        small: bool,
    },
    /// Both sides went on: the handshake completed.
    Over,
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
    /// TLS 1.3 after the ServerHello.
    turn: Option<Turn>,
    /// A warning alert (TLS 1.2's `unrecognized_name`, say) that ends the handshake only if it does not go
    /// on: when, which, from whom.
    warning: Option<(Timestamp, &'static str, Side)>,
    /// When each side last sent an encrypted record ([client, server]).
    last_encrypted: [Timestamp; 2],
    /// The handshake is decided: completed, failed, or no longer readable.
    done: bool,
    /// Nothing more is read (the stream stopped making sense as TLS).
    stopped: bool,
    pub failures: Vec<TlsFailure>,
    /// Streams whose bytes stopped making sense as TLS (or overflowed the buffer): not dissected further.
    pub broken: u64,
}

impl TlsDissector {
    /// Bytes held between calls: records cut by a segment boundary, handshake messages not yet whole.
    pub fn buffered(&self) -> usize {
        self.dirs.iter().map(|r| r.partial.len() + r.handshake.len()).sum()
    }

    /// Bytes of direction `from_client`.
    pub fn on_data(&mut self, from_client: bool, ts: Timestamp, mut data: &[u8]) {
        let d = usize::from(!from_client);
        while !self.stopped && !data.is_empty() {
            let r = &mut self.dirs[d];
            if r.skip > 0 {
                let n = r.skip.min(data.len());
                r.skip -= n;
                data = &data[n..];
                continue;
            }
            if r.partial.is_empty() {
                // A whole record in place: nothing copied.
                match header(data) {
                    Some(Ok((kind, len))) if data.len() >= 5 + len => {
                        self.record(from_client, ts, kind, len, Some(&data[5..5 + len]));
                        data = &data[5 + len..];
                        continue;
                    }
                    Some(Ok((APPLICATION_DATA, len))) => {
                        // Its size is all that matters: pass over its body as it comes.
                        self.record(from_client, ts, APPLICATION_DATA, len, None);
                        self.dirs[d].skip = len - (data.len() - 5);
                        return;
                    }
                    Some(Err(())) => return self.not_tls(from_client, ts, data),
                    Some(Ok(_)) | None => {}
                }
            }
            let r = &mut self.dirs[d];
            let want = match header(&r.partial) {
                Some(Ok((_, len))) => 5 + len,
                Some(Err(())) => return self.not_tls(from_client, ts, data),
                None => 5,
            };
            let n = (want - r.partial.len()).min(data.len());
            r.partial.extend_from_slice(&data[..n]);
            data = &data[n..];
            match header(&r.partial) {
                Some(Ok((kind, len))) if r.partial.len() == 5 + len => {
                    let whole = std::mem::take(&mut r.partial);
                    self.record(from_client, ts, kind, len, Some(&whole[5..]));
                }
                Some(Ok((APPLICATION_DATA, len))) => {
                    let had = r.partial.len() - 5;
                    r.partial.clear();
                    self.record(from_client, ts, APPLICATION_DATA, len, None);
                    self.dirs[d].skip = len - had;
                }
                Some(Err(())) => return self.not_tls(from_client, ts, data),
                Some(Ok(_)) | None => {}
            }
        }
    }

    /// Bytes that are no TLS record. The server's first answer to a ClientHello (an `https://` client on
    /// a plain HTTP port) is an error; anything else stops the reading, counted.
    fn not_tls(&mut self, from_client: bool, ts: Timestamp, bytes: &[u8]) {
        let first_answer = !from_client && !self.dirs[1].started && self.client_hello.is_some();
        if first_answer && !self.done {
            let line: String = bytes
                .iter()
                .take_while(|&&b| b != b'\r' && b != b'\n')
                .take(60)
                .map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' })
                .collect();
            self.fail_msg(ts, None, Some(Side::Server), format!("not TLS: the server answered {line:?}"));
            self.stopped = true;
            return;
        }
        self.stop_broken();
    }

    /// One record of `kind` and body length `len`; `body` when it was read (application data's is not).
    fn record(&mut self, from_client: bool, ts: Timestamp, kind: u8, len: usize, body: Option<&[u8]>) {
        let d = usize::from(!from_client);
        self.dirs[d].started = true;
        if self.done {
            // After the handshake only sizes are watched: a side's last record is its close_notify if it is an
            // alert (TLS 1.2 shows the type) or, in TLS 1.3, alert-sized.
            self.dirs[d].closing =
                kind == ALERT || (kind == APPLICATION_DATA && len <= ALERT_SIZED && self.turn.is_some());
            return;
        }
        let side = side(from_client);
        self.dirs[d].closing = kind == ALERT;
        match (kind, body) {
            (CHANGE_CIPHER_SPEC, _) => {
                // TLS 1.2, after the ServerHello: what this side sends next is encrypted. (TLS 1.3's
                // middlebox-compatibility CCS, sent around a HelloRetryRequest too, changes nothing.)
                if self.server_hello && self.turn.is_none() {
                    self.dirs[d].encrypted = true;
                }
                self.goes_on(side);
            }
            (ALERT, Some(&[level, code])) if self.turn.is_some() || !self.dirs[d].encrypted => {
                // In the clear: TLS 1.3 encrypts alerts as application data, so an alert record there was
                // sent in the clear (a client giving up on the ServerHello).
                // A warning (TLS 1.2's `unrecognized_name`, or an error alert some stacks send as one) ends the
                // handshake only if the handshake does not go on.
                if level == 2 {
                    self.fail(ts, Some(names::alert(code)), Some(side));
                } else if code != 0 {
                    self.warning.get_or_insert((ts, names::alert(code), side));
                }
            }
            (HANDSHAKE, Some(body)) if !self.dirs[d].encrypted => {
                self.goes_on(side);
                if self.dirs[d].handshake.len() + body.len() > MAX_HANDSHAKE_BYTES {
                    return self.stop_broken();
                }
                self.dirs[d].handshake.extend_from_slice(body);
                self.parse_handshake(from_client, ts);
            }
            (APPLICATION_DATA, _) | (ALERT | HANDSHAKE, _) => self.encrypted_record(from_client, len, ts),
            _ => {}
        }
    }

    /// A record that cannot be read: TLS 1.3's encrypted handshake is followed by its sizes; in TLS 1.2
    /// the server's application data ends the handshake.
    fn encrypted_record(&mut self, from_client: bool, len: usize, ts: Timestamp) {
        let small = len <= ALERT_SIZED;
        // A verdict on a certificate comes at once; an alert long after the other side's flight is a
        // server closing a connection left idle (found on the real node: the API server closing a
        // connection the operator's client opened and never used).
        let d = usize::from(!from_client);
        let late = ts > self.last_encrypted[1 - d].plus_millis(VERDICT_WINDOW_MS);
        self.last_encrypted[d] = ts;
        let Some(turn) = self.turn else {
            if self.server_hello && !from_client {
                self.done = true;
                self.warning = None;
            }
            return;
        };
        let next = match (turn, from_client) {
            (Turn::Over, _) => Turn::Over,
            (Turn::Server, false) => Turn::Server,
            (Turn::Server, true) if small && late => Turn::Over,
            (Turn::Server, true) => Turn::Client { records: 1, small },
            (Turn::Client { records, .. }, true) => Turn::Client { records: records + 1, small },
            // The client's turn ended with its close_notify after its Finished: it closed, and what the
            // server sends now is its own close.
            (Turn::Client { records, small: true }, false) if records > 1 => Turn::Over,
            // Tickets or data from the server after the client's flight: completed.
            (Turn::Client { .. } | Turn::ServerReply { .. }, false) if !small => Turn::Over,
            (Turn::Client { .. }, false) if late => Turn::Over,
            (Turn::Client { .. }, false) => Turn::ServerReply { records: 1, small },
            (Turn::ServerReply { records, small: last }, false) => {
                Turn::ServerReply { records: records + 1, small: last }
            }
            // The client sending on after the server's answer: both sides went on.
            (Turn::ServerReply { .. }, true) => Turn::Over,
        };
        self.turn = Some(next);
        match next {
            Turn::Client { records: 1, small: true } => self.dirs[0].closing = true,
            Turn::ServerReply { records: 1, small: true } => self.dirs[1].closing = true,
            _ => {}
        }
        // The client's turn ended with its close_notify after its Finished: it closed (a later RST from it
        // is its closed socket's, even when the server's own close crosses it unread).
        if matches!((turn, from_client), (Turn::Client { records: 2.., small: true }, false)) {
            self.dirs[0].closing = true;
        }
        if next == Turn::Over {
            self.done = true;
            self.warning = None;
        }
    }

    /// The handshake went on past a warning alert.
    fn goes_on(&mut self, from: Side) {
        if self.warning.is_some_and(|(_, _, by)| by == from || self.server_hello) {
            self.warning = None;
        }
    }

    fn parse_handshake(&mut self, from_client: bool, ts: Timestamp) {
        let d = usize::from(!from_client);
        let mut at = 0;
        loop {
            let h = &self.dirs[d].handshake[at..];
            if h.len() < 4 {
                break;
            }
            let len = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
            if h.len() < 4 + len {
                if len > MAX_HANDSHAKE_BYTES {
                    return self.stop_broken();
                }
                break;
            }
            let kind = h[0];
            let parsed = hello(&h[4..4 + len], from_client);
            at += 4 + len;
            match (kind, from_client) {
                (1, true) => {
                    // The first ClientHello starts the handshake; a second one answers a HelloRetryRequest.
                    self.client_hello.get_or_insert(ts);
                    if let Some(hello) = parsed {
                        self.sni = hello.sni.or(self.sni.take());
                        self.version = Some(hello.version);
                    }
                }
                (2, false) => {
                    let Some(hello) = parsed else {
                        self.server_hello = true;
                        continue;
                    };
                    self.version = Some(hello.version);
                    if hello.retry {
                        // HelloRetryRequest: the client tries again; the handshake goes on.
                        continue;
                    }
                    self.server_hello = true;
                    if hello.version == 0x0304 {
                        // The rest of the handshake is encrypted, both ways: watched by record sizes.
                        self.dirs[0].encrypted = true;
                        self.dirs[1].encrypted = true;
                        self.turn = Some(Turn::Server);
                        self.dirs[1].handshake.clear();
                        return;
                    }
                }
                _ => {}
            }
        }
        self.dirs[d].handshake.drain(..at);
    }

    /// A handshake began and has neither completed nor failed.
    pub fn in_handshake(&self) -> bool {
        self.identified() && !self.done
    }

    pub fn identified(&self) -> bool {
        self.server_hello || self.client_hello.is_some()
    }

    /// Whether the side `from_client` announced its close (its last record an alert: a close_notify, or
    /// the alert that failed the handshake): an RST it sends then is its kernel's, for bytes that crossed
    /// the close.
    pub fn closing(&self, from_client: bool) -> bool {
        self.dirs[usize::from(!from_client)].closing
    }

    /// Bytes the capture lost: record boundaries cannot be found again.
    pub fn on_gap(&mut self) {
        if !self.done {
            self.stop_broken();
        } else {
            // What was lost may have followed a close_notify: a later RST is no longer known to be a close.
            self.stopped = true;
            self.dirs.iter_mut().for_each(|r| r.closing = false);
        }
    }

    /// A FIN from the client (`from_client`) or the server.
    pub fn on_fin(&mut self, ts: Timestamp, from_client: bool, timeout_ms: u64) {
        if from_client {
            // A client closing its own side decides what it gave up on, not whether it was answered.
            if !(self.done || self.stopped) {
                self.gave_up(ts);
            }
            // A client that leaves after its whole flight (a pooled connection it did not need): what the
            // server sends now answers the close; a rejection of its certificate can no longer be told.
            if !self.done && matches!(self.turn, Some(Turn::Client { .. })) {
                self.turn = Some(Turn::Over);
                self.done = true;
                self.warning = None;
            }
        } else {
            self.on_close(ts, "a close (FIN) from the server", Some(Side::Server), false, timeout_ms);
        }
    }

    /// The connection ended — reset by `by`, closed, or the capture ended (`capture_end`): what the
    /// handshake was waiting for is decided. `why` says how, in words.
    pub fn on_close(&mut self, ts: Timestamp, why: &str, by: Option<Side>, capture_end: bool, timeout_ms: u64) {
        if self.done || self.stopped {
            return;
        }
        if capture_end {
            // As its timer would: a ClientHello never answered; nothing else is decided by the capture's end.
            if !self.server_hello {
                self.check(Timestamp(u64::MAX), timeout_ms);
            }
            return;
        }
        self.gave_up(ts);
        if !self.done && self.client_hello.is_some() && !self.server_hello {
            let msg = format!("no ServerHello: the ClientHello was answered by {why}");
            self.fail_msg(ts, None, by, msg);
        }
    }

    /// A side closed or reset: a warning the handshake did not go on from, or a TLS 1.3 turn that was only
    /// an alert, failed the handshake.
    fn gave_up(&mut self, ts: Timestamp) {
        if let Some((at, name, from)) = self.warning {
            let msg = name.to_owned();
            return self.fail_msg(at, Some(name), Some(from), msg);
        }
        match self.turn {
            Some(Turn::Client { records: 1, small: true }) => {
                let msg = "encrypted alert: the client gave up after the server's handshake flight (most likely \
                           rejecting its certificate)";
                self.fail_msg(ts, None, Some(Side::Client), msg.to_owned());
            }
            Some(Turn::ServerReply { records: 1, small: true }) => {
                let msg = "encrypted alert: the server gave up after the client's handshake flight (most likely \
                           rejecting its certificate: mTLS)";
                self.fail_msg(ts, None, Some(Side::Server), msg.to_owned());
            }
            _ => {}
        }
    }

    /// No ServerHello within `timeout_ms` of the ClientHello; a warning the handshake did not go on from
    /// in that long.
    pub fn check(&mut self, now: Timestamp, timeout_ms: u64) {
        if let Some((at, name, from)) = self.warning.filter(|(at, ..)| now >= at.plus_millis(timeout_ms)) {
            if !(self.done || self.stopped) {
                return self.fail_msg(at, Some(name), Some(from), name.to_owned());
            }
        }
        if self.done || self.stopped || self.server_hello {
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
        self.stopped = true;
    }

    fn stop_broken(&mut self) {
        if !self.done {
            self.broken += 1;
        }
        self.done = true;
        self.stopped = true;
        self.dirs = Default::default();
    }
}

/// A record header at the start of `b`: `None` while fewer than 5 bytes; an error when they are not one
/// (a content type TLS does not have, a version other than 3.x, a length over the limit).
fn header(b: &[u8]) -> Option<Result<(u8, usize), ()>> {
    let h = b.get(..5)?;
    let (kind, major, len) = (h[0], h[1], usize::from(u16::from_be_bytes([h[3], h[4]])));
    Some(if major != 3 || !(20..=24).contains(&kind) || len > MAX_RECORD { Err(()) } else { Ok((kind, len)) })
}

fn side(from_client: bool) -> Side {
    if from_client {
        Side::Client
    } else {
        Side::Server
    }
}
