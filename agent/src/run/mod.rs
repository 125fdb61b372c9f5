//! `faultline-agent run`: the DaemonSet mode. Capture threads feed a bounded queue; one engine thread
//! turns frames into entries on the packets' own clock (and a wall-clock tick, so timeouts fire while the
//! network is quiet); entries are handed to the reporter, which sends them to the operator in batches and
//! keeps what it could not send within a memory budget. Every drop on the way is counted and reported.
//!
//! Agents do not talk to the API server: the operator names entries' pods and Services from one watch of
//! its own (an agent per node watching every pod would cost the API server nodes × pods).

mod counters;
mod engine_loop;
mod export;
mod node_addresses;
mod outbox;
mod reorder;
pub(crate) mod report;
mod rotate;
mod server;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::capture;
use crate::cli::RunArgs;
pub use counters::Counters;
pub use outbox::Outbox;

pub fn run(args: &RunArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run_async(args: &RunArgs) -> Result<(), String> {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let outbox = Arc::new(Outbox::new(args.buffer_bytes));
    // Before capturing: a bad CA file is a configuration error to report at once.
    let reporter = report::Reporter::new(args, outbox.clone(), counters.clone())?;
    let export = export::AgentExport::start(args)?.map(Arc::new);
    let (captures, note) =
        capture::open(args.capture_backend, &args.interfaces, args.bpf_filter.as_deref(), args.engine_threads)
            .map_err(|e| format!("cannot capture: {e}"))?;
    if let Some(note) = &note {
        tracing::warn!("{note}");
    }
    counters.set_backend_note(note);
    tracing::info!(interfaces = ?captures.iter().map(|(_, c)| c.interface().to_owned()).collect::<Vec<_>>(),
        engine_threads = args.engine_threads, "capturing");
    counters.capture_sockets.store(captures.len() as u64, std::sync::atomic::Ordering::Relaxed);
    counters.engine_threads.store(args.engine_threads as u64, std::sync::atomic::Ordering::Relaxed);

    let queued_batches = args.queue_size.div_ceil(crate::frames::BATCH_FRAMES).max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<crate::frames::FrameBatch>(queued_batches);
    // Room for every batch that can be queued, filling or being read: none is ever allocated twice.
    let pool = Arc::new(crate::frames::BatchPool::new(queued_batches + 2 * (captures.len() + 1)));

    // One capture of every interface, or one per named interface: copies of a packet may come from several.
    let several_interfaces = args.interfaces.len() != 1;
    let capture_threads = captures.len();
    let mut threads = Vec::new();
    for (interface, cap) in captures {
        let (tx, pool, stop, counters) = (tx.clone(), pool.clone(), stop.clone(), counters.clone());
        threads
            .push(std::thread::spawn(move || engine_loop::capture_loop(cap, interface, &tx, &pool, &stop, &counters)));
    }
    drop(tx);
    let rotator = match args.recorder {
        crate::cli::RecorderMode::Continuous => Some(
            rotate::Rotator::new(args.record_dir.clone(), args.record_max_bytes)
                .map_err(|e| format!("cannot record into {}: {e}", args.record_dir.display()))?,
        ),
        _ => None,
    };
    let engine = {
        let (cfg, outbox, counters, stop) = (args.engine.to_config(), outbox.clone(), counters.clone(), stop.clone());
        let (pool, threads, export) = (pool.clone(), args.engine_threads, export.clone());
        let cfg = faultline_core::EngineConfig {
            node: args.node_name.clone(),
            record_errors: args.recorder == crate::cli::RecorderMode::Errors,
            ..cfg
        };
        std::thread::spawn(move || {
            engine_loop::engine_loop(
                cfg,
                threads,
                several_interfaces,
                &rx,
                &pool,
                engine_loop::Outputs { outbox: &outbox, export: export.as_deref() },
                &counters,
                &stop,
                rotator,
                capture_threads,
            )
        })
    };
    let report_task = tokio::task::spawn_blocking({
        let stop = stop.clone();
        move || reporter.run(&stop)
    });
    let server =
        tokio::spawn(server::serve(args.http_addr, counters.clone(), outbox.clone(), export.clone(), stop.clone()));

    wait_for_signal().await;
    tracing::info!("stopping: flushing what is buffered");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = engine.join();
    // The reporter makes a last attempt to send what is left before it returns.
    let _ = tokio::time::timeout(Duration::from_secs(10), report_task).await;
    server.abort();
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
