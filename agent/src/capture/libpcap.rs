//! libpcap through the `pcap` crate: kernel timestamps, BPF filters, and `pcap_stats` for drops.

use faultline_core::wire::LinkType;
use faultline_core::Timestamp;

use super::{Capture, CaptureError, Frame, KernelStats, SOCKET_BUFFER};

pub struct Libpcap {
    name: String,
    cap: pcap::Capture<pcap::Active>,
    link_type: LinkType,
    /// libpcap's "any" device: every interface, each frame's in its Linux cooked (v2) header.
    any: bool,
}

impl Libpcap {
    /// libpcap's "any" device: every interface, present and future (loopback's frames skipped).
    pub fn open_all(filter: Option<&str>) -> Result<Libpcap, CaptureError> {
        let mut cap = Self::open("any", filter)?;
        cap.any = true;
        Ok(cap)
    }

    pub fn open(name: &str, filter: Option<&str>) -> Result<Libpcap, CaptureError> {
        let err = |e: pcap::Error| CaptureError::Pcap { interface: name.to_owned(), detail: e.to_string() };
        let mut cap = pcap::Capture::from_device(name)
            .map_err(err)?
            .promisc(true)
            .snaplen(262_144)
            // Not immediate: the kernel hands over filled blocks of the ring (or what came within 100 ms)
            // instead of waking us per packet — what lets tcpdump keep up at line rate.
            .timeout(100)
            .buffer_size(i32::try_from(SOCKET_BUFFER).unwrap_or(i32::MAX))
            .open()
            .map_err(err)?
            // The 100 ms above retires partly filled blocks of the ring; it is not a read timeout (with no
            // traffic a blocking read would never return, and the agent could not stop). So: never block,
            // and wait briefly ourselves when there is nothing.
            .setnonblock()
            .map_err(err)?;
        if let Some(f) = filter {
            cap.filter(f, true).map_err(|e| CaptureError::Filter { filter: f.to_owned(), detail: e.to_string() })?;
        }
        let code = cap.get_datalink().0;
        let link_type = LinkType::from_linktype(u32::try_from(code).unwrap_or(u32::MAX)).ok_or_else(|| {
            CaptureError::Pcap { interface: name.to_owned(), detail: format!("unsupported link type {code}") }
        })?;
        Ok(Libpcap { name: name.to_owned(), cap, link_type, any: false })
    }
}

impl Capture for Libpcap {
    fn next(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.cap.next_packet() {
            Ok(p) => {
                let tv = p.header.ts;
                let ns = (tv.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(tv.tv_usec as u64 * 1000);
                // Linux cooked v2: the interface index at bytes 4..8, ARPHRD at 8..10 (772: loopback).
                let interface = match (self.any, self.link_type, p.data.get(4..10)) {
                    (true, LinkType::LinuxSll2, Some(b)) => {
                        if u16::from_be_bytes([b[4], b[5]]) == 772 {
                            return Ok(None);
                        }
                        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                    }
                    _ => None,
                };
                Ok(Some(Frame {
                    link_type: self.link_type,
                    ts: Timestamp(ns),
                    data: p.data,
                    interface,
                    outgoing: false,
                }))
            }
            Err(pcap::Error::TimeoutExpired) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
                Ok(None)
            }
            Err(e) => Err(CaptureError::Pcap { interface: self.name.clone(), detail: e.to_string() }),
        }
    }

    /// pcap_stats: packets received and dropped by the kernel since the capture opened.
    fn kernel_stats(&mut self) -> KernelStats {
        match self.cap.stats() {
            Ok(s) => KernelStats { received: u64::from(s.received), dropped: u64::from(s.dropped) },
            Err(_) => KernelStats::default(),
        }
    }

    fn interface(&self) -> &str {
        &self.name
    }
}
