//! The tuples of a NATed connection, once `crate::nat::copies` found a packet under two of them. On a node one
//! connection is seen under several 4-tuples: before and after a Service's DNAT, before and after SNAT
//! (masquerade of host-network traffic), and half translated — a bridge's netfilter hook undoes SNAT on a
//! reply before the host's own stack undoes DNAT, so `cni0` shows the reply under a tuple nothing else has.
//! No single tuple sees every packet, so none can be dropped: one tuple is *kept* (its flow holds the
//! connection's state) and the others become *aliases* whose packets are translated onto it.
//!
//! - A packet seen under two tuples is one packet: its second copy is dropped (the front said so, with
//!   `Verdict::Nat`). A packet seen only under an alias (a half-translated reply) is translated to the
//!   kept tuple's addresses and handled there, so both directions of the connection meet.
//! - Which tuple is kept is decided by the shard (`Shard::link`): the one that already holds state.
//! - What an entry shows is what the connection's ends really were (`Shown`): the client as it sent (before
//!   SNAT; or, when its packets were only seen after SNAT, as the reply was translated back to it), the
//!   server as it answered (after DNAT), and the Service the client addressed when the two differ.
//!
//! The front routes every tuple of a connection to one shard, so all of this lives per shard.

use std::collections::HashMap;

use crate::flow::{Endpoint, FlowKey};
use crate::time::Timestamp;
use crate::wire::{Packet, Transport};

/// NATed flows remembered at most (each is one connection of the node's).
pub const MAX_ALIASES: usize = 1 << 17;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// A tuple whose packets are handled as another's.
#[derive(Clone, Copy, Debug)]
struct Alias {
    kept: FlowKey,
    /// Each end of the alias tuple, and the end of the kept tuple it stands for.
    ends: [(Endpoint, Endpoint); 2],
    last: Timestamp,
}

impl Alias {
    fn kept_end(&self, e: Endpoint) -> Endpoint {
        self.ends.iter().find(|(a, _)| *a == e).map_or(e, |(_, k)| *k)
    }
}

/// One packet seen under two tuples, in the kept tuple's terms: who sent it and who received it, and the
/// addresses the two copies had, in the order the path took them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sighting {
    sender: Endpoint,
    receiver: Endpoint,
    /// (source, destination) of the first copy and of the later one.
    first: (Endpoint, Endpoint),
    later: (Endpoint, Endpoint),
}

/// Sightings kept per connection: one each way is all `Shown` needs; a third capture point adds one more.
const SIGHTINGS: usize = 4;

/// The ends of a connection as an entry shows them, in place of the kept tuple's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub client: Endpoint,
    pub server: Endpoint,
    /// The destination the client addressed, when it is not the server (a Service's ClusterIP and port).
    pub service: Option<Endpoint>,
}

#[derive(Default)]
pub struct NatAliases {
    aliases: Map<FlowKey, Alias>,
    /// What was seen of each kept flow's translations.
    sightings: Map<FlowKey, Vec<Sighting>>,
}

/// What `NatAliases::link` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linked {
    /// The two tuples were one connection's already.
    Already,
    /// `forget` is now an alias of `kept`: what was tracked under `forget` is to be forgotten.
    New { forget: FlowKey, kept: FlowKey },
    /// No room for another alias (counted by the caller): the tuples stay apart.
    Full,
}

/// A packet translated onto its kept tuple: its source and destination there.
pub struct Translated {
    pub src: Endpoint,
    pub dst: Endpoint,
}

impl NatAliases {
    /// Whether any NAT was seen: with none, nothing here costs more than this compare.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.aliases.len() >= MAX_ALIASES
    }

    /// The kept tuple `key` is an alias of, if it is one.
    pub fn kept_of(&self, key: &FlowKey) -> Option<FlowKey> {
        self.aliases.get(key).map(|a| a.kept)
    }

    /// `p` (TCP or UDP) under the kept tuple, if its own tuple is an alias. Refreshes the alias.
    #[inline]
    pub fn translate(&mut self, p: &Packet<'_>) -> Option<Translated> {
        if self.aliases.is_empty() {
            return None;
        }
        let (sp, dp) = match &p.transport {
            Transport::Tcp(t) => (t.src_port, t.dst_port),
            Transport::Udp(u) => (u.src_port, u.dst_port),
            Transport::Icmp(_) => return None,
        };
        let (src, dst) = ((p.src, sp), (p.dst, dp));
        let alias = self.aliases.get_mut(&FlowKey::new(src, dst))?;
        alias.last = alias.last.max(p.ts);
        Some(Translated { src: alias.kept_end(src), dst: alias.kept_end(dst) })
    }

    /// Two ends of alias `key` (a packet's source and destination, or a quoted flow's) in the terms of
    /// its kept tuple; `None` if `key` is no alias.
    pub fn translate_ends(&self, key: &FlowKey, (a, b): (Endpoint, Endpoint)) -> Option<(Endpoint, Endpoint)> {
        self.aliases.get(key).map(|alias| (alias.kept_end(a), alias.kept_end(b)))
    }

    /// A tuple and a packet's ends under it, in terms of the kept tuple it stands for (itself if none).
    fn in_kept(&self, key: FlowKey, (src, dst): (Endpoint, Endpoint)) -> (FlowKey, Endpoint, Endpoint) {
        match self.aliases.get(&key) {
            Some(a) => (a.kept, a.kept_end(src), a.kept_end(dst)),
            None => (key, src, dst),
        }
    }

    /// One packet was seen as `first` (source, destination) and then as `later`: one connection. If the
    /// two tuples are not linked yet, `keep_first(first's kept tuple, later's)` says which one keeps the
    /// state; the other becomes its alias (and so do the other's own aliases).
    pub fn link(
        &mut self,
        first: (Endpoint, Endpoint),
        later: (Endpoint, Endpoint),
        keep_first: impl FnOnce(FlowKey, FlowKey) -> bool,
        ts: Timestamp,
    ) -> Linked {
        let (f_key, l_key) = (FlowKey::new(first.0, first.1), FlowKey::new(later.0, later.1));
        let (f_root, f_src, f_dst) = self.in_kept(f_key, first);
        let (l_root, l_src, l_dst) = self.in_kept(l_key, later);
        self.touch(&f_key, ts);
        self.touch(&l_key, ts);
        if f_root == l_root {
            self.note(f_root, Sighting { sender: f_src, receiver: f_dst, first, later });
            return Linked::Already;
        }
        if self.is_full() {
            return Linked::Full;
        }
        let (root, ends, gone, gone_ends) = if keep_first(f_root, l_root) {
            (f_root, (f_src, f_dst), l_root, (l_src, l_dst))
        } else {
            (l_root, (l_src, l_dst), f_root, (f_src, f_dst))
        };
        let map = [(gone_ends.0, ends.0), (gone_ends.1, ends.1)];
        let to_root = |e: Endpoint| map.iter().find(|(g, _)| *g == e).map_or(e, |(_, r)| *r);
        if let Some(old) = self.sightings.remove(&gone) {
            // Two groups of one connection, each linked apart: the gone one's aliases and sightings move.
            for a in self.aliases.values_mut().filter(|a| a.kept == gone) {
                a.kept = root;
                for end in &mut a.ends {
                    end.1 = to_root(end.1);
                }
            }
            for s in old {
                self.note(root, Sighting { sender: to_root(s.sender), receiver: to_root(s.receiver), ..s });
            }
        }
        self.aliases.insert(gone, Alias { kept: root, ends: map, last: ts });
        self.note(root, Sighting { sender: ends.0, receiver: ends.1, first, later });
        Linked::New { forget: gone, kept: root }
    }

    fn note(&mut self, root: FlowKey, s: Sighting) {
        let seen = self.sightings.entry(root).or_default();
        let same_way = seen.iter().filter(|o| o.sender == s.sender).count();
        if !seen.contains(&s) && seen.len() < SIGHTINGS && same_way < SIGHTINGS / 2 {
            seen.push(s);
        }
    }

    /// Refreshes the aliases of a packet's tuple (a copy dropped under it).
    pub fn touch(&mut self, key: &FlowKey, ts: Timestamp) {
        if let Some(a) = self.aliases.get_mut(key) {
            a.last = a.last.max(ts);
        }
    }

    /// Forgets aliases not seen for `idle_ms`, and what was seen of flows that have no alias left.
    pub fn expire(&mut self, now: Timestamp, idle_ms: u64) {
        if self.aliases.is_empty() && self.sightings.is_empty() {
            return;
        }
        self.aliases.retain(|_, a| now < a.last.plus_millis(idle_ms));
        let aliases = &self.aliases;
        if self.sightings.len() > aliases.len() {
            let kept: std::collections::HashSet<FlowKey, foldhash::fast::FixedState> =
                aliases.values().map(|a| a.kept).collect();
            self.sightings.retain(|k, _| kept.contains(k));
        }
    }

    /// The ends of the connection between `client` and `server` (ends of the kept flow) as an entry shows
    /// them, when NAT was seen on it: the client as it sent, the server as it answered, and the Service.
    ///
    /// A packet's source is most itself where it was seen first (SNAT comes later on its path; a reply is
    /// un-DNATed to the Service's address on its way back), and its destination where it was seen last
    /// (DNAT toward the backend). A client masqueraded before any capture point (a host-network process)
    /// keeps the address it was first seen with: a reply translated back to it is seen only after the
    /// first entries may already have been made, and one connection must not change names halfway.
    pub fn shown(&self, client: Endpoint, server: Endpoint) -> Option<Shown> {
        let seen = self.sightings.get(&FlowKey::new(client, server))?;
        let mut requests = seen.iter().filter(|s| s.sender == client && s.receiver == server);
        let shown = match (requests.next(), requests.next_back()) {
            (Some(first), last) => {
                let last = last.unwrap_or(first);
                let server = last.later.1;
                Shown { client: first.first.0, server, service: Some(first.first.1).filter(|s| *s != server) }
            }
            (None, _) => {
                let reply = seen.iter().find(|s| s.sender == server && s.receiver == client)?;
                let server = reply.first.0;
                Shown { client, server, service: Some(reply.later.0).filter(|s| *s != server) }
            }
        };
        Some(shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        let (ip, port) = s.rsplit_once(':').expect("ip:port");
        (ip.parse().expect("ip"), port.parse().expect("port"))
    }

    #[test]
    fn a_service_request_seen_before_and_after_dnat() {
        let mut a = NatAliases::default();
        let (pod, svc, backend) = (ep("10.88.0.6:40000"), ep("10.96.0.10:53"), ep("10.88.0.2:53"));
        let linked = a.link((pod, svc), (pod, backend), |_, _| true, Timestamp(1));
        assert_eq!(linked, Linked::New { forget: FlowKey::new(pod, backend), kept: FlowKey::new(pod, svc) });
        let shown = a.shown(pod, svc).expect("seen");
        assert_eq!(shown, Shown { client: pod, server: backend, service: Some(svc) });
        // The reply, seen after DNAT and then translated back: the same connection.
        assert_eq!(a.link((backend, pod), (svc, pod), |_, _| true, Timestamp(2)), Linked::Already);
        assert_eq!(a.shown(pod, svc).expect("seen"), shown);
        assert_eq!(a.kept_of(&FlowKey::new(pod, backend)), Some(FlowKey::new(pod, svc)));
    }

    #[test]
    fn a_host_network_client_keeps_the_address_it_was_first_seen_with() {
        let mut a = NatAliases::default();
        // The query is only ever seen masqueraded to the bridge's address; its answer is seen on the
        // CoreDNS veth under that tuple, then on the bridge with the node's own address restored.
        let (bridge, node, dns) = (ep("10.88.0.1:6977"), ep("192.0.2.2:49045"), ep("10.88.0.2:53"));
        let linked = a.link((dns, bridge), (dns, node), |_, _| true, Timestamp(1));
        assert_eq!(linked, Linked::New { forget: FlowKey::new(dns, node), kept: FlowKey::new(dns, bridge) });
        let t = a.translate_ends(&FlowKey::new(dns, node), (dns, node)).expect("an alias");
        assert_eq!(t, (dns, bridge), "a packet seen only under the half-translated tuple meets its flow");
        assert_eq!(a.shown(bridge, dns).expect("seen"), Shown { client: bridge, server: dns, service: None });
    }

    #[test]
    fn a_third_tuple_joins_the_kept_one() {
        let mut a = NatAliases::default();
        let (pod, svc, backend, snat) =
            (ep("10.88.0.6:40000"), ep("10.96.0.1:443"), ep("192.0.2.2:6443"), ep("192.0.2.9:1234"));
        a.link((pod, svc), (pod, backend), |_, _| true, Timestamp(1));
        // The same packet again after SNAT, found against the alias.
        let linked = a.link((pod, backend), (snat, backend), |_, _| true, Timestamp(2));
        assert_eq!(linked, Linked::New { forget: FlowKey::new(snat, backend), kept: FlowKey::new(pod, svc) });
        assert_eq!(a.translate_ends(&FlowKey::new(snat, backend), (backend, snat)), Some((svc, pod)));
        let shown = a.shown(pod, svc).expect("seen");
        assert_eq!(shown, Shown { client: pod, server: backend, service: Some(svc) });
    }

    #[test]
    fn two_groups_of_one_connection_become_one() {
        let mut a = NatAliases::default();
        let (c1, s1, c2, s2) = (ep("10.0.0.1:1"), ep("10.0.0.2:2"), ep("10.0.0.3:3"), ep("10.0.0.4:4"));
        let (c3, s3, c4, s4) = (ep("10.0.0.5:5"), ep("10.0.0.6:6"), ep("10.0.0.7:7"), ep("10.0.0.8:8"));
        a.link((c1, s1), (c2, s2), |_, _| true, Timestamp(1));
        a.link((c3, s3), (c4, s4), |_, _| true, Timestamp(1));
        a.link((c2, s2), (c3, s3), |_, _| true, Timestamp(2));
        for (c, s) in [(c2, s2), (c3, s3), (c4, s4)] {
            assert_eq!(a.translate_ends(&FlowKey::new(c, s), (c, s)), Some((c1, s1)), "{c:?}");
        }
    }

    #[test]
    fn aliases_and_what_was_seen_expire_together() {
        let mut a = NatAliases::default();
        let (pod, svc, backend) = (ep("10.88.0.6:40000"), ep("10.96.0.10:53"), ep("10.88.0.2:53"));
        a.link((pod, svc), (pod, backend), |_, _| true, Timestamp(0));
        a.expire(Timestamp(2_000_000_000), 1_000);
        assert!(a.is_empty());
        assert_eq!(a.shown(pod, svc), None);
    }
}
