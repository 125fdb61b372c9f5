//! One captured frame, decoded down to the transport layer.

use std::net::IpAddr;

use etherparse::err::packet::SliceError;
use etherparse::{ip_number, EtherType, LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use super::error::{DecodeError, Layer};
use super::link::{self, LinkPayload, LinkType};
use super::tunnel;
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// TCP flags as the low byte of the flags field (FIN=0x01 … CWR=0x80).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The payload bytes that were captured.
    pub payload: &'a [u8],
    /// The payload length the IP header claims; larger than `payload.len()` when the capture's snap length
    /// cut the packet. The sequence space covers this many bytes.
    pub seg_len: u32,
    /// The receive window as sent (unscaled).
    pub window: u16,
    /// The TCP options as captured (window scale, timestamps, SACK, fast open…).
    pub options: &'a [u8],
}

impl TcpSegment<'_> {
    /// The window scale option's shift count (RFC 7323 §2.3; at most 14), if the segment carries one.
    /// Only meaningful on SYN and SYN-ACK segments.
    pub fn window_scale(&self) -> Option<u8> {
        let mut o = self.options;
        while let Some((&kind, rest)) = o.split_first() {
            match kind {
                0 => return None,
                1 => o = rest,
                _ => {
                    let len = usize::from(*rest.first()?);
                    if len < 2 || len > o.len() {
                        return None;
                    }
                    if kind == 3 && len == 3 {
                        return Some(o[2].min(14));
                    }
                    o = &o[len..];
                }
            }
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    /// The payload as captured.
    pub payload: &'a [u8],
    /// The first fragment of a fragmented IPv4 datagram: `payload` is only its start. Faultline does not
    /// reassemble; a DNS answer too big for one packet is still paired by its header and question.
    pub first_fragment: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMessage<'a> {
    pub version: IpVersion,
    pub icmp_type: u8,
    pub code: u8,
    /// Bytes 5..8 of the ICMP header (MTU, pointer, gateway, …, depending on the type).
    pub rest: [u8; 4],
    /// What follows the 8-byte header: for error messages, the quoted original datagram.
    pub body: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
    Icmp(IcmpMessage<'a>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IPv4 identification field (0 for IPv6): with the transport header it tells copies of one packet
    /// from a retransmission.
    pub ip_id: u16,
    pub transport: Transport<'a>,
}

/// A frame that decoded fine but carries nothing the engine analyses. Counted, never an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// ARP, LLDP, and every other non-IP EtherType.
    NotIp,
    /// A non-first IP fragment, or a first one: Faultline does not reassemble fragments.
    Fragment,
    /// An IP protocol other than TCP, UDP, ICMP and ICMPv6 (SCTP, GRE, IGMP, …).
    OtherProtocol,
    /// Tunnels nested deeper than any overlay network nests them.
    TooDeep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Packet(Packet<'a>),
    Skipped(Skip),
}

/// One decoding step: a result, or the packet inside an IP-in-IP packet, to be decoded in its turn.
#[derive(Debug)]
pub(super) enum Step<'a> {
    Done(Decoded<'a>),
    Inner(LinkType, &'a [u8]),
}

impl<'a> From<Decoded<'a>> for Step<'a> {
    fn from(d: Decoded<'a>) -> Step<'a> {
        Step::Done(d)
    }
}

/// Decodes one captured frame of the given link type. A tunnel packet (VXLAN, Geneve, IP-in-IP) decodes
/// as the packet it carries.
pub fn decode(link_type: LinkType, data: &[u8], ts: Timestamp) -> Result<Decoded<'_>, DecodeError> {
    let (mut link, mut data) = (link_type, data);
    for _ in 0..=tunnel::MAX_DEPTH {
        let inner = match decode_one(link, data, ts)? {
            Step::Inner(l, inner) => Some((l, inner)),
            Step::Done(Decoded::Packet(p)) => match tunnel::inner(&p) {
                Some(inner) => Some(inner),
                None => return Ok(Decoded::Packet(p)),
            },
            Step::Done(d) => return Ok(d),
        };
        if let Some((l, inner)) = inner {
            (link, data) = (l, inner);
        }
    }
    Ok(Decoded::Skipped(Skip::TooDeep))
}

fn decode_one(link_type: LinkType, data: &[u8], ts: Timestamp) -> Result<Step<'_>, DecodeError> {
    if link_type == LinkType::Ethernet {
        if let Some(p) = super::fast::ethernet(data, ts) {
            return Ok(Decoded::Packet(p).into());
        }
    }
    decode_general(link_type, data, ts)
}

/// Every frame the fast path declines, through etherparse.
pub(super) fn decode_general(link_type: LinkType, data: &[u8], ts: Timestamp) -> Result<Step<'_>, DecodeError> {
    let payload = match link_type {
        LinkType::Ethernet => {
            let sliced = LaxSlicedPacket::from_ethernet(data).map_err(|e| DecodeError::Truncated {
                layer: Layer::Link,
                need: e.required_len,
                have: e.len,
            })?;
            return from_sliced(sliced, ts);
        }
        LinkType::LinuxSll => link::linux_sll(data)?,
        LinkType::LinuxSll2 => link::linux_sll2(data)?,
        LinkType::Loopback => link::loopback(data)?,
        LinkType::RawIp => LinkPayload::Ip(data),
    };
    match payload {
        LinkPayload::EtherType(et, rest) => from_sliced(LaxSlicedPacket::from_ether_type(EtherType(et), rest), ts),
        LinkPayload::Ip(rest) => {
            let sliced = LaxSlicedPacket::from_ip(rest).map_err(|e| match e {
                etherparse::err::ip::LaxHeaderSliceError::Len(l) => {
                    DecodeError::Truncated { layer: Layer::Ip, need: l.required_len, have: l.len }
                }
                other => DecodeError::malformed(Layer::Ip, other),
            })?;
            from_sliced(sliced, ts)
        }
        LinkPayload::NotIp => Ok(Decoded::Skipped(Skip::NotIp).into()),
    }
}

fn from_sliced<'a>(sliced: LaxSlicedPacket<'a>, ts: Timestamp) -> Result<Step<'a>, DecodeError> {
    let (src, dst, ip_id, ip_payload, claimed_len) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let auth_len = v4.extensions().auth.map_or(0, |a| a.slice().len());
            let claimed = usize::from(h.total_len()).saturating_sub(h.slice().len() + auth_len);
            let id = h.identification();
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), id, v4.payload().clone(), claimed)
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let claimed = usize::from(h.payload_length()).saturating_sub(v6.extensions().slice().len());
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), 0, v6.payload().clone(), claimed)
        }
        Some(LaxNetSlice::Arp(_)) => return Ok(Decoded::Skipped(Skip::NotIp).into()),
        None => {
            return match sliced.stop_err {
                Some((err, _)) => Err(slice_error(Layer::Ip, err)),
                None => Ok(Decoded::Skipped(Skip::NotIp).into()),
            };
        }
    };
    if ip_payload.fragmented {
        return Ok(first_udp_fragment(&sliced, &ip_payload, src, dst, ip_id, ts)
            .map_or(Decoded::Skipped(Skip::Fragment), Decoded::Packet)
            .into());
    }
    let transport = match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let payload = tcp.payload();
            let seg_len = if ip_payload.incomplete {
                claimed_len.saturating_sub(tcp.header_slice().len()).max(payload.len())
            } else {
                payload.len()
            };
            Transport::Tcp(TcpSegment {
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                flags: TcpFlags(tcp.header_slice()[13]),
                payload,
                seg_len: u32::try_from(seg_len).unwrap_or(u32::MAX),
                window: tcp.window_size(),
                options: tcp.header_slice().get(20..).unwrap_or_default(),
            })
        }
        Some(TransportSlice::Udp(udp)) => Transport::Udp(UdpDatagram {
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            payload: udp.payload(),
            first_fragment: false,
        }),
        Some(TransportSlice::Icmpv4(icmp)) => Transport::Icmp(IcmpMessage {
            version: IpVersion::V4,
            icmp_type: icmp.type_u8(),
            code: icmp.code_u8(),
            rest: icmp.bytes5to8(),
            body: icmp.payload(),
        }),
        Some(TransportSlice::Icmpv6(icmp)) => Transport::Icmp(IcmpMessage {
            version: IpVersion::V6,
            icmp_type: icmp.type_u8(),
            code: icmp.code_u8(),
            rest: icmp.bytes5to8(),
            body: icmp.payload(),
        }),
        _ if super::tunnel::IP_IN_IP.contains(&ip_payload.ip_number.0) && !ip_payload.incomplete => {
            return Ok(Step::Inner(LinkType::RawIp, ip_payload.payload));
        }
        _ => return transport_missing(&ip_payload, sliced.stop_err).map(Step::Done),
    };
    Ok(Decoded::Packet(Packet { ts, src, dst, ip_id, transport }).into())
}

/// The first fragment of an IPv4 UDP datagram, as a datagram whose payload is cut short.
fn first_udp_fragment<'a>(
    sliced: &LaxSlicedPacket<'a>,
    ip_payload: &LaxIpPayloadSlice<'a>,
    src: IpAddr,
    dst: IpAddr,
    ip_id: u16,
    ts: Timestamp,
) -> Option<Packet<'a>> {
    let Some(LaxNetSlice::Ipv4(v4)) = &sliced.net else { return None };
    if ip_payload.ip_number != ip_number::UDP || v4.header().fragments_offset().value() != 0 {
        return None;
    }
    let b = ip_payload.payload;
    let (header, payload) = (b.get(..8)?, b.get(8..)?);
    let datagram = UdpDatagram {
        src_port: u16::from_be_bytes([header[0], header[1]]),
        dst_port: u16::from_be_bytes([header[2], header[3]]),
        payload,
        first_fragment: true,
    };
    Some(Packet { ts, src, dst, ip_id, transport: Transport::Udp(datagram) })
}

/// No transport slice: either a protocol we do not analyse, or one we do whose header is broken.
fn transport_missing(
    ip_payload: &LaxIpPayloadSlice<'_>,
    stop_err: Option<(SliceError, etherparse::err::Layer)>,
) -> Result<Decoded<'static>, DecodeError> {
    let layer = match ip_payload.ip_number {
        ip_number::TCP => Layer::Tcp,
        ip_number::UDP => Layer::Udp,
        ip_number::ICMP | ip_number::IPV6_ICMP => Layer::Icmp,
        _ => return Ok(Decoded::Skipped(Skip::OtherProtocol)),
    };
    match stop_err {
        Some((err, _)) => Err(slice_error(layer, err)),
        None => Err(DecodeError::malformed(layer, "header missing")),
    }
}

fn slice_error(layer: Layer, err: SliceError) -> DecodeError {
    match err {
        SliceError::Len(l) => DecodeError::Truncated { layer, need: l.required_len, have: l.len },
        other => DecodeError::malformed(layer, other),
    }
}
