//! NetworkPolicy as the API defines it (networking.k8s.io/v1): a pod is isolated in a direction when
//! a policy in force selects it for that direction (`policyTypes`, defaulted as the API server does:
//! `Ingress`, plus `Egress` when the policy has egress rules); isolated traffic is admitted when any
//! rule of any of those policies admits it — rules are ORed, across policies too. A rule admits a peer
//! that any of its `from`/`to` entries matches (none: every peer) on a port any of its `ports` matches
//! (none: every port). A connection needs both the source's egress and the destination's ingress.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use faultline_model::Timestamp;

use super::selector::matches;
use super::state::{PodState, PolicyState, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// The other end of the traffic, as a policy sees it: a pod (at one of its addresses) or an address
/// that is no pod (the node, the outside world).
#[derive(Clone, Copy, Debug)]
pub enum Peer<'a> {
    Pod(&'a PodState, IpAddr),
    Ip(IpAddr),
}

impl Peer<'_> {
    fn ip(&self) -> IpAddr {
        match self {
            Peer::Pod(_, ip) | Peer::Ip(ip) => *ip,
        }
    }
}

/// One rule of a policy: its peers (`from` or `to`) and its ports.
type Rule<'a> = (Option<&'a Vec<NetworkPolicyPeer>>, Option<&'a Vec<NetworkPolicyPort>>);

/// What the policies in force said about one direction.
#[derive(Debug, PartialEq)]
pub struct Judgement<'a> {
    /// Every policy that selects the pod for this direction (empty: the pod is not isolated).
    pub selecting: Vec<&'a PolicyState>,
    pub admitted: bool,
}

/// The state could not say (a policy changed since `t`, a peer's namespace is unknown).
#[derive(Debug, PartialEq, Eq)]
pub struct Unknown(pub String);

/// Whether traffic between `pod` and `peer` on `port`/`protocol` was admitted at `t` in `dir`: into
/// `pod` from `peer` (Ingress), or out of `pod` to `peer` (Egress). `target` is the pod that serves the
/// port (named ports are its names): `pod` for Ingress, the peer pod (if any) for Egress.
pub fn judge<'a>(
    state: &'a State,
    dir: Direction,
    pod: &PodState,
    peer: Peer<'_>,
    port: u16,
    protocol: &str,
    t: Timestamp,
) -> Result<Judgement<'a>, Unknown> {
    let mut selecting = Vec::new();
    for p in state.policies.get(&pod.namespace).into_iter().flat_map(|ns| ns.values()) {
        match p.in_force_at(t) {
            Some(true) => {}
            Some(false) => continue,
            None => return Err(Unknown(format!("NetworkPolicy {}/{} changed after the error", p.namespace, p.name))),
        }
        let selects = p.spec.pod_selector.as_ref().is_none_or(|sel| matches(sel, &pod.labels));
        if selects && types(p).contains(&dir) {
            selecting.push(p);
        }
    }
    let target = match (dir, peer) {
        (Direction::Ingress, _) => Some(pod),
        (Direction::Egress, Peer::Pod(p, _)) => Some(p),
        (Direction::Egress, Peer::Ip(_)) => None,
    };
    let mut admitted = selecting.is_empty();
    for p in &selecting {
        let rules: Vec<Rule<'_>> = match dir {
            Direction::Ingress => {
                p.spec.ingress.iter().flatten().map(|r| (r.from.as_ref(), r.ports.as_ref())).collect()
            }
            Direction::Egress => p.spec.egress.iter().flatten().map(|r| (r.to.as_ref(), r.ports.as_ref())).collect(),
        };
        for (peers, ports) in rules {
            let port_ok =
                ports.is_none_or(|ps| ps.is_empty() || ps.iter().any(|x| port_matches(x, port, protocol, target)));
            if !port_ok {
                continue;
            }
            let peer_ok = match peers {
                None => true,
                Some(list) if list.is_empty() => true,
                Some(list) => {
                    let mut any = false;
                    for x in list {
                        if peer_matches(state, p, x, peer, t)? {
                            any = true;
                            break;
                        }
                    }
                    any
                }
            };
            if peer_ok {
                admitted = true;
            }
        }
    }
    Ok(Judgement { selecting, admitted })
}

/// `policyTypes`, or the API server's default for a policy that names none.
pub fn types(p: &PolicyState) -> Vec<Direction> {
    match &p.spec.policy_types {
        Some(t) if !t.is_empty() => t
            .iter()
            .filter_map(|x| match x.as_str() {
                "Ingress" => Some(Direction::Ingress),
                "Egress" => Some(Direction::Egress),
                _ => None,
            })
            .collect(),
        _ if p.spec.egress.as_ref().is_some_and(|e| !e.is_empty()) => vec![Direction::Ingress, Direction::Egress],
        _ => vec![Direction::Ingress],
    }
}

fn port_matches(x: &NetworkPolicyPort, port: u16, protocol: &str, target: Option<&PodState>) -> bool {
    if x.protocol.as_deref().unwrap_or("TCP") != protocol {
        return false;
    }
    match &x.port {
        None => true,
        Some(IntOrString::Int(n)) => {
            let end = x.end_port.unwrap_or(*n);
            i32::from(port) >= *n && i32::from(port) <= end
        }
        Some(IntOrString::String(name)) => target.and_then(|t| t.named_port(name, protocol)) == Some(port),
    }
}

fn peer_matches(
    state: &State,
    policy: &PolicyState,
    x: &NetworkPolicyPeer,
    peer: Peer<'_>,
    t: Timestamp,
) -> Result<bool, Unknown> {
    if let Some(block) = &x.ip_block {
        return Ok(in_block(block, peer.ip()));
    }
    if x.pod_selector.is_none() && x.namespace_selector.is_none() {
        return Ok(false);
    }
    let Peer::Pod(pod, _) = peer else { return Ok(false) };
    let namespace_ok = match &x.namespace_selector {
        Some(sel) => {
            let Some(ns) = state.namespaces.get(&pod.namespace).filter(|n| n.created <= t) else {
                return Err(Unknown(format!("namespace {} not known", pod.namespace)));
            };
            matches(sel, &ns.labels)
        }
        None => pod.namespace == policy.namespace,
    };
    let pod_ok = x.pod_selector.as_ref().is_none_or(|sel| matches(sel, &pod.labels));
    Ok(namespace_ok && pod_ok)
}

fn in_block(block: &IPBlock, ip: IpAddr) -> bool {
    in_cidr(&block.cidr, ip) && !block.except.iter().flatten().any(|e| in_cidr(e, ip))
}

/// Whether `ip` is in `cidr` (`10.0.0.0/8`, `fd00::/8`, or an address alone).
pub fn in_cidr(cidr: &str, ip: IpAddr) -> bool {
    let (addr, len) = match cidr.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = addr.parse::<IpAddr>() else { return false };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let len = len.unwrap_or(32).min(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let len = len.unwrap_or(128).min(128);
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
