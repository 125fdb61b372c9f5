//! PostgreSQL (SPEC §3.5): a call is the startup and authentication, a simple query, a function call or
//! an extended-protocol batch up to its Sync; the server ends each with one ReadyForQuery, in order, so
//! pipelined batches pair in turn. An ErrorResponse of severity ERROR, FATAL or PANIC makes its call an
//! error of type `postgresql` (`28P01 password authentication failed …`); notices and warnings are not
//! errors. A FATAL ends the connection: the calls after it are not reported (the error says why). An
//! `SSLRequest` answered `S` hands the stream to TLS; a `CancelRequest` is its own connection and no call.

mod wire;

use super::calls::Calls;
use super::framing::{Broken, Framer};
use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector};
use crate::engine::stats::Stats;
use crate::entry::{EntryError, ErrorType, PostgresqlInfo, Protocol};
use crate::time::Timestamp;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Postgresql, probe, start, summary, answered_by: None };

fn probe(p: &Probe<'_>) -> Claim {
    super::claim_first_speaker(p, Direction::ToServer, wire::looks_like_client)
}

fn summary(s: &Stats) -> String {
    format!(
        "{} PostgreSQL calls lost to capture gaps, {} PostgreSQL answers without their call (picked up late), \
         {} PostgreSQL calls over the per-connection bound",
        s.postgresql_calls_lost, s.postgresql_answers_unpaired, s.postgresql_calls_over_limit
    )
}

fn start(p: &Probe<'_>) -> Box<dyn StreamDissector> {
    // Picked up at a startup-phase message unless the probe saw a Query.
    let startup = p.bytes.first() != Some(&b'Q');
    Box::new(PostgresqlDissector { client_startup: startup, ..PostgresqlDissector::default() })
}

struct Call {
    command: &'static str,
    query: Option<String>,
    /// The first error the server sent for it.
    error: Option<wire::ServerError>,
}

impl Call {
    /// What the entry says of this call, before its error.
    fn info(self) -> PostgresqlInfo {
        PostgresqlInfo { command: self.command.to_owned(), query: self.query, severity: None, sqlstate: None }
    }
}

#[derive(Default)]
pub struct PostgresqlDissector {
    client: Framer,
    server: Framer,
    /// The client's next message is a startup-phase one (no type byte).
    client_startup: bool,
    /// The server's next byte answers an `SSLRequest` (`S`/`N`) or a `GSSENCRequest` (`G`/`N`).
    server_answers_request: bool,
    /// The server accepted TLS: the stream is TLS's from here.
    to_tls: bool,
    calls: Calls<Call>,
    /// An extended-protocol batch being sent, until its Sync.
    open: Option<(Timestamp, Call)>,
    stopped: bool,
    unpaired: u64,
}

impl PostgresqlDissector {
    fn client_message(&mut self, ts: Timestamp, startup: bool, t: u8, body: &[u8]) {
        if startup {
            match wire::be32(body) {
                wire::SSL_REQUEST | wire::GSSENC_REQUEST => self.server_answers_request = true,
                wire::CANCEL_REQUEST => {}
                _ => {
                    self.client_startup = false;
                    let who = wire::startup_who(body.get(4..).unwrap_or_default());
                    self.calls.ask(ts, Call { command: "startup", query: Some(who), error: None });
                }
            }
            return;
        }
        match t {
            b'Q' => {
                let query = Some(wire::query_text(body, false));
                self.calls.ask(ts, Call { command: "query", query, error: None });
            }
            b'F' => self.calls.ask(ts, Call { command: "function", query: None, error: None }),
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => {
                let (_, call) = self.open.get_or_insert((ts, Call { command: "execute", query: None, error: None }));
                if t == b'P' && call.query.is_none() {
                    call.query = Some(wire::query_text(body, true));
                }
            }
            b'S' => {
                let (at, call) =
                    self.open.take().unwrap_or((ts, Call { command: "execute", query: None, error: None }));
                self.calls.ask(at, call);
            }
            // Passwords and SASL, COPY data, Terminate: parts of a call, or none.
            _ => {}
        }
    }

    fn server_message(&mut self, ts: Timestamp, t: u8, body: &[u8], found: &mut Found<'_>) {
        match t {
            b'Z' => match self.calls.answered() {
                Some(w) => self.report(w.ts, ts, w.call, found),
                None => self.unpaired += 1,
            },
            b'E' => {
                let err = wire::server_error(body);
                let fatal = matches!(err.severity.as_str(), "FATAL" | "PANIC");
                if fatal {
                    // No ReadyForQuery follows: the server closes the connection.
                    match self.calls.answered() {
                        Some(mut w) => {
                            w.call.error = Some(err);
                            self.report(w.ts, ts, w.call, found);
                        }
                        None => {
                            // A FATAL with nothing asked (the server shutting down, too many clients
                            // before the startup was read): the connection's own error.
                            let call = Call { command: "connection", query: None, error: Some(err) };
                            self.report(ts, ts, call, found);
                        }
                    }
                    self.stopped = true;
                    self.calls.take_all().for_each(drop);
                    return;
                }
                match self.calls.oldest_mut() {
                    Some(w) if w.call.error.is_none() => w.call.error = Some(err),
                    Some(_) => {}
                    None => self.unpaired += 1,
                }
            }
            _ => {}
        }
    }

    fn report(&mut self, start: Timestamp, end: Timestamp, mut call: Call, found: &mut Found<'_>) {
        let mut e = found.entry(Protocol::Postgresql, start, end);
        let error = call.error.take();
        let mut info = call.info();
        if let Some(err) = error {
            if matches!(err.severity.as_str(), "ERROR" | "FATAL" | "PANIC") {
                e.error =
                    Some(EntryError { kind: ErrorType::Postgresql, msg: format!("{} {}", err.sqlstate, err.message) });
            }
            info.severity = Some(err.severity);
            info.sqlstate = Some(err.sqlstate);
        }
        e.postgresql = Some(info);
        found.out.push(e);
    }

    fn broken(&mut self, ts: Timestamp, why: Broken, found: &mut Found<'_>) {
        self.stopped = true;
        self.calls.lose_all();
        found.parser_error(Protocol::Postgresql, ts, &why.0);
    }

    fn read_client(&mut self, ts: Timestamp, mut bytes: &[u8]) -> Result<(), Broken> {
        loop {
            let startup = self.client_startup;
            let m = if startup {
                self.client.next(&mut bytes, 4, wire::startup_body)?
            } else {
                self.client.next(&mut bytes, 5, |h| wire::typed_body(h, true))?
            };
            let Some(m) = m else { return Ok(()) };
            let t = m.header[0];
            let body = m.body.to_vec();
            self.client_message(ts, startup, t, &body);
        }
    }

    fn read_server(&mut self, ts: Timestamp, mut bytes: &[u8], found: &mut Found<'_>) -> Result<(), Broken> {
        if self.server_answers_request {
            let Some((&answer, rest)) = bytes.split_first() else { return Ok(()) };
            self.server_answers_request = false;
            match answer {
                b'S' => {
                    self.to_tls = true;
                    return Ok(());
                }
                // GSSAPI encryption: nothing more is readable.
                b'G' => {
                    self.stopped = true;
                    return Ok(());
                }
                b'N' => bytes = rest,
                // An ErrorResponse: a server too old for the request.
                _ => {}
            }
        }
        loop {
            let Some(m) = self.server.next(&mut bytes, 5, |h| wire::typed_body(h, false))? else { return Ok(()) };
            let t = m.header[0];
            let body = m.body.to_vec();
            self.server_message(ts, t, &body, found);
            if self.stopped {
                return Ok(());
            }
        }
    }

    fn drain_counters(&mut self, stats: &mut Stats) {
        stats.postgresql_calls_lost += std::mem::take(&mut self.calls.lost);
        stats.postgresql_calls_over_limit += std::mem::take(&mut self.calls.over_limit);
        stats.postgresql_answers_unpaired += std::mem::take(&mut self.unpaired);
    }
}

impl StreamDissector for PostgresqlDissector {
    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        if self.stopped || self.to_tls {
            return;
        }
        let read = match dir {
            Direction::ToServer => self.read_client(ts, bytes),
            Direction::ToClient => self.read_server(ts, bytes, found),
        };
        if let Err(why) = read {
            if !self.stopped {
                self.broken(ts, why, found);
            }
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
        for w in waiting.into_iter().filter(|w| super::calls::unanswered(ending, w.ts, ts)) {
            let mut e = found.unanswered(Protocol::Postgresql, w.ts, ts, ending);
            e.postgresql = Some(w.call.info());
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
