//! `faultline-agent`: the node agent and the offline analyzer. This file only parses the command line and
//! dispatches; each command lives in its own module.

mod analyze;
mod cli;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli.command {
        cli::Command::Analyze(args) => analyze::run(&args),
    }
}
