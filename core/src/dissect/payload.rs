//! A connection's payload: both directions reassembled, the application protocol identified from the
//! first bytes (never from the port) by offering them to the registry, and handed to its dissector. Gaps
//! the capture left are counted and handed on, so that a dissector can resynchronise instead of stopping.

use std::sync::Arc;

use super::http::{proxy_header_len, proxy_header_size};
use super::{Claim, Direction, Dissectors, Ending, Found, Probe, StreamDissector, Verdict, PROBE_LIMIT, REGISTRY};
use crate::config::EngineConfig;
use crate::engine::stats::Stats;
use crate::entry::{Entry, EntryError, ErrorType};
use crate::tcp::reassembly::{Chunk, Fate, HeldBudget, Reassembler};
use crate::time::Timestamp;

type End = (std::net::IpAddr, u16);

/// Payload state, allocated only for connections that carry payload.
pub(crate) struct Payload {
    /// What each end sent (indexed as the connection's ends).
    pub streams: [Reassembler; 2],
    reader: Reader,
}

/// What reads the reassembled streams: apart from them, so that a stream can hand its chunks to it.
struct Reader {
    /// The connection's two ends; `probes` is indexed the same way.
    ends: [End; 2],
    stage: Stage,
    /// The first bytes of each end's stream while they are too few to tell what protocol this is.
    probes: [Vec<u8>; 2],
    /// Whether any payload was seen: only streams with payload can time out waiting to be identified.
    saw_payload: bool,
    /// The stream was counted as timed out (its protocol never identified in time).
    timed_out: bool,
    /// Picked up mid-stream: roles are a guess until a request is seen.
    midstream: bool,
    /// Which end is the client. Mid-stream, a request from the end taken for the server proves the guess
    /// wrong and flips it, once.
    client_side: usize,
    roles_settled: bool,
    /// Which dissectors may claim the stream.
    enabled: Dissectors,
    /// The engine's budget of held bytes, shared with reassembly; `charged` is this dissector's part.
    budget: Arc<HeldBudget>,
    charged: usize,
}

/// A dissector holding no more than this is never stopped for the budget: one hog must not end every
/// ordinary stream's dissection.
const BUDGET_FLOOR: usize = 16 * 1024;

/// Where the stream stands.
enum Stage {
    /// Its protocol not yet identified: its first bytes are offered to the registry.
    Probing,
    /// Its protocol's dissector reads it.
    Dissected(Box<dyn StreamDissector>),
    /// The client's first bytes (kept, up to `PROBE_LIMIT`) are no protocol we know; the server's answer
    /// may still prove the stream a protocol's (`Registration::answered_by`: an HTTP status line).
    Unclaimed(Timestamp, Vec<u8>),
    /// Not a protocol we dissect (or every dissector is off): reassembled only to count gaps.
    Undissected,
}

/// Everything a payload call needs from the engine.
pub(crate) struct Engine<'a> {
    pub cfg: &'a EngineConfig,
    pub stats: &'a mut Stats,
    pub out: &'a mut Vec<Entry>,
    pub dns: &'a mut super::dns::DnsTracker,
}

impl Payload {
    pub fn new(
        ends: [End; 2],
        max_held: usize,
        budget: &Arc<HeldBudget>,
        midstream: bool,
        client_side: usize,
        enabled: Dissectors,
    ) -> Payload {
        Payload {
            streams: [Reassembler::new(max_held, budget.clone()), Reassembler::new(max_held, budget.clone())],
            reader: Reader {
                ends,
                // Every dissector over TCP off: the stream is reassembled (gaps counted), not read.
                stage: if enabled.iter().any(|d| REGISTRY.iter().any(|r| r.dissector == d)) {
                    Stage::Probing
                } else {
                    Stage::Undissected
                },
                probes: Default::default(),
                saw_payload: false,
                timed_out: false,
                midstream,
                client_side,
                roles_settled: !midstream,
                enabled,
                budget: budget.clone(),
                charged: 0,
            },
        }
    }

    /// Which end is the client (a request from the end taken for the server, mid-stream, flips it).
    pub fn client_side(&self) -> usize {
        self.reader.client_side
    }

    /// One segment's payload from end `end`.
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        end: usize,
        ts: Timestamp,
        seq: u32,
        payload: &[u8],
        seg_len: u32,
        fin: bool,
        window: Option<u64>,
        e: &mut Engine<'_>,
    ) {
        let Payload { streams, reader } = self;
        reader.saw_payload |= seg_len > 0;
        let fate = streams[end].segment(ts, seq, payload, seg_len, fin, window, &mut |c| reader.on_chunk(end, c, e));
        match fate {
            Fate::Taken => {}
            Fate::OutOfWindow => e.stats.segments_out_of_window += 1,
            Fate::OverBudget => e.stats.reassembly_over_budget += 1,
        }
    }

    /// Whether end `end`'s stream has not yet handed on everything before `ack` (a hole, or nothing yet).
    pub fn waits_below(&self, end: usize, ack: u32) -> bool {
        self.streams[end].next_seq().is_some_and(|next| crate::tcp::seq_lt(next, ack))
    }

    /// The receiver of end `end`'s stream acknowledged up to `ack`: holes before it are given up.
    pub fn acked(&mut self, end: usize, ack: u32, ts: Timestamp, e: &mut Engine<'_>) {
        let Payload { streams, reader } = self;
        streams[end].acked(ack, ts, &mut |chunk| reader.on_chunk(end, chunk, e));
    }

    /// Flushes both streams (gaps counted) and closes the dissector: nothing is left pending.
    pub fn finish(&mut self, ts: Timestamp, ending: Ending, e: &mut Engine<'_>) {
        let Payload { streams, reader } = self;
        for (end, stream) in streams.iter_mut().enumerate() {
            stream.flush(&mut |chunk| reader.on_chunk(end, chunk, e));
        }
        let mut found = reader.found(e);
        if let Stage::Dissected(d) = &mut reader.stage {
            d.close(ts, ending, &mut found);
        }
        reader.uncharge();
    }

    /// Timers at `now` (see `Reader::check`).
    pub fn check(&mut self, now: Timestamp, first_ts: Timestamp, e: &mut Engine<'_>) {
        self.reader.check(now, first_ts, e);
    }

    /// Whether end `end` announced its close in its protocol (see `StreamDissector::closing`).
    pub fn closing(&self, end: usize) -> bool {
        match &self.reader.stage {
            Stage::Dissected(d) => d.closing(self.reader.dir_of(end)),
            Stage::Probing | Stage::Unclaimed(..) | Stage::Undissected => false,
        }
    }

    /// The protocol was identified and nothing the client asked is unanswered (see `StreamDissector`).
    /// False for a stream whose protocol is unknown.
    pub fn answered_all(&self) -> bool {
        match &self.reader.stage {
            Stage::Dissected(d) => d.answered_all(),
            Stage::Probing | Stage::Unclaimed(..) | Stage::Undissected => false,
        }
    }
}

/// A connection forgotten (closed, evicted) gives its dissector's bytes back.
impl Drop for Reader {
    fn drop(&mut self) {
        self.uncharge();
    }
}

impl Reader {
    /// The direction of what end `end` sends.
    fn dir_of(&self, end: usize) -> Direction {
        if end == self.client_side {
            Direction::ToServer
        } else {
            Direction::ToClient
        }
    }

    /// The part of `Found` this payload knows: its ends as roles stand now.
    fn found<'a>(&self, e: &'a mut Engine<'_>) -> Found<'a> {
        Found {
            client: self.ends[self.client_side],
            server: self.ends[1 - self.client_side],
            cfg: e.cfg,
            stats: e.stats,
            out: e.out,
            dns: e.dns,
        }
    }

    /// Timers at `now`: the dissector's, or — a stream whose protocol was never identified, and only once
    /// it is older than the timeout — the stream timeout (SPEC §3.2), counted and, if asked, an entry from
    /// `first_ts`, the connection's first packet.
    fn check(&mut self, now: Timestamp, first_ts: Timestamp, e: &mut Engine<'_>) {
        self.check_timers(now, first_ts, e);
        self.charge(e);
    }

    /// What the dissector holds now, charged to the engine's budget. Over budget, a dissector holding
    /// more than `BUDGET_FLOOR` stops: the stream is reassembled but no longer read (counted).
    fn charge(&mut self, e: &mut Engine<'_>) {
        let held = match &self.stage {
            Stage::Dissected(d) => d.buffered(),
            Stage::Probing | Stage::Unclaimed(..) | Stage::Undissected => 0,
        };
        if held > self.charged {
            self.budget.take(held - self.charged);
        } else {
            self.budget.give(self.charged - held);
        }
        self.charged = held;
        if held > BUDGET_FLOOR && self.budget.exceeded() {
            self.stage = Stage::Undissected;
            self.uncharge();
            e.stats.dissector_over_budget += 1;
        }
    }

    fn uncharge(&mut self) {
        self.budget.give(std::mem::take(&mut self.charged));
    }

    fn check_timers(&mut self, now: Timestamp, first_ts: Timestamp, e: &mut Engine<'_>) {
        let identified = match &self.stage {
            Stage::Dissected(d) => d.identified(),
            Stage::Probing | Stage::Unclaimed(..) | Stage::Undissected => false,
        };
        if identified {
            let mut found = self.found(e);
            if let Stage::Dissected(d) = &mut self.stage {
                d.check(now, &mut found);
            }
            return;
        }
        if !self.saw_payload || self.timed_out {
            return;
        }
        let deadline = first_ts.plus_millis(e.cfg.tcp_stream_channel_timeout_ms);
        if now < deadline {
            return;
        }
        self.timed_out = true;
        self.stage = Stage::Undissected;
        self.probes = Default::default();
        e.stats.streams_timed_out += 1;
        if e.cfg.show_stream_timeouts {
            let found = self.found(e);
            let mut entry = found.entry(crate::entry::Protocol::Tcp, first_ts, deadline);
            entry.error = Some(EntryError {
                kind: ErrorType::Timeout,
                msg: format!(
                    "stream timeout: no protocol identified within {} ms",
                    e.cfg.tcp_stream_channel_timeout_ms
                ),
            });
            e.out.push(entry);
        }
    }

    fn on_chunk(&mut self, end: usize, chunk: Chunk<'_>, e: &mut Engine<'_>) {
        let dir = self.dir_of(end);
        let at = match chunk {
            Chunk::Data(ts, _) | Chunk::Gap(_, ts) | Chunk::End(ts) => ts,
        };
        if let (Stage::Probing, Chunk::Data(ts, bytes)) = (&self.stage, chunk) {
            // Once identified, `identify` has fed the dissector everything, this chunk included.
            self.identify(end, dir, ts, bytes, e);
        } else if let (Stage::Unclaimed(..), Chunk::Data(ts, bytes), Direction::ToClient) = (&self.stage, chunk, dir) {
            self.server_answered(ts, bytes, e);
        } else {
            if let Chunk::Gap(len, _) = chunk {
                e.stats.missed_bytes += len;
            }
            let mut found = self.found(e);
            match (&mut self.stage, chunk) {
                (Stage::Dissected(d), Chunk::Data(ts, bytes)) => d.data(dir, ts, bytes, &mut found),
                (Stage::Dissected(d), Chunk::Gap(len, ts)) => d.gap(dir, len, ts, &mut found),
                (Stage::Dissected(d), Chunk::End(ts)) => d.end(dir, ts, &mut found),
                (Stage::Probing, Chunk::Gap(..)) => self.probes[end].clear(),
                (Stage::Unclaimed(..), Chunk::Gap(..)) => self.stage = Stage::Undissected,
                _ => {}
            }
        }
        self.hand_over(at, e);
        self.charge(e);
    }

    /// Another protocol continues the stream (an HTTP/1.1 upgrade to `h2c`): its dissector from here.
    fn hand_over(&mut self, at: Timestamp, e: &mut Engine<'_>) {
        let mut found = self.found(e);
        if let Stage::Dissected(d) = &mut self.stage {
            if let Some(next) = d.take_over(at, &mut found) {
                self.stage = Stage::Dissected(next);
            }
        }
    }

    /// Offers the bytes seen so far from `end` plus `bytes` to the registry. Once a protocol claims them,
    /// everything buffered and `bytes` have been fed to its dissector.
    fn identify(&mut self, end: usize, dir: Direction, ts: Timestamp, bytes: &[u8], e: &mut Engine<'_>) {
        let buffered = !self.probes[end].is_empty();
        let earlier = self.probes[end].len();
        if buffered {
            let room = PROBE_LIMIT.saturating_sub(earlier);
            self.probes[end].extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        let probe_bytes = std::mem::take(&mut self.probes[end]);
        let probed: &[u8] = if buffered { &probe_bytes } else { bytes };
        // A PROXY protocol header (v1 or v2) in front of the client's first bytes: look behind it.
        let mut skipped = 0;
        if dir == Direction::ToServer {
            match proxy_header_len(probed) {
                Verdict::Yes => skipped = proxy_header_size(probed).unwrap_or(0),
                Verdict::NeedMore => return self.need_more(end, probe_bytes, bytes, buffered),
                Verdict::No => {}
            }
        }
        let probe = Probe {
            bytes: &probed[skipped.min(probed.len())..],
            dir,
            skipped,
            midstream: self.midstream,
            roles_settled: self.roles_settled,
        };
        let mut claimed = None;
        for r in REGISTRY.iter().filter(|r| self.enabled.contains(r.dissector)) {
            match (r.probe)(&probe) {
                Claim::Yes { flipped, lead } => {
                    claimed = Some(((r.start)(&probe), flipped, lead));
                    break;
                }
                Claim::NeedMore => return self.need_more(end, probe_bytes, bytes, buffered),
                Claim::No => {}
            }
        }
        let Some((mut d, flipped, lead)) = claimed else {
            // No enabled dissector claims these bytes; while roles are a guess, try again at the next chunk
            // (mid-stream, this one may be the middle of a message).
            if self.roles_settled {
                let answerable = REGISTRY.iter().any(|r| r.answered_by.is_some() && self.enabled.contains(r.dissector));
                self.stage = if dir == Direction::ToServer && answerable {
                    Stage::Unclaimed(ts, probed[..probed.len().min(PROBE_LIMIT)].to_vec())
                } else {
                    Stage::Undissected
                };
            }
            return;
        };
        let dir = if flipped {
            self.client_side = 1 - self.client_side;
            dir.flip()
        } else {
            dir
        };
        self.roles_settled = true;
        // What the probe held before this chunk, then the chunk, but what is not the protocol's own.
        let from = skipped + lead;
        let mut found = self.found(e);
        if buffered {
            d.data(dir, ts, &probe_bytes[from.min(earlier)..earlier], &mut found);
            d.data(dir, ts, &bytes[from.saturating_sub(earlier).min(bytes.len())..], &mut found);
        } else {
            d.data(dir, ts, &bytes[from.min(bytes.len())..], &mut found);
        }
        self.stage = Stage::Dissected(d);
    }

    /// The server's first bytes after a client's that no protocol claimed: a protocol they prove
    /// (`Registration::answered_by`) reads the stream from the client's first bytes (which then fail to
    /// parse, and the error carries the server's answer); anything else leaves it undissected.
    fn server_answered(&mut self, ts: Timestamp, bytes: &[u8], e: &mut Engine<'_>) {
        let Stage::Unclaimed(asked, client) = std::mem::replace(&mut self.stage, Stage::Undissected) else { return };
        let proves = |r: &&super::Registration| r.answered_by.is_some_and(|f| f(bytes));
        let Some(r) = REGISTRY.iter().filter(|r| self.enabled.contains(r.dissector)).find(proves) else { return };
        let probe = Probe {
            bytes: &client,
            dir: Direction::ToServer,
            skipped: 0,
            midstream: self.midstream,
            roles_settled: self.roles_settled,
        };
        let mut d = (r.start)(&probe);
        let mut found = self.found(e);
        d.data(Direction::ToServer, asked, &client, &mut found);
        d.data(Direction::ToClient, ts, bytes, &mut found);
        self.stage = Stage::Dissected(d);
    }

    /// Undecided: keep the stream's first bytes (up to what any probe needs) and wait for more.
    fn need_more(&mut self, end: usize, mut probe: Vec<u8>, bytes: &[u8], buffered: bool) {
        if !buffered {
            probe.extend_from_slice(&bytes[..bytes.len().min(PROBE_LIMIT)]);
        }
        if probe.len() >= PROBE_LIMIT {
            // Still undecided after the most any probe needs: not a protocol we know.
            probe.clear();
            if self.roles_settled {
                self.stage = Stage::Undissected;
            }
        }
        self.probes[end] = probe;
    }
}
