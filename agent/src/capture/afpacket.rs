//! AF_PACKET through pnet. We create the socket ourselves and hand its descriptor to pnet, so that we can
//! also attach a BPF filter to it and read its `PACKET_STATISTICS` — the kernel's drop counter — which
//! pnet does not expose. This is one of the few places that talk to the kernel directly.
#![allow(unsafe_code)]

use std::io;
use std::time::{Duration, SystemTime};

use faultline_core::wire::LinkType;
use faultline_core::Timestamp;
use pnet_datalink::{Channel, Config, DataLinkReceiver, NetworkInterface};

use super::{Capture, CaptureError, Frame, KernelStats};

pub struct AfPacket {
    name: String,
    fd: i32,
    rx: Box<dyn DataLinkReceiver>,
    /// `PACKET_STATISTICS` resets on every read: keep the running totals.
    totals: KernelStats,
}

/// Every interface that is up, except loopback.
pub fn default_interfaces() -> Vec<String> {
    pnet_datalink::interfaces().into_iter().filter(|i| i.is_up() && !i.is_loopback()).map(|i| i.name).collect()
}

fn interface(name: &str) -> Result<NetworkInterface, CaptureError> {
    pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| CaptureError::NoInterface(name.to_owned()))
}

impl AfPacket {
    pub fn open(name: &str, filter: Option<&str>) -> Result<AfPacket, CaptureError> {
        let iface = interface(name)?;
        let open_err = |source| CaptureError::Open { backend: "afpacket", interface: name.to_owned(), source };
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32) };
        if fd < 0 {
            return Err(open_err(io::Error::last_os_error()));
        }
        if let Some(f) = filter {
            if let Err(e) = attach_filter(fd, f) {
                // SAFETY: `fd` is a socket we opened and nobody else holds.
                unsafe { libc::close(fd) };
                return Err(e);
            }
        }
        let config = Config {
            read_buffer_size: 65_536,
            // Short, so the capture thread notices when it is asked to stop.
            read_timeout: Some(Duration::from_millis(100)),
            promiscuous: true,
            socket_fd: Some(fd),
            ..Config::default()
        };
        // pnet binds the socket to the interface and owns (and closes) it from here on.
        let rx = match pnet_datalink::channel(&iface, config).map_err(open_err)? {
            Channel::Ethernet(_tx, rx) => rx,
            _ => return Err(open_err(io::Error::other("not an Ethernet channel"))),
        };
        Ok(AfPacket { name: name.to_owned(), fd, rx, totals: KernelStats::default() })
    }
}

impl Capture for AfPacket {
    fn next(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        match self.rx.next() {
            Ok(data) => {
                let ts = Timestamp::from(SystemTime::now());
                Ok(Some(Frame { link_type: LinkType::Ethernet, ts, data }))
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => Ok(None),
            Err(e) => Err(CaptureError::Read { interface: self.name.clone(), source: e }),
        }
    }

    fn kernel_stats(&mut self) -> KernelStats {
        let mut st = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `fd` stays open while `self.rx` lives (pnet closes it on drop, and `self` owns `rx`);
        // `st` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            // tp_packets counts every packet the socket saw, drops included.
            self.totals.received += u64::from(st.tp_packets);
            self.totals.dropped += u64::from(st.tp_drops);
        }
        self.totals
    }

    fn interface(&self) -> &str {
        &self.name
    }
}

/// Compiles `filter` with libpcap (for Ethernet) and attaches it to the socket in the kernel.
fn attach_filter(fd: i32, filter: &str) -> Result<(), CaptureError> {
    let bad = |detail: String| CaptureError::Filter { filter: filter.to_owned(), detail };
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| bad(e.to_string()))?;
    let program = dead.compile(filter, true).map_err(|e| bad(e.to_string()))?;
    // The pcap crate shows an instruction's fields only through Display ("code jt jf k").
    let mut insns = Vec::new();
    for i in program.get_instructions() {
        let text = i.to_string();
        let f: Vec<u32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        let [code, jt, jf, k] = f[..] else { return Err(bad(format!("unexpected instruction {text:?}"))) };
        let narrow = |v: u32| u8::try_from(v).map_err(|_| bad(format!("jump out of range in {text:?}")));
        let code = u16::try_from(code).map_err(|_| bad(format!("bad opcode in {text:?}")))?;
        insns.push(libc::sock_filter { code, jt: narrow(jt)?, jf: narrow(jf)?, k });
    }
    let prog = libc::sock_fprog {
        len: u16::try_from(insns.len()).map_err(|_| bad("program too long".into()))?,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `insns`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(bad(io::Error::last_os_error().to_string()));
    }
    Ok(())
}
