//! The common frame decoded without etherparse: untagged Ethernet carrying a whole, unfragmented IPv4
//! packet (any options) or an IPv6 packet without extension headers, with a complete TCP or UDP header.
//! That is nearly every frame on a busy node, and etherparse's general slicer costs several times more
//! per frame (it builds and copies a large description of every layer). Anything else — VLAN tags,
//! fragments, ICMP, extension headers, snap-length cuts, anything malformed — returns `None` and takes
//! the general way, so this path can only be faster, never different (a test compares the two).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::packet::{Packet, TcpFlags, TcpSegment, Transport, UdpDatagram};
use crate::time::Timestamp;

const ETH_LEN: usize = 14;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[inline]
pub(super) fn ethernet(data: &[u8], ts: Timestamp) -> Option<Packet<'_>> {
    let ip = data.get(ETH_LEN..)?;
    match be16(data, 12)? {
        0x0800 => ipv4(ip, ts),
        0x86dd => ipv6(ip, ts),
        _ => None,
    }
}

fn ipv4(ip: &[u8], ts: Timestamp) -> Option<Packet<'_>> {
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    // Version 4, a sane header, and the whole packet captured (what follows `total` is link padding).
    if first >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() {
        return None;
    }
    // Neither "more fragments" nor an offset: a whole datagram.
    if be16(ip, 6)? & 0x3fff != 0 {
        return None;
    }
    let src = IpAddr::V4(Ipv4Addr::from(be32(ip, 12)?));
    let dst = IpAddr::V4(Ipv4Addr::from(be32(ip, 16)?));
    transport(ip[9], ip.get(ihl..total)?, src, dst, be16(ip, 4)?, ts)
}

fn ipv6(ip: &[u8], ts: Timestamp) -> Option<Packet<'_>> {
    if ip.first()? >> 4 != 6 {
        return None;
    }
    let end = 40 + usize::from(be16(ip, 4)?);
    if end > ip.len() {
        return None;
    }
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?));
    let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?));
    // Next header straight to TCP or UDP; extension headers go the general way.
    transport(ip[6], ip.get(40..end)?, src, dst, 0, ts)
}

fn transport<'a>(proto: u8, l4: &'a [u8], src: IpAddr, dst: IpAddr, ip_id: u16, ts: Timestamp) -> Option<Packet<'a>> {
    let transport = match proto {
        6 => {
            let doff = usize::from(*l4.get(12)? >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return None;
            }
            let payload = &l4[doff..];
            Transport::Tcp(TcpSegment {
                src_port: be16(l4, 0)?,
                dst_port: be16(l4, 2)?,
                seq: be32(l4, 4)?,
                ack: be32(l4, 8)?,
                flags: TcpFlags(l4[13]),
                payload,
                seg_len: u32::try_from(payload.len()).ok()?,
                window: be16(l4, 14)?,
                options: &l4[20..doff],
            })
        }
        17 => {
            let len = usize::from(be16(l4, 4)?);
            // A UDP length that disagrees with the IP length is for the general path to judge.
            if len < 8 || len > l4.len() {
                return None;
            }
            // What follows the UDP length is padding.
            Transport::Udp(UdpDatagram {
                src_port: be16(l4, 0)?,
                dst_port: be16(l4, 2)?,
                payload: l4.get(8..len)?,
                first_fragment: false,
            })
        }
        _ => return None,
    };
    Some(Packet { ts, src, dst, ip_id, transport })
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::super::packet::{decode_general, Decoded, Step};
    use super::*;

    const V6A: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const V6B: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn frames() -> Vec<Vec<u8>> {
        let eth = || PacketBuilder::ethernet2([2; 6], [4; 6]);
        let mut out = Vec::new();
        let mut push = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = Vec::new();
            f(&mut b);
            out.push(b);
        };
        push(&|b| eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(1, 2, 3, 4).syn().write(b, b"").expect("f"));
        push(&|b| eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(1, 2, 3, 4).ack(9).write(b, b"GET /").expect("f"));
        push(&|b| eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(5353, 53).write(b, b"query").expect("f"));
        push(&|b| eth().ipv6(V6A, V6B, 64).tcp(1, 2, 3, 4).fin().ack(7).write(b, b"bye").expect("f"));
        push(&|b| eth().ipv6(V6A, V6B, 64).udp(1, 2).write(b, b"x").expect("f"));
        out
    }

    /// xorshift64*, fixed seed: a failure reproduces.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn well_formed_frames_take_the_fast_path() {
        for f in frames() {
            assert!(ethernet(&f, Timestamp(1)).is_some(), "{f:02x?}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_etherparse_on_every_frame_it_takes() {
        let mut state = 0x5eed_u64;
        let (mut taken, mut declined) = (0, 0);
        for base in frames() {
            for _ in 0..50_000 {
                let mut f = base.clone();
                for _ in 0..=rng(&mut state) % 3 {
                    let at = (rng(&mut state) % f.len() as u64) as usize;
                    f[at] = rng(&mut state) as u8;
                }
                if rng(&mut state) % 4 == 0 {
                    f.truncate((rng(&mut state) % (f.len() as u64 + 1)) as usize);
                } else if rng(&mut state) % 4 == 0 {
                    f.extend_from_slice(&[0; 6]); // link padding
                }
                match ethernet(&f, Timestamp(1)) {
                    Some(fast) => {
                        taken += 1;
                        match decode_general(super::super::LinkType::Ethernet, &f, Timestamp(1)) {
                            Ok(Step::Done(Decoded::Packet(general))) => assert_eq!(fast, general, "{f:02x?}"),
                            other => panic!("fast path took a frame etherparse gives {other:?}: {f:02x?}"),
                        }
                    }
                    None => declined += 1,
                }
            }
        }
        assert!(taken > 50_000 && declined > 20_000, "taken {taken}, declined {declined}");
    }
}
