//! One rule per reason of SPEC §3.7, each a pure function of (entry, state at the entry's time): it
//! returns a cause only where the state proves it, `Ok(None)` where it does not apply or the state
//! does not explain the error, and `Err(Unknown)` where it would need state it does not have.

mod network_policy;
mod no_ready_endpoints;
mod pod_lifecycle;
mod port_not_served;
mod service_not_found;

use std::net::IpAddr;

use faultline_model::entry::{ErrorType, SynReason, TcpState, WorkloadKind};
use faultline_model::{Cause, Entry, Timestamp};

use super::netpol::Unknown;
use super::state::State;

pub type Verdict = Result<Option<Cause>, Unknown>;

/// The rules, in the order they are asked: the first cause wins. A policy that dropped the SYN explains
/// more than the pod behind it; a pod being deleted explains its containers stopping.
pub const RULES: [fn(&Entry, &State) -> Verdict; 6] = [
    network_policy::explain,
    no_ready_endpoints::explain,
    port_not_served::explain,
    pod_lifecycle::terminating,
    pod_lifecycle::restarted,
    service_not_found::explain,
];

/// How a connection (or an exchange on one) failed, as the causes tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The SYN was answered by RST.
    Refused,
    /// The SYN was never answered.
    Timeout,
    /// ICMP port unreachable (kube-proxy's REJECT of a Service without endpoints, a closed UDP port).
    PortUnreachable,
    /// The SYN was answered by an ICMP error (its own entry says which): a firewall's or kube-proxy's
    /// REJECT, as seen on the connection.
    Unreachable,
    /// ICMP administratively prohibited (a firewall's REJECT).
    Prohibited,
    /// An established connection reset.
    Reset,
    /// A request or response without its other half.
    Half,
}

/// The connection an error entry is about.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    pub client: IpAddr,
    /// The address the client reached (after any DNAT the capture saw).
    pub server: IpAddr,
    pub port: u16,
    /// `TCP` or `UDP`, as NetworkPolicy and Services name them.
    pub protocol: &'static str,
    pub failure: Failure,
    /// The client is the node itself (the kubelet, a host-network pod).
    pub from_node: bool,
    /// When it was tried (the entry's time).
    pub at: Timestamp,
    /// When it was known to have failed: for a request left unanswered, when the connection ended or the
    /// timer fired, not when the request was sent.
    pub decided: Timestamp,
}

impl Attempt {
    pub fn of(e: &Entry) -> Option<Attempt> {
        let error = e.error.as_ref()?;
        let from_node = e.src.workload.as_ref().is_some_and(|w| *w.kind() == WorkloadKind::Node);
        if let Some(icmp) = &e.icmp {
            let o = icmp.original.as_ref()?;
            let failure = match (icmp.version, icmp.icmp_type, icmp.code) {
                (4, 3, 3) | (6, 1, 4) => Failure::PortUnreachable,
                (4, 3, 9 | 10 | 13) | (6, 1, 1) => Failure::Prohibited,
                _ => return None,
            };
            let protocol = match o.protocol.as_str() {
                "tcp" => "TCP",
                "udp" => "UDP",
                _ => return None,
            };
            let from_node = e.dst.workload.as_ref().is_some_and(|w| *w.kind() == WorkloadKind::Node);
            return Some(Attempt {
                client: o.src.ip,
                server: o.dst.ip,
                port: o.dst.port,
                protocol,
                failure,
                from_node,
                at: e.timestamp,
                decided: e.timestamp,
            });
        }
        let failure = match (error.kind, e.tcp.as_ref().map(|t| (t.state, t.reason))) {
            (ErrorType::Connection, Some((TcpState::SynSent, Some(SynReason::Refused)))) => Failure::Refused,
            (ErrorType::Connection, Some((TcpState::SynSent, Some(SynReason::Timeout)))) => Failure::Timeout,
            (ErrorType::Connection, Some((TcpState::SynSent, Some(SynReason::Unreachable)))) => Failure::Unreachable,
            (ErrorType::Connection, Some((TcpState::Reset, _))) => Failure::Reset,
            (ErrorType::PairNotFound, _) => Failure::Half,
            _ => return None,
        };
        let protocol = if e.protocol == faultline_model::entry::Protocol::Dns { "UDP" } else { "TCP" };
        Some(Attempt {
            client: e.src.ip,
            server: e.dst.ip,
            port: e.dst.port?,
            protocol,
            failure,
            from_node,
            at: e.timestamp,
            decided: e.timestamp.plus_millis(e.elapsed_time.max(0.0) as u64),
        })
    }
}

/// Milliseconds between two times, for evidence.
pub fn ms_between(a: Timestamp, b: Timestamp) -> f64 {
    if a <= b {
        b.millis_since(a)
    } else {
        a.millis_since(b)
    }
}

#[cfg(test)]
pub mod fixtures;
