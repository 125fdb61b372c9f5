//! pcapng: a sequence of blocks (type, total length, body, total length again). Section headers fix the
//! byte order; interface descriptions give each interface its link type and timestamp resolution;
//! enhanced, simple and obsolete packet blocks carry frames. Other blocks are skipped.

use std::io::Read;

use super::{link_type, Endian, PcapError, Record, Source, MAX_RECORD};
use crate::time::Timestamp;
use crate::wire::LinkType;

/// The section header block type; the same bytes in either byte order.
pub(super) const SHB_TYPE: u32 = 0x0a0d_0d0a;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const IDB_TYPE: u32 = 1;
const OPB_TYPE: u32 = 2;
const SPB_TYPE: u32 = 3;
const EPB_TYPE: u32 = 6;
/// A hostile file could describe endless interfaces; real ones have a handful.
const MAX_INTERFACES: usize = 4096;

struct Interface {
    /// `None` when the link type is one we cannot decode: its packets are skipped and counted.
    link_type: Option<LinkType>,
    snap_len: u32,
    /// Timestamp units: `(base, exponent)` means one unit is `base^-exponent` seconds.
    resolution: (u8, u8),
    /// `if_tsoffset`: seconds to add to every timestamp of this interface.
    offset_secs: i64,
}

pub(super) struct State {
    endian: Endian,
    interfaces: Vec<Interface>,
    skipped: u64,
    /// The latest timestamp read: a Simple Packet Block has none of its own, and is stamped with this.
    last_ts: Timestamp,
}

impl State {
    /// Called after the first four bytes (the section header type) were read.
    pub(super) fn open<R: Read>(src: &mut Source<R>, _magic: [u8; 4]) -> Result<State, PcapError> {
        let mut state = State { endian: Endian::Little, interfaces: Vec::new(), skipped: 0, last_ts: Timestamp(0) };
        let mut len = [0u8; 4];
        src.read_exact(&mut len, "pcapng section header")?;
        state.read_section_header(src, len)?;
        Ok(state)
    }

    pub(super) fn next<'a, R: Read>(&mut self, src: &'a mut Source<R>) -> Result<Option<Record<'a>>, PcapError> {
        loop {
            let mut hdr = [0u8; 8];
            if !src.read_exact_or_eof(&mut hdr, "pcapng block header")? {
                return Ok(None);
            }
            if u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) == SHB_TYPE {
                self.read_section_header(src, [hdr[4], hdr[5], hdr[6], hdr[7]])?;
                continue;
            }
            let block_type = self.endian.u32(&hdr, 0);
            let total = self.endian.u32(&hdr, 4) as usize;
            check_block_len(src, total)?;
            // Body plus the trailing copy of the length.
            src.read_body(total - 8, "pcapng block")?;
            let body_len = total - 12;
            match block_type {
                IDB_TYPE => self.read_interface(src, body_len)?,
                EPB_TYPE | OPB_TYPE | SPB_TYPE => {
                    let Some((iface, ts, range, orig_len)) = self.packet_fields(src, block_type, body_len)? else {
                        continue;
                    };
                    let Some(link_type) = self.interfaces.get(iface).and_then(|i| i.link_type) else {
                        self.skipped += 1;
                        continue;
                    };
                    let interface = u32::try_from(iface).unwrap_or(u32::MAX);
                    // A simple packet block after this one gets its time (the latest seen).
                    self.last_ts = self.last_ts.max(ts);
                    return Ok(Some(Record { link_type, ts, data: &src.body()[range], orig_len, interface }));
                }
                _ => {}
            }
        }
    }

    fn read_section_header<R: Read>(&mut self, src: &mut Source<R>, len_bytes: [u8; 4]) -> Result<(), PcapError> {
        let mut bom = [0u8; 4];
        src.read_exact(&mut bom, "pcapng byte-order magic")?;
        self.endian = if u32::from_le_bytes(bom) == BYTE_ORDER_MAGIC {
            Endian::Little
        } else if u32::from_be_bytes(bom) == BYTE_ORDER_MAGIC {
            Endian::Big
        } else {
            return Err(src.corrupt(format!("bad pcapng byte-order magic {:#010x}", u32::from_le_bytes(bom))));
        };
        let total = self.endian.u32(&len_bytes, 0) as usize;
        check_block_len(src, total)?;
        if total < 28 {
            return Err(src.corrupt(format!("pcapng section header of {total} bytes is shorter than 28")));
        }
        // Version, section length and options: nothing we need. Skip them and the trailing length.
        src.read_body(total - 12, "pcapng section header")?;
        // Interfaces are numbered per section.
        self.interfaces.clear();
        Ok(())
    }

    fn read_interface<R: Read>(&mut self, src: &mut Source<R>, body_len: usize) -> Result<(), PcapError> {
        if body_len < 8 {
            return Err(src.corrupt(format!("pcapng interface block body of {body_len} bytes, need 8")));
        }
        if self.interfaces.len() >= MAX_INTERFACES {
            return Err(src.corrupt(format!("more than {MAX_INTERFACES} interfaces in one section")));
        }
        let b = src.body();
        let code = u32::from(self.endian.u16(b, 0));
        let snap_len = self.endian.u32(b, 4);
        let mut resolution = (10, 6);
        let mut offset_secs = 0;
        let mut at = 8;
        while at + 4 <= body_len {
            let opt = self.endian.u16(b, at);
            let len = usize::from(self.endian.u16(b, at + 2));
            if opt == 0 || at + 4 + len > body_len {
                break;
            }
            if opt == 9 && len >= 1 {
                let v = b[at + 4];
                resolution = if v & 0x80 == 0 { (10, v) } else { (2, v & 0x7f) };
            }
            if opt == 14 && len == 8 {
                let hi = u64::from(self.endian.u32(b, at + 4));
                let lo = u64::from(self.endian.u32(b, at + 8));
                let (hi, lo) = match self.endian {
                    Endian::Little => (lo, hi),
                    Endian::Big => (hi, lo),
                };
                offset_secs = ((hi << 32) | lo) as i64;
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        self.interfaces.push(Interface { link_type: link_type(code).ok(), snap_len, resolution, offset_secs });
        Ok(())
    }

    /// (interface, timestamp, data range in the buffer, original length) of a packet block.
    #[allow(clippy::type_complexity)]
    fn packet_fields<R: Read>(
        &mut self,
        src: &Source<R>,
        block_type: u32,
        body_len: usize,
    ) -> Result<Option<(usize, Timestamp, std::ops::Range<usize>, u32)>, PcapError> {
        let b = src.body();
        let e = self.endian;
        let simple = block_type == SPB_TYPE;
        let (iface, hi, lo, cap, orig, start) = match block_type {
            EPB_TYPE => {
                need(src, body_len, 20, "enhanced packet block")?;
                (e.u32(b, 0) as usize, e.u32(b, 4), e.u32(b, 8), e.u32(b, 12) as usize, e.u32(b, 16), 20)
            }
            OPB_TYPE => {
                need(src, body_len, 20, "obsolete packet block")?;
                (usize::from(e.u16(b, 0)), e.u32(b, 4), e.u32(b, 8), e.u32(b, 12) as usize, e.u32(b, 16), 20)
            }
            _ => {
                need(src, body_len, 4, "simple packet block")?;
                let orig = e.u32(b, 0);
                let snap = self.interfaces.first().map_or(u32::MAX, |i| i.snap_len);
                let snap = if snap == 0 { u32::MAX } else { snap };
                let cap = (orig.min(snap) as usize).min(body_len - 4);
                (0, 0, 0, cap, orig, 4)
            }
        };
        if start + cap > body_len {
            return Err(
                src.corrupt(format!("packet block says {cap} captured bytes but has room for {}", body_len - start))
            );
        }
        let Some(interface) = self.interfaces.get(iface) else {
            return Err(
                src.corrupt(format!("packet on interface {iface}, but only {} described", self.interfaces.len()))
            );
        };
        let ts = if simple {
            // No timestamp of its own: the time of the packet before it.
            self.last_ts
        } else {
            let ts = to_nanos((u64::from(hi) << 32) | u64::from(lo), interface.resolution);
            let offset = interface.offset_secs.saturating_mul(1_000_000_000);
            Timestamp(ts.nanos().saturating_add_signed(offset))
        };
        Ok(Some((iface, ts, start..start + cap, orig)))
    }

    pub(super) fn skipped(&self) -> u64 {
        self.skipped
    }
}

fn check_block_len<R: Read>(src: &Source<R>, total: usize) -> Result<(), PcapError> {
    if total < 12 || total % 4 != 0 || total > MAX_RECORD + 64 {
        return Err(
            src.corrupt(format!("pcapng block length {total} is not a multiple of 4 in 12..={}", MAX_RECORD + 64))
        );
    }
    Ok(())
}

fn need<R: Read>(src: &Source<R>, have: usize, need: usize, what: &str) -> Result<(), PcapError> {
    if have < need {
        return Err(src.corrupt(format!("{what} body of {have} bytes, need {need}")));
    }
    Ok(())
}

fn to_nanos(units: u64, (base, exp): (u8, u8)) -> Timestamp {
    let units = u128::from(units);
    let ns = if base == 10 {
        if exp <= 9 {
            units * 10u128.pow(u32::from(9 - exp))
        } else {
            units / 10u128.pow(u32::from(exp.min(38) - 9))
        }
    } else {
        (units * 1_000_000_000) >> exp.min(127)
    };
    Timestamp(u64::try_from(ns).unwrap_or(u64::MAX))
}
