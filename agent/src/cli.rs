//! The command line. Timeout flags are named after their TapConfig fields (SPEC §7), so a value that
//! works in `spec.timeouts.synTimeoutMs` works as `--syn-timeout-ms`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use faultline_core::dissect::{Dissector, Dissectors};
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
    /// Capture live traffic on this node and report entries to the operator (the DaemonSet mode).
    Run(Box<RunArgs>),
    /// An MCP server on stdin/stdout for an AI assistant, answered by the operator's `/mcp` with your
    /// token: what the dashboard would show you.
    Mcp(McpArgs),
}

#[derive(Args, Debug)]
pub struct McpArgs {
    /// The operator's MCP endpoint, e.g. https://127.0.0.1:8080/mcp (a port-forward of its Service).
    #[arg(long)]
    pub url: String,
    /// A bearer token (`kubectl create token …`); its ErrorView access decides what the assistant sees.
    #[arg(long, env = "FAULTLINE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA that signed the operator's certificate (the Secret `faultline-operator-tls`'s `ca.crt`).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
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

    /// Write a pcap of each error entry's flow (its packets up to and including the error) into this
    /// directory, and name the file in the entry's `pcap` field.
    #[arg(long, value_name = "DIR")]
    pub record_errors: Option<PathBuf>,

    /// Print only the entries that match this KFL query, e.g.
    /// 'response.status > 400 or error or icmp or tcp'.
    #[arg(long, short = 'q', value_name = "KFL")]
    pub query: Option<String>,

    /// Engine threads, flows sharded among them by hash (the entries are the same whatever the number);
    /// defaults to the cores available beyond the two that read the file and write the entries (at least
    /// one: on two cores, shards only add work — see the README's figures).
    #[arg(long, value_name = "N", default_value_t = available_cores(usize::MAX).saturating_sub(2).max(1), value_parser = parse_threads)]
    pub threads: usize,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// A number of engine threads: 1 to 64.
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=64) => Ok(n),
        _ => Err(format!("{s:?} is not a number of threads from 1 to 64")),
    }
}

/// The cores this process may use (its cgroup's CPU limit included), at most `cap`.
pub fn available_cores(cap: usize) -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(cap)
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

    /// A DNS query not answered within this many ms is a half connection; copies of a query within it
    /// are one exchange.
    #[arg(long, value_name = "MS", default_value_t = EngineConfig::default().dns_timeout_ms)]
    pub dns_timeout_ms: u64,

    /// A TLS ClientHello not answered by a ServerHello within this many ms is a failed handshake.
    #[arg(long, value_name = "MS", default_value_t = EngineConfig::default().tls_handshake_timeout_ms)]
    pub tls_handshake_timeout_ms: u64,

    /// Application protocols to dissect (repeatable): http, dns, tls, http2. All of them when none is
    /// given; a protocol left out is treated as unidentified traffic.
    #[arg(long = "dissector", value_name = "NAME")]
    pub dissectors: Vec<Dissector>,

    /// Emit an entry for every stream timeout, not only count it.
    #[arg(long)]
    pub show_stream_timeouts: bool,

    /// Report ICMP echo and neighbour discovery messages too.
    #[arg(long)]
    pub show_icmp_informational: bool,

    /// The most connections tracked at once; beyond it the least recently seen are evicted and counted.
    #[arg(long, value_name = "N", default_value_t = EngineConfig::default().max_flows)]
    pub max_flows: usize,

    #[arg(skip)]
    pub id_prefix: String,
}

impl EngineArgs {
    /// The dissectors named, all when none is.
    fn dissectors(&self) -> Dissectors {
        if self.dissectors.is_empty() {
            Dissectors::ALL
        } else {
            self.dissectors.iter().copied().collect()
        }
    }

    pub fn to_config(&self) -> EngineConfig {
        EngineConfig {
            syn_timeout_ms: self.syn_timeout_ms,
            close_timeout_ms: self.close_timeout_ms,
            pair_timeout_ms: self.pair_timeout_ms,
            tcp_stream_channel_timeout_ms: self.tcp_stream_channel_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            dns_timeout_ms: self.dns_timeout_ms,
            dissectors: self.dissectors(),
            tls_handshake_timeout_ms: self.tls_handshake_timeout_ms,
            show_stream_timeouts: self.show_stream_timeouts,
            show_icmp_informational: self.show_icmp_informational,
            max_flows: self.max_flows.max(1),
            id_prefix: self.id_prefix.clone(),
            ..EngineConfig::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// How to capture: afpacket, libpcap, or pfring (falls back to afpacket where it cannot be used).
    #[arg(long, value_enum, default_value = "afpacket")]
    pub capture_backend: crate::capture::Backend,

    /// Interfaces to capture on (repeatable); every interface that is up, except loopback, when none.
    #[arg(long = "interface", value_name = "NAME")]
    pub interfaces: Vec<String>,

    /// A BPF filter (tcpdump syntax) applied in the kernel.
    #[arg(long, value_name = "FILTER")]
    pub bpf_filter: Option<String>,

    /// The loss ratio the operator alerts on; reported, not used by the agent itself.
    #[arg(long, default_value_t = 0.01)]
    pub packet_loss_threshold: f64,

    /// This node's name, stamped on every entry.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// Also export every entry found as an OTLP log record to this endpoint, from this agent (a
    /// TapConfig's `export.otlp` with `sender: agents`): `http://host:4317` or `https://…`.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,

    /// `grpc` or `http/protobuf`.
    #[arg(long, default_value = "grpc", value_parser = ["grpc", "http/protobuf"])]
    pub otlp_protocol: String,

    /// A directory whose every file is a header sent with each OTLP request (a mounted Secret).
    #[arg(long)]
    pub otlp_headers_dir: Option<std::path::PathBuf>,

    /// PEM CA bundle to trust for an https OTLP endpoint.
    #[arg(long)]
    pub otlp_ca_file: Option<std::path::PathBuf>,

    /// The name the collector's certificate must carry, when not the endpoint's host.
    #[arg(long)]
    pub otlp_server_name: Option<String>,

    /// Entries held for the collector at most; the rest are dropped and counted.
    #[arg(long, default_value_t = 10_000)]
    pub otlp_queue_size: usize,

    /// The TapConfig this agent runs for: the exported records' resource and the export metrics' label.
    #[arg(long, env = "FAULTLINE_TAPCONFIG", default_value = "")]
    pub tapconfig: String,

    /// Where the operator listens, e.g. http://faultline-operator.faultline-system.svc:8080.
    #[arg(long, env = "FAULTLINE_OPERATOR_URL")]
    pub operator_url: Option<String>,

    /// PEM certificates that sign the operator's serving certificate, for an https --operator-url (the
    /// operator's DaemonSet mounts them from its TLS Secret). Without it, https uses the public web roots.
    #[arg(long, env = "FAULTLINE_OPERATOR_CA_FILE")]
    pub operator_ca_file: Option<PathBuf>,

    /// The ServiceAccount token presented to the operator.
    #[arg(long, env = "FAULTLINE_TOKEN_FILE", default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token")]
    pub token_file: PathBuf,

    /// Address of /healthz and /metrics.
    #[arg(long, env = "FAULTLINE_AGENT_HTTP_ADDR", default_value = "0.0.0.0:9102")]
    pub http_addr: std::net::SocketAddr,

    /// Frames that may wait for the engine (in batches of 256); beyond, capture waits for room and the
    /// kernel's buffer holds what arrives meanwhile (dropping, counted, only once it is full too).
    #[arg(long, default_value_t = 65_536)]
    pub queue_size: usize,

    /// Engine threads, flows sharded among them by hash; defaults to the CPU limit of the container (the
    /// cores available), at most 8. TapConfig `spec.agent.engineThreads`.
    #[arg(long, env = "FAULTLINE_ENGINE_THREADS", value_name = "N", default_value_t = available_cores(8), value_parser = parse_threads)]
    pub engine_threads: usize,

    /// Memory for entries waiting to be sent; beyond, the oldest are dropped and counted.
    #[arg(long, default_value_t = 64 << 20)]
    pub buffer_bytes: usize,

    /// How often a batch is sent.
    #[arg(long, default_value_t = 1000)]
    pub report_interval_ms: u64,

    /// Recording: none, errors (each error entry's flow goes to the operator as a pcap), or continuous
    /// (rotating pcap files in --record-dir, the oldest deleted beyond --record-max-bytes).
    #[arg(long, value_enum, default_value = "none")]
    pub recorder: RecorderMode,

    /// Where continuous recording writes its files.
    #[arg(long, default_value = "/var/lib/faultline/pcaps")]
    pub record_dir: PathBuf,

    /// Continuous recording keeps at most this many bytes of files.
    #[arg(long, default_value_t = 256 << 20)]
    pub record_max_bytes: u64,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Unique per process; prefixes entry ids and names this run to the operator.
    #[arg(skip = new_run_id())]
    pub run_id: String,
}

fn new_run_id() -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let short: String = uuid.chars().filter(char::is_ascii_hexdigit).take(12).collect();
    if short.is_empty() {
        format!("{:x}", std::process::id())
    } else {
        short
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RecorderMode {
    None,
    Errors,
    Continuous,
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_crds::{agent_args, TapConfigSpec};

    /// What the agent makes of the arguments the operator gives it for `spec`.
    fn engine_for(spec: &TapConfigSpec) -> EngineConfig {
        let args = std::iter::once("faultline-agent".to_owned()).chain(agent_args(spec));
        match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Run(run)) => run.engine.to_config(),
            other => panic!("the operator's arguments do not parse: {other:?}"),
        }
    }

    /// An export the agents send: the operator's flags parse, and say what the TapConfig says.
    #[test]
    fn the_operators_export_flags_parse() {
        let export = serde_json::from_value(serde_json::json!({"otlp": {
            "endpoint": "http://otel:4317", "sender": "agents", "headers": {"secretName": "h"}, "queueSize": 7}}))
        .expect("an export spec");
        let spec = TapConfigSpec { export, ..TapConfigSpec::default() };
        let args = std::iter::once("faultline-agent".to_owned()).chain(agent_args(&spec));
        let Ok(Command::Run(run)) = Cli::try_parse_from(args).map(|c| c.command) else { panic!("does not parse") };
        assert_eq!(run.otlp_endpoint.as_deref(), Some("http://otel:4317"));
        assert_eq!((run.otlp_protocol.as_str(), run.otlp_queue_size), ("grpc", 7));
        assert_eq!(run.otlp_headers_dir.as_deref(), Some(std::path::Path::new("/etc/faultline/otlp-headers")));
        assert_eq!(run.otlp_ca_file, None);
    }

    /// The CRD's defaults, the operator's arguments and the engine's defaults are one set of settings.
    #[test]
    fn a_default_tapconfig_runs_the_default_engine() {
        assert_eq!(engine_for(&TapConfigSpec::default()), EngineConfig::default());
    }

    /// Every timeout and dissector a TapConfig sets reaches the engine, under the name the SPEC gives it.
    #[test]
    fn every_setting_the_operator_passes_reaches_the_engine() {
        let mut spec = TapConfigSpec::default();
        for (i, (t, _)) in spec.timeouts.each().into_iter().enumerate() {
            assert!(spec.timeouts.set(t.field, 1_000 + 7 * i as i64), "{}", t.field);
        }
        spec.dissectors = vec![Dissector::Dns, Dissector::Http2];
        spec.show_stream_timeouts = true;
        let cfg = engine_for(&spec);
        let t = &spec.timeouts;
        let ms = |v: i64| u64::try_from(v).expect("positive");
        assert_eq!(
            [
                cfg.syn_timeout_ms,
                cfg.close_timeout_ms,
                cfg.pair_timeout_ms,
                cfg.tcp_stream_channel_timeout_ms,
                cfg.idle_timeout_ms,
                cfg.dns_timeout_ms,
                cfg.tls_handshake_timeout_ms
            ],
            [
                ms(t.syn_timeout_ms),
                ms(t.close_timeout_ms),
                ms(t.pair_timeout_ms),
                ms(t.tcp_stream_channel_timeout_ms),
                ms(t.idle_timeout_ms),
                ms(t.dns_timeout_ms),
                ms(t.tls_handshake_timeout_ms)
            ]
        );
        assert_eq!(cfg.dissectors, [Dissector::Dns, Dissector::Http2].into_iter().collect::<Dissectors>());
        assert!(cfg.show_stream_timeouts);
    }
}
