//! One packet, one observation. Traffic between two pods on one node crosses two veths (and often a
//! bridge) that the same agent captures, and egress traffic is seen before and after SNAT, Service traffic
//! before and after DNAT: the same packet arrives several times, on several interfaces. Reporting each copy
//! would double every error (SPEC §3.1 "One connection, one report").
//!
//! A copy is recognised by a fingerprint of what forwarding does not change: for an exact copy, the
//! addresses, ports, IP identification and the whole transport header and payload start (not the TTL or
//! checksums, which routing changes); for a NATed copy, the same without addresses and ports (TCP sequence
//! and acknowledgement numbers alone are 64 random bits). A copy is only a copy when it was seen on
//! *another* interface within a short window: the same packet twice on one interface is a retransmission.
//!
//! An exact copy is dropped. A NATed copy makes one of the two 4-tuples of a connection an alias of the
//! other (`Verdict::Nat`); which one is decided where the flows are tracked (`crate::nat::aliases`). This
//! part sees every packet of the node before flows are dispatched to engine shards, so it knows nothing
//! of flows: only fingerprints. Everything dropped is counted.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use crate::flow::FlowKey;
use crate::time::Timestamp;
use crate::wire::{self, LinkType, Packet, Transport};

/// Copies of one packet on a node's interfaces are microseconds apart; a capture thread's batching may
/// stamp them a few milliseconds apart.
const WINDOW_NS: u64 = 50_000_000;
/// Fingerprints remembered per window, at most (a million packets a second is 50,000 per window).
const MAX_PER_WINDOW: usize = 1 << 18;
/// Payload bytes that go into a fingerprint.
const PAYLOAD_BYTES: usize = 64;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Where a frame was captured: the caller's number for the capture (live: the interface, with the
/// direction in its lowest bit — the agent knows it from AF_PACKET; offline: the file and its pcapng
/// interface), refined by what a Linux cooked header says (`tcpdump -i any`: the interface index and
/// whether the packet was leaving it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturePoint {
    interface: u32,
    ifindex: u32,
    outgoing: bool,
}

impl CapturePoint {
    pub fn of(interface: u32, link: LinkType, data: &[u8]) -> CapturePoint {
        let (ifindex, outgoing) = match wire::cooked_capture_point(link, data) {
            Some((ifindex, outgoing)) => (ifindex.unwrap_or(0), outgoing),
            None => (0, false),
        };
        CapturePoint { interface, ifindex, outgoing }
    }
}

#[derive(Clone, Copy)]
struct Seen {
    point: CapturePoint,
    /// The flow of the copy (for NAT fingerprints: which tuple it had).
    key: FlowKey,
    /// The client-to-server direction's destination of that copy, to tell DNAT from SNAT.
    dst: (std::net::IpAddr, u16),
}

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// A copy of a packet already handled (seen on another interface).
    Copy,
    /// This packet is a NATed copy of one seen earlier under another tuple: one of the two flows must
    /// become the alias of the other (`NatAliases::alias`), as the flows' shard decides.
    Nat(NatPair),
}

/// Two tuples of one connection, found by a packet seen under both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatPair {
    pub earlier: FlowKey,
    pub earlier_dst: (std::net::IpAddr, u16),
    pub this: FlowKey,
    /// The packet's destination changed between the two copies (DNAT of a request, un-SNAT of a reply).
    pub dst_changed: bool,
}

#[derive(Default)]
pub struct Copies {
    /// Seen on more than one interface: until then nothing is fingerprinted (a single-interface capture
    /// pays nothing).
    multi: bool,
    first_point: Option<CapturePoint>,
    exact: [Map<u64, Seen>; 2],
    nat: [Map<u64, Seen>; 2],
    window_start: u64,
    hasher: foldhash::fast::FixedState,
    /// Fingerprints not remembered because a window was full.
    pub saturated: u64,
}

impl Copies {
    /// Fingerprint from the first packet on (a live agent captures several interfaces from the start).
    pub fn expect_several_interfaces(&mut self) {
        self.multi = true;
    }

    /// What to do with `p`, captured at `point`. Inlined: at a single point this is a few compares.
    #[inline]
    pub fn check(&mut self, point: CapturePoint, p: &Packet<'_>) -> Verdict {
        if !self.multi && self.first_point == Some(point) {
            return Verdict::Keep;
        }
        self.check_copies(point, p)
    }

    fn check_copies(&mut self, point: CapturePoint, p: &Packet<'_>) -> Verdict {
        if !self.multi && point.ifindex != 0 {
            // A capture that names each frame's interface (`tcpdump -i any`) is of several from its first
            // frame on: that frame's copies on other interfaces come right after it.
            self.multi = true;
        }
        if !self.multi {
            match self.first_point {
                None => self.first_point = Some(point),
                Some(first) if first != point => self.multi = true,
                Some(_) => {}
            }
            if !self.multi {
                return Verdict::Keep;
            }
        }
        let Some((key, dst)) = flow_of(p) else { return Verdict::Keep };
        self.rotate(p.ts);
        let exact = self.fingerprint(p, true);
        let here = Seen { point, key, dst };
        if let Some(seen) = lookup(&self.exact, exact) {
            if seen.point != point {
                return Verdict::Copy;
            }
        }
        remember(&mut self.exact[0], exact, here, &mut self.saturated);
        let nat = self.fingerprint(p, false);
        if matches!(p.transport, Transport::Icmp(_)) {
            // An ICMP error translated on the way (its addresses and the flow it quotes, by conntrack) is
            // a copy like any other: it reports on one connection, whatever tuple it names.
            return match lookup(&self.nat, nat) {
                Some(seen) if seen.point != point => Verdict::Copy,
                _ => {
                    remember(&mut self.nat[0], nat, here, &mut self.saturated);
                    Verdict::Keep
                }
            };
        }
        match lookup(&self.nat, nat) {
            Some(seen) if seen.point != point && seen.key != key => {
                // The destination changed on the way: DNAT of a request (this copy has the Service's
                // backend) or un-SNAT of a reply (this copy has the pod) — keep this one. Only the source
                // changed: SNAT of a request or un-DNAT of a reply — the first copy had the pod.
                remember(&mut self.nat[0], nat, here, &mut self.saturated);
                Verdict::Nat(NatPair {
                    earlier: seen.key,
                    earlier_dst: seen.dst,
                    this: key,
                    dst_changed: seen.dst != dst,
                })
            }
            _ => {
                remember(&mut self.nat[0], nat, here, &mut self.saturated);
                Verdict::Keep
            }
        }
    }

    fn rotate(&mut self, ts: Timestamp) {
        let now = ts.nanos();
        if now < self.window_start.saturating_add(WINDOW_NS) {
            return;
        }
        // Two windows are kept: a copy up to one window late is still found.
        let fresh = now >= self.window_start.saturating_add(2 * WINDOW_NS);
        self.exact.swap(0, 1);
        self.nat.swap(0, 1);
        self.exact[0].clear();
        self.nat[0].clear();
        if fresh {
            self.exact[1].clear();
            self.nat[1].clear();
        }
        self.window_start = now;
    }

    /// What forwarding does not change; with `exact`, addresses and ports too.
    fn fingerprint(&self, p: &Packet<'_>, exact: bool) -> u64 {
        let mut h = self.hasher.build_hasher();
        if exact {
            p.src.hash(&mut h);
            p.dst.hash(&mut h);
        }
        p.ip_id.hash(&mut h);
        match &p.transport {
            Transport::Tcp(t) => {
                6u8.hash(&mut h);
                if exact {
                    (t.src_port, t.dst_port).hash(&mut h);
                }
                (t.seq, t.ack, t.flags.0, t.window, t.seg_len).hash(&mut h);
                t.options.hash(&mut h);
                t.payload[..t.payload.len().min(PAYLOAD_BYTES)].hash(&mut h);
            }
            Transport::Udp(u) => {
                17u8.hash(&mut h);
                if exact {
                    (u.src_port, u.dst_port).hash(&mut h);
                }
                u.payload.len().hash(&mut h);
                u.payload[..u.payload.len().min(PAYLOAD_BYTES)].hash(&mut h);
            }
            Transport::Icmp(m) if exact => {
                1u8.hash(&mut h);
                (m.icmp_type, m.code, m.rest).hash(&mut h);
                m.body.len().hash(&mut h);
                m.body[..m.body.len().min(PAYLOAD_BYTES)].hash(&mut h);
            }
            Transport::Icmp(m) => {
                // NAT rewrites the quoted datagram's addresses, ports and checksums: what is left of the
                // quote is its IP identification and what follows its ports (a TCP sequence number).
                1u8.hash(&mut h);
                (m.icmp_type, m.code, m.rest).hash(&mut h);
                m.body.len().hash(&mut h);
                match crate::icmp::quote_nat_invariant(m.version, m.body) {
                    Some((protocol, ip_id, a, b)) => {
                        (protocol, ip_id, a).hash(&mut h);
                        b[..b.len().min(PAYLOAD_BYTES)].hash(&mut h);
                    }
                    None => m.body[..m.body.len().min(PAYLOAD_BYTES)].hash(&mut h),
                }
            }
        }
        h.finish()
    }
}

fn lookup(maps: &[Map<u64, Seen>; 2], fp: u64) -> Option<Seen> {
    maps[0].get(&fp).or_else(|| maps[1].get(&fp)).copied()
}

fn remember(map: &mut Map<u64, Seen>, fp: u64, seen: Seen, saturated: &mut u64) {
    if map.len() >= MAX_PER_WINDOW && !map.contains_key(&fp) {
        *saturated += 1;
        return;
    }
    map.insert(fp, seen);
}

/// The packet's flow and its destination (for ICMP: its own addresses, no ports).
fn flow_of(p: &Packet<'_>) -> Option<(FlowKey, (std::net::IpAddr, u16))> {
    let (sp, dp) = match &p.transport {
        Transport::Tcp(t) => (t.src_port, t.dst_port),
        Transport::Udp(u) => (u.src_port, u.dst_port),
        Transport::Icmp(_) => (0, 0),
    };
    Some((FlowKey::new((p.src, sp), (p.dst, dp)), (p.dst, dp)))
}
