//! Where entries go: JSON lines or a table on stdout, and a summary for people on stderr.

mod parallel;
mod table;

pub use parallel::write_formatted_in_parallel;

use std::collections::BTreeMap;
use std::io::{self, Write};

use faultline_core::{Entry, Stats};
use faultline_kfl::Query;

use crate::cli::OutputFormat;

pub struct Sink<W: Write> {
    format: OutputFormat,
    out: W,
    query: Option<Query>,
    header_written: bool,
    filtered_out: u64,
}

impl<W: Write> Sink<W> {
    pub fn new(format: OutputFormat, out: W, query: Option<Query>) -> Self {
        Sink { format, out, query, header_written: false, filtered_out: 0 }
    }

    /// Writes the entry if it matches the query; returns whether it did.
    pub fn write(&mut self, e: &Entry) -> io::Result<bool> {
        if self.query.as_ref().is_some_and(|q| !q.matches(e)) {
            self.filtered_out += 1;
            return Ok(false);
        }
        match self.format {
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, e)?;
                self.out.write_all(b"\n")?;
            }
            OutputFormat::Table => {
                if !self.header_written {
                    self.header_written = true;
                    writeln!(self.out, "{}", table::header())?;
                }
                writeln!(self.out, "{}", table::row(e))?;
            }
        }
        Ok(true)
    }

    /// Entries the query left out.
    pub fn filtered_out(&self) -> u64 {
        self.filtered_out
    }

    /// Where the entries are written (a buffer, for the formatting threads to hand over).
    pub fn out_mut(&mut self) -> &mut W {
        &mut self.out
    }

    pub fn finish(&mut self) -> io::Result<()> {
        if self.format == OutputFormat::Table && !self.header_written {
            writeln!(self.out, "No entries: nothing to report.")?;
        }
        self.out.flush()
    }
}

/// Counts for the closing summary.
#[derive(Default)]
pub struct Summary {
    by_kind: BTreeMap<String, u64>,
    total: u64,
    pub skipped_records: u64,
}

impl Summary {
    pub fn count(&mut self, e: &Entry) {
        self.total += 1;
        *self.by_kind.entry(table::kind(e)).or_default() += 1;
    }

    /// Adds what another summary counted.
    pub fn merge(&mut self, other: Summary) {
        self.total += other.total;
        self.skipped_records += other.skipped_records;
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
    }

    pub fn print(&self, stats: &Stats, filtered_out: u64, w: &mut impl Write) {
        let kinds: Vec<String> = self.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let not_matched =
            if filtered_out > 0 { format!(" ({filtered_out} more did not match the query)") } else { String::new() };
        let sep = if kinds.is_empty() { "" } else { ": " };
        let mut lines = vec![format!("{} entries{not_matched}{sep}{}", self.total, kinds.join(", "))];
        lines.push(format!(
            "{} packets ({} undecodable, {} not IP, {} fragments, {} other protocols{}), {} connections, \
             {} evicted, {} missed bytes, {} stream timeouts",
            stats.packets,
            stats.decode_errors,
            stats.not_ip,
            stats.fragments,
            stats.other_protocols,
            if self.skipped_records > 0 {
                format!(", {} on unsupported interfaces", self.skipped_records)
            } else {
                String::new()
            },
            stats.flows_created,
            stats.flows_evicted,
            stats.missed_bytes,
            stats.streams_timed_out,
        ));
        // What real traffic costs and was not reported as an error (SPEC §3.1: loss is not an error).
        lines.push(format!(
            "{} duplicate packets, {} NAT copies ({} tuples tracked apart), {} out-of-window RSTs, {} challenge \
             ACKs, {} closed by reset, {} FINs inferred, {} streams over the held-bytes budget ({} dissectors \
             stopped)",
            stats.duplicate_packets,
            stats.nat_copies,
            stats.nat_tuples_apart,
            stats.rst_out_of_window,
            stats.challenge_acks,
            stats.closed_by_reset,
            stats.fins_inferred,
            stats.reassembly_over_budget,
            stats.dissector_over_budget,
        ));
        // Each protocol's own counters, in its own words.
        lines.extend(faultline_core::dissect::REGISTRY.iter().map(|r| (r.summary)(stats)));
        for l in lines {
            // The summary is a courtesy: a closed stderr must not turn into a failure.
            let _ = writeln!(w, "{l}");
        }
    }
}
