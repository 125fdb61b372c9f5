//! The IP datagram quoted inside an ICMP error: at least its IP header and the first 8 bytes of its
//! payload (RFC 792), often more (RFC 1812, RFC 4443). Read by hand because a quote is truncated by
//! design, so its length fields never match the bytes present.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 when the protocol has no ports or the quote ends before them.
    pub src_port: u16,
    pub dst_port: u16,
    /// For a quoted TCP segment: its sequence number, and whether it was a SYN without ACK.
    pub tcp_seq: Option<u32>,
    pub tcp_syn: bool,
}

impl Quoted {
    pub fn protocol_name(&self) -> String {
        match self.protocol {
            6 => "tcp".into(),
            17 => "udp".into(),
            1 | 58 => "icmp".into(),
            132 => "sctp".into(),
            n => n.to_string(),
        }
    }
}

/// IPv6 extension headers that may sit between the fixed header and the transport header.
const V6_EXTENSIONS: [u8; 5] = [0, 43, 44, 60, 135];

pub fn parse_quote(version: crate::wire::IpVersion, body: &[u8]) -> Option<Quoted> {
    let (protocol, src, dst, _, l4) = split(version, body)?;
    let has_ports = matches!(protocol, 6 | 17 | 132 | 136);
    let (src_port, dst_port) = if has_ports && l4.len() >= 4 {
        (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]]))
    } else {
        (0, 0)
    };
    let (tcp_seq, tcp_syn) = if protocol == 6 && l4.len() >= 8 {
        let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
        // Flags are byte 13, which an 8-byte quote does not reach; assume a SYN unless shown otherwise.
        let syn = l4.get(13).is_none_or(|f| f & 0x12 == 0x02);
        (Some(seq), syn)
    } else {
        (None, false)
    };
    Some(Quoted { protocol, src, dst, src_port, dst_port, tcp_seq, tcp_syn })
}

/// What NAT leaves alone in a quoted datagram (conntrack rewrites a quote's addresses, ports and checksums
/// as it rewrites the error's own): its protocol, IPv4 identification, and the transport bytes after the
/// ports but the checksums (a TCP segment's sequence and acknowledgement numbers, flags and window; a UDP
/// datagram's length and payload). Two copies of one ICMP error, before and after NAT, share these.
pub fn quote_nat_invariant(version: crate::wire::IpVersion, body: &[u8]) -> Option<(u8, u16, &[u8], &[u8])> {
    let (protocol, _, _, ip_id, l4) = split(version, body)?;
    let (a, b) = match protocol {
        6 => (l4.get(4..16).unwrap_or_default(), l4.get(20..).unwrap_or_default()),
        17 => (l4.get(4..6).unwrap_or_default(), l4.get(8..).unwrap_or_default()),
        _ => (l4, &[][..]),
    };
    Some((protocol, ip_id, a, b))
}

/// A quote's protocol, addresses, IPv4 identification (0 for IPv6) and transport bytes.
fn split(version: crate::wire::IpVersion, body: &[u8]) -> Option<(u8, IpAddr, IpAddr, u16, &[u8])> {
    // The quote's own IP version decides, not the carrier's: a v4 quote inside ICMPv6 is malformed.
    let (protocol, src, dst, ip_id, l4) = match (version, body.first()? >> 4) {
        (crate::wire::IpVersion::V4, 4) => {
            let ihl = usize::from(body[0] & 0x0f) * 4;
            if ihl < 20 || body.len() < ihl {
                return None;
            }
            let src = Ipv4Addr::new(body[12], body[13], body[14], body[15]);
            let dst = Ipv4Addr::new(body[16], body[17], body[18], body[19]);
            // A non-first fragment's payload has no transport header.
            let frag_offset = u16::from_be_bytes([body[6], body[7]]) & 0x1fff;
            let l4 = if frag_offset == 0 { &body[ihl..] } else { &[][..] };
            (body[9], IpAddr::V4(src), IpAddr::V4(dst), u16::from_be_bytes([body[4], body[5]]), l4)
        }
        (crate::wire::IpVersion::V6, 6) => {
            if body.len() < 40 {
                return None;
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&body[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&body[24..40]).ok()?);
            let (protocol, l4) = skip_v6_extensions(body[6], &body[40..]);
            (protocol, IpAddr::V6(src), IpAddr::V6(dst), 0, l4)
        }
        _ => return None,
    };
    Some((protocol, src, dst, ip_id, l4))
}

/// Walks hop-by-hop, routing, fragment, destination options and mobility headers, as far as the quote goes.
fn skip_v6_extensions(mut next: u8, mut rest: &[u8]) -> (u8, &[u8]) {
    for _ in 0..8 {
        if !V6_EXTENSIONS.contains(&next) {
            break;
        }
        if rest.len() < 8 {
            return (next, &[]);
        }
        let len = if next == 44 { 8 } else { (usize::from(rest[1]) + 1) * 8 };
        let is_later_fragment = next == 44 && (u16::from_be_bytes([rest[2], rest[3]]) & 0xfff8) != 0;
        next = rest[0];
        if is_later_fragment || rest.len() < len {
            return (next, &[]);
        }
        rest = &rest[len..];
    }
    (next, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpVersion;

    #[test]
    fn quoted_udp_v4() {
        let mut q = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        q.extend([0x30, 0x39, 0x00, 0x35, 0, 8, 0, 0]);
        let got = parse_quote(IpVersion::V4, &q).expect("quote");
        assert_eq!(got.protocol_name(), "udp");
        assert_eq!((got.src_port, got.dst_port), (12345, 53));
        assert_eq!(got.dst, "10.0.0.2".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn quoted_tcp_v6_through_an_extension_header() {
        let mut q = vec![0x60, 0, 0, 0, 0, 32, 0, 64];
        q.extend(Ipv6Addr::LOCALHOST.octets());
        q.extend("2001:db8::2".parse::<Ipv6Addr>().expect("ip").octets());
        q.extend([6, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, 8 bytes, next = TCP
        q.extend([0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 7]);
        let got = parse_quote(IpVersion::V6, &q).expect("quote");
        assert_eq!((got.protocol, got.src_port, got.dst_port, got.tcp_seq), (6, 40000, 80, Some(7)));
        assert!(got.tcp_syn, "an 8-byte TCP quote cannot show flags");
    }

    #[test]
    fn what_nat_leaves_alone_in_a_quote() {
        let quote = |src: [u8; 4], sport: u16, csum: u8| {
            let mut q = vec![0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 17, csum, 0];
            q.extend(src);
            q.extend([10, 96, 0, 10]);
            q.extend(sport.to_be_bytes());
            q.extend([0, 53, 0, 20, csum, 0]);
            q.extend(b"query bytes!");
            q
        };
        let (before, after) = (quote([10, 88, 0, 6], 40000, 1), quote([10, 88, 0, 1], 61000, 9));
        let a = quote_nat_invariant(IpVersion::V4, &before).expect("quote");
        assert_eq!(a, quote_nat_invariant(IpVersion::V4, &after).expect("quote"));
        assert_eq!((a.0, a.1, a.2, a.3), (17, 0x1234, &[0, 20][..], &b"query bytes!"[..]));
    }

    #[test]
    fn short_or_mismatched_quotes_are_none_or_portless() {
        assert_eq!(parse_quote(IpVersion::V4, &[]), None);
        assert_eq!(parse_quote(IpVersion::V4, &[0x45, 0, 0]), None);
        assert_eq!(parse_quote(IpVersion::V6, &[0x45; 40]), None);
        let q = [0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x30];
        assert_eq!(parse_quote(IpVersion::V4, &q).map(|q| q.src_port), Some(0));
        // An IHL below 5 words is invalid.
        assert_eq!(parse_quote(IpVersion::V4, &[0x41; 40]), None);
    }
}
