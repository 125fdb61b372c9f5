//! JSON lines formatted on several threads and written in order by one. With many engine threads the
//! single writer became as large a serial part as the front (on the bench capture: writer 109 ms, front
//! 118 ms of CPU): batches are filtered, counted and formatted by `formatters` threads in any order, and
//! written in the order the engine handed them over.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use faultline_core::Entry;
use faultline_kfl::Query;

use super::{Sink, Summary};
use crate::cli::OutputFormat;

/// One batch, formatted: its bytes, what it counted, and the entries (back to the engine's thread).
struct Formatted {
    bytes: Vec<u8>,
    summary: Summary,
    filtered_out: u64,
    batch: Vec<Entry>,
}

/// Writes every batch from `rx` to `out` as JSON lines, in order, formatted on `formatters` threads (at
/// least one); written batches go to `done`. Returns the summary and the entries the query left out;
/// on a write error, stops (the formatters and the engine see their channels close).
pub fn write_formatted_in_parallel<W: Write>(
    rx: Receiver<Vec<Entry>>,
    done: &Sender<Vec<Entry>>,
    formatters: usize,
    query: Option<Query>,
    out: &mut W,
) -> io::Result<(Summary, u64)> {
    let formatters = formatters.max(1);
    // Batches out for formatting at most: enough to keep every formatter busy while one is written.
    let in_flight_max = 2 * formatters;
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<Entry>)>(in_flight_max);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (formatted_tx, formatted) = mpsc::channel::<(u64, Formatted)>();
    std::thread::scope(|scope| {
        for k in 0..formatters {
            let (work_rx, formatted_tx, query) = (Arc::clone(&work_rx), formatted_tx.clone(), query.clone());
            std::thread::Builder::new()
                .name(format!("format-{k}"))
                .spawn_scoped(scope, move || format_batches(&work_rx, &formatted_tx, query))?;
        }
        // Only the formatters hold these now: if they all stop, sending and receiving end.
        drop((formatted_tx, work_rx));
        let mut writing = InOrder { next: 0, waiting: BTreeMap::new(), summary: Summary::default(), filtered_out: 0 };
        let mut sent = 0u64;
        for batch in rx {
            if work_tx.send((sent, batch)).is_err() {
                break;
            }
            sent += 1;
            // Take what is formatted; wait only when as many batches as allowed are out.
            while let Ok((seq, f)) = formatted.try_recv() {
                writing.write(seq, f, out, done)?;
            }
            while sent - writing.next >= in_flight_max as u64 {
                let Ok((seq, f)) = formatted.recv() else { break };
                writing.write(seq, f, out, done)?;
            }
        }
        drop(work_tx);
        for (seq, f) in formatted.iter() {
            writing.write(seq, f, out, done)?;
        }
        if writing.next != sent {
            // A formatter failed: what followed its batch was not written, and must not pass for all.
            return Err(io::Error::other("a formatting thread failed; the output is incomplete"));
        }
        Ok((writing.summary, writing.filtered_out))
    })
}

/// Formatted batches held until those before them are written.
struct InOrder {
    next: u64,
    waiting: BTreeMap<u64, Formatted>,
    summary: Summary,
    filtered_out: u64,
}

impl InOrder {
    fn write<W: Write>(&mut self, seq: u64, f: Formatted, out: &mut W, done: &Sender<Vec<Entry>>) -> io::Result<()> {
        self.waiting.insert(seq, f);
        while let Some(f) = self.waiting.remove(&self.next) {
            out.write_all(&f.bytes)?;
            self.summary.merge(f.summary);
            self.filtered_out += f.filtered_out;
            // The engine's thread drops it; if that thread has finished, it is dropped here.
            let _ = done.send(f.batch);
            self.next += 1;
        }
        Ok(())
    }
}

fn format_batches(
    work: &Mutex<Receiver<(u64, Vec<Entry>)>>,
    formatted: &Sender<(u64, Formatted)>,
    query: Option<Query>,
) {
    let mut sink = Sink::new(OutputFormat::Jsonl, Vec::new(), query);
    loop {
        // The lock is held only to take the next batch.
        let next = match work.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, batch)) = next else { break };
        let (mut summary, before) = (Summary::default(), sink.filtered_out());
        for e in &batch {
            // Writing to a Vec cannot fail.
            if sink.write(e).unwrap_or(false) {
                summary.count(e);
            }
        }
        let bytes = std::mem::take(sink.out_mut());
        let f = Formatted { bytes, summary, filtered_out: sink.filtered_out() - before, batch };
        if formatted.send((seq, f)).is_err() {
            break;
        }
    }
    crate::thread_cpu::log_this_thread();
}

#[cfg(test)]
mod tests {
    use faultline_core::entry::{Endpoint, EntryError, ErrorType, Protocol};
    use faultline_core::Timestamp;

    use super::*;

    /// Batches of entries of varying sizes, every third an error.
    fn batches() -> Vec<Vec<Entry>> {
        let ip = "10.0.0.1".parse().expect("ip");
        let mut n = 0u16;
        (0..40)
            .map(|b| {
                (0..(b * 7) % 23)
                    .map(|_| {
                        n += 1;
                        let mut e = Entry::new(
                            Protocol::Tcp,
                            Timestamp::from_millis(1_800_000_000_000 + u64::from(n)),
                            Endpoint::new(ip, Some(n)),
                            Endpoint::new(ip, Some(80)),
                        );
                        e.id = n.to_string();
                        if n % 3 == 0 {
                            e.error = Some(EntryError { kind: ErrorType::Connection, msg: "SynSent".into() });
                        }
                        e
                    })
                    .collect()
            })
            .collect()
    }

    /// What the single writer writes, counts and leaves out.
    fn one_writer(query: Option<Query>) -> (Vec<u8>, u64, u64) {
        let (mut sink, mut summary) = (Sink::new(OutputFormat::Jsonl, Vec::new(), query), Summary::default());
        for e in batches().iter().flatten() {
            if sink.write(e).expect("to a Vec") {
                summary.count(e);
            }
        }
        let filtered = sink.filtered_out();
        (std::mem::take(sink.out_mut()), summary.total, filtered)
    }

    #[test]
    fn formatted_on_several_threads_and_written_in_order_as_one_writer_writes() {
        for query in [None, Some(Query::parse("error").expect("query"))] {
            let want = one_writer(query.clone());
            for formatters in [1, 3] {
                let (tx, rx) = mpsc::sync_channel(4);
                let (done_tx, done_rx) = mpsc::channel();
                let feeder = std::thread::spawn(move || {
                    for b in batches() {
                        tx.send(b).expect("writer alive");
                    }
                });
                let mut out = Vec::new();
                let (summary, filtered) =
                    write_formatted_in_parallel(rx, &done_tx, formatters, query.clone(), &mut out).expect("written");
                feeder.join().expect("feeder");
                assert_eq!((out, summary.total, filtered), want, "{formatters} formatters, query {query:?}");
                assert_eq!(done_rx.try_iter().count(), 40, "every batch back to the engine's thread");
            }
        }
    }
}
