//! AF_PACKET on a socket of our own, read through a TPACKET_V3 ring: the kernel writes frames into blocks
//! of memory shared with us and hands over whole blocks, so reading costs no system call and no copy per
//! frame (one `poll` when the ring is empty). The socket is bound to one interface (promiscuous, Ethernet
//! frames) or to all of them at once (`open_all`: cooked, frames start at the IP header, each tagged with
//! its interface — so a pod's veth created after the agent started is captured too), has a BPF filter
//! attached in the kernel, and reports drops through `PACKET_STATISTICS`. This is one of the few places
//! that talk to the kernel directly; every `unsafe` block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use faultline_core::wire::LinkType;
use faultline_core::Timestamp;

use super::{Capture, CaptureError, Frame, KernelStats};

/// The ring: `BLOCKS` blocks sharing the bytes given to `open` (at least 128 KiB each, a multiple of the
/// page size). A block is handed over when full or `BLOCK_TIMEOUT_MS` after its first frame.
const BLOCKS: usize = 8;
const MIN_BLOCK: usize = 128 << 10;
const FRAME_SIZE: usize = 2048;
const BLOCK_TIMEOUT_MS: u32 = 50;

// From <linux/if_packet.h>.
const PACKET_RX_RING: i32 = 5;
const PACKET_FANOUT: i32 = 18;
/// Fanout by the flow's hash, computed by the kernel's flow dissector over both endpoints in a fixed
/// order (`__skb_get_hash_symmetric`): both directions of a connection reach one socket.
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_VERSION: i32 = 10;
const TPACKET_V3: i32 = 2;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_KERNEL: u32 = 0;

// Offsets in the kernel's structures (tpacket_block_desc with tpacket_hdr_v1; tpacket3_hdr).
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
const PKT_NEXT: usize = 0;
const PKT_SEC: usize = 4;
const PKT_NSEC: usize = 8;
const PKT_SNAPLEN: usize = 12;
const PKT_MAC: usize = 24;
/// The sockaddr_ll that follows each tpacket3_hdr (48 bytes, already TPACKET_ALIGNed): its protocol
/// (big endian), interface index and packet type.
const PKT_LL_PROTOCOL: usize = 48 + 2;
const PKT_LL_IFINDEX: usize = 48 + 4;
const PKT_LL_PKTTYPE: usize = 48 + 10;

pub struct AfPacket {
    name: String,
    fd: i32,
    ring: Ring,
    /// Bound to every interface (cooked frames, tagged with their interface); loopback's frames skipped.
    all: Option<AllInterfaces>,
    /// The block being read, and where in it: the next frame's offset and how many frames are left.
    block: usize,
    next: Option<(usize, u32)>,
    /// Frames were handed out since the ring was last found empty.
    handed_frames: bool,
    /// `PACKET_STATISTICS` resets on every read: keep the running totals.
    totals: KernelStats,
}

/// The mmap'd ring, unmapped on drop.
struct Ring {
    base: *mut u8,
    len: usize,
    block_size: usize,
}

// SAFETY: the mapping is owned by one `AfPacket`, which is used by one thread at a time (`Capture: Send`,
// not `Sync`); the kernel's side of the sharing is governed by the block status words.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned, unmapped once, here.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

impl Ring {
    /// The bytes `at..at + n` of the ring, if they lie inside it.
    fn bytes(&self, at: usize, n: usize) -> Option<&[u8]> {
        if at.checked_add(n)? > self.len {
            return None;
        }
        // SAFETY: the range is inside the mapping, which lives as long as `self`; the block holding it
        // belongs to us (status USER) until `release`, so the kernel does not write it meanwhile.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(at), n) })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(self.bytes(at, 4)?.try_into().ok()?))
    }

    /// The status word of a block, shared with the kernel.
    fn status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: `block < BLOCKS`, so the word is inside the mapping and 4-byte aligned (blocks are
        // page-aligned); the kernel and we access it as a u32, and AtomicU32 has u32's layout.
        unsafe { &*self.base.add(block % BLOCKS * self.block_size + BLOCK_STATUS).cast::<AtomicU32>() }
    }
}

/// What an all-interfaces socket needs to know about interfaces.
struct AllInterfaces {
    loopback: i32,
}

/// The name `open_all` reports as its interface.
pub const ALL_INTERFACES: &str = "any";

impl AfPacket {
    /// Joins fanout group `group` (per interface: every socket of the group is bound to one device): the
    /// kernel spreads the interface's packets over the group's sockets by flow hash.
    pub fn join_fanout(&self, group: u16) -> Result<(), CaptureError> {
        let value: u32 = u32::from(group) | (PACKET_FANOUT_HASH << 16);
        setsockopt(self.fd, libc::SOL_PACKET, PACKET_FANOUT, &value).map_err(|source| CaptureError::Open {
            backend: "afpacket fanout",
            interface: self.name.clone(),
            source,
        })
    }

    pub fn open(name: &str, filter: Option<&str>, ring_bytes: usize) -> Result<AfPacket, CaptureError> {
        let c_name = CString::new(name).map_err(|_| CaptureError::NoInterface(name.to_owned()))?;
        // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if ifindex == 0 {
            return Err(CaptureError::NoInterface(name.to_owned()));
        }
        let ifindex = i32::try_from(ifindex).map_err(|_| CaptureError::NoInterface(name.to_owned()))?;
        Self::open_socket(name, ifindex, filter, ring_bytes)
    }

    /// One socket for every interface, present and future, but loopback: frames are cooked (the kernel
    /// strips each device's link header, whatever its kind: veth, bridge, VXLAN, tun) and tagged with the
    /// index of the interface they were seen on.
    pub fn open_all(filter: Option<&str>, ring_bytes: usize) -> Result<AfPacket, CaptureError> {
        let lo = CString::new("lo").map_err(|_| CaptureError::NoInterface("lo".into()))?;
        // SAFETY: `lo` is a valid NUL-terminated string for the duration of the call.
        let loopback = i32::try_from(unsafe { libc::if_nametoindex(lo.as_ptr()) }).unwrap_or(0);
        let mut cap = Self::open_socket(ALL_INTERFACES, 0, filter, ring_bytes)?;
        cap.all = Some(AllInterfaces { loopback });
        Ok(cap)
    }

    /// `ifindex` 0: every interface, cooked frames (SOCK_DGRAM); else that interface, whole frames.
    fn open_socket(
        name: &str,
        ifindex: i32,
        filter: Option<&str>,
        ring_bytes: usize,
    ) -> Result<AfPacket, CaptureError> {
        let block_size = (ring_bytes / BLOCKS).max(MIN_BLOCK) / 4096 * 4096;
        let open_err = |source| CaptureError::Open { backend: "afpacket", interface: name.to_owned(), source };
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let kind = if ifindex == 0 { libc::SOCK_DGRAM } else { libc::SOCK_RAW };
        // Protocol 0: the socket receives nothing until bind(2) names the interface and the protocol. Opened
        // with ETH_P_ALL it would take every interface's packets (loopback's included) into its ring until
        // then — seen as a whole stray connection while a test polled another agent's metrics.
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(open_err(io::Error::last_os_error()));
        }
        let socket = Fd(fd);
        if let Some(f) = filter {
            // A cooked socket's filter sees packets from their IP header on.
            let link = if ifindex == 0 { pcap::Linktype(LINKTYPE_RAW) } else { pcap::Linktype::ETHERNET };
            attach_filter(fd, f, link)?;
        }
        setsockopt(fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V3).map_err(open_err)?;
        let req = libc::tpacket_req3 {
            tp_block_size: block_size as u32,
            tp_block_nr: BLOCKS as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: (block_size / FRAME_SIZE * BLOCKS) as u32,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &req).map_err(open_err)?;
        let len = block_size * BLOCKS;
        // SAFETY: mapping the ring the kernel just allocated for this socket, at a place of its choosing;
        // the result is checked before use.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if base == libc::MAP_FAILED {
            return Err(open_err(io::Error::last_os_error()));
        }
        let ring = Ring { base: base.cast(), len, block_size };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to fill in.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex;
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
        if ifindex != 0 {
            // SAFETY: packet_mreq is plain data; all-zero is a valid value to fill in.
            let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mreq.mr_ifindex = addr.sll_ifindex;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq).map_err(open_err)?;
        }
        Ok(AfPacket {
            name: name.to_owned(),
            fd: socket.take(),
            ring,
            all: None,
            block: 0,
            next: None,
            handed_frames: false,
            totals: KernelStats::default(),
        })
    }

    /// Gives the current block back to the kernel and moves to the next.
    fn release(&mut self) {
        self.ring.status(self.block).store(TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % BLOCKS;
        self.next = None;
    }

    /// Waits up to 100 ms for the kernel to hand over a block.
    fn wait(&self) -> io::Result<()> {
        let mut pfd = libc::pollfd { fd: self.fd, events: libc::POLLIN | libc::POLLERR, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, 100) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for AfPacket {
    fn drop(&mut self) {
        // SAFETY: `fd` was opened by us and is closed exactly once, here (the ring is unmapped after).
        unsafe { libc::close(self.fd) };
    }
}

impl Capture for AfPacket {
    fn next(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        loop {
            match self.next {
                Some((_, 0)) => self.release(),
                Some((at, left)) => {
                    let block_start = self.block * self.ring.block_size;
                    let hdr = block_start + at;
                    let fields = (
                        self.ring.u32_at(hdr + PKT_NEXT),
                        self.ring.u32_at(hdr + PKT_SEC),
                        self.ring.u32_at(hdr + PKT_NSEC),
                        self.ring.u32_at(hdr + PKT_SNAPLEN),
                        self.ring.bytes(hdr + PKT_MAC, 2).map(|b| u16::from_ne_bytes([b[0], b[1]])),
                    );
                    let (Some(next), Some(sec), Some(nsec), Some(snaplen), Some(mac)) = fields else {
                        // Offsets outside the block: not what the kernel writes; drop the block.
                        self.release();
                        continue;
                    };
                    // The last frame of a block has no next offset: the block is done after it.
                    self.next = Some(if next == 0 { (at, 0) } else { (at + next as usize, left - 1) });
                    let data_at = hdr + usize::from(mac);
                    if data_at + snaplen as usize > block_start + self.ring.block_size {
                        continue;
                    }
                    let ts = Timestamp(u64::from(sec) * 1_000_000_000 + u64::from(nsec));
                    let (link_type, interface) = match &self.all {
                        None => (LinkType::Ethernet, None),
                        Some(all) => {
                            let ll = (
                                self.ring.bytes(hdr + PKT_LL_PROTOCOL, 2).map(|b| u16::from_be_bytes([b[0], b[1]])),
                                self.ring.u32_at(hdr + PKT_LL_IFINDEX).map(|i| i as i32),
                            );
                            let (Some(protocol), Some(ifindex)) = ll else { continue };
                            // Loopback is the node talking to itself; only IP is analysed (not ARP and the
                            // like).
                            if ifindex == all.loopback || !matches!(protocol, 0x0800 | 0x86dd) {
                                continue;
                            }
                            (LinkType::RawIp, u32::try_from(ifindex).ok())
                        }
                    };
                    let data = self.ring.bytes(data_at, snaplen as usize).unwrap_or_default();
                    let outgoing = self.ring.bytes(hdr + PKT_LL_PKTTYPE, 1) == Some(&[libc::PACKET_OUTGOING][..]);
                    self.handed_frames = true;
                    return Ok(Some(Frame { link_type, ts, data, interface, outgoing }));
                }
                None => {
                    if self.ring.status(self.block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                        if std::mem::take(&mut self.handed_frames) {
                            // The ring is empty: say so before waiting, so the caller can pass on what
                            // it has gathered now rather than after the wait.
                            return Ok(None);
                        }
                        self.wait().map_err(|e| CaptureError::Read { interface: self.name.clone(), source: e })?;
                        if self.ring.status(self.block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                            return Ok(None);
                        }
                    }
                    let start = self.block * self.ring.block_size;
                    let (Some(n), Some(first)) =
                        (self.ring.u32_at(start + BLOCK_NUM_PKTS), self.ring.u32_at(start + BLOCK_FIRST_PKT))
                    else {
                        self.release();
                        continue;
                    };
                    self.next = Some((first as usize, n));
                }
            }
        }
    }

    fn kernel_stats(&mut self) -> KernelStats {
        let mut st = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `fd` is open while `self` lives; `st` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
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

/// A descriptor closed on drop unless taken: so every early return in `open` closes the socket.
struct Fd(i32);

impl Fd {
    fn take(self) -> i32 {
        let fd = self.0;
        std::mem::forget(self);
        fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and not yet handed to anything else.
        unsafe { libc::close(self.0) };
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

/// libpcap's DLT_RAW: packets that begin with their IP header.
const LINKTYPE_RAW: i32 = 12;

/// Compiles `filter` with libpcap (for frames of `link`) and attaches it to the socket in the kernel.
fn attach_filter(fd: i32, filter: &str, link: pcap::Linktype) -> Result<(), CaptureError> {
    let bad = |detail: String| CaptureError::Filter { filter: filter.to_owned(), detail };
    let dead = pcap::Capture::dead(link).map_err(|e| bad(e.to_string()))?;
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
