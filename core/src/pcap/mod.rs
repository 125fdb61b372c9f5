//! Reading capture files: classic pcap (either byte order, micro- or nanosecond) and pcapng (sections,
//! several interfaces, `if_tsresol`). The reader is generic over `Read`, checks every length it is given
//! against a ceiling before allocating, and tells a clean end of file from a file cut short.

mod classic;
mod ng;
mod writer;

pub use writer::{linktype_code, to_pcap, PcapWriter};

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
    /// The interface it was captured on: the pcapng interface number (0 in a classic pcap).
    pub interface: u32,
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
        let mut src = Source::new(inner);
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

/// Bytes are read in chunks this large; records are handed out as slices of the chunk, never copied.
const CHUNK: usize = 1 << 20;
/// The first chunk's size; the buffer doubles from here as the file goes on.
const FIRST_CHUNK: usize = 16 << 10;

/// The byte source with its position, so that errors can say where the file went wrong. It reads large
/// chunks and hands out slices of them: one copy from the kernel, none after.
struct Source<R> {
    inner: R,
    /// Bytes consumed so far (the file offset of `buf[start]`).
    offset: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// Where the body read last by `read_body` lies in `buf`.
    body: std::ops::Range<usize>,
}

impl<R: Read> Source<R> {
    fn new(inner: R) -> Source<R> {
        Source { inner, offset: 0, buf: Vec::new(), start: 0, end: 0, eof: false, body: 0..0 }
    }

    /// Makes at least `need` bytes available (fewer only at the end of the file); returns how many are.
    fn fill(&mut self, need: usize) -> io::Result<usize> {
        if self.end - self.start >= need || self.eof {
            return Ok(self.end - self.start);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // Start small and double up to CHUNK: a short capture (or a fuzz input) should not cost a
        // megabyte of zeroed buffer.
        let want = need.max((self.buf.len() * 2).clamp(FIRST_CHUNK, CHUNK));
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.end < need {
            let n = read_full(&mut self.inner, &mut self.buf[self.end..])?;
            if n == 0 {
                self.eof = true;
                break;
            }
            self.end += n;
        }
        Ok(self.end - self.start)
    }

    /// Consumes `n` bytes and returns where they are in `buf`; fewer is `Truncated`.
    fn take(&mut self, n: usize, what: &'static str) -> Result<std::ops::Range<usize>, PcapError> {
        let have = self.fill(n)?;
        if have < n {
            return Err(PcapError::Truncated { offset: self.offset + have as u64, what, need: n, have });
        }
        let r = self.start..self.start + n;
        self.start += n;
        self.offset += n as u64;
        Ok(r)
    }

    /// Fills `out` completely; a short read is `Truncated`.
    fn read_exact(&mut self, out: &mut [u8], what: &'static str) -> Result<(), PcapError> {
        let r = self.take(out.len(), what)?;
        out.copy_from_slice(&self.buf[r]);
        Ok(())
    }

    /// Like `read_exact`, but zero bytes at a record boundary is a clean end of file.
    fn read_exact_or_eof(&mut self, out: &mut [u8], what: &'static str) -> Result<bool, PcapError> {
        if self.fill(out.len())? == 0 {
            return Ok(false);
        }
        self.read_exact(out, what)?;
        Ok(true)
    }

    /// Reads a body of `len` bytes (after checking `len` against `MAX_RECORD`); `body()` returns it.
    fn read_body(&mut self, len: usize, what: &'static str) -> Result<(), PcapError> {
        if len > MAX_RECORD {
            return Err(self.corrupt(format!("{what} claims {len} bytes, more than the {MAX_RECORD}-byte limit")));
        }
        self.body = self.take(len, what)?;
        Ok(())
    }

    fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
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
