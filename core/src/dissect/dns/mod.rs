//! DNS over UDP (SPEC §3.5): an entry per exchange, paired by client socket, server socket, id and
//! question — ids are reused, and resolvers ask A and AAAA at once from one socket.
//!
//! - SERVFAIL, REFUSED, FORMERR and NOTIMP are errors (`error.type: "dns"`).
//! - NXDOMAIN is an error only when it is final: an answer the same client follows within 2 s with the same
//!   first label under another suffix was one step of search-list expansion (`ndots:5`) and is reported
//!   without error. So an NXDOMAIN is held for those 2 s before it is decided.
//! - Copies of one query (same client, server, id and question) within `dnsTimeoutMs` are one exchange. If the client had to send it more than once
//!   before the answer came, that is an error whose `elapsedTime` is the client's whole wait — Kubernetes'
//!   5-second DNS delay. Answers to later copies are absorbed: one exchange, one entry.
//! - No answer within `dnsTimeoutMs` is a half connection (`missing response`) — on port 53, or to a server
//!   seen answering DNS before: a datagram elsewhere that merely parses as a query proves nothing.

pub mod tcp;
pub mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use crate::engine::stats::Stats;
use crate::entry::{DnsInfo, DnsQuestion, Endpoint, Entry, EntryError, ErrorType, Headers, Protocol, Response};
use crate::time::Timestamp;
use wire::{rcode_name, Message, TypeName};

/// How long after an NXDOMAIN the client's next search step may come (SPEC §3.5).
pub const SEARCH_STEP_MS: u64 = 2_000;
/// Queries waiting for an answer, at most; past it new queries are not tracked (counted).
pub const MAX_PENDING: usize = 65_536;
/// NXDOMAIN answers waiting to be decided, at most; past it the oldest is decided at once.
const MAX_HELD: usize = 16_384;
/// Servers remembered as speaking DNS on a port other than 53.
const MAX_KNOWN_SERVERS: usize = 4_096;
const DNS_PORT: u16 = 53;

type Socket = (IpAddr, u16);

/// One exchange: the client's address (not its port: glibc asks a server that answered SERVFAIL again from
/// a new socket, with the same id), the server's socket, the id and the question.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    client: IpAddr,
    server: Socket,
    id: u16,
    name: String,
    qtype: u16,
}

struct Pending {
    /// The client's socket when it first asked: the entry's source.
    client_port: u16,
    first: Timestamp,
    /// Copies of the query the client sent.
    copies: u32,
    answered: bool,
    /// A truncated (TC) answer, waiting for the same question to be asked again (over TCP): reported
    /// as it is if that does not happen within `dnsTimeoutMs`.
    truncated: Option<Entry>,
}

/// A question by client address, server socket, name and type: how a TCP retry finds the UDP query
/// whose answer was truncated (it may carry a new id).
type Question = (IpAddr, Socket, String, u16);

/// An NXDOMAIN waiting to learn whether the client goes on to the next search domain.
struct Held {
    entry: Entry,
    name: String,
    until: Timestamp,
}

pub struct DnsTracker {
    /// Queries waiting for an answer, at most (`MAX_PENDING` divided among shards).
    limit: usize,
    pending: HashMap<Key, Pending, foldhash::fast::RandomState>,
    /// NXDOMAINs waiting, by (client, first label of the name): a query is matched against its own bucket
    /// only, whatever the number held.
    held: HashMap<(IpAddr, String), Vec<Held>, foldhash::fast::RandomState>,
    /// When each held NXDOMAIN is due, in order (a bucket may already have been released).
    held_due: VecDeque<(Timestamp, (IpAddr, String))>,
    held_count: usize,
    known_servers: HashSet<Socket, foldhash::fast::RandomState>,
    /// Queries answered with TC, by question.
    truncated: HashMap<Question, Key, foldhash::fast::RandomState>,
}

impl Default for DnsTracker {
    fn default() -> Self {
        DnsTracker::with_limit(MAX_PENDING)
    }
}

impl DnsTracker {
    /// A tracker that waits for at most `limit` answers at once.
    pub fn with_limit(limit: usize) -> DnsTracker {
        DnsTracker {
            limit: limit.max(1),
            pending: Default::default(),
            held: Default::default(),
            held_due: Default::default(),
            held_count: 0,
            known_servers: Default::default(),
            truncated: Default::default(),
        }
    }

    /// One UDP datagram from `src` to `dst`.
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
        let well_known = src.1 == DNS_PORT || dst.1 == DNS_PORT;
        let known = well_known || self.known_servers.contains(&src) || self.known_servers.contains(&dst);
        let msg = match Message::parse(payload) {
            Ok(m) if m.opcode == 0 => m,
            Ok(_) => return,
            Err(_) => {
                if known {
                    stats.dns_malformed += 1;
                }
                return;
            }
        };
        if msg.response {
            self.on_response(src, dst, msg, payload.len(), ts, stats, out);
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
        self.release_search_steps(client.0, &msg.question.name, stats, out);
        let key = Key { client: client.0, server, id: msg.id, name: msg.question.name, qtype: msg.question.qtype };
        let question = (key.client, key.server, key.name.clone(), key.qtype);
        if let Some(old_key) = self.truncated.remove(&question) {
            // The question again after a truncated answer (over TCP, RFC 7766): the same exchange, which
            // the client has waited for since its first query.
            if let Some(mut old) = self.pending.remove(&old_key) {
                old.truncated = None;
                old.answered = false;
                self.pending.insert(key, old);
                return;
            }
        }
        if let Some(p) = self.pending.get_mut(&key) {
            if ts < p.first.plus_millis(timeout_ms) {
                if !p.answered {
                    p.copies += 1;
                }
                return;
            }
            // Past its deadline and not yet swept: decide it before the new query takes its place.
            if let Some(old) = self.pending.remove(&key) {
                if !old.answered && (key.server.1 == DNS_PORT || self.known_servers.contains(&key.server)) {
                    out.push(unanswered(&key, old.client_port, old.first, old.copies, timeout_ms));
                }
            }
        }
        if self.pending.len() >= self.limit && !self.pending.contains_key(&key) {
            stats.dns_untracked += 1;
            return;
        }
        self.pending
            .insert(key, Pending { client_port: client.1, first: ts, copies: 1, answered: false, truncated: None });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_response(
        &mut self,
        server: Socket,
        client: Socket,
        msg: Message,
        size: usize,
        ts: Timestamp,
        stats: &mut Stats,
        out: &mut Vec<Entry>,
    ) {
        let key =
            Key { client: client.0, server, id: msg.id, name: msg.question.name.clone(), qtype: msg.question.qtype };
        let Some(p) = self.pending.get_mut(&key) else {
            stats.dns_unmatched_responses += 1;
            return;
        };
        if p.answered {
            // The answer to a later copy of a query already answered: the same exchange.
            stats.dns_duplicate_answers += 1;
            return;
        }
        p.answered = true;
        let (first, copies, port) = (p.first, p.copies, p.client_port);
        if server.1 != DNS_PORT {
            if self.known_servers.len() >= MAX_KNOWN_SERVERS {
                self.known_servers.clear();
            }
            self.known_servers.insert(server);
        }
        let question = format!("{} {}", msg.question.name, TypeName(msg.question.qtype));
        let waited = ts.millis_since(first);
        let rcode = rcode_name(msg.rcode);
        let retransmitted =
            (copies > 1).then(|| format!("answered after retransmission: {copies} queries over {waited:.0} ms"));
        let error = match (msg.rcode, retransmitted) {
            (1 | 2 | 4 | 5, Some(r)) => Some(format!("{rcode} for {question} ({r})")),
            (1 | 2 | 4 | 5, None) => Some(format!("{rcode} for {question}")),
            (3, Some(r)) => Some(format!("{rcode} for {question} ({r})")),
            (_, Some(r)) => Some(format!("{r} ({rcode} for {question})")),
            _ => None,
        };
        let mut e = exchange(&key, port, first, Some(&msg));
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
            if let Some(p) = self.pending.get_mut(&key) {
                p.truncated = Some(e);
                self.truncated.insert((key.client, key.server, key.name.clone(), key.qtype), key);
            }
            return;
        }
        if msg.rcode == 3 && e.error.is_none() {
            if self.held_count >= MAX_HELD {
                // Too many to wait for: decide the oldest now.
                self.release_due(None, out);
            }
            let until = ts.plus_millis(SEARCH_STEP_MS);
            let bucket = (key.client, first_label(&key.name).to_owned());
            self.held.entry(bucket.clone()).or_default().push(Held { entry: e, name: key.name, until });
            self.held_due.push_back((until, bucket));
            self.held_count += 1;
            return;
        }
        out.push(e);
    }

    /// A query from `client` for `name`: NXDOMAINs held for the same first label under another name were
    /// search steps.
    fn release_search_steps(&mut self, client: IpAddr, name: &str, stats: &mut Stats, out: &mut Vec<Entry>) {
        if self.held_count == 0 {
            return;
        }
        let bucket = (client, first_label(name).to_owned());
        let Some(held) = self.held.get_mut(&bucket) else { return };
        let before = held.len();
        let mut i = 0;
        while i < held.len() {
            if held[i].name != name {
                let h = held.remove(i);
                stats.dns_search_steps += 1;
                out.push(h.entry);
            } else {
                i += 1;
            }
        }
        self.held_count -= before - held.len();
        if held.is_empty() {
            self.held.remove(&bucket);
        }
    }

    /// Decides held NXDOMAINs as final: those due by `now`, or (with `None`) the oldest one.
    fn release_due(&mut self, now: Option<Timestamp>, out: &mut Vec<Entry>) {
        while let Some((until, _)) = self.held_due.front() {
            if now.is_some_and(|now| *until > now) {
                break;
            }
            let Some((until, bucket)) = self.held_due.pop_front() else { break };
            if let Some(held) = self.held.get_mut(&bucket) {
                // The bucket's entries are in due order: the first one due at `until` is this one.
                if let Some(i) = held.iter().position(|h| h.until == until) {
                    let h = held.remove(i);
                    self.held_count -= 1;
                    out.push(final_nxdomain(h.entry));
                }
                if held.is_empty() {
                    self.held.remove(&bucket);
                }
            }
            if now.is_none() {
                break;
            }
        }
    }

    /// Timers: NXDOMAINs not followed by a search step are final; queries unanswered for `timeout_ms` are
    /// half connections. At the end of input everything is decided.
    pub fn sweep(&mut self, now: Timestamp, end_of_input: bool, timeout_ms: u64, out: &mut Vec<Entry>) {
        let until = if end_of_input { Timestamp(u64::MAX) } else { now };
        self.release_due(Some(until), out);
        let known = &self.known_servers;
        let mut due = Vec::new();
        let mut truncated = Vec::new();
        self.pending.retain(|key, p| {
            let deadline = p.first.plus_millis(timeout_ms);
            if !end_of_input && deadline > now {
                return true;
            }
            if let Some(e) = p.truncated.take() {
                // Never asked again: the truncated answer is the exchange.
                truncated.push((key.clone(), e));
            } else if !p.answered && (key.server.1 == DNS_PORT || known.contains(&key.server)) {
                due.push((key.clone(), p.client_port, p.first, p.copies));
            }
            false
        });
        for (key, e) in truncated {
            self.truncated.remove(&(key.client, key.server, key.name, key.qtype));
            out.push(e);
        }
        due.sort_by_key(|(_, _, first, _)| *first);
        for (key, port, first, copies) in due {
            out.push(unanswered(&key, port, first, copies, timeout_ms));
        }
    }

    /// Queries waiting for their answer (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

fn exchange(key: &Key, client_port: u16, first: Timestamp, msg: Option<&Message>) -> Entry {
    let src = Endpoint::new(key.client, Some(client_port));
    let dst = Endpoint::new(key.server.0, Some(key.server.1));
    let mut e = Entry::new(Protocol::Dns, first, src, dst);
    e.dns = Some(DnsInfo {
        id: key.id,
        question: DnsQuestion { name: key.name.clone(), qtype: TypeName(key.qtype).to_string() },
        rcode: msg.map(|m| m.rcode),
        rcode_name: msg.map(|m| rcode_name(m.rcode)),
        answers: msg.map(|m| m.answers.clone()).unwrap_or_default(),
    });
    e
}

/// A query never answered: a half connection.
fn unanswered(key: &Key, port: u16, first: Timestamp, copies: u32, timeout_ms: u64) -> Entry {
    let mut e = exchange(key, port, first, None);
    e.elapsed_time = timeout_ms as f64;
    let also = if copies > 1 { format!(" ({copies} queries)") } else { String::new() };
    e.error = Some(EntryError {
        kind: ErrorType::PairNotFound,
        msg: format!("missing response: no answer within dnsTimeoutMs{also}"),
    });
    e
}

/// gRPC's optional service-config lookup (`_grpc_config.<name>` TXT, gRFC A2): most names have none, and
/// every grpc-go channel asks (SPEC §3.5).
fn optional_lookup(e: &Entry) -> bool {
    e.dns.as_ref().is_some_and(|d| d.question.qtype == "TXT" && d.question.name.starts_with("_grpc_config."))
}

fn final_nxdomain(mut e: Entry) -> Entry {
    if optional_lookup(&e) {
        return e;
    }
    let what = e.dns.as_ref().map(|d| format!("{} {}", d.question.name, d.question.qtype)).unwrap_or_default();
    e.error = Some(EntryError { kind: ErrorType::Dns, msg: format!("NXDOMAIN for {what}") });
    e
}

fn first_label(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}
