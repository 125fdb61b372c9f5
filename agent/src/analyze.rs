//! `faultline-agent analyze`: capture files through the engine, entries to stdout, a summary to stderr.
//! A file that cannot be read is reported and ends the run with a non-zero exit, but everything found
//! before it is still resolved and printed (SPEC §7).

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};

use faultline_core::engine::frames::FrameSource;
use faultline_core::pcap::{PcapError, PcapReader};
use faultline_core::{Analyzer, Entry};
use faultline_kfl::Query;

use crate::cli::{AnalyzeArgs, OutputFormat};
use crate::file_reader::read_in_batches;
use crate::output::{write_formatted_in_parallel, Sink, Summary};
use crate::shards::engines;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: PcapError },
    #[error("writing output: {0}")]
    Write(#[from] io::Error),
}

pub fn run(args: &AnalyzeArgs) -> ExitCode {
    let query = match args.query.as_deref().map(Query::parse).transpose() {
        Ok(q) => q,
        Err(e) => {
            let text = args.query.as_deref().unwrap_or_default();
            eprintln!("faultline-agent: invalid --query: {e}");
            eprintln!("  {text}");
            eprintln!("  {}^", " ".repeat(e.column.saturating_sub(1)));
            return ExitCode::from(2);
        }
    };
    let format =
        args.output.unwrap_or(if io::stdout().is_terminal() { OutputFormat::Table } else { OutputFormat::Jsonl });
    let mut cfg = args.engine.to_config();
    cfg.record_errors = args.record_errors.is_some();
    if let Some(dir) = &args.record_errors {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("faultline-agent: cannot create {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    let mut engine = engines(cfg, args.threads);
    let recorder = Recorder { dir: args.record_errors.clone() };
    // Entries are filtered, formatted and written on a thread of their own, in batches and in order:
    // formatting costs about a third of the engine's time, and a second core can take it.
    let (tx, rx) = mpsc::sync_channel::<Vec<Entry>>(BATCHES_IN_FLIGHT);
    // Written batches come back to be dropped here: memory freed by the thread that allocated it stays in
    // that thread's cache, where freeing it on the output thread costs more than formatting saves.
    let (done_tx, done_rx) = mpsc::channel::<Vec<Entry>>();
    let ran = std::thread::scope(|scope| {
        let formatters = formatters(format, args.threads);
        // Named, as every thread of the agent is, for `top -H` and profiles.
        let writer = std::thread::Builder::new().name("writer".into()).spawn_scoped(scope, move || {
            let mut stdout = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
            let written = if formatters > 0 {
                match write_formatted_in_parallel(rx, &done_tx, formatters, query, &mut stdout) {
                    Ok((summary, filtered_out)) => (stdout.flush(), summary, filtered_out),
                    Err(e) => (Err(e), Summary::default(), 0),
                }
            } else {
                let mut sink = Sink::new(format, stdout, query);
                let mut summary = Summary::default();
                let res = write_batches(rx, &done_tx, &mut sink, &mut summary).and_then(|()| sink.finish());
                (res, summary, sink.filtered_out())
            };
            crate::thread_cpu::log_this_thread();
            written
        })?;
        let mut out = Output { tx, done: done_rx, batch: Vec::with_capacity(BATCH) };
        let mut skipped = 0;
        let failure = analyze_files(&args.files, engine.as_mut(), &mut out, &mut skipped, &recorder).err();
        // Whatever happened, what was seen is resolved and printed.
        engine.finish(&mut out.batch);
        recorder.attach(engine.as_mut(), &mut out.batch);
        out.flush();
        drop(out);
        crate::thread_cpu::log(if args.threads > 1 { "front" } else { "engine" });
        let written =
            writer.join().unwrap_or_else(|_| (Err(io::Error::other("output thread failed")), Summary::default(), 0));
        Ok::<_, io::Error>((failure, skipped, written))
    });
    let (read_failure, skipped, written) = match ran {
        Ok(ran) => ran,
        Err(e) => {
            eprintln!("faultline-agent: cannot start the output thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (flushed, mut summary, filtered_out) = written;
    if let Err(e) = flushed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("faultline-agent: {}", AnalyzeError::Write(e));
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    summary.skipped_records += skipped;
    summary.print(&engine.stats(), filtered_out, &mut io::stderr().lock());
    match read_failure {
        Some(AnalyzeError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("faultline-agent: {e}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

/// Threads formatting JSON lines beside the writer: none (the writer formats) unless there are engine
/// threads to keep up with — then the writer alone would be the slowest of the undivided threads.
fn formatters(format: OutputFormat, engine_threads: usize) -> usize {
    if format == OutputFormat::Jsonl && engine_threads >= 4 {
        engine_threads / 2
    } else {
        0
    }
}

/// Entries per batch handed to the output thread, and batches that may wait for it.
const BATCH: usize = 1024;
const BATCHES_IN_FLIGHT: usize = 4;

/// The engine's side of the output thread.
struct Output {
    tx: mpsc::SyncSender<Vec<Entry>>,
    done: mpsc::Receiver<Vec<Entry>>,
    batch: Vec<Entry>,
}

impl Output {
    /// Hands the batch over; false when the output thread has stopped (its error is reported there).
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        // Reuse a written batch's vector; its entries are dropped here, on the thread that made them.
        let mut next = self.done.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
        next.clear();
        let batch = std::mem::replace(&mut self.batch, next);
        self.tx.send(batch).is_ok()
    }
}

/// Reads every file as one capture, merged by timestamp. A file that cannot be opened ends the list
/// there (the files before it are analysed); a file that fails while read stops the run.
fn analyze_files(
    paths: &[PathBuf],
    engine: &mut dyn Analyzer,
    out: &mut Output,
    skipped: &mut u64,
    recorder: &Recorder,
) -> Result<(), AnalyzeError> {
    let mut readers = Vec::new();
    let mut open_failure = None;
    for (i, path) in paths.iter().enumerate() {
        let opened = File::open(path)
            .map_err(|source| AnalyzeError::Open { path: path.clone(), source })
            .and_then(|f| PcapReader::new(f).map_err(|source| AnalyzeError::Read { path: path.clone(), source }));
        match opened {
            Ok(r) => readers.push((i, r)),
            Err(e) => {
                open_failure = Some(e);
                break;
            }
        }
    }
    if readers.len() > 1 {
        // Captures of several interfaces: the same packet may be in more than one.
        engine.expect_several_interfaces();
    }
    if !readers.is_empty() {
        let end = read_in_batches(readers, |batch| {
            let frames: Arc<dyn FrameSource> = batch.clone();
            for (i, f) in batch.iter().enumerate() {
                let before = out.batch.len();
                if let Err(e) = engine.handle_shared(&frames, i, f.ts, &mut out.batch) {
                    tracing::debug!(interface = f.interface, error = %e, "frame did not decode");
                }
                if out.batch.len() > before {
                    recorder.attach(engine, &mut out.batch[before..]);
                    if out.batch.len() >= BATCH && !out.flush() {
                        return false;
                    }
                }
            }
            true
        });
        // Stopped: the output thread has stopped, and says why.
        let Some(end) = end else {
            return Err(AnalyzeError::Write(io::ErrorKind::BrokenPipe.into()));
        };
        *skipped += end.skipped;
        if let Err((file, source)) = end.result {
            return Err(AnalyzeError::Read { path: paths[file].clone(), source });
        }
    }
    open_failure.map_or(Ok(()), Err)
}

fn write_batches<W: Write>(
    rx: mpsc::Receiver<Vec<Entry>>,
    done: &mpsc::Sender<Vec<Entry>>,
    sink: &mut Sink<W>,
    summary: &mut Summary,
) -> io::Result<()> {
    for batch in rx {
        for e in &batch {
            if sink.write(e)? {
                summary.count(e);
            }
        }
        // The engine's thread drops it; if that thread has finished, it is dropped here.
        let _ = done.send(batch);
    }
    Ok(())
}

/// Writes the engine's recordings (`--record-errors`) and names them in their entries.
struct Recorder {
    dir: Option<PathBuf>,
}

impl Recorder {
    fn attach(&self, engine: &mut dyn Analyzer, entries: &mut [Entry]) {
        let Some(dir) = &self.dir else { return };
        for (id, pcap) in engine.take_recordings() {
            let path = dir.join(format!("{id}.pcap"));
            match write_private(&path, &pcap) {
                Ok(()) => {
                    if let Some(e) = entries.iter_mut().find(|e| e.id == id) {
                        e.pcap = Some(path.display().to_string());
                    }
                }
                Err(err) => tracing::warn!(path = %path.display(), error = %err, "cannot write recording"),
            }
        }
    }
}

/// Captures can hold secrets: recordings are readable by their owner only.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}
