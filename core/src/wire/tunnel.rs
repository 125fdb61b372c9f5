//! Overlay networks: cross-node pod traffic on a node's uplink is encapsulated by the CNI — VXLAN (Flannel
//! on 8472, the IANA port 4789 for Cilium, Calico and others), Geneve (6081: OVN, Cilium) or IP-in-IP
//! (Calico). The flows worth analysing are the inner ones: these headers are peeled off and the packet
//! inside is decoded instead (to a bounded depth, so nested headers cannot make decoding unbounded).

use super::link::LinkType;
use super::packet::{Packet, Transport};

/// UDP ports that carry VXLAN: IANA's, and the Linux default that Flannel uses.
pub const VXLAN_PORTS: [u16; 2] = [4789, 8472];
pub const GENEVE_PORT: u16 = 6081;
/// IP protocol numbers of IPv4-in-IP and IPv6-in-IP.
pub const IP_IN_IP: [u8; 2] = [4, 41];
/// Encapsulations peeled off one frame at most.
pub const MAX_DEPTH: usize = 3;

const VXLAN_HEADER: usize = 8;
/// VXLAN's "I" flag: the VNI is valid (RFC 7348 §5); without it this is not VXLAN.
const VXLAN_I_FLAG: u8 = 0x08;
const GENEVE_HEADER: usize = 8;
/// Geneve's protocol type for an Ethernet frame ("Transparent Ethernet Bridging").
const ETHERNET_BRIDGING: u16 = 0x6558;

/// The frame inside `p`, if `p` is a tunnel packet of a kind we know: its link type and bytes.
pub fn inner<'a>(p: &Packet<'a>) -> Option<(LinkType, &'a [u8])> {
    let Transport::Udp(u) = &p.transport else { return None };
    if u.first_fragment {
        return None;
    }
    let b = u.payload;
    if VXLAN_PORTS.contains(&u.dst_port) {
        if b.len() > VXLAN_HEADER && b[0] & VXLAN_I_FLAG != 0 {
            return Some((LinkType::Ethernet, &b[VXLAN_HEADER..]));
        }
        return None;
    }
    if u.dst_port == GENEVE_PORT && b.len() >= GENEVE_HEADER && b[0] >> 6 == 0 {
        let options = usize::from(b[0] & 0x3f) * 4;
        let rest = b.get(GENEVE_HEADER + options..)?;
        return match u16::from_be_bytes([b[2], b[3]]) {
            ETHERNET_BRIDGING => Some((LinkType::Ethernet, rest)),
            0x0800 | 0x86dd => Some((LinkType::RawIp, rest)),
            _ => None,
        };
    }
    None
}
