//! Reading capture files: classic pcap (either byte order, micro- or nanosecond) and pcapng (sections,
//! several interfaces, `if_tsresol`). The reader is generic over `Read`, checks every length it is given
//! against a ceiling before allocating, and tells a clean end of file from a file cut short.

mod classic;
mod ng;

use std::io::{self, Read};

use crate::time::Timestamp;
use crate::wire::LinkType;

/// No captured frame is larger than this; a length field above it is corruption, not a packet.
pub const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("not a capture file: magic number {0:#010x} is neither pcap nor pcapng")]
    UnknownFormat(u32),
    #[error("truncated at byte {offset}: {what} needs {need} bytes, only {have} remain")]
    Truncated { offset: u64, what: &'static str, need: usize, have: usize },
    #[error("corrupt at byte {offset}: {detail}")]
    Corrupt { offset: u64, detail: String },
    #[error(
        "unsupported link type {0} (supported: Ethernet 1, Linux cooked 113/276, raw IP 101/228/229, loopback 0/108)"
    )]
    UnsupportedLinkType(u32),
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// One captured frame, borrowed from the reader's buffer until the next call.
#[derive(Debug)]
pub struct Record<'a> {
    pub link_type: LinkType,
    pub ts: Timestamp,
    pub data: &'a [u8],
    /// The frame's length on the wire; more than `data.len()` when the snap length cut it.
    pub orig_len: u32,
}

enum Format {
    Classic(classic::State),
    Ng(ng::State),
}

pub struct PcapReader<R> {
    src: Source<R>,
    format: Format,
}

impl<R: Read> PcapReader<R> {
    pub fn new(inner: R) -> Result<Self, PcapError> {
        let mut src = Source { inner, offset: 0, buf: Vec::new() };
        let mut magic = [0u8; 4];
        src.read_exact(&mut magic, "file header")?;
        let format = match u32::from_le_bytes(magic) {
            ng::SHB_TYPE => Format::Ng(ng::State::open(&mut src, magic)?),
            m => Format::Classic(classic::State::open(&mut src, m)?),
        };
        Ok(PcapReader { src, format })
    }

    /// Frames skipped because their pcapng interface has a link type we cannot decode.
    pub fn skipped_records(&self) -> u64 {
        match &self.format {
            Format::Classic(_) => 0,
            Format::Ng(state) => state.skipped(),
        }
    }

    /// The next frame, or `None` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, PcapError> {
        match &mut self.format {
            Format::Classic(state) => state.next(&mut self.src),
            Format::Ng(state) => state.next(&mut self.src),
        }
    }
}

/// The byte source with its position, so that errors can say where the file went wrong.
struct Source<R> {
    inner: R,
    offset: u64,
    buf: Vec<u8>,
}

impl<R: Read> Source<R> {
    /// Fills `out` completely; a short read is `Truncated`.
    fn read_exact(&mut self, out: &mut [u8], what: &'static str) -> Result<(), PcapError> {
        let got = read_full(&mut self.inner, out)?;
        self.offset += got as u64;
        if got < out.len() {
            return Err(PcapError::Truncated { offset: self.offset, what, need: out.len(), have: got });
        }
        Ok(())
    }

    /// Like `read_exact`, but zero bytes at a record boundary is a clean end of file.
    fn read_exact_or_eof(&mut self, out: &mut [u8], what: &'static str) -> Result<bool, PcapError> {
        let got = read_full(&mut self.inner, out)?;
        self.offset += got as u64;
        match got {
            0 => Ok(false),
            n if n < out.len() => Err(PcapError::Truncated { offset: self.offset, what, need: out.len(), have: n }),
            _ => Ok(true),
        }
    }

    /// Reads `len` bytes into the internal buffer (after checking `len` against `MAX_RECORD`).
    fn read_body(&mut self, len: usize, what: &'static str) -> Result<(), PcapError> {
        if len > MAX_RECORD {
            return Err(self.corrupt(format!("{what} claims {len} bytes, more than the {MAX_RECORD}-byte limit")));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(len, 0);
        let res = self.read_exact(&mut buf, what);
        self.buf = buf;
        res
    }

    fn corrupt(&self, detail: String) -> PcapError {
        PcapError::Corrupt { offset: self.offset, detail }
    }
}

fn read_full<R: Read>(r: &mut R, out: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < out.len() {
        match r.read(&mut out[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Byte order of a file or section, fixed by its magic number.
#[derive(Clone, Copy, Debug)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let a = [b[at], b[at + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }
}

fn link_type(code: u32) -> Result<LinkType, PcapError> {
    // The upper bits of a classic header's link type carry FCS information; the type is the low 16 bits.
    LinkType::from_linktype(code & 0xffff).ok_or(PcapError::UnsupportedLinkType(code & 0xffff))
}

#[cfg(test)]
mod tests;
