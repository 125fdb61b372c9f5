//! `faultline-agent analyze`: capture files through the engine, entries to stdout, a summary to stderr.
//! A file that cannot be read is reported and ends the run with a non-zero exit, but everything found
//! before it is still resolved and printed (SPEC §7).

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use faultline_core::pcap::{PcapError, PcapReader};
use faultline_core::{Engine, Entry};
use faultline_kfl::Query;

use crate::cli::{AnalyzeArgs, OutputFormat};
use crate::output::{Sink, Summary};

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
    let stdout = io::stdout().lock();
    let mut sink = Sink::new(format, io::BufWriter::with_capacity(1 << 20, stdout), query);
    let mut cfg = args.engine.to_config();
    cfg.record_errors = args.record_errors.is_some();
    if let Some(dir) = &args.record_errors {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("faultline-agent: cannot create {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    let mut engine = Engine::new(cfg);
    let recorder = Recorder { dir: args.record_errors.clone() };
    let mut summary = Summary::default();
    let mut failure = None;
    let mut entries = Vec::new();
    for path in &args.files {
        let res = analyze_file(path, &mut engine, &mut entries, &mut sink, &mut summary, &recorder);
        if let Err(e) = res {
            failure = Some(e);
            break;
        }
    }
    // Whatever happened, what was seen is resolved and printed.
    engine.finish(&mut entries);
    recorder.attach(&mut engine, &mut entries);
    let flushed = emit(&mut entries, &mut sink, &mut summary).and_then(|()| sink.finish());
    if let Err(e) = flushed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("faultline-agent: {}", AnalyzeError::Write(e));
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    summary.print(engine.stats(), sink.filtered_out(), &mut io::stderr().lock());
    match failure {
        Some(AnalyzeError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Some(e) => {
            eprintln!("faultline-agent: {e}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

fn analyze_file<W: Write>(
    path: &Path,
    engine: &mut Engine,
    entries: &mut Vec<Entry>,
    sink: &mut Sink<W>,
    summary: &mut Summary,
    recorder: &Recorder,
) -> Result<(), AnalyzeError> {
    let file = File::open(path).map_err(|source| AnalyzeError::Open { path: path.to_owned(), source })?;
    let read_err = |source| AnalyzeError::Read { path: path.to_owned(), source };
    // The reader buffers (in large chunks) itself.
    let mut reader = PcapReader::new(file).map_err(read_err)?;
    loop {
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                summary.skipped_records += reader.skipped_records();
                return Err(read_err(e));
            }
        };
        if let Err(e) = engine.handle_frame(record.link_type, record.data, record.ts, entries) {
            tracing::debug!(file = %path.display(), error = %e, "frame did not decode");
        }
        if !entries.is_empty() {
            recorder.attach(engine, entries);
            emit(entries, sink, summary)?;
        }
    }
    summary.skipped_records += reader.skipped_records();
    Ok(())
}

fn emit<W: Write>(entries: &mut Vec<Entry>, sink: &mut Sink<W>, summary: &mut Summary) -> io::Result<()> {
    for e in entries.drain(..) {
        if sink.write(&e)? {
            summary.count(&e);
        }
    }
    Ok(())
}

/// Writes the engine's recordings (`--record-errors`) and names them in their entries.
struct Recorder {
    dir: Option<PathBuf>,
}

impl Recorder {
    fn attach(&self, engine: &mut Engine, entries: &mut [Entry]) {
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
