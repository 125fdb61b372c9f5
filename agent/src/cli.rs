//! The command line. Timeout flags are named after their TapConfig fields (SPEC §7), so a value that
//! works in `spec.timeouts.synTimeoutMs` works as `--syn-timeout-ms`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use faultline_core::EngineConfig;

#[derive(Parser, Debug)]
#[command(name = "faultline-agent", version, about = "Finds network errors in packets")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Analyse capture files (pcap or pcapng) and print the entries found.
    ///
    /// Files are read in the order given, as one continuous capture (rotated files of one capture can be
    /// passed together). At the end every pending state is resolved as if its timer expired.
    Analyze(AnalyzeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON entry per line (SPEC §2), for machines.
    Jsonl,
    /// An aligned table, for people.
    Table,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Capture files: pcap or pcapng; Ethernet, 802.1Q/QinQ, Linux cooked v1/v2, raw IP or loopback.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format; defaults to `table` on a terminal and `jsonl` otherwise.
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<OutputFormat>,

    /// Print only the entries that match this KFL query, e.g.
    /// 'response.status > 400 or error or icmp or tcp'.
    #[arg(long, short = 'q', value_name = "KFL")]
    pub query: Option<String>,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The engine's settings; defaults are TapConfig's.
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// A SYN not answered within this many ms is `SynSent` with reason `timeout`.
    #[arg(long, value_name = "MS", default_value_t = EngineConfig::default().syn_timeout_ms)]
    pub syn_timeout_ms: u64,

    /// How long a peer may stay silent after the other side's FIN (CloseWait), or a last FIN stay
    /// unacknowledged (LastAck), in ms.
    #[arg(long, value_name = "MS", default_value_t = EngineConfig::default().close_timeout_ms)]
    pub close_timeout_ms: u64,

    /// How long a request waits for its response before it is a half connection, in ms.
    #[arg(long, value_name = "MS", default_value_t = EngineConfig::default().pair_timeout_ms)]
    pub pair_timeout_ms: u64,

    /// How long a stream may carry payload without its protocol being identified, in ms.
    #[arg(long, value_name = "MS", default_value_t = EngineConfig::default().tcp_stream_channel_timeout_ms)]
    pub tcp_stream_channel_timeout_ms: u64,

    /// A connection with no packets for this long is forgotten (not an error), in ms.
    #[arg(long, value_name = "MS", default_value_t = EngineConfig::default().idle_timeout_ms)]
    pub idle_timeout_ms: u64,

    /// Emit an entry for every stream timeout, not only count it.
    #[arg(long)]
    pub show_stream_timeouts: bool,

    /// Report ICMP echo and neighbour discovery messages too.
    #[arg(long)]
    pub show_icmp_informational: bool,

    /// The most connections tracked at once; beyond it the least recently seen are evicted and counted.
    #[arg(long, value_name = "N", default_value_t = EngineConfig::default().max_flows)]
    pub max_flows: usize,
}

impl EngineArgs {
    pub fn to_config(&self) -> EngineConfig {
        EngineConfig {
            syn_timeout_ms: self.syn_timeout_ms,
            close_timeout_ms: self.close_timeout_ms,
            pair_timeout_ms: self.pair_timeout_ms,
            tcp_stream_channel_timeout_ms: self.tcp_stream_channel_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            show_stream_timeouts: self.show_stream_timeouts,
            show_icmp_informational: self.show_icmp_informational,
            max_flows: self.max_flows.max(1),
            ..EngineConfig::default()
        }
    }
}
