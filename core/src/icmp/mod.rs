//! ICMPv4 and ICMPv6 messages as entries (SPEC §3.4): the type and code in words, and for error messages
//! the quoted original datagram's protocol and endpoints — the flow that the error kills.

mod names;
mod quote;

pub use names::Kind;
pub use quote::{parse_quote, quote_nat_invariant, Quoted};

use crate::entry::{FlowEndpoint, IcmpInfo, OriginalFlow};
use crate::wire::{IcmpMessage, IpVersion};

/// What an ICMP message means for the engine.
pub struct Classified {
    pub info: IcmpInfo,
    pub kind: Kind,
    /// The quoted datagram of an error message, if it was long enough to read.
    pub quoted: Option<Quoted>,
}

pub fn classify(msg: &IcmpMessage<'_>) -> Classified {
    let (type_name, code_name, kind) = match msg.version {
        IpVersion::V4 => names::v4(msg.icmp_type, msg.code),
        IpVersion::V6 => names::v6(msg.icmp_type, msg.code),
    };
    let quoted = if kind == Kind::Error || is_redirect(msg) { parse_quote(msg.version, msg.body) } else { None };
    let be32 = u32::from_be_bytes(msg.rest);
    let mtu = match (msg.version, msg.icmp_type, msg.code) {
        // RFC 1191: the next-hop MTU is the low 16 bits; 0 from pre-1191 routers means "unknown".
        (IpVersion::V4, 3, 4) => Some(be32 & 0xffff).filter(|m| *m != 0),
        (IpVersion::V6, 2, _) => Some(be32),
        _ => None,
    };
    let pointer = match (msg.version, msg.icmp_type) {
        (IpVersion::V4, 12) => Some(u32::from(msg.rest[0])),
        (IpVersion::V6, 4) => Some(be32),
        _ => None,
    };
    let original = quoted.as_ref().map(|q| OriginalFlow {
        protocol: q.protocol_name(),
        src: FlowEndpoint { ip: q.src, port: q.src_port },
        dst: FlowEndpoint { ip: q.dst, port: q.dst_port },
    });
    let info = IcmpInfo {
        version: match msg.version {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        },
        icmp_type: msg.icmp_type,
        code: msg.code,
        type_name: type_name.to_owned(),
        code_name: code_name.to_owned(),
        original,
        mtu,
        pointer,
    };
    Classified { info, kind, quoted }
}

fn is_redirect(msg: &IcmpMessage<'_>) -> bool {
    matches!((msg.version, msg.icmp_type), (IpVersion::V4, 5))
}

/// Whether this message, quoting a SYN, means the connection attempt was refused by the network: every
/// destination-unreachable except "fragmentation needed", time exceeded, and parameter problem (the set
/// Linux aborts a connecting socket on).
pub fn kills_connection_attempt(msg: &IcmpMessage<'_>) -> bool {
    match msg.version {
        IpVersion::V4 => matches!(msg.icmp_type, 3 if msg.code != 4) || matches!(msg.icmp_type, 11 | 12),
        IpVersion::V6 => matches!(msg.icmp_type, 1 | 3 | 4),
    }
}
