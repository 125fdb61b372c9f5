//! Reading capture files on a thread of their own, for `analyze`: the kernel's copy of the file and the
//! walk over its records cost about a fifth of the engine thread's time, and on a machine with a second
//! core they can run beside it. Frames reach the engine in batches, as they do from live capture.
//!
//! Several files are one capture merged by timestamp (captures of two interfaces, or rotated files of one:
//! for those the merge is their concatenation). Each frame is tagged with its interface — the file's
//! number and the pcapng interface within it — so the engine can tell copies of one packet apart.

use std::io::Read;
use std::sync::{mpsc, Arc};

use faultline_core::pcap::{PcapError, PcapReader};
use faultline_core::wire::LinkType;
use faultline_core::Timestamp;

use crate::frames::{BatchPool, FrameBatch, Interface, SharedBatch};

/// Frames per batch, and batches that may be read ahead of the engine.
const BATCH_FRAMES: usize = 1024;
const BATCHES_AHEAD: usize = 8;

/// How reading ended: at the end of every file (`Ok`) or at an error in file number `.0`, with the records
/// skipped either way.
pub struct ReadEnd {
    pub result: Result<(), (usize, PcapError)>,
    pub skipped: u64,
}

/// Reads `readers` (file number, reader) to their end on a thread of their own, merged by timestamp,
/// calling `each` on the calling thread for every batch of frames. `each` returns false to stop early (the
/// reading thread then stops too). Returns how reading ended, or `None` if it was stopped.
pub fn read_in_batches<R: Read + Send>(
    readers: Vec<(usize, PcapReader<R>)>,
    mut each: impl FnMut(&Arc<SharedBatch>) -> bool,
) -> Option<ReadEnd> {
    // Batches the engine is done with go back to be filled again: no allocation per batch. Engine
    // threads may still hold a batch after `each`: it goes back when they let go.
    let pool = Arc::new(BatchPool::new(2 * BATCHES_AHEAD + 2));
    std::thread::scope(|scope| {
        // Made inside the scope, so that if `each` panics the receiver is dropped while unwinding and a
        // reader blocked on a full channel ends, rather than the scope waiting for it forever.
        let (full_tx, full) = mpsc::sync_channel::<FrameBatch>(BATCHES_AHEAD);
        let pool = &pool;
        // The sender moves to the reading thread: when it ends, the channel closes and the loop below ends.
        let reading = std::thread::Builder::new().name("reader".into()).spawn_scoped(scope, move || {
            let end = if readers.len() == 1 {
                read_one(readers, &full_tx, pool)
            } else {
                read_merged(readers, &full_tx, pool)
            };
            crate::thread_cpu::log_this_thread();
            end
        });
        let reading = match reading {
            Ok(r) => r,
            Err(e) => return Some(ReadEnd { result: Err((0, PcapError::Io(e))), skipped: 0 }),
        };
        let mut stopped = false;
        for batch in &full {
            if !each(&SharedBatch::new(batch, pool)) {
                stopped = true;
                break;
            }
        }
        // The reader blocks on a full channel; dropping it lets a stopped reader see that and end.
        drop(full);
        let end = reading.join().unwrap_or_else(|_| ReadEnd {
            result: Err((0, PcapError::Io(std::io::Error::other("the capture reading thread failed")))),
            skipped: 0,
        });
        (!stopped).then_some(end)
    })
}

/// The interface number of a frame: the file's number and its interface within the file.
fn interface(file: usize, within: u32) -> Interface {
    ((file as u32) << 16) | (within & 0xffff)
}

/// One file: frames go straight from the reader's buffer into batches.
fn read_one<R: Read>(
    readers: Vec<(usize, PcapReader<R>)>,
    full: &mpsc::SyncSender<FrameBatch>,
    pool: &BatchPool,
) -> ReadEnd {
    let Some((file, mut reader)) = readers.into_iter().next() else {
        return ReadEnd { result: Ok(()), skipped: 0 };
    };
    let mut batch = pool.take();
    let result = loop {
        match reader.next_record() {
            Ok(Some(r)) => {
                batch.push_on(interface(file, r.interface), r.link_type, r.ts, r.data);
                if batch.len() >= BATCH_FRAMES && full.send(std::mem::replace(&mut batch, pool.take())).is_err() {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err((file, e)),
        }
    };
    // What was read before the end or the error is still handed over.
    if !batch.is_empty() {
        let _ = full.send(batch);
    }
    ReadEnd { result, skipped: reader.skipped_records() }
}

/// The next frame of one file, copied out of its reader so that the files can be compared.
struct Head {
    interface: Interface,
    link_type: LinkType,
    ts: Timestamp,
    data: Vec<u8>,
}

/// Several files: the earliest head frame goes next (the earlier file first on a tie).
fn read_merged<R: Read>(
    readers: Vec<(usize, PcapReader<R>)>,
    full: &mpsc::SyncSender<FrameBatch>,
    pool: &BatchPool,
) -> ReadEnd {
    let mut readers: Vec<(usize, PcapReader<R>, Option<Head>)> =
        readers.into_iter().map(|(f, r)| (f, r, None)).collect();
    let mut batch = pool.take();
    let mut result = Ok(());
    // Fill every head; a file that fails stops the run (everything before it is still handed over).
    let refill = |file: usize, reader: &mut PcapReader<R>, head: &mut Option<Head>| -> Result<(), PcapError> {
        match reader.next_record()? {
            Some(r) => {
                let h = head.get_or_insert_with(|| Head {
                    interface: 0,
                    link_type: r.link_type,
                    ts: r.ts,
                    data: Vec::new(),
                });
                h.interface = interface(file, r.interface);
                h.link_type = r.link_type;
                h.ts = r.ts;
                h.data.clear();
                h.data.extend_from_slice(r.data);
            }
            None => *head = None,
        }
        Ok(())
    };
    for (file, reader, head) in &mut readers {
        if let Err(e) = refill(*file, reader, head) {
            result = Err((*file, e));
            break;
        }
    }
    while result.is_ok() {
        let next = readers.iter().enumerate().filter_map(|(i, (_, _, h))| h.as_ref().map(|h| (h.ts, i))).min();
        let Some((_, i)) = next else { break };
        let (file, reader, head) = &mut readers[i];
        if let Some(h) = head {
            batch.push_on(h.interface, h.link_type, h.ts, &h.data);
        }
        if let Err(e) = refill(*file, reader, head) {
            result = Err((*file, e));
        }
        if batch.len() >= BATCH_FRAMES && full.send(std::mem::replace(&mut batch, pool.take())).is_err() {
            break;
        }
    }
    if !batch.is_empty() {
        let _ = full.send(batch);
    }
    let skipped = readers.iter().map(|(_, r, _)| r.skipped_records()).sum();
    ReadEnd { result, skipped }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// A classic pcap of `frames` Ethernet frames, the i-th at second `first + i * step` holding i as 4
    /// bytes, and `tail` after them.
    fn pcap(frames: u32, first: u32, step: u32, tail: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        // Magic, version 2.4, zone, accuracy, snap length, Ethernet.
        for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            b.extend_from_slice(&word.to_le_bytes());
        }
        for i in 0..frames {
            // Seconds, microseconds, captured and original length.
            for word in [first + i * step, 0, 4, 4] {
                b.extend_from_slice(&word.to_le_bytes());
            }
            b.extend_from_slice(&i.to_le_bytes());
        }
        b.extend_from_slice(tail);
        b
    }

    fn reader(bytes: Vec<u8>) -> PcapReader<Cursor<Vec<u8>>> {
        PcapReader::new(Cursor::new(bytes)).expect("header")
    }

    #[test]
    fn every_frame_in_order_then_how_the_file_ended() {
        let n = 2 * BATCH_FRAMES as u32 + 5;
        // A record header announcing 4 bytes, then the file ends: truncated.
        let cut = [0u8, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1];
        let mut seen = Vec::new();
        let end = read_in_batches(vec![(0, reader(pcap(n, 0, 1, &cut)))], |batch| {
            seen.extend(batch.iter().map(|f| u32::from_le_bytes(f.data.try_into().expect("4 bytes"))));
            true
        })
        .expect("not stopped");
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert!(matches!(end.result, Err((0, PcapError::Truncated { .. }))), "{:?}", end.result.err());
    }

    #[test]
    fn stopping_early_ends_the_reader_too() {
        let mut batches = 0;
        let end = read_in_batches(vec![(0, reader(pcap(50 * BATCH_FRAMES as u32, 0, 1, &[])))], |_| {
            batches += 1;
            false
        });
        assert!(end.is_none());
        assert_eq!(batches, 1);
    }

    #[test]
    fn several_files_are_merged_by_timestamp_each_frame_tagged_with_its_file() {
        // Two interfaces' captures interleaved in time: even seconds in one, odd in the other.
        let a = reader(pcap(3, 10, 2, &[]));
        let b = reader(pcap(3, 11, 2, &[]));
        let mut seen = Vec::new();
        let end = read_in_batches(vec![(0, a), (1, b)], |batch| {
            seen.extend(batch.iter().map(|f| (f.ts.nanos() / 1_000_000_000, f.interface >> 16)));
            true
        })
        .expect("not stopped");
        assert!(end.result.is_ok());
        assert_eq!(seen, [(10, 0), (11, 1), (12, 0), (13, 1), (14, 0), (15, 1)]);
    }

    #[test]
    fn a_merged_file_that_fails_stops_the_run_after_what_came_before() {
        let cut = [0u8, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1];
        let a = reader(pcap(2, 10, 10, &cut));
        let b = reader(pcap(5, 11, 1, &[]));
        let mut seen = Vec::new();
        let end = read_in_batches(vec![(0, a), (1, b)], |batch| {
            seen.extend(batch.iter().map(|f| f.ts.nanos() / 1_000_000_000));
            true
        })
        .expect("not stopped");
        assert!(matches!(end.result, Err((0, PcapError::Truncated { .. }))));
        assert_eq!(&seen[..3], [10, 11, 12], "frames before the failure were handed over");
    }
}
