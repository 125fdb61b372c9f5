//! MySQL and MariaDB (SPEC §3.5): a call is the login (the handshake response and any authentication
//! exchange, up to the server's OK or ERR) or a command; an ERR packet makes it an error of type `mysql`
//! (`1045 (28000) Access denied …`). The server answers commands in turn, each answer's packets numbered
//! from 1: an answer ends at its OK or ERR, at the end of its last result set, or where the next answer
//! begins. An ERR instead of the greeting (`1040 Too many connections`) is the connection's error. A
//! client asking for TLS hands the stream to TLS.

mod wire;

use super::calls::Calls;
use super::framing::{Broken, Framer};
use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector};
use crate::engine::stats::Stats;
use crate::entry::{EntryError, ErrorType, MysqlInfo, Protocol};
use crate::time::Timestamp;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Mysql, probe, start, summary, answered_by: None };

/// The server speaks first: its greeting tells.
fn probe(p: &Probe<'_>) -> Claim {
    super::claim_first_speaker(p, Direction::ToClient, wire::looks_like_greeting)
}

fn summary(s: &Stats) -> String {
    format!(
        "{} MySQL calls lost to capture gaps, {} MySQL answers without their call, {} MySQL calls over the \
         per-connection bound",
        s.mysql_calls_lost, s.mysql_answers_unpaired, s.mysql_calls_over_limit
    )
}

fn start(_: &Probe<'_>) -> Box<dyn StreamDissector> {
    Box::<MysqlDissector>::default()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server's greeting.
    #[default]
    Greeting,
    /// Greeted: the client's handshake response comes next.
    Greeted,
    /// The login is being answered.
    Login,
    Commands,
}

struct Call {
    command: &'static str,
    code: u8,
    query: Option<String>,
    /// Packets of its answer so far.
    packets: u32,
    /// Its answer is a result set, and the EOFs of it seen.
    result_set: bool,
    eofs: u8,
    last: Timestamp,
}

impl Call {
    /// What the entry says of this call, before its error.
    fn info(self) -> MysqlInfo {
        MysqlInfo { command: self.command.to_owned(), query: self.query, code: None, sqlstate: None }
    }
}

#[derive(Default)]
pub struct MysqlDissector {
    client: Framer,
    server: Framer,
    phase: Phase,
    server_caps: u32,
    deprecate_eof: bool,
    calls: Calls<Call>,
    /// The last packet of each direction was a full one: the next continues it ([client, server]).
    continued: [bool; 2],
    to_tls: bool,
    stopped: bool,
    unpaired: u64,
}

impl MysqlDissector {
    fn client_packet(&mut self, ts: Timestamp, seq: u8, p: &[u8], found: &mut Found<'_>) {
        match self.phase {
            Phase::Greeting => {}
            Phase::Greeted => {
                let caps = wire::u32_at(p, 0).unwrap_or(0);
                if caps & wire::CLIENT_SSL != 0 && p.len() == 32 {
                    self.to_tls = true;
                    return;
                }
                self.deprecate_eof = caps & self.server_caps & wire::CLIENT_DEPRECATE_EOF != 0;
                self.phase = Phase::Login;
                let call = self.call("login", 0, wire::response_user(p), ts);
                self.calls.ask(ts, call);
            }
            // Authentication data, files for LOAD DATA LOCAL, a long command's continuation.
            Phase::Login => {}
            Phase::Commands if seq != 0 => {}
            Phase::Commands => {
                let Some(&code) = p.first() else { return };
                // A client sends its next command once the answer before it is read.
                if self.calls.oldest_mut().is_some_and(|w| w.call.packets > 0) {
                    if let Some(w) = self.calls.answered() {
                        self.report(w.ts, w.call.last, w.call, None, found);
                    }
                }
                if wire::unanswered(code) {
                    return;
                }
                if matches!(code, 0x12 | 0x1e) {
                    // A replication stream: events, not answers.
                    self.stopped = true;
                    return;
                }
                let query = match code {
                    0x03 | 0x16 | 0x02 => {
                        let q = &p[1..];
                        Some(String::from_utf8_lossy(&q[..q.len().min(256)]).trim().to_owned())
                    }
                    _ => None,
                };
                let call = self.call(wire::command_name(code), code, query, ts);
                self.calls.ask(ts, call);
            }
        }
    }

    fn call(&self, command: &'static str, code: u8, query: Option<String>, ts: Timestamp) -> Call {
        Call { command, code, query, packets: 0, result_set: false, eofs: 0, last: ts }
    }

    fn server_packet(&mut self, ts: Timestamp, seq: u8, p: &[u8], len: usize, found: &mut Found<'_>) {
        if self.phase == Phase::Greeting {
            if let Some(err) = wire::server_error(p) {
                let call = self.call("connection", 0, None, ts);
                self.report(ts, ts, call, Some(err), found);
                self.stopped = true;
                return;
            }
            self.server_caps = wire::greeting_capabilities(p);
            self.phase = Phase::Greeted;
            return;
        }
        // An answer numbered from 1 again: the one before it is over.
        if seq == 1 && self.calls.oldest_mut().is_some_and(|w| w.call.packets > 0) {
            if let Some(w) = self.calls.answered() {
                self.report(w.ts, w.call.last, w.call, None, found);
            }
        }
        let Some(w) = self.calls.oldest_mut() else {
            self.unpaired += 1;
            return;
        };
        w.call.last = ts;
        let first = p.first().copied().unwrap_or(0);
        if first == 0xff {
            let err = wire::server_error(p);
            if let Some(w) = self.calls.answered() {
                self.report(w.ts, ts, w.call, err, found);
            }
            if self.phase == Phase::Login {
                self.phase = Phase::Commands;
            }
            return;
        }
        let c = &mut w.call;
        let done = if c.command == "login" {
            first == 0x00
        } else if c.packets == 0 {
            match first {
                // OK: done unless another result follows; a prepared statement's OK is followed by its
                // parameters' and columns' definitions.
                0x00 => c.code != 0x16 && wire::ok_status(p).is_some_and(|s| s & wire::MORE_RESULTS == 0),
                0xfb | 0xfe => false,
                _ => {
                    c.result_set = true;
                    false
                }
            }
        } else if c.result_set {
            if first == 0xfe && len < 0xff_ffff && (len < 9 || self.deprecate_eof) {
                c.eofs += 1;
                let needed = if self.deprecate_eof { 1 } else { 2 };
                if c.eofs >= needed {
                    if wire::ok_status(p).is_some_and(|s| s & wire::MORE_RESULTS != 0) {
                        c.result_set = false;
                        c.eofs = 0;
                        c.packets = 0;
                        return;
                    }
                    true
                } else {
                    false
                }
            } else {
                false
            }
        } else {
            first == 0x00 && c.code != 0x16
        };
        c.packets += 1;
        if done {
            if self.phase == Phase::Login {
                self.phase = Phase::Commands;
            }
            if let Some(w) = self.calls.answered() {
                self.report(w.ts, ts, w.call, None, found);
            }
        }
    }

    fn report(
        &mut self,
        start: Timestamp,
        end: Timestamp,
        call: Call,
        err: Option<wire::ServerError>,
        found: &mut Found<'_>,
    ) {
        let mut e = found.entry(Protocol::Mysql, start, end);
        let mut info = call.info();
        if let Some(err) = err {
            e.error = Some(EntryError { kind: ErrorType::Mysql, msg: err.words() });
            info.code = Some(err.code);
            info.sqlstate = err.sqlstate;
        }
        e.mysql = Some(info);
        found.out.push(e);
    }

    fn read(&mut self, dir: Direction, ts: Timestamp, mut bytes: &[u8], found: &mut Found<'_>) -> Result<(), Broken> {
        let d = usize::from(dir == Direction::ToClient);
        loop {
            let framer = if d == 0 { &mut self.client } else { &mut self.server };
            let Some(m) = framer.next(&mut bytes, 4, wire::packet_body)? else { return Ok(()) };
            let (seq, len, body) = (m.header[3], m.len, m.body.to_vec());
            let continuation = std::mem::replace(&mut self.continued[d], len == wire::MAX_PAYLOAD);
            if continuation {
                continue;
            }
            if d == 0 {
                self.client_packet(ts, seq, &body, found);
            } else {
                self.server_packet(ts, seq, &body, len, found);
            }
            if self.stopped || self.to_tls {
                return Ok(());
            }
        }
    }

    fn drain_counters(&mut self, stats: &mut Stats) {
        stats.mysql_calls_lost += std::mem::take(&mut self.calls.lost);
        stats.mysql_calls_over_limit += std::mem::take(&mut self.calls.over_limit);
        stats.mysql_answers_unpaired += std::mem::take(&mut self.unpaired);
    }
}

impl StreamDissector for MysqlDissector {
    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        if self.stopped || self.to_tls {
            return;
        }
        if let Err(why) = self.read(dir, ts, bytes, found) {
            self.stopped = true;
            self.calls.lose_all();
            found.parser_error(Protocol::Mysql, ts, &why.0);
        }
        self.drain_counters(found.stats);
    }

    fn gap(&mut self, _dir: Direction, _len: u64, _ts: Timestamp, found: &mut Found<'_>) {
        self.stopped = true;
        self.calls.lose_all();
        self.drain_counters(found.stats);
    }

    fn end(&mut self, _dir: Direction, _ts: Timestamp, _found: &mut Found<'_>) {}

    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>) {
        if self.stopped || self.to_tls || ending == Ending::CaptureEnded {
            return;
        }
        let waiting: Vec<_> = self.calls.take_all().collect();
        for w in waiting {
            if w.call.packets > 0 {
                // Answered: its end was the connection's.
                let last = w.call.last;
                self.report(w.ts, last, w.call, None, found);
                continue;
            }
            if !super::calls::unanswered(ending, w.ts, ts) {
                continue;
            }
            let mut e = found.unanswered(Protocol::Mysql, w.ts, ts, ending);
            e.mysql = Some(w.call.info());
            found.out.push(e);
        }
    }

    fn check(&mut self, _now: Timestamp, _found: &mut Found<'_>) {}

    fn answered_all(&self) -> bool {
        self.calls.is_empty()
    }

    fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered()
    }

    fn take_over(&mut self, _ts: Timestamp, found: &mut Found<'_>) -> Option<Box<dyn StreamDissector>> {
        if !std::mem::take(&mut self.to_tls) {
            return None;
        }
        self.stopped = true;
        found.tls_from_here()
    }
}
