//! DNS messages paired into exchanges (SPEC §3.5), over UDP and TCP alike, for every opcode.
//!
//! - An answer finds its query by client address, server socket and id, then question (ids are reused,
//!   and resolvers ask A and AAAA at once with one id); an answer without a question (QDCOUNT 0: some
//!   servers' FORMERR, REFUSED, NOTIMP) by id alone. The client's address, not its port: glibc asks a
//!   server that answered SERVFAIL again from a new socket with the same id.
//! - Copies of one query join its exchange for `dnsTimeoutMs` + 2 s from the first, so glibc's retry a
//!   few ms after its own 5 s timeout is one exchange. A copy has the same id, or — Go's resolver —
//!   a new id and socket, the same question, while the exchange is unanswered (and at least
//!   `RETRY_GAP_MS` after the last copy: two threads asking at once are two lookups), or after an error
//!   answer (a resolver retrying a SERVFAIL). Answered only after a copy: an error whose `elapsedTime`
//!   is the whole wait — Kubernetes' 5 s DNS delay. Answers to later copies are absorbed.
//! - No answer to any copy within that window, and `dnsTimeoutMs` after the last copy: a half
//!   connection (`missing response`) — on port 53, or to a server seen answering DNS: a datagram
//!   elsewhere that merely parses as a query proves nothing.
//! - A truncated (TC) answer waits for the same question again (over TCP, RFC 7766), which continues
//!   the exchange; if it never comes the truncated answer is the exchange.
//! - FORMERR, SERVFAIL, NOTIMP, REFUSED, NOTAUTH and NOTZONE are errors for every opcode; a query's
//!   NXDOMAIN goes to the search lists (`search.rs`), which decide whether it is final.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::search::{SearchLists, SEARCH_STEP_MS};
use super::wire::{rcode_name, Message, Question, TypeName};
use crate::engine::stats::Stats;
use crate::entry::{DnsInfo, DnsQuestion, Endpoint, Entry, EntryError, ErrorType, Headers, Protocol, Response};
use crate::time::Timestamp;

/// Queries waiting for an answer, at most; past it new queries are not tracked (counted).
pub const MAX_PENDING: usize = 65_536;
/// How long after `dnsTimeoutMs` a copy of a query still joins it: glibc retries a few ms after it.
const COPY_GRACE_MS: u64 = 2_000;
/// The least time between a query and a copy of it with a new id: resolvers retry after a timeout
/// (musl's shortest is about a second); two lookups at once are two exchanges.
const RETRY_GAP_MS: u64 = 500;
/// Ids remembered per exchange (one per copy that changed it).
const MAX_IDS: usize = 8;
/// Servers remembered as speaking DNS on a port other than 53.
const MAX_KNOWN_SERVERS: usize = 4_096;
const DNS_PORT: u16 = 53;
const QUERY: u8 = 0;
const NXDOMAIN: u8 = 3;

type Socket = (IpAddr, u16);
type Slot = u64;

/// Answer codes that are errors whatever the opcode.
fn is_error_rcode(rcode: u8) -> bool {
    matches!(rcode, 1 | 2 | 4 | 5 | 9 | 10)
}

struct Exchange {
    client: IpAddr,
    /// The client's socket when it first asked: the entry's source.
    client_port: u16,
    server: Socket,
    opcode: u8,
    /// The ids of its copies, the first one first (the entry's).
    ids: Vec<u16>,
    question: Option<Question>,
    first: Timestamp,
    last_copy: Timestamp,
    /// Copies of the query the client sent (a TCP follow-up to a truncated answer is not one).
    copies: u32,
    /// The answer's code, once answered (a truncated answer counts only if nothing followed it).
    rcode: Option<u8>,
    /// A truncated answer, waiting for the question again.
    truncated: Option<Entry>,
}

impl Exchange {
    fn waiting(&self) -> bool {
        self.rcode.is_none() && self.truncated.is_none()
    }
}

pub struct DnsTracker {
    /// Exchanges open at once, at most (`MAX_PENDING` divided among shards).
    limit: usize,
    next: Slot,
    exchanges: HashMap<Slot, Exchange, foldhash::fast::RandomState>,
    /// (client address, server, id) → its exchanges (usually one; two for A and AAAA with one id).
    by_id: HashMap<(IpAddr, Socket, u16), Vec<Slot>, foldhash::fast::RandomState>,
    /// (client address, server, opcode, question) → the latest exchange asking it.
    by_question: HashMap<(IpAddr, Socket, u8, Question), Slot, foldhash::fast::RandomState>,
    known_servers: HashSet<Socket, foldhash::fast::RandomState>,
    search: SearchLists,
}

impl Default for DnsTracker {
    fn default() -> Self {
        DnsTracker::with_limit(MAX_PENDING)
    }
}

impl DnsTracker {
    /// A tracker that follows at most `limit` exchanges at once.
    pub fn with_limit(limit: usize) -> DnsTracker {
        DnsTracker {
            limit: limit.max(1),
            next: 0,
            exchanges: Default::default(),
            by_id: Default::default(),
            by_question: Default::default(),
            known_servers: Default::default(),
            search: SearchLists::default(),
        }
    }

    /// One DNS message (a UDP datagram, or one message of a TCP stream) from `src` to `dst`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_datagram(
        &mut self,
        src: Socket,
        dst: Socket,
        payload: &[u8],
        ts: Timestamp,
        timeout_ms: u64,
        stats: &mut Stats,
        out: &mut Vec<Entry>,
    ) {
        let msg = match Message::parse(payload) {
            Ok(m) => m,
            Err(_) => {
                let known = src.1 == DNS_PORT
                    || dst.1 == DNS_PORT
                    || self.known_servers.contains(&src)
                    || self.known_servers.contains(&dst);
                if known {
                    stats.dns_malformed += 1;
                }
                return;
            }
        };
        if msg.response {
            self.on_answer(src, dst, msg, payload.len(), ts, stats, out);
        } else {
            self.on_query(src, dst, msg, ts, timeout_ms, stats, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_query(
        &mut self,
        client: Socket,
        server: Socket,
        msg: Message,
        ts: Timestamp,
        timeout_ms: u64,
        stats: &mut Stats,
        out: &mut Vec<Entry>,
    ) {
        stats.dns_queries += 1;
        let window = timeout_ms.saturating_add(COPY_GRACE_MS);
        if let (QUERY, Some(q)) = (msg.opcode, &msg.question) {
            self.search.on_query(client.0, &q.name, q.qtype, ts, stats, out);
        }
        // A copy with the same id.
        let same_id = self.by_id.get(&(client.0, server, msg.id)).and_then(|slots| {
            slots
                .iter()
                .copied()
                .find(|s| self.exchanges.get(s).is_some_and(|x| x.opcode == msg.opcode && x.question == msg.question))
        });
        if let Some(slot) = same_id {
            if self.exchanges.get(&slot).is_some_and(|x| ts < x.first.plus_millis(window)) {
                if let Some(x) = self.exchanges.get_mut(&slot) {
                    if x.truncated.take().is_some() {
                        x.last_copy = ts;
                    } else if x.rcode.is_none() {
                        x.copies += 1;
                        x.last_copy = ts;
                    }
                }
                return;
            }
            // Past its window and not yet swept: decided before the new query takes its place.
            self.finish(slot, timeout_ms, out);
        }
        // A copy with a new id (and socket) asking the same question.
        if let Some(q) = &msg.question {
            let key = (client.0, server, msg.opcode, q.clone());
            if let Some(&slot) = self.by_question.get(&key) {
                let joins = self.exchanges.get(&slot).is_some_and(|x| {
                    ts < x.first.plus_millis(window)
                        && (x.truncated.is_some()
                            || x.rcode.is_some_and(is_error_rcode)
                            || (x.rcode.is_none() && ts >= x.last_copy.plus_millis(RETRY_GAP_MS)))
                });
                if joins {
                    if let Some(x) = self.exchanges.get_mut(&slot) {
                        if x.truncated.take().is_none() && x.rcode.is_none() {
                            x.copies += 1;
                        }
                        x.last_copy = ts;
                        if x.ids.len() < MAX_IDS && !x.ids.contains(&msg.id) {
                            x.ids.push(msg.id);
                            self.by_id.entry((client.0, server, msg.id)).or_default().push(slot);
                        }
                    }
                    return;
                }
            }
        }
        if self.exchanges.len() >= self.limit {
            stats.dns_untracked += 1;
            return;
        }
        let slot = self.next;
        self.next += 1;
        self.by_id.entry((client.0, server, msg.id)).or_default().push(slot);
        if let Some(q) = &msg.question {
            self.by_question.insert((client.0, server, msg.opcode, q.clone()), slot);
        }
        let x = Exchange {
            client: client.0,
            client_port: client.1,
            server,
            opcode: msg.opcode,
            ids: vec![msg.id],
            question: msg.question,
            first: ts,
            last_copy: ts,
            copies: 1,
            rcode: None,
            truncated: None,
        };
        self.exchanges.insert(slot, x);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_answer(
        &mut self,
        server: Socket,
        client: Socket,
        msg: Message,
        size: usize,
        ts: Timestamp,
        stats: &mut Stats,
        out: &mut Vec<Entry>,
    ) {
        let slot = self.by_id.get(&(client.0, server, msg.id)).and_then(|slots| {
            let found = |s: &Slot| self.exchanges.get(s);
            match &msg.question {
                Some(_) => slots.iter().copied().find(|s| found(s).is_some_and(|x| x.question == msg.question)),
                // No question: the oldest exchange with this id still waiting, else the oldest.
                None => slots
                    .iter()
                    .copied()
                    .find(|s| found(s).is_some_and(Exchange::waiting))
                    .or_else(|| slots.first().copied()),
            }
        });
        let Some(x) = slot.and_then(|s| self.exchanges.get_mut(&s)) else {
            stats.dns_unmatched_responses += 1;
            return;
        };
        if !x.waiting() {
            // The answer to a later copy of a query already answered: the same exchange.
            stats.dns_duplicate_answers += 1;
            return;
        }
        x.rcode = Some(msg.rcode);
        if server.1 != DNS_PORT {
            if self.known_servers.len() >= MAX_KNOWN_SERVERS {
                self.known_servers.clear();
            }
            self.known_servers.insert(server);
        }
        let waited = ts.millis_since(x.first);
        let rcode = rcode_name(msg.rcode);
        let retransmitted =
            (x.copies > 1).then(|| format!("answered after retransmission: {} queries over {waited:.0} ms", x.copies));
        let nxdomain_of_a_query = msg.rcode == NXDOMAIN && msg.opcode == QUERY;
        // The question in words only for an error's message: most answers are none.
        let asked = || asked(x.question.as_ref());
        let error = match retransmitted {
            Some(r) if is_error_rcode(msg.rcode) || nxdomain_of_a_query => {
                Some(format!("{rcode} for {} ({r})", asked()))
            }
            Some(r) => Some(format!("{r} ({rcode} for {})", asked())),
            None if is_error_rcode(msg.rcode) => Some(format!("{rcode} for {}", asked())),
            None => None,
        };
        let mut e = exchange_entry(x, Some(&msg));
        e.elapsed_time = waited;
        e.response = Some(Response {
            status: u16::from(msg.rcode),
            status_text: rcode,
            version: String::new(),
            headers: Headers::default(),
            body_size: size as u64,
        });
        e.error = error.map(|msg| EntryError { kind: ErrorType::Dns, msg });
        if msg.truncated {
            // The client will likely ask again over TCP; until then this answer stands.
            x.rcode = None;
            x.truncated = Some(e);
            return;
        }
        match (&x.question, nxdomain_of_a_query && e.error.is_none()) {
            (Some(q), true) => {
                let (client, q) = (x.client, q.clone());
                self.search.on_nxdomain(client, &q, e, ts, stats, out);
            }
            _ => out.push(e),
        }
    }

    /// Decides an exchange whose window has passed: a truncated answer nothing followed is reported; a
    /// query no copy of which was answered is a half connection.
    fn finish(&mut self, slot: Slot, timeout_ms: u64, out: &mut Vec<Entry>) {
        let Some(mut x) = self.exchanges.remove(&slot) else { return };
        for id in &x.ids {
            let key = (x.client, x.server, *id);
            if let Some(slots) = self.by_id.get_mut(&key) {
                slots.retain(|s| *s != slot);
                if slots.is_empty() {
                    self.by_id.remove(&key);
                }
            }
        }
        if let Some(q) = x.question.take() {
            let key = (x.client, x.server, x.opcode, q);
            if self.by_question.get(&key) == Some(&slot) {
                self.by_question.remove(&key);
            }
            x.question = Some(key.3);
        }
        if let Some(e) = x.truncated.take() {
            out.push(e);
        } else if x.rcode.is_none() && (x.server.1 == DNS_PORT || self.known_servers.contains(&x.server)) {
            out.push(unanswered(&x, timeout_ms));
        }
    }

    /// Timers: exchanges past their window are decided, NXDOMAINs no search step followed are final. At
    /// the end of input everything is decided.
    pub fn sweep(&mut self, now: Timestamp, end_of_input: bool, timeout_ms: u64, out: &mut Vec<Entry>) {
        let window = timeout_ms.saturating_add(COPY_GRACE_MS);
        self.search.sweep((!end_of_input).then_some(now), window.saturating_add(SEARCH_STEP_MS), out);
        let mut due: Vec<(Timestamp, Slot)> = self
            .exchanges
            .iter()
            .filter(|(_, x)| {
                let mut deadline = x.first.plus_millis(window);
                if x.rcode.is_none() && x.truncated.is_none() {
                    deadline = deadline.max(x.last_copy.plus_millis(timeout_ms));
                }
                end_of_input || deadline <= now
            })
            .map(|(slot, x)| (x.first, *slot))
            .collect();
        due.sort_unstable();
        for (_, slot) in due {
            self.finish(slot, timeout_ms, out);
        }
    }

    /// Exchanges open (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.exchanges.len()
    }
}

/// `name TYPE` of the question asked, for messages.
fn asked(q: Option<&Question>) -> String {
    match q {
        Some(q) => format!("{} {}", q.name, TypeName(q.qtype)),
        None => "a message without a question".to_owned(),
    }
}

fn exchange_entry(x: &Exchange, answer: Option<&Message>) -> Entry {
    let src = Endpoint::new(x.client, Some(x.client_port));
    let dst = Endpoint::new(x.server.0, Some(x.server.1));
    let mut e = Entry::new(Protocol::Dns, x.first, src, dst);
    let question = match &x.question {
        Some(q) => DnsQuestion { name: q.name.clone(), qtype: TypeName(q.qtype).to_string() },
        None => DnsQuestion { name: String::new(), qtype: String::new() },
    };
    e.dns = Some(DnsInfo {
        id: x.ids.first().copied().unwrap_or_default(),
        question,
        rcode: answer.map(|m| m.rcode),
        rcode_name: answer.map(|m| rcode_name(m.rcode)),
        answers: answer.map(|m| m.answers.clone()).unwrap_or_default(),
    });
    e
}

/// A query no copy of which was answered: a half connection. `elapsedTime` is how long the client
/// was left waiting: from its first copy to `dnsTimeoutMs` after its last.
fn unanswered(x: &Exchange, timeout_ms: u64) -> Entry {
    let mut e = exchange_entry(x, None);
    e.elapsed_time = x.last_copy.millis_since(x.first) + timeout_ms as f64;
    let also = if x.copies > 1 { format!(" ({} queries)", x.copies) } else { String::new() };
    e.error = Some(EntryError {
        kind: ErrorType::PairNotFound,
        msg: format!("missing response: no answer within dnsTimeoutMs{also}"),
    });
    e
}
