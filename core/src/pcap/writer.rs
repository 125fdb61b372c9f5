//! Writing classic pcap (microsecond timestamps, little endian): what tshark and Wireshark open everywhere.

use std::io::{self, Write};

use crate::time::Timestamp;
use crate::wire::LinkType;

/// The LINKTYPE number written for a link type.
pub fn linktype_code(l: LinkType) -> u32 {
    match l {
        LinkType::Ethernet => 1,
        LinkType::LinuxSll => 113,
        LinkType::LinuxSll2 => 276,
        LinkType::RawIp => 101,
        LinkType::Loopback => 0,
    }
}

pub struct PcapWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W, link: LinkType) -> io::Result<PcapWriter<W>> {
        let mut h = Vec::with_capacity(24);
        h.extend(0xa1b2_c3d4u32.to_le_bytes());
        h.extend(2u16.to_le_bytes());
        h.extend(4u16.to_le_bytes());
        h.extend(0i32.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        h.extend(262_144u32.to_le_bytes());
        h.extend(linktype_code(link).to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, written: 24 })
    }

    pub fn write(&mut self, ts: Timestamp, frame: &[u8]) -> io::Result<()> {
        let secs = u32::try_from(ts.nanos() / 1_000_000_000).unwrap_or(u32::MAX);
        let micros = ((ts.nanos() % 1_000_000_000) / 1_000) as u32;
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&micros.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)?;
        self.written += 16 + frame.len() as u64;
        Ok(())
    }

    /// Bytes written so far, header included.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A whole pcap file in memory.
pub fn to_pcap<'a>(link: LinkType, frames: impl IntoIterator<Item = (Timestamp, &'a [u8])>) -> Vec<u8> {
    let mut w = match PcapWriter::new(Vec::new(), link) {
        Ok(w) => w,
        Err(_) => return Vec::new(),
    };
    for (ts, f) in frames {
        // Writing to a Vec cannot fail.
        let _ = w.write(ts, f);
    }
    w.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::PcapReader;

    #[test]
    fn written_files_read_back() {
        let bytes =
            to_pcap(LinkType::Ethernet, [(Timestamp::from_micros(5), &b"abc"[..]), (Timestamp(7_000_001_000), b"de")]);
        let mut r = PcapReader::new(&bytes[..]).expect("header");
        let a = r.next_record().expect("ok").map(|r| (r.ts, r.data.to_vec()));
        assert_eq!(a, Some((Timestamp::from_micros(5), b"abc".to_vec())));
        let b = r.next_record().expect("ok").map(|r| (r.ts, r.data.to_vec()));
        assert_eq!(b, Some((Timestamp(7_000_001_000), b"de".to_vec())));
        assert!(r.next_record().expect("clean end").is_none());
    }
}
