//! Kafka (SPEC §3.5): every request paired with its response by correlation id; a response whose error
//! code is not NONE — at the top, per topic, per partition — is an error of type `kafka` named by the
//! first such code (`NOT_LEADER_OR_FOLLOWER Produce orders-3`). The APIs of `responses.rs` are read;
//! any other is paired and counted, not read. What is the protocol working as designed is not an error
//! (its code still shows in `kafka.errorName`): a client learning which ApiVersions the broker speaks
//! (`UNSUPPORTED_VERSION`), a consumer's first JoinGroup (`MEMBER_ID_REQUIRED`), the coordinator telling
//! members to rejoin (`REBALANCE_IN_PROGRESS`), a topic's leader still being elected in Metadata
//! (`LEADER_NOT_AVAILABLE`). A Produce with `acks=0` gets no response and is not waited for; nor, when the
//! connection ends other than by the broker's reset, are the requests that wait by design — a Fetch
//! (a long poll, up to its max wait), a JoinGroup or SyncGroup (until the group rebalances): clients close
//! connections with those in flight whenever they stop.

mod names;
mod read;
mod responses;

use std::collections::HashMap;

use super::framing::{Broken, Framer};
use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector, Verdict, PROBE_LIMIT};
use crate::engine::stats::Stats;
use crate::entry::{EntryError, ErrorType, KafkaInfo, Protocol, Side};
use crate::time::Timestamp;
use read::Reader;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Kafka, probe, start, summary, answered_by: None };

/// The largest request or response accepted (the broker's `socket.request.max.bytes` is 100 MiB).
const MAX_MESSAGE: usize = 100 << 20;
/// Kept of a request (its header and the start of its body) and of a response (its error codes, before
/// any records far into a Fetch).
const REQUEST_KEEP: usize = 512;
const RESPONSE_KEEP: usize = 64 << 10;
/// Requests waiting at once on one connection.
const MAX_WAITING: usize = 4096;

/// A request's header: size, API key and version, correlation id, client id — read from the client's
/// first bytes. The API must be one Kafka has and the version small; the client id a short printable
/// string.
fn looks_like_request(b: &[u8]) -> Verdict {
    // A size of at most 100 MiB starts with a byte of at most 6.
    match b.first() {
        None => return Verdict::NeedMore,
        Some(&first) if first > 6 => return Verdict::No,
        Some(_) if b.len() < 14 => return Verdict::NeedMore,
        Some(_) => {}
    }
    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let key = i16::from_be_bytes([b[4], b[5]]);
    let version = i16::from_be_bytes([b[6], b[7]]);
    let id_len = i16::from_be_bytes([b[12], b[13]]);
    if !(10..=MAX_MESSAGE).contains(&size) || names::api(key) == "Unknown" || !(0..=20).contains(&version) {
        return Verdict::No;
    }
    if !(-1..=255).contains(&id_len) || (id_len > 0 && 10 + id_len as usize > size) {
        return Verdict::No;
    }
    let id = &b[14..b.len().min(14 + id_len.max(0) as usize)];
    if !id.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        return Verdict::No;
    }
    if id.len() < id_len.max(0) as usize && b.len() < PROBE_LIMIT {
        return Verdict::NeedMore;
    }
    Verdict::Yes
}

fn probe(p: &Probe<'_>) -> Claim {
    super::claim_first_speaker(p, Direction::ToServer, looks_like_request)
}

fn summary(s: &Stats) -> String {
    format!(
        "{} Kafka requests lost to capture gaps, {} Kafka responses without their request, {} Kafka responses \
         not read (an API not known here, or cut by the bytes kept), {} Kafka requests over the per-connection bound",
        s.kafka_calls_lost, s.kafka_answers_unpaired, s.kafka_responses_unread, s.kafka_calls_over_limit
    )
}

fn start(_: &Probe<'_>) -> Box<dyn StreamDissector> {
    Box::<KafkaDissector>::default()
}

struct Request {
    ts: Timestamp,
    key: i16,
    version: i16,
    client_id: Option<String>,
}

impl Request {
    /// What the entry says of this request, its answer's code not yet known.
    fn info(self, correlation_id: i32) -> KafkaInfo {
        KafkaInfo {
            api_key: self.key,
            api: names::api(self.key).to_owned(),
            api_version: self.version,
            correlation_id,
            client_id: self.client_id,
            error_code: None,
            error_name: None,
            topic: None,
            partition: None,
        }
    }
}

#[derive(Default)]
pub struct KafkaDissector {
    client: Framer,
    server: Framer,
    waiting: HashMap<i32, Request>,
    stopped: bool,
    lost: u64,
    unpaired: u64,
    unread: u64,
    over_limit: u64,
}

/// Codes that are the protocol working as designed, for this API.
fn routine(key: i16, code: i16) -> bool {
    matches!((key, code), (18, 35) | (11, 79) | (11 | 12 | 14 | 8, 27) | (3, 5))
}

fn flexible(key: i16, version: i16) -> bool {
    names::first_flexible(key).is_some_and(|v| version >= v)
}

impl KafkaDissector {
    fn request(&mut self, ts: Timestamp, body: &[u8]) {
        let mut r = Reader::new(body, false);
        let (Some(key), Some(version), Some(correlation)) = (r.i16(), r.i16(), r.i32()) else { return };
        let client_id = r.string().flatten();
        if key == 0 {
            // Produce: acks=0 is not answered.
            let compact = flexible(key, version);
            r.compact = compact;
            if compact {
                r.tags();
            }
            if version >= 3 {
                r.string();
            }
            if r.i16() == Some(0) {
                return;
            }
        }
        if self.waiting.len() >= MAX_WAITING {
            self.over_limit += 1;
            return;
        }
        self.waiting.insert(correlation, Request { ts, key, version, client_id });
    }

    fn response(&mut self, ts: Timestamp, body: &[u8], len: usize, found: &mut Found<'_>) {
        let mut r = Reader::new(body, false);
        let Some(correlation) = r.i32() else { return };
        let Some(req) = self.waiting.remove(&correlation) else {
            self.unpaired += 1;
            return;
        };
        let compact = flexible(req.key, req.version);
        let mut header = 4;
        if compact && req.key != 18 {
            // The response header's tagged fields (ApiVersions keeps header v0 so any client can read it).
            let mut t = Reader::new(body.get(4..).unwrap_or_default(), true);
            if t.tags().is_none() {
                self.unread += 1;
                return;
            }
            header += t.position();
        }
        let (codes, read) = responses::errors(req.key, req.version, &body[header.min(body.len())..], compact);
        if !read || (body.len() < len && codes.is_empty()) {
            self.unread += 1;
        }
        let mut e = found.entry(Protocol::Kafka, req.ts, ts);
        let first = codes.iter().find(|c| !routine(req.key, c.code)).or(codes.first());
        let (api, key) = (names::api(req.key), req.key);
        let mut info = req.info(correlation);
        if let Some(c) = first {
            let name = names::error(c.code);
            if !routine(key, c.code) {
                let at = match (&c.topic, c.partition) {
                    (Some(t), Some(p)) => format!(" {t}-{p}"),
                    (Some(t), None) => format!(" {t}"),
                    _ => String::new(),
                };
                let more = match codes.len() {
                    0 | 1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                e.error = Some(EntryError { kind: ErrorType::Kafka, msg: format!("{name} {api}{at}{more}") });
            }
            info.error_code = Some(c.code);
            info.error_name = Some(name);
            info.topic = c.topic.clone();
            info.partition = c.partition;
        }
        e.kafka = Some(info);
        found.out.push(e);
    }

    fn read(&mut self, dir: Direction, ts: Timestamp, mut bytes: &[u8], found: &mut Found<'_>) -> Result<(), Broken> {
        let keep = if dir == Direction::ToServer { REQUEST_KEEP } else { RESPONSE_KEEP };
        let body = |h: &[u8]| {
            let size = h.first_chunk::<4>().map_or(0, |s| u32::from_be_bytes(*s) as usize);
            if !(4..=MAX_MESSAGE).contains(&size) {
                return Err(Broken(format!("a message of {size} bytes")));
            }
            Ok((size, keep))
        };
        loop {
            let framer = if dir == Direction::ToServer { &mut self.client } else { &mut self.server };
            let Some(m) = framer.next(&mut bytes, 4, body)? else { return Ok(()) };
            let (kept, len) = (m.body.to_vec(), m.len);
            match dir {
                Direction::ToServer => self.request(ts, &kept),
                Direction::ToClient => self.response(ts, &kept, len, found),
            }
        }
    }

    fn drain_counters(&mut self, stats: &mut Stats) {
        stats.kafka_calls_lost += std::mem::take(&mut self.lost);
        stats.kafka_answers_unpaired += std::mem::take(&mut self.unpaired);
        stats.kafka_responses_unread += std::mem::take(&mut self.unread);
        stats.kafka_calls_over_limit += std::mem::take(&mut self.over_limit);
    }
}

impl StreamDissector for KafkaDissector {
    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        if self.stopped {
            return;
        }
        if let Err(why) = self.read(dir, ts, bytes, found) {
            self.stopped = true;
            self.lost += self.waiting.len() as u64;
            self.waiting.clear();
            found.parser_error(Protocol::Kafka, ts, &why.0);
        }
        self.drain_counters(found.stats);
    }

    fn gap(&mut self, _dir: Direction, _len: u64, _ts: Timestamp, found: &mut Found<'_>) {
        self.stopped = true;
        self.lost += self.waiting.len() as u64;
        self.waiting.clear();
        self.drain_counters(found.stats);
    }

    fn end(&mut self, _dir: Direction, _ts: Timestamp, _found: &mut Found<'_>) {}

    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>) {
        if self.stopped || ending == Ending::CaptureEnded {
            return;
        }
        let mut waiting: Vec<(i32, Request)> = self.waiting.drain().collect();
        waiting.sort_by_key(|(c, r)| (r.ts, *c));
        for (correlation, req) in waiting {
            let waits = matches!(req.key, 1 | 11 | 14) && ending != Ending::Reset(Side::Server);
            if waits || !super::calls::unanswered(ending, req.ts, ts) {
                continue;
            }
            let mut e = found.unanswered(Protocol::Kafka, req.ts, ts, ending);
            e.kafka = Some(req.info(correlation));
            found.out.push(e);
        }
    }

    fn check(&mut self, _now: Timestamp, _found: &mut Found<'_>) {}

    fn answered_all(&self) -> bool {
        self.waiting.is_empty()
    }

    fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered() + self.waiting.len() * 64
    }
}
