//! Classic libpcap files: a 24-byte file header, then 16-byte record headers each followed by the frame.

use std::io::Read;

use super::{link_type, Endian, PcapError, Record, Source};
use crate::time::Timestamp;
use crate::wire::LinkType;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

pub(super) struct State {
    endian: Endian,
    nanos: bool,
    link_type: LinkType,
}

impl State {
    /// `magic` is the first four bytes read as little endian.
    pub(super) fn open<R: Read>(src: &mut Source<R>, magic: u32) -> Result<State, PcapError> {
        let (endian, nanos) = match magic {
            MAGIC_MICROS => (Endian::Little, false),
            MAGIC_NANOS => (Endian::Little, true),
            m if m.swap_bytes() == MAGIC_MICROS => (Endian::Big, false),
            m if m.swap_bytes() == MAGIC_NANOS => (Endian::Big, true),
            m => return Err(PcapError::UnknownFormat(m)),
        };
        let mut rest = [0u8; 20];
        src.read_exact(&mut rest, "pcap file header")?;
        // rest: version major(2) minor(2) thiszone(4) sigfigs(4) snaplen(4) linktype(4)
        let link_type = link_type(endian.u32(&rest, 16))?;
        Ok(State { endian, nanos, link_type })
    }

    pub(super) fn next<'a, R: Read>(&mut self, src: &'a mut Source<R>) -> Result<Option<Record<'a>>, PcapError> {
        let mut hdr = [0u8; 16];
        if !src.read_exact_or_eof(&mut hdr, "pcap record header")? {
            return Ok(None);
        }
        let secs = u64::from(self.endian.u32(&hdr, 0));
        let frac = u64::from(self.endian.u32(&hdr, 4));
        let incl = self.endian.u32(&hdr, 8) as usize;
        let orig_len = self.endian.u32(&hdr, 12);
        let frac_ns = if self.nanos { frac } else { frac.saturating_mul(1_000) };
        src.read_body(incl, "pcap record")?;
        Ok(Some(Record {
            link_type: self.link_type,
            ts: Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)),
            data: src.body(),
            orig_len,
            interface: 0,
        }))
    }
}
