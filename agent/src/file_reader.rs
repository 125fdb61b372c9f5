//! Reading a capture file on a thread of its own, for `analyze`: the kernel's copy of the file and the
//! walk over its records cost about a fifth of the engine thread's time, and on a machine with a second
//! core they can run beside it. Frames reach the engine in batches, as they do from live capture.

use std::io::Read;
use std::sync::mpsc;

use faultline_core::pcap::{PcapError, PcapReader};

use crate::frames::{BatchPool, FrameBatch};

/// Frames per batch, and batches that may be read ahead of the engine.
const BATCH_FRAMES: usize = 1024;
const BATCHES_AHEAD: usize = 8;

/// How reading ended: at the end of the file (`Ok`) or at an error, with the records skipped either way.
pub struct ReadEnd {
    pub result: Result<(), PcapError>,
    pub skipped: u64,
}

/// Reads `reader` to its end on a thread of its own, calling `each` on the calling thread for every
/// batch of frames in file order. `each` returns false to stop early (the reading thread then stops
/// too). Returns how reading ended, or `None` if it was stopped.
pub fn read_in_batches<R: Read + Send>(
    reader: PcapReader<R>,
    mut each: impl FnMut(&FrameBatch) -> bool,
) -> Option<ReadEnd> {
    // Batches the engine is done with go back to be filled again: no allocation per batch.
    let pool = BatchPool::new(BATCHES_AHEAD + 2);
    std::thread::scope(|scope| {
        // Made inside the scope, so that if `each` panics the receiver is dropped while unwinding and a
        // reader blocked on a full channel ends, rather than the scope waiting for it forever.
        let (full_tx, full) = mpsc::sync_channel::<FrameBatch>(BATCHES_AHEAD);
        let pool = &pool;
        // The sender moves to the reading thread: when it ends, the channel closes and the loop below ends.
        let reading = scope.spawn(move || read_all(reader, &full_tx, pool));
        let mut stopped = false;
        for batch in &full {
            if !each(&batch) {
                stopped = true;
                break;
            }
            pool.give(batch);
        }
        // The reader blocks on a full channel; dropping it lets a stopped reader see that and end.
        drop(full);
        let end = reading.join().unwrap_or_else(|_| ReadEnd {
            result: Err(PcapError::Io(std::io::Error::other("the capture reading thread failed"))),
            skipped: 0,
        });
        (!stopped).then_some(end)
    })
}

fn read_all<R: Read>(mut reader: PcapReader<R>, full: &mpsc::SyncSender<FrameBatch>, pool: &BatchPool) -> ReadEnd {
    let mut batch = pool.take();
    let result = loop {
        match reader.next_record() {
            Ok(Some(r)) => {
                batch.push(r.link_type, r.ts, r.data);
                if batch.len() >= BATCH_FRAMES && full.send(std::mem::replace(&mut batch, pool.take())).is_err() {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // What was read before the end or the error is still handed over.
    if !batch.is_empty() {
        let _ = full.send(batch);
    }
    ReadEnd { result, skipped: reader.skipped_records() }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A classic pcap of `frames` Ethernet frames, the i-th holding i as 4 bytes, and `tail` after them.
    fn pcap(frames: u32, tail: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        // Magic, version 2.4, zone, accuracy, snap length, Ethernet.
        for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            b.extend_from_slice(&word.to_le_bytes());
        }
        for i in 0..frames {
            // Seconds, microseconds, captured and original length.
            for word in [i, 0, 4, 4] {
                b.extend_from_slice(&word.to_le_bytes());
            }
            b.extend_from_slice(&i.to_le_bytes());
        }
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn every_frame_in_order_then_how_the_file_ended() {
        let n = 2 * BATCH_FRAMES as u32 + 5;
        // A record header announcing 4 bytes, then the file ends: truncated.
        let cut = [0u8, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1];
        let reader = PcapReader::new(Cursor::new(pcap(n, &cut))).expect("header");
        let mut seen = Vec::new();
        let end = read_in_batches(reader, |batch| {
            seen.extend(batch.iter().map(|(_, _, d)| u32::from_le_bytes(d.try_into().expect("4 bytes"))));
            true
        })
        .expect("not stopped");
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert!(matches!(end.result, Err(PcapError::Truncated { .. })), "{:?}", end.result.err());
    }

    #[test]
    fn stopping_early_ends_the_reader_too() {
        let reader = PcapReader::new(Cursor::new(pcap(50 * BATCH_FRAMES as u32, &[]))).expect("header");
        let mut batches = 0;
        let end = read_in_batches(reader, |_| {
            batches += 1;
            false
        });
        assert!(end.is_none());
        assert_eq!(batches, 1);
    }
}
