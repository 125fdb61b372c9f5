//! Live capture behind one trait. Backends: AF_PACKET on a ring of our own (the default), libpcap, and PF_RING
//! where its kernel module is loaded (elsewhere the agent falls back to AF_PACKET and says so). Each
//! reports the kernel's own drop counter so that loss is never silent (SPEC §3.3).

mod afpacket;
mod libpcap;

use faultline_core::wire::LinkType;
use faultline_core::Timestamp;

/// Kernel buffering per capture socket: room for a burst of ~10k small packets while the capture thread
/// is busy. libpcap maps it as its ring; the afpacket ring is sized by `ring_bytes`.
pub const SOCKET_BUFFER: usize = 8 << 20;

/// The afpacket rings of all interfaces together: kernel memory, held for as long as the agent runs, so
/// a node with a hundred pod interfaces must not get a hundred full-size rings.
const RING_BUDGET: usize = 64 << 20;

/// One interface's ring at most (larger did not help at top speed on the 2-core bench machine).
const MAX_RING: usize = 8 << 20;

/// The ring of the one socket that captures every interface: it carries all of the node's traffic.
const ALL_RING: usize = 32 << 20;

/// Each interface's share of `RING_BUDGET`, between 1 and 8 MiB.
pub fn ring_bytes(interfaces: usize) -> usize {
    (RING_BUDGET / interfaces.max(1)).clamp(1 << 20, MAX_RING)
}

/// Kernel counters of one capture, cumulative since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub received: u64,
    pub dropped: u64,
}

/// One captured frame, borrowed until the next call.
pub struct Frame<'a> {
    pub link_type: LinkType,
    pub ts: Timestamp,
    pub data: &'a [u8],
    /// The interface's index, when one capture covers several interfaces.
    pub interface: Option<u32>,
    /// The packet was leaving the interface (AF_PACKET's `PACKET_OUTGOING`); false where the backend does
    /// not say.
    pub outgoing: bool,
}

impl Frame<'_> {
    /// The engine's number for where this frame was captured (`faultline_core::nat::copies::CapturePoint`):
    /// the interface (`interface`, the capture's own number, unless the frame names one) with the
    /// direction in the lowest bit. A packet that enters and leaves one interface (a bridge's hairpin) is
    /// then one packet seen at two points.
    pub fn point(&self, interface: u32) -> u32 {
        (self.interface.unwrap_or(interface) << 1) | u32::from(self.outgoing)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("interface {0}: no such interface")]
    NoInterface(String),
    #[error("{backend} on {interface}: {source}")]
    Open { backend: &'static str, interface: String, source: std::io::Error },
    #[error("libpcap on {interface}: {detail}")]
    Pcap { interface: String, detail: String },
    #[error("BPF filter {filter:?}: {detail}")]
    Filter { filter: String, detail: String },
    #[error("reading from {interface}: {source}")]
    Read { interface: String, source: std::io::Error },
}

/// A source of frames. `next` waits at most about 100 ms, so the caller can notice when to stop.
pub trait Capture: Send {
    fn next(&mut self) -> Result<Option<Frame<'_>>, CaptureError>;
    /// Cumulative kernel counters.
    fn kernel_stats(&mut self) -> KernelStats;
    fn interface(&self) -> &str;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Afpacket,
    Libpcap,
    Pfring,
}

/// The captures opened, each with the number of the interface it reads (the sockets of one interface's
/// fanout group share it), and why the requested backend was replaced, if it was.
pub type Opened = (Vec<(u32, Box<dyn Capture>)>, Option<String>);

/// Opens `backend` on each named interface, or, when none is named, on every interface but loopback at
/// once — those that exist now and those that appear later (a pod's veth). With AF_PACKET and `fanout`
/// above 1, each interface gets that many sockets in a fanout group (`PACKET_FANOUT_HASH`), each with its
/// own ring and thread, sharing the interface's ring budget: one flow's packets all reach one socket, so
/// they stay in order however the threads run. Returns the captures and, when a backend had to be
/// replaced, why.
pub fn open(
    backend: Backend,
    interfaces: &[String],
    filter: Option<&str>,
    fanout: usize,
) -> Result<Opened, CaptureError> {
    let (backend, note) = match backend {
        Backend::Pfring if !std::path::Path::new("/proc/net/pf_ring").exists() => (
            Backend::Afpacket,
            Some("pfring requested but the pf_ring kernel module is not loaded: capturing with afpacket".to_owned()),
        ),
        // This build has no PF_RING library; its kernel module alone does not help.
        Backend::Pfring => {
            (Backend::Afpacket, Some("pfring is not built into this agent: capturing with afpacket".to_owned()))
        }
        b => (b, None),
    };
    let fanout = if backend == Backend::Libpcap { 1 } else { fanout.clamp(1, MAX_FANOUT) };
    let mut out: Vec<(u32, Box<dyn Capture>)> = Vec::new();
    if interfaces.is_empty() {
        if backend == Backend::Libpcap {
            out.push((0, Box::new(libpcap::Libpcap::open_all(filter)?)));
        } else {
            afpacket_group(0, fanout, &mut out, || afpacket::AfPacket::open_all(filter, ALL_RING / fanout))?;
        }
        return Ok((out, note));
    }
    let ring = ring_bytes(interfaces.len() * fanout);
    for (i, name) in interfaces.iter().enumerate() {
        let number = u32::try_from(i).unwrap_or(u32::MAX);
        if backend == Backend::Libpcap {
            out.push((number, Box::new(libpcap::Libpcap::open(name, filter)?)));
            continue;
        }
        afpacket_group(number, fanout, &mut out, || afpacket::AfPacket::open(name, filter, ring))?;
    }
    Ok((out, note))
}

/// `fanout` sockets made by `open` for interface number `number`, joined in one fanout group when there
/// are several.
fn afpacket_group(
    number: u32,
    fanout: usize,
    out: &mut Vec<(u32, Box<dyn Capture>)>,
    open: impl Fn() -> Result<afpacket::AfPacket, CaptureError>,
) -> Result<(), CaptureError> {
    let group = fanout_group(number);
    for _ in 0..fanout {
        let cap = open()?;
        if fanout > 1 {
            cap.join_fanout(group)?;
        }
        out.push((number, Box::new(cap)));
    }
    Ok(())
}

/// Sockets per interface at most.
const MAX_FANOUT: usize = 8;

/// A fanout group id for interface number `i`: ids are per network namespace, so they are made from the
/// process id too (two agents in one namespace, as in the tests, must not join each other's groups).
fn fanout_group(i: u32) -> u16 {
    (std::process::id().wrapping_mul(64).wrapping_add(i) & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    #[test]
    fn rings_share_a_budget() {
        assert_eq!(super::ring_bytes(1), 8 << 20);
        assert_eq!(super::ring_bytes(16), 4 << 20);
        assert_eq!(super::ring_bytes(200), 1 << 20, "never below 1 MiB");
    }
}
