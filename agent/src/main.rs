//! `faultline-agent`: the node agent and the offline analyzer. This file only parses the command line and
//! dispatches; each command lives in its own module.

mod analyze;
mod capture;
mod cli;
mod file_reader;
mod frames;
mod mcp;
mod output;
mod run;
mod shards;
mod thread_cpu;

/// mimalloc: the engine allocates and frees small objects (entries, header maps) at packet rate, where
/// glibc's allocator cost a fifth of `analyze`'s time (measured with perf on `make bench`'s capture).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log(&cli.command))),
        )
        .init();
    match cli.command {
        cli::Command::Analyze(args) => analyze::run(&args),
        cli::Command::Run(args) => {
            let mut args = *args;
            args.engine.id_prefix = format!("{}-", args.run_id);
            run::run(&args)
        }
        cli::Command::Mcp(args) => mcp::run(&args),
    }
}

/// `analyze` is a command-line tool (quiet); `run` is a service (informative).
fn default_log(c: &cli::Command) -> &'static str {
    match c {
        cli::Command::Analyze(_) => "warn",
        cli::Command::Run(_) => "info",
        // stdout is the protocol; only warnings go to stderr.
        cli::Command::Mcp(_) => "warn",
    }
}
