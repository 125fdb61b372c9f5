//! AF_PACKET on a socket of our own: bound to one interface, promiscuous, with a BPF filter attached in
//! the kernel, read with `recvmmsg` — up to `SLOTS` frames per system call, since one call per frame
//! cannot keep up with a busy link — and `PACKET_STATISTICS`, the kernel's drop counter. This is one of
//! the few places that talk to the kernel directly; every `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::time::SystemTime;

use faultline_core::wire::LinkType;
use faultline_core::Timestamp;

use super::{Capture, CaptureError, Frame, KernelStats};

/// Frames read per system call, and the bytes kept of each (larger frames, e.g. GRO super-packets on a
/// veth, are cut to this; the engine treats them as snap-length cuts).
const SLOTS: usize = 64;
const SLOT_BYTES: usize = 65_536;

pub struct AfPacket {
    name: String,
    fd: i32,
    /// `SLOTS` receive buffers of `SLOT_BYTES`, back to back.
    buf: Vec<u8>,
    /// Frames in `buf` from the last call: (length kept, when read).
    got: Vec<(usize, Timestamp)>,
    /// The next of them to hand out.
    next: usize,
    /// `PACKET_STATISTICS` resets on every read: keep the running totals.
    totals: KernelStats,
}

/// Every interface that is up, except loopback.
pub fn default_interfaces() -> Vec<String> {
    pnet_datalink::interfaces().into_iter().filter(|i| i.is_up() && !i.is_loopback()).map(|i| i.name).collect()
}

impl AfPacket {
    pub fn open(name: &str, filter: Option<&str>) -> Result<AfPacket, CaptureError> {
        let open_err = |source| CaptureError::Open { backend: "afpacket", interface: name.to_owned(), source };
        let c_name = CString::new(name).map_err(|_| CaptureError::NoInterface(name.to_owned()))?;
        // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if ifindex == 0 {
            return Err(CaptureError::NoInterface(name.to_owned()));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
        if fd < 0 {
            return Err(open_err(io::Error::last_os_error()));
        }
        // From here on `cap` owns the descriptor and closes it on every early return.
        let cap = AfPacket {
            name: name.to_owned(),
            fd,
            buf: vec![0; SLOTS * SLOT_BYTES],
            got: Vec::with_capacity(SLOTS),
            next: 0,
            totals: KernelStats::default(),
        };
        set_receive_buffer(fd);
        // Wait at most 100 ms for a frame, so the capture thread notices when it is asked to stop.
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout).map_err(open_err)?;
        if let Some(f) = filter {
            attach_filter(fd, f)?;
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to fill in.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = i32::try_from(ifindex).map_err(|_| CaptureError::NoInterface(name.to_owned()))?;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(open_err(io::Error::last_os_error()));
        }
        // SAFETY: packet_mreq is plain data; all-zero is a valid value to fill in.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = addr.sll_ifindex;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq).map_err(open_err)?;
        Ok(cap)
    }

    /// One `recvmmsg` call: waits up to the socket's timeout for a first frame, then takes whatever else
    /// is already queued, up to `SLOTS`.
    fn receive(&mut self) -> io::Result<usize> {
        let mut iov: Vec<libc::iovec> = self
            .buf
            .chunks_exact_mut(SLOT_BYTES)
            .map(|slot| libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: slot.len() })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: msghdr is plain data; all-zero (no name, no control data) is valid.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_iov = v;
                hdr.msg_iovlen = 1;
                libc::mmsghdr { msg_hdr: hdr, msg_len: 0 }
            })
            .collect();
        // SAFETY: `msgs` holds `msgs.len()` headers, each pointing at one iovec of `iov`, which points
        // into `self.buf`; all of them outlive the call, and the kernel writes at most `iov_len` bytes.
        let n = unsafe {
            libc::recvmmsg(
                self.fd,
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let ts = Timestamp::from(SystemTime::now());
        let n = usize::try_from(n).unwrap_or(0);
        self.got.clear();
        self.got.extend(msgs.iter().take(n).map(|m| ((m.msg_len as usize).min(SLOT_BYTES), ts)));
        self.next = 0;
        Ok(n)
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        // SAFETY: `fd` was opened by us and is closed exactly once, here.
        unsafe { libc::close(self.fd) };
    }
}

impl Capture for AfPacket {
    fn next(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.next >= self.got.len() {
            match self.receive() {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
                Err(e) => return Err(CaptureError::Read { interface: self.name.clone(), source: e }),
            }
        }
        let i = self.next;
        let Some(&(len, ts)) = self.got.get(i) else { return Ok(None) };
        self.next += 1;
        let start = i * SLOT_BYTES;
        let data = self.buf.get(start..start + len).unwrap_or_default();
        Ok(Some(Frame { link_type: LinkType::Ethernet, ts, data }))
    }

    fn kernel_stats(&mut self) -> KernelStats {
        let mut st = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `fd` is open while `self` lives; `st` and `len` are valid for writes of the sizes given.
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

/// setsockopt(2) with a value of any plain type.
fn setsockopt<T>(fd: i32, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid reference to a `T` for the duration of the call and the length passed
    // is its size; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (value as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for `SOCKET_BUFFER` of kernel buffering: past the `rmem_max` limit with CAP_NET_ADMIN
/// (SO_RCVBUFFORCE), else as much as the limit allows. The default (~200 KiB) holds a few hundred packets,
/// which a burst fills before the capture thread is scheduled.
fn set_receive_buffer(fd: i32) {
    let size = libc::c_int::try_from(super::SOCKET_BUFFER).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        if setsockopt(fd, libc::SOL_SOCKET, opt, &size).is_ok() {
            return;
        }
    }
    tracing::warn!("cannot enlarge the capture socket's buffer; bursts may be dropped");
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
    // `prog` points at `insns`, which outlives the call; the kernel copies the program.
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog).map_err(|e| bad(e.to_string()))
}
