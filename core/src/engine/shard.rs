//! One shard of the engine: the flows routed to it by the front (`crate::engine::front`), their connections,
//! timers and dissectors, the ICMP errors that quote them, the DNS exchanges of their clients. A node's
//! engine is one shard inline (`Engine`) or several on threads; a shard never looks at another's state.

use crate::config::EngineConfig;
use crate::engine::stats::Stats;
use crate::entry::{Endpoint, Entry, Protocol};
use crate::flow::recorder::FlowRecorder;
use crate::flow::{FlowKey, FlowTable};
use crate::icmp::{self, Kind};
use crate::nat::aliases::{Linked, NatAliases};
use crate::nat::copies::NatPair;
use crate::tcp::conn::{Conn, Ctx, Keep, Phase};
use crate::tcp::reassembly::HeldBudget;
use crate::time::Timestamp;
use crate::wire::{self, Decoded, IcmpMessage, LinkType, Packet, TcpSegment, Transport};

/// Errors-only recording keeps at most this many flows (all shards together), packets per flow and bytes
/// per flow.
const RECORDED_FLOWS: usize = 1024;
const RECORDED_PACKETS: usize = 32;
const RECORDED_BYTES: usize = 64 * 1024;

/// How often lingering flows are looked at to be forgotten, in capture time.
const LINGER_SWEEP_MS: u64 = 5_000;

/// Endpoints known to listen (they answered a SYN) are remembered up to this many, to tell the server of
/// a connection picked up mid-stream.
const MAX_LISTENERS: usize = 16_384;

pub struct Shard {
    cfg: EngineConfig,
    flows: FlowTable,
    /// Out-of-order bytes held by every stream of this shard together.
    held: std::sync::Arc<HeldBudget>,
    /// The NATed tuples of this shard's connections that are dropped for their other tuple.
    aliases: NatAliases,
    /// Endpoints seen answering a SYN with a SYN-ACK (on any shard: the front announces them to all).
    listeners: std::collections::HashSet<(std::net::IpAddr, u16), foldhash::fast::RandomState>,
    /// DNS exchanges over UDP.
    dns: crate::dissect::dns::DnsTracker,
    recorder: Option<FlowRecorder>,
    /// (entry id, pcap of its flow) waiting for `take_recordings`.
    recordings: Vec<(String, Vec<u8>)>,
    pub(crate) stats: Stats,
    /// The time of the latest sweep.
    now: Timestamp,
    next_linger_sweep: Option<Timestamp>,
    next_id: u64,
    /// Whether entries get their ids here (one engine, or recordings to name) or from the merger only.
    names_entries: bool,
}

pub use crate::flow::TakenFlow;

impl Shard {
    /// A shard with `cfg`'s budgets divided by `of` (the number of shards): a node's memory does not grow
    /// with its shards.
    pub fn new(cfg: EngineConfig, of: usize) -> Shard {
        let of = of.max(1);
        let cfg = EngineConfig {
            max_flows: (cfg.max_flows / of).max(1),
            max_out_of_order_total: cfg.max_out_of_order_total / of,
            ..cfg
        };
        let cfg_records = cfg.record_errors;
        let recorder = cfg
            .record_errors
            .then(|| FlowRecorder::new((RECORDED_FLOWS / of).max(1), RECORDED_PACKETS, RECORDED_BYTES));
        Shard {
            held: HeldBudget::new(cfg.max_out_of_order_total),
            listeners: Default::default(),
            aliases: NatAliases::default(),
            dns: crate::dissect::dns::DnsTracker::with_limit(crate::dissect::dns::MAX_PENDING / of),
            cfg,
            flows: FlowTable::default(),
            recorder,
            recordings: Vec::new(),
            stats: Stats::default(),
            now: Timestamp(0),
            next_linger_sweep: None,
            next_id: 0,
            // One of several: the merger names the entries; the shard's own names only match recordings.
            names_entries: of == 1 || cfg_records,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// A frame the front routed here (it decoded there, so it decodes again).
    pub fn handle_frame(
        &mut self,
        link: LinkType,
        data: &[u8],
        ts: Timestamp,
        nat: Option<NatPair>,
        out: &mut Vec<Entry>,
    ) {
        if let Ok(Decoded::Packet(p)) = wire::decode(link, data, ts) {
            self.handle_packet(&p, link, data, nat, out);
        }
    }

    /// `server` answered a SYN (seen on any shard).
    pub fn learn_listener(&mut self, server: (std::net::IpAddr, u16)) {
        if self.listeners.len() >= MAX_LISTENERS && !self.listeners.contains(&server) {
            // Forgetting costs only a guess about roles, which the next request corrects.
            self.listeners.clear();
        }
        self.listeners.insert(server);
    }

    /// Hands over the state of a tuple the front found to be a NATed copy of a flow another shard tracks
    /// (its copies were missed until now): that shard adopts it and decides the pair as one engine would.
    pub fn take_flow(&mut self, key: &FlowKey) -> TakenFlow {
        self.flows.take(key)
    }

    /// Takes over a flow's state from another shard (`take_flow`).
    pub fn adopt_flow(&mut self, key: FlowKey, flow: TakenFlow) {
        self.flows.put(key, flow);
    }

    /// A decoded packet the front routed here; `nat`: the NATed tuple pair it revealed.
    pub fn handle_packet(
        &mut self,
        p: &Packet<'_>,
        link: LinkType,
        data: &[u8],
        nat: Option<NatPair>,
        out: &mut Vec<Entry>,
    ) {
        if let Some(pair) = nat {
            // A copy of a packet handled under the connection's other tuple.
            self.stats.nat_copies += 1;
            if !self.link(&pair, p) {
                return;
            }
        }
        let translated;
        let p = match self.aliases.translate(p) {
            // Seen only under an alias (a reply half translated back): handled as its connection's.
            Some(t) => {
                translated = with_ends(p, t.src, t.dst);
                &translated
            }
            None => p,
        };
        let start = out.len();
        if let Some(rec) = &mut self.recorder {
            if let Some(key) = record_key(p) {
                rec.push(key, link, p.ts, data);
            }
        }
        match &p.transport {
            Transport::Tcp(seg) => {
                self.stats.tcp_segments += 1;
                self.on_tcp(p, seg, out);
            }
            Transport::Udp(u) => {
                self.stats.udp_datagrams += 1;
                if self.cfg.dissectors.contains(crate::dissect::Dissector::Dns) {
                    let (src, dst) = ((p.src, u.src_port), (p.dst, u.dst_port));
                    self.dns.on_datagram(src, dst, u.payload, p.ts, self.cfg.dns_timeout_ms, &mut self.stats, out);
                }
            }
            Transport::Icmp(msg) => {
                self.stats.icmp_messages += 1;
                self.on_icmp(p, msg, out);
            }
        }
        self.finish_entries(start, out, false);
    }

    /// Timers due at `now` fire (the front says when, for every shard at once); at the end of input every
    /// pending state is resolved as if its timer expired (SPEC §3.6). Entries found together come out in
    /// one order whatever the shards: by time, then by content.
    pub fn sweep(&mut self, now: Timestamp, end_of_input: bool, out: &mut Vec<Entry>) {
        if now > self.now {
            self.now = now;
        }
        let start = out.len();
        self.sweep_flows(end_of_input, out);
        self.finish_entries(start, out, true);
    }

    /// Pcaps of the flows of error and ICMP entries found since the last call, by entry id (only with
    /// `record_errors`).
    pub fn take_recordings(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.recordings)
    }

    fn sweep_flows(&mut self, end_of_input: bool, out: &mut Vec<Entry>) {
        let now = self.now;
        let mut ctx = Ctx { cfg: &self.cfg, stats: &mut self.stats, out, held: &self.held, dns: &mut self.dns };
        let mut over = Vec::new();
        self.flows.live.retain(|key, conn| {
            let keep = conn.check(now, end_of_input, &mut ctx) == Keep::Yes;
            match conn.lingering() {
                Some(l) if keep => {
                    over.push((*key, l));
                    false
                }
                _ => keep,
            }
        });
        for (key, l) in over {
            let d = self.flows.digest(&key);
            self.flows.lingering.insert(d, l);
        }
        // Forgetting lingering flows needs no precision (they linger a minute): a pass over that table,
        // the largest, every few seconds rather than every sweep.
        if end_of_input || self.next_linger_sweep.is_none_or(|t| now >= t) {
            let linger = Conn::linger_ms(&self.cfg);
            self.flows.lingering.retain(|_, l| !end_of_input && now < l.last_ts.plus_millis(linger));
            self.next_linger_sweep = Some(now.plus_millis(LINGER_SWEEP_MS));
        }
        self.dns.sweep(now, end_of_input, self.cfg.dns_timeout_ms, out);
        self.aliases.expire(now, self.cfg.idle_timeout_ms);
    }

    /// Entries found since `start`, made ready to leave the shard: each error's recording taken (its
    /// flow as tracked), its ends shown as the connection's ends really were (`NatAliases::shown`), then
    /// (`sort`: entries of one sweep) put in canonical order, numbered and stamped with the node.
    fn finish_entries(&mut self, start: usize, out: &mut Vec<Entry>, sort: bool) {
        if out.len() == start {
            return;
        }
        let mut pcaps: Vec<Option<Vec<u8>>> = Vec::new();
        if let Some(rec) = &self.recorder {
            pcaps = out[start..].iter().map(|e| recording_of(rec, e)).collect();
        }
        if !self.aliases.is_empty() {
            for e in &mut out[start..] {
                show_ends(&self.aliases, e);
            }
        }
        if sort && out.len() - start > 1 {
            let mut order: Vec<usize> = (0..out.len() - start).collect();
            order.sort_by(|&a, &b| crate::engine::order::canonical(&out[start + a], &out[start + b]));
            let mut taken: Vec<Option<Entry>> = out.drain(start..).map(Some).collect();
            out.extend(order.iter().filter_map(|&i| taken[i].take()));
            if !pcaps.is_empty() {
                let mut old: Vec<Option<Vec<u8>>> = std::mem::take(&mut pcaps);
                pcaps = order.iter().map(|&i| old[i].take()).collect();
            }
        }
        for (i, e) in out[start..].iter_mut().enumerate() {
            self.next_id += 1;
            if self.names_entries {
                e.id = if self.cfg.id_prefix.is_empty() {
                    self.next_id.to_string()
                } else {
                    format!("{}{}", self.cfg.id_prefix, self.next_id)
                };
            }
            e.node.clone_from(&self.cfg.node);
            self.stats.entries += 1;
            if let Some(pcap) = pcaps.get_mut(i).and_then(Option::take) {
                self.recordings.push((e.id.clone(), pcap));
            }
        }
    }

    fn on_tcp(&mut self, p: &Packet<'_>, seg: &TcpSegment<'_>, out: &mut Vec<Entry>) {
        let src = (p.src, seg.src_port);
        let dst = (p.dst, seg.dst_port);
        let key = FlowKey::new(src, dst);
        let flags = seg.flags;
        let is_syn = flags.syn() && !flags.ack();
        let mut ctx = Ctx { cfg: &self.cfg, stats: &mut self.stats, out, held: &self.held, dns: &mut self.dns };
        if let Some(conn) = self.flows.live.get_mut(&key) {
            let from_first = conn.ends[0] == src;
            if is_syn && conn.is_new_attempt(seg) && (from_first || conn.phase != Phase::SynSent) {
                // Port reuse, or a new attempt after an unanswered one: settle the old connection first.
                conn.check(p.ts, true, &mut ctx);
                *conn = Conn::syn(src, dst, p.ts, seg);
                conn.on_segment(true, seg, p.ts, &mut ctx);
                ctx.stats.flows_created += 1;
                return;
            }
            conn.on_segment(from_first, seg, p.ts, &mut ctx);
            if let Some(l) = conn.lingering() {
                self.flows.retire(key, l);
            }
            return;
        }
        let digest = self.flows.digest(&key);
        if let Some(l) = self.flows.lingering.get_mut(&digest) {
            // A late packet of a connection that is over changes nothing but how long it is remembered; a
            // SYN with a new initial sequence number (from either side) starts a new connection.
            if !(is_syn && l.client_isn() != Some(seg.seq)) {
                l.last_ts = l.last_ts.max(p.ts);
                return;
            }
            self.flows.lingering.remove(&digest);
        }
        let conn = if is_syn {
            Conn::syn(src, dst, p.ts, seg)
        } else if flags.syn() {
            Conn::syn_ack(dst, src, p.ts, seg)
        } else if flags.rst() {
            // An RST for a connection we never saw tells us nothing about a connection we can report.
            ctx.stats.orphan_resets += 1;
            return;
        } else if self.is_server(src, dst) {
            Conn::midstream(dst, src, p.ts)
        } else {
            Conn::midstream(src, dst, p.ts)
        };
        if self.flows.len() >= self.cfg.max_flows {
            self.stats.flows_evicted += self.flows.evict_oldest();
        }
        self.stats.flows_created += 1;
        let mut ctx = Ctx { cfg: &self.cfg, stats: &mut self.stats, out, held: &self.held, dns: &mut self.dns };
        let from_first = conn.ends[0] == src;
        let conn = self.flows.live.entry(key).or_insert(conn);
        if !(flags.syn() && flags.ack()) {
            conn.on_segment(from_first, seg, p.ts, &mut ctx);
            if let Some(l) = conn.lingering() {
                self.flows.retire(key, l);
            }
        }
    }

    /// A packet seen under two tuples of one connection (`pair`: its first copy's tuple, and this one's):
    /// links them (`NatAliases::link`) and says whether this copy is to be handled — only when this tuple
    /// keeps the connection and the first copy was handled under state now forgotten. The tuple that
    /// keeps is the one that holds a connection; of two that do (copies were missed until now), the one
    /// seen both ways (a reply seen half translated back is one-way), else the first.
    fn link(&mut self, pair: &NatPair, p: &Packet<'_>) -> bool {
        let Some(later) = ends_of(p) else { return false };
        let first = (pair.earlier.other_end(pair.earlier_dst), pair.earlier_dst);
        let this = FlowKey::new(later.0, later.1);
        let this_root = self.aliases.kept_of(&this).unwrap_or(this);
        let flows = &self.flows;
        let keep_first = |f: FlowKey, l: FlowKey| match (flows.live.get(&f), flows.live.get(&l)) {
            (None, Some(_)) => false,
            (Some(f), Some(l)) => f.seen_both_ways() || !l.seen_both_ways(),
            _ => true,
        };
        match self.aliases.link(first, later, keep_first, p.ts) {
            Linked::Already => false,
            Linked::Full => {
                // Counted: this connection will be reported under both of its tuples.
                self.stats.copy_fingerprints_saturated += 1;
                true
            }
            Linked::New { forget, kept } => {
                // The alias's own state is forgotten, live or lingering, unreported.
                self.flows.take(&forget);
                kept == this_root
            }
        }
    }

    /// Picked up mid-stream: is `a` the server of a connection with `b`? A side seen listening (it answered
    /// a SYN) is; else a well-known port (below 1024) facing an ephemeral one; else the lower port. The
    /// guess is corrected by the first request seen (SPEC §3.1, roles).
    fn is_server(&self, a: (std::net::IpAddr, u16), b: (std::net::IpAddr, u16)) -> bool {
        match (self.listeners.contains(&a), self.listeners.contains(&b)) {
            (true, false) => return true,
            (false, true) => return false,
            _ => {}
        }
        match (a.1 < 1024, b.1 < 1024) {
            (true, false) => true,
            (false, true) => false,
            _ => a.1 < b.1,
        }
    }

    fn on_icmp(&mut self, p: &Packet<'_>, msg: &IcmpMessage<'_>, out: &mut Vec<Entry>) {
        let c = icmp::classify(msg);
        let report = match c.kind {
            Kind::Error | Kind::Routing => true,
            Kind::Informational => self.cfg.show_icmp_informational,
            Kind::Other => false,
        };
        if let Some(q) = &c.quoted {
            if q.protocol == 6 && q.tcp_syn && icmp::kills_connection_attempt(msg) {
                let (src, dst) = ((q.src, q.src_port), (q.dst, q.dst_port));
                let (src, dst) = self.aliases.translate_ends(&FlowKey::new(src, dst), (src, dst)).unwrap_or((src, dst));
                if let Some(conn) = self.flows.live.get_mut(&FlowKey::new(src, dst)) {
                    if conn.client() == src {
                        conn.icmp_error_for_syn();
                    }
                }
            }
        }
        if !report {
            return;
        }
        let (src, dst) = (Endpoint::new(p.src, None), Endpoint::new(p.dst, None));
        out.push(Entry { icmp: Some(c.info), ..Entry::new(Protocol::Icmp, p.ts, src, dst) });
    }
}

/// `p` with other ends (a packet of an alias tuple, translated onto its kept tuple).
fn with_ends<'a>(p: &Packet<'a>, src: (std::net::IpAddr, u16), dst: (std::net::IpAddr, u16)) -> Packet<'a> {
    let mut q = *p;
    (q.src, q.dst) = (src.0, dst.0);
    match &mut q.transport {
        Transport::Tcp(t) => (t.src_port, t.dst_port) = (src.1, dst.1),
        Transport::Udp(u) => (u.src_port, u.dst_port) = (src.1, dst.1),
        Transport::Icmp(_) => {}
    }
    q
}

/// A TCP or UDP packet's source and destination.
fn ends_of(p: &Packet<'_>) -> Option<((std::net::IpAddr, u16), (std::net::IpAddr, u16))> {
    match &p.transport {
        Transport::Tcp(t) => Some(((p.src, t.src_port), (p.dst, t.dst_port))),
        Transport::Udp(u) => Some(((p.src, u.src_port), (p.dst, u.dst_port))),
        Transport::Icmp(_) => None,
    }
}

/// The pcap of an error or ICMP entry's flow, as the engine tracks it (an ICMP error beside the flow it
/// quotes).
fn recording_of(rec: &FlowRecorder, e: &Entry) -> Option<Vec<u8>> {
    if e.error.is_none() && e.icmp.is_none() {
        return None;
    }
    let key = match e.icmp.as_ref().and_then(|i| i.original.as_ref()) {
        Some(o) => FlowKey::new((o.src.ip, o.src.port), (o.dst.ip, o.dst.port)),
        None => FlowKey::new((e.src.ip, e.src.port.unwrap_or(0)), (e.dst.ip, e.dst.port.unwrap_or(0))),
    };
    rec.pcap(&key)
}

/// An entry about a NATed connection, in terms of the tuple its state is kept under, shown with the ends
/// the connection really had, and the Service its client addressed.
fn show_ends(aliases: &NatAliases, e: &mut Entry) {
    let (Some(sp), Some(dp)) = (e.src.port, e.dst.port) else { return };
    let Some(shown) = aliases.shown((e.src.ip, sp), (e.dst.ip, dp)) else { return };
    (e.src.ip, e.src.port) = (shown.client.0, Some(shown.client.1));
    (e.dst.ip, e.dst.port) = (shown.server.0, Some(shown.server.1));
    if let Some((ip, port)) = shown.service {
        e.service = Some(crate::entry::ServiceRef { ip, port, name: None, namespace: None });
    }
}

/// The flow a packet is recorded under: its own 4-tuple, or for an ICMP error the flow it quotes (so the
/// error sits beside the datagram it answers).
fn record_key(p: &Packet<'_>) -> Option<FlowKey> {
    match &p.transport {
        Transport::Tcp(t) => Some(FlowKey::new((p.src, t.src_port), (p.dst, t.dst_port))),
        Transport::Udp(u) => Some(FlowKey::new((p.src, u.src_port), (p.dst, u.dst_port))),
        Transport::Icmp(m) => {
            icmp::parse_quote(m.version, m.body).map(|q| FlowKey::new((q.src, q.src_port), (q.dst, q.dst_port)))
        }
    }
}
