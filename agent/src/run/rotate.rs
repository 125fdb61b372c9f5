//! Continuous recording: every frame into pcap files of at most `FILE_BYTES`, rotated, with the oldest
//! deleted once the total passes the cap. Files are readable by their owner only.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use faultline_core::pcap::PcapWriter;
use faultline_core::wire::LinkType;
use faultline_core::Timestamp;

const FILE_BYTES: u64 = 16 << 20;

pub struct Rotator {
    dir: PathBuf,
    max_total: u64,
    current: Option<(PcapWriter<BufWriter<File>>, LinkType, PathBuf)>,
    done: VecDeque<(PathBuf, u64)>,
    seq: u64,
}

impl Rotator {
    pub fn new(dir: PathBuf, max_total: u64) -> io::Result<Rotator> {
        std::fs::create_dir_all(&dir)?;
        Ok(Rotator { dir, max_total, current: None, done: VecDeque::new(), seq: 0 })
    }

    pub fn write(&mut self, link: LinkType, ts: Timestamp, frame: &[u8]) -> io::Result<()> {
        let rotate = match &self.current {
            Some((w, l, _)) => *l != link || w.written() + frame.len() as u64 + 16 > FILE_BYTES.min(self.max_total),
            None => true,
        };
        if rotate {
            self.finish_current();
            self.make_room();
            self.seq += 1;
            let secs = ts.nanos() / 1_000_000_000;
            let path = self.dir.join(format!("capture-{secs}-{:06}.pcap", self.seq));
            let f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
            self.current = Some((PcapWriter::new(BufWriter::new(f), link)?, link, path));
        }
        if let Some((w, _, _)) = &mut self.current {
            w.write(ts, frame)?;
        }
        Ok(())
    }

    fn finish_current(&mut self) {
        if let Some((w, _, path)) = self.current.take() {
            let size = w.written();
            drop(w.into_inner());
            self.done.push_back((path, size));
        }
    }

    /// Deletes the oldest files until a new one of full size fits under the cap.
    fn make_room(&mut self) {
        let per_file = FILE_BYTES.min(self.max_total);
        let mut total: u64 = self.done.iter().map(|(_, s)| s).sum();
        while total + per_file > self.max_total {
            let Some((old, size)) = self.done.pop_front() else { break };
            let _ = std::fs::remove_file(&old);
            total -= size;
        }
    }
}

impl Drop for Rotator {
    fn drop(&mut self) {
        self.finish_current();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_under_the_cap_and_every_file_opens_in_tshark() {
        let dir = std::env::temp_dir().join(format!("faultline-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cap = 1 << 20;
        let mut r = Rotator::new(dir.clone(), cap).expect("dir");
        let frame = vec![0u8; 1000];
        for i in 0..3000u64 {
            r.write(LinkType::Ethernet, Timestamp(i * 1_000_000), &frame).expect("write");
        }
        drop(r);
        let files: Vec<_> = std::fs::read_dir(&dir).expect("dir").flatten().map(|e| e.path()).collect();
        let total: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
        assert!(total <= cap, "{total} bytes kept, cap {cap}");
        assert!(!files.is_empty());
        for f in &files {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
            let out = std::process::Command::new("tshark").arg("-r").arg(f).output().expect("tshark runs");
            assert!(out.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
            assert!(!out.stdout.is_empty(), "{} has frames", f.display());
        }
        let newest = files.iter().max().expect("a file");
        assert!(newest.to_string_lossy().contains("capture-2-"), "the newest frames are kept: {}", newest.display());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
