//! Link layers as numbered in pcap files (the `LINKTYPE_*` registry), and the framings etherparse does not
//! read for us.

use super::error::{DecodeError, Layer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1); 802.1Q and QinQ tags are handled by etherparse.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113), what `tcpdump -i any` wrote before libpcap 1.10.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276), what `tcpdump -i any` writes now.
    LinuxSll2,
    /// LINKTYPE_RAW (101, also 12 and 14 on some systems), LINKTYPE_IPV4 (228), LINKTYPE_IPV6 (229).
    RawIp,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): a 4-byte address family, then IP.
    Loopback,
}

impl LinkType {
    pub fn from_linktype(code: u32) -> Option<LinkType> {
        Some(match code {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            0 | 108 => LinkType::Loopback,
            _ => return None,
        })
    }
}

/// What follows the link header: an EtherType, or IP directly.
pub(crate) enum LinkPayload<'a> {
    EtherType(u16, &'a [u8]),
    Ip(&'a [u8]),
    NotIp,
}

fn need(data: &[u8], len: usize) -> Result<(), DecodeError> {
    if data.len() < len {
        return Err(DecodeError::Truncated { layer: Layer::Link, need: len, have: data.len() });
    }
    Ok(())
}

fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Linux cooked capture v1: packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2).
pub(crate) fn linux_sll(data: &[u8]) -> Result<LinkPayload<'_>, DecodeError> {
    need(data, 16)?;
    Ok(LinkPayload::EtherType(be16(data, 14), &data[16..]))
}

/// Linux cooked capture v2: protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) addr len(1) addr(8).
pub(crate) fn linux_sll2(data: &[u8]) -> Result<LinkPayload<'_>, DecodeError> {
    need(data, 20)?;
    Ok(LinkPayload::EtherType(be16(data, 0), &data[20..]))
}

/// The Linux packet type of a packet the host sent (`PACKET_OUTGOING`).
const PACKET_OUTGOING: u8 = 4;

/// Where on the node a cooked frame was captured, as far as its link header says: the interface index
/// (Linux cooked v2 only) and whether the packet was leaving it. A bridge's hairpin sends a packet back out
/// of the port it came in on: entering and leaving are two observations of one packet, not a
/// retransmission. `None` for link types that do not say.
pub fn cooked_capture_point(link: LinkType, data: &[u8]) -> Option<(Option<u32>, bool)> {
    match link {
        LinkType::LinuxSll if data.len() >= 16 => Some((None, be16(data, 0) == u16::from(PACKET_OUTGOING))),
        LinkType::LinuxSll2 if data.len() >= 20 => {
            let ifindex = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            Some((Some(ifindex), data[10] == PACKET_OUTGOING))
        }
        _ => None,
    }
}

/// BSD loopback: the address family in the writer's byte order (NULL) or big endian (LOOP). IPv4 is 2
/// everywhere; IPv6 is 24, 28 or 30 depending on the BSD, 10 on Linux.
pub(crate) fn loopback(data: &[u8]) -> Result<LinkPayload<'_>, DecodeError> {
    need(data, 4)?;
    let le = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let be = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let is_ip = |af: u32| matches!(af, 2 | 10 | 24 | 28 | 30);
    if is_ip(le) || is_ip(be) {
        Ok(LinkPayload::Ip(&data[4..]))
    } else {
        Ok(LinkPayload::NotIp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cooked_headers_say_how_short() {
        let err = linux_sll2(&[0u8; 7]).err();
        assert_eq!(err, Some(DecodeError::Truncated { layer: Layer::Link, need: 20, have: 7 }));
        assert!(linux_sll(&[0u8; 15]).is_err());
        assert!(loopback(&[2, 0]).is_err());
    }

    #[test]
    fn cooked_headers_say_where_a_frame_was_captured() {
        let mut v2 = [0u8; 20];
        v2[4..8].copy_from_slice(&7u32.to_be_bytes());
        v2[10] = PACKET_OUTGOING;
        assert_eq!(cooked_capture_point(LinkType::LinuxSll2, &v2), Some((Some(7), true)));
        v2[10] = 0;
        assert_eq!(cooked_capture_point(LinkType::LinuxSll2, &v2), Some((Some(7), false)));
        let mut v1 = [0u8; 16];
        v1[1] = PACKET_OUTGOING;
        assert_eq!(cooked_capture_point(LinkType::LinuxSll, &v1), Some((None, true)));
        assert_eq!(cooked_capture_point(LinkType::LinuxSll2, &v2[..19]), None, "short: says nothing");
        assert_eq!(cooked_capture_point(LinkType::Ethernet, &[0u8; 64]), None);
    }

    #[test]
    fn loopback_family_in_either_byte_order() {
        assert!(matches!(loopback(&[2, 0, 0, 0, 0x45]), Ok(LinkPayload::Ip(_))));
        assert!(matches!(loopback(&[0, 0, 0, 30, 0x60]), Ok(LinkPayload::Ip(_))));
        assert!(matches!(loopback(&[7, 0, 0, 0]), Ok(LinkPayload::NotIp)));
    }
}
