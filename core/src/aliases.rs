//! The two 4-tuples of a NATed connection, once `crate::copies` found a packet under both: one is kept,
//! the other becomes an alias whose packets are dropped from then on (the kept flow sees them all), and
//! ICMP errors quoting the alias are dropped too. Which one is kept is decided where the flows are
//! tracked (`Shard::keep_this_tuple`): the tuple whose packets are seen both ways (on a node, a reply is
//! sometimes seen half translated back on the bridge — that tuple is one-way), else the tuple after DNAT
//! (the destination changed: the Service's backend, whose node reports it) or before SNAT (the source
//! changed: the pod, not the node). The front routes both tuples to one shard, so this lives per shard.

use std::collections::HashMap;

use crate::flow::{Endpoint, FlowKey};
use crate::time::Timestamp;
use crate::wire::{Packet, Transport};

/// NATed flows remembered at most (each is one connection of the node's).
pub const MAX_ALIASES: usize = 1 << 17;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

#[derive(Default)]
pub struct NatAliases {
    /// 4-tuples that are NATed copies of a tracked flow, with the last time one of their packets was seen.
    aliases: Map<FlowKey, Timestamp>,
    /// Flows kept after DNAT: the destination their client addressed (a Service's ClusterIP and port).
    translated: Map<FlowKey, (Endpoint, FlowKey)>,
}

impl NatAliases {
    /// Is `p` a packet of an alias (or an ICMP error quoting one)? Inlined: with no NAT seen, one compare.
    #[inline]
    pub fn is_alias(&mut self, p: &Packet<'_>) -> bool {
        if self.aliases.is_empty() {
            return false;
        }
        let key = match &p.transport {
            Transport::Tcp(t) => FlowKey::new((p.src, t.src_port), (p.dst, t.dst_port)),
            Transport::Udp(u) => FlowKey::new((p.src, u.src_port), (p.dst, u.dst_port)),
            Transport::Icmp(m) => {
                return crate::icmp::parse_quote(m.version, m.body).is_some_and(|q| {
                    self.aliases.contains_key(&FlowKey::new((q.src, q.src_port), (q.dst, q.dst_port)))
                });
            }
        };
        match self.aliases.get_mut(&key) {
            Some(seen) => {
                *seen = (*seen).max(p.ts);
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, key: &FlowKey) -> bool {
        self.aliases.contains_key(key)
    }

    pub fn is_full(&self) -> bool {
        self.aliases.len() >= MAX_ALIASES
    }

    /// Makes `alias` an alias of `kept`; `translated_from`: the destination the client addressed, when the
    /// kept flow is the one after DNAT.
    pub fn alias(&mut self, alias: FlowKey, kept: FlowKey, translated_from: Option<Endpoint>, ts: Timestamp) {
        self.aliases.insert(alias, ts);
        if let Some(dst) = translated_from {
            self.translated.insert(kept, (dst, alias));
        }
    }

    /// Forgets aliases not seen for `idle_ms`.
    pub fn expire(&mut self, now: Timestamp, idle_ms: u64) {
        self.aliases.retain(|_, last| now < last.plus_millis(idle_ms));
        // A translation lives as long as the alias it was found with.
        let aliases = &self.aliases;
        self.translated.retain(|_, (_, alias)| aliases.contains_key(alias));
    }

    /// The destination the client of flow `key` addressed, if it was translated (DNAT) on the way.
    pub fn original_destination(&self, key: &FlowKey) -> Option<Endpoint> {
        if self.translated.is_empty() {
            return None;
        }
        self.translated.get(key).map(|(dst, _)| *dst)
    }
}
