//! Which engine shard a packet belongs to. Everything the engine decides from more than one packet must
//! see those packets on one shard:
//! - both directions of a TCP connection: the direction-free 4-tuple;
//! - a DNS client's queries, for search-list expansion (`ndots:5`: one NXDOMAIN per search domain, on new
//!   sockets) and for a truncated answer's retry over TCP: UDP by the client's address (the side with the
//!   higher port: the ephemeral one), TCP to or from port 53 likewise;
//! - an ICMP error: by the flow it quotes, under the same rules (a SYN answered by "port unreachable" is
//!   decided on the SYN's shard);
//! - the two tuples of a NATed connection: `crate::engine::front` routes the later one to the earlier's shard.

use std::hash::BuildHasher;
use std::net::IpAddr;

use crate::flow::{Endpoint, FlowKey};
use crate::icmp;
use crate::wire::{Packet, Transport};

const DNS_PORT: u16 = 53;

/// What a packet is routed by: the flow it belongs to (its own, or the one an ICMP error quotes), and what
/// of that flow chooses the shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteKey {
    /// The flow, for overrides (NAT); `None` for ICMP quoting nothing we route by.
    pub flow: Option<FlowKey>,
    by: By,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum By {
    Flow(FlowKey),
    Address(IpAddr),
    Addresses(IpAddr, IpAddr),
}

impl RouteKey {
    pub fn of(p: &Packet<'_>) -> RouteKey {
        match &p.transport {
            Transport::Tcp(t) => flow(6, (p.src, t.src_port), (p.dst, t.dst_port)),
            Transport::Udp(u) => flow(17, (p.src, u.src_port), (p.dst, u.dst_port)),
            Transport::Icmp(m) => match icmp::parse_quote(m.version, m.body) {
                Some(q) if q.protocol == 6 || q.protocol == 17 => {
                    flow(q.protocol, (q.src, q.src_port), (q.dst, q.dst_port))
                }
                Some(q) => RouteKey { flow: None, by: addresses(q.src, q.dst) },
                None => RouteKey { flow: None, by: addresses(p.src, p.dst) },
            },
        }
    }

    /// The key of a TCP (6) or UDP (17) flow.
    pub fn of_flow(protocol: u8, key: FlowKey) -> RouteKey {
        let (a, b) = key.ends();
        flow(protocol, a, b)
    }

    /// The shard of `n`, by the key alone (no override).
    pub fn shard(&self, hasher: &foldhash::fast::FixedState, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        // Integers, not the derived `Hash` of addresses (a discriminant, a length and a byte slice per
        // address): the front hashes every frame of the node, and it is the one thread shards do not divide.
        let h = match self.by {
            By::Flow(key) => {
                let (a, b) = key.ends();
                hasher.hash_one((endpoint_bits(a), endpoint_bits(b)))
            }
            By::Address(ip) => hasher.hash_one(ip_bits(ip)),
            By::Addresses(a, b) => hasher.hash_one((ip_bits(a), ip_bits(b), 1u8)),
        };
        // The high bits of a multiply: an even spread without a division.
        ((u128::from(h) * n as u128) >> 64) as usize
    }
}

fn flow(protocol: u8, a: Endpoint, b: Endpoint) -> RouteKey {
    let key = FlowKey::new(a, b);
    let by = if protocol == 17 || a.1 == DNS_PORT || b.1 == DNS_PORT {
        // The client: the side that is not port 53, else the side with the higher port (the ephemeral
        // one), else the lower address — the same whichever way the packet goes.
        let client = match (a.1 == DNS_PORT, b.1 == DNS_PORT) {
            (false, true) => a,
            (true, false) => b,
            _ if a.1 > b.1 || (a.1 == b.1 && a.0 <= b.0) => a,
            _ => b,
        };
        By::Address(client.0)
    } else {
        By::Flow(key)
    };
    RouteKey { flow: Some(key), by }
}

/// An address as one integer (IPv4 and IPv6 may share values: that only places them on one shard).
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn endpoint_bits((ip, port): Endpoint) -> u128 {
    ip_bits(ip).rotate_left(16) ^ u128::from(port)
}

fn addresses(a: IpAddr, b: IpAddr) -> By {
    By::Addresses(a.min(b), a.max(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_of(protocol: u8, a: Endpoint, b: Endpoint, n: usize) -> usize {
        flow(protocol, a, b).shard(&foldhash::fast::FixedState::with_seed(7), n)
    }

    #[test]
    fn both_directions_share_a_shard_and_flows_spread() {
        let mut used = [0; 4];
        for port in 40000..40400u16 {
            let (c, s) = (("10.0.0.1".parse().expect("address"), port), ("10.0.0.2".parse().expect("address"), 80));
            let k = shard_of(6, c, s, 4);
            assert_eq!(k, shard_of(6, s, c, 4));
            used[k] += 1;
        }
        assert!(used.iter().all(|&u| u > 60), "an even spread of 400 flows over 4 shards: {used:?}");
    }

    #[test]
    fn a_dns_clients_sockets_share_a_shard_over_udp_and_tcp() {
        let client: IpAddr = "10.0.0.9".parse().expect("address");
        let server = ("10.96.0.10".parse().expect("address"), 53);
        let first = shard_of(17, (client, 33000), server, 8);
        for port in 33001..33100 {
            assert_eq!(shard_of(17, (client, port), server, 8), first);
            assert_eq!(shard_of(17, server, (client, port), 8), first);
            assert_eq!(shard_of(6, (client, port), server, 8), first, "the TCP retry of a truncated answer");
        }
        // DNS on another port: the ephemeral side is the client.
        let other = ("10.0.0.3".parse().expect("address"), 5353);
        assert_eq!(shard_of(17, (client, 40000), other, 8), shard_of(17, (client, 40001), other, 8));
    }
}
