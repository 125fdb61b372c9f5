//! Decoding captured frames into the few facts the engine needs: addresses, ports, TCP sequence space,
//! ICMP type and code. Only byte slices come in; nothing here allocates or panics on hostile input.
//! Header parsing is etherparse's (lax mode, so snap-length-cut packets still yield their headers);
//! the Linux cooked headers and BSD loopback framing are read here because etherparse knows only SLL v1.
//! The most common frame (Ethernet, whole IPv4 or plain IPv6, TCP or UDP) takes a shorter way (`fast`).
//! Overlay encapsulations (VXLAN, Geneve, IP-in-IP) are peeled off (`tunnel`).

mod error;
mod fast;
mod link;
mod packet;
mod tunnel;

pub use error::{DecodeError, Layer};
pub use link::{cooked_capture_point, LinkType};
pub use packet::{decode, Decoded, IcmpMessage, IpVersion, Packet, Skip, TcpFlags, TcpSegment, Transport, UdpDatagram};
