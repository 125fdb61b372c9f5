//! TapConfig (cluster-scoped, short name `tap`): one per agent DaemonSet. Every timeout, the capture
//! backend, interfaces, filter and dissectors are passed to the agents; a change rolls the DaemonSet.

use std::collections::BTreeMap;

pub use faultline_model::dissector::Dissector;
use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Several printer columns share a type, which clippy mistakes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "faultline.dev",
    version = "v1alpha1",
    kind = "TapConfig",
    shortname = "tap",
    status = "TapConfigStatus",
    derive = "PartialEq",
    doc = "Where and how Faultline captures: one agent DaemonSet per TapConfig.",
    printcolumn(name = "Backend", type_ = "string", json_path = ".spec.captureBackend"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredAgents"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyAgents"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TapConfigSpec {
    /// How agents capture packets: `afpacket` (default), `libpcap`, or `pfring` where its kernel module is
    /// loaded (agents fall back to `afpacket` and say so in status where it is not).
    #[serde(default)]
    pub capture_backend: CaptureBackend,

    /// Detection timeouts, in milliseconds of capture time.
    #[serde(default)]
    pub timeouts: Timeouts,

    /// Drop ratio (kernel plus agent drops over packets received) above which the `PacketLoss` condition
    /// is set, 0 to 1.
    #[serde(default = "default_packet_loss_threshold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub packet_loss_threshold: f64,

    /// Interfaces to capture on; empty means every interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(regex(pattern = r"^[A-Za-z0-9_.:@-]{1,15}$")))]
    pub interfaces: Vec<String>,

    /// A BPF filter (tcpdump syntax) applied in the kernel before packets reach the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub bpf_filter: Option<String>,

    /// Which nodes run an agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations for the agent pods (to capture on tainted nodes too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Which namespaces' pods to report on; all when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchSpec>,

    /// Application protocols to dissect.
    #[serde(default = "default_dissectors")]
    // Room for every dissector named once (there are 9), and a few more to come.
    #[schemars(length(max = 16))]
    pub dissectors: Vec<Dissector>,

    /// pcap recording for Wireshark (SPEC §6). Off by default: captures can hold secrets.
    #[serde(default)]
    pub recorder: RecorderSpec,

    /// Report streams whose protocol was not identified in time as entries, not only as a count.
    #[serde(default)]
    pub show_stream_timeouts: bool,

    /// The agent pods: image and resources.
    #[serde(default)]
    pub agent: AgentSpec,

    /// Where the operator also sends every entry it accepts from this TapConfig's agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportSpec>,
}

impl TapConfigSpec {
    /// The OTLP export the agents send themselves (`sender: agents`), if any: the agents' flags and the
    /// Secrets their pods mount follow from it.
    pub fn agents_export(&self) -> Option<&OtlpExport> {
        self.export.as_ref()?.otlp.as_ref().filter(|o| o.sender == ExportSender::Agents)
    }
}

/// Entries sent on to a pipeline the cluster already runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportSpec {
    /// An OpenTelemetry Collector (or any OTLP endpoint): each entry one log record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpExport>,
}

/// OTLP logs: each entry one log record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtlpExport {
    /// Who sends: `operator` (the default: records name pods, workloads and Services and carry causes,
    /// and an entry two nodes' agents saw is one record) or `agents` (each agent sends what it finds,
    /// keeping the operator out of the path for clusters whose errors outgrow one operator; records carry
    /// the node but no names or causes, and a connection between two nodes may be sent by both).
    #[serde(default)]
    pub sender: ExportSender,
    /// `http://host:port` or `https://host:port`: for `grpc` the collector's gRPC port (4317); for
    /// `http/protobuf` its HTTP port (4318), where `/v1/logs` is added when the URL has no path.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"))]
    pub endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// A Secret in the operator's namespace whose every key is a header sent with each request
    /// (`authorization: Bearer …`, `x-scope-orgid: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<SecretName>,
    /// Trust for an `https` endpoint; the system's roots when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OtlpTls>,
    /// Entries waiting to be sent, at most; past it the newest are dropped and counted in
    /// `faultline_export_dropped_total{reason="queue_full"}`.
    #[serde(default = "default_export_queue")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub queue_size: i64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ExportSender {
    #[default]
    Operator,
    Agents,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretName {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtlpTls {
    /// A Secret in the operator's namespace holding the PEM CA bundle that signs the collector's
    /// certificate, under `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretName>,
    /// The name the certificate must carry, when it is not the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaptureBackend {
    #[default]
    Afpacket,
    Libpcap,
    Pfring,
}

impl CaptureBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureBackend::Afpacket => "afpacket",
            CaptureBackend::Libpcap => "libpcap",
            CaptureBackend::Pfring => "pfring",
        }
    }
}

/// Timeouts in milliseconds. The API server rejects zero, negative and absurd (over an hour, or a day for
/// `idleTimeoutMs`) values.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.closeTimeoutMs <= self.idleTimeoutMs").message(
    "closeTimeoutMs must not exceed idleTimeoutMs: a connection would be forgotten before its close could be judged"
))]
pub struct Timeouts {
    /// A SYN not answered within this is `SynSent` with reason `timeout`.
    #[serde(default = "default_syn_timeout_ms")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub syn_timeout_ms: i64,
    /// How long a peer may stay silent after the other side's FIN (`CloseWait`), or a last FIN stay
    /// unacknowledged (`LastAck`).
    #[serde(default = "default_close_timeout_ms")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub close_timeout_ms: i64,
    /// How long a request waits for its response before it is a half connection.
    #[serde(default = "default_pair_timeout_ms")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub pair_timeout_ms: i64,
    /// How long a stream may carry payload without its protocol being identified.
    #[serde(default = "default_stream_timeout_ms")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub tcp_stream_channel_timeout_ms: i64,
    /// A connection without packets for this long is forgotten (not an error).
    #[serde(default = "default_idle_timeout_ms")]
    #[schemars(range(min = 1, max = 86_400_000))]
    pub idle_timeout_ms: i64,
    /// A DNS query not answered within this is a half connection; copies of one query within it are one
    /// exchange.
    #[serde(default = "default_dns_timeout_ms")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub dns_timeout_ms: i64,
    /// A TLS ClientHello not answered by a ServerHello within this is a failed handshake.
    #[serde(default = "default_tls_handshake_timeout_ms")]
    #[schemars(range(min = 1, max = 3_600_000))]
    pub tls_handshake_timeout_ms: i64,
}

impl Default for TapConfigSpec {
    /// What an empty spec (`spec: {}`) means: every field's own default, as the API server fills them in.
    fn default() -> TapConfigSpec {
        #[allow(clippy::expect_used)]
        serde_json::from_value(serde_json::json!({})).expect("every field of a TapConfig spec has a default")
    }
}

/// One timeout of `Timeouts`: its field's name (also the agent's flag: `synTimeoutMs` is
/// `--syn-timeout-ms`) and the most it may be. The one list every use of the timeouts goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub field: &'static str,
    pub max: i64,
}

const HOUR_MS: i64 = 3_600_000;

impl Timeouts {
    /// Every timeout and its value, in the order the spec lists them.
    pub fn each(&self) -> [(Timeout, i64); 7] {
        let t = |field, max| Timeout { field, max };
        [
            (t("synTimeoutMs", HOUR_MS), self.syn_timeout_ms),
            (t("closeTimeoutMs", HOUR_MS), self.close_timeout_ms),
            (t("pairTimeoutMs", HOUR_MS), self.pair_timeout_ms),
            (t("tcpStreamChannelTimeoutMs", HOUR_MS), self.tcp_stream_channel_timeout_ms),
            (t("idleTimeoutMs", 24 * HOUR_MS), self.idle_timeout_ms),
            (t("dnsTimeoutMs", HOUR_MS), self.dns_timeout_ms),
            (t("tlsHandshakeTimeoutMs", HOUR_MS), self.tls_handshake_timeout_ms),
        ]
    }

    /// Sets the timeout named `field` (as `each` names it); false for no such field.
    pub fn set(&mut self, field: &str, value: i64) -> bool {
        let slot = match field {
            "synTimeoutMs" => &mut self.syn_timeout_ms,
            "closeTimeoutMs" => &mut self.close_timeout_ms,
            "pairTimeoutMs" => &mut self.pair_timeout_ms,
            "tcpStreamChannelTimeoutMs" => &mut self.tcp_stream_channel_timeout_ms,
            "idleTimeoutMs" => &mut self.idle_timeout_ms,
            "dnsTimeoutMs" => &mut self.dns_timeout_ms,
            "tlsHandshakeTimeoutMs" => &mut self.tls_handshake_timeout_ms,
            _ => return false,
        };
        *slot = value;
        true
    }
}

impl Timeout {
    /// The agent's flag for it: `synTimeoutMs` is `--syn-timeout-ms`.
    pub fn flag(self) -> String {
        let mut flag = String::from("--");
        for c in self.field.chars() {
            if c.is_ascii_uppercase() {
                flag.push('-');
                flag.push(c.to_ascii_lowercase());
            } else {
                flag.push(c);
            }
        }
        flag
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            syn_timeout_ms: default_syn_timeout_ms(),
            close_timeout_ms: default_close_timeout_ms(),
            pair_timeout_ms: default_pair_timeout_ms(),
            tcp_stream_channel_timeout_ms: default_stream_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            dns_timeout_ms: default_dns_timeout_ms(),
            tls_handshake_timeout_ms: default_tls_handshake_timeout_ms(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecorderSpec {
    #[serde(default)]
    pub mode: RecorderMode,
    /// Continuous mode: the most bytes kept on a node before the oldest file is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1_048_576))]
    pub max_total_bytes: Option<i64>,
}

// `none` rather than `off`: YAML 1.1 (what kubectl reads) turns an unquoted `off` into `false`.
/// What to record: `none` (the default), `errors`, or `continuous`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RecorderMode {
    #[default]
    None,
    /// Each error entry links to a small pcap of its flow.
    Errors,
    /// Rotating files under a size cap.
    Continuous,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// The agent image; the operator's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Secrets (in the operator's namespace) for pulling the agent image from a private registry; the
    /// operator's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// The agents' PriorityClass, so that they are not the pods evicted from a full node; the operator's
    /// default (the chart's `faultline-agent` class) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// The host port of the agents' /healthz, /readyz and /metrics (agents use the host's network).
    #[serde(default = "default_agent_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Engine threads per agent, flows sharded among them; when unset, the container's CPU limit (the
    /// node's cores without one), at most 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub engine_threads: Option<i32>,
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec {
            image: None,
            image_pull_policy: None,
            image_pull_secrets: None,
            priority_class_name: None,
            port: default_agent_port(),
            resources: None,
            engine_threads: None,
        }
    }
}

fn default_agent_port() -> i32 {
    9102
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TapConfigStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Degraded`, `PacketLoss`. A map keyed by type, so that the controller and the statistics
    /// writer can each own their conditions under server-side apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub desired_agents: i32,
    #[serde(default)]
    pub ready_agents: i32,
    /// Capture statistics per node, as the agents last reported them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeCaptureStats>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCaptureStats {
    pub node: String,
    /// Packets seen on the node's captured interfaces.
    pub received: i64,
    /// Dropped before analysis: by the kernel, or from the agent's full queue.
    pub dropped: i64,
    pub drop_ratio: f64,
    pub streams_timed_out: i64,
    /// TCP bytes never seen (sequence gaps).
    #[serde(default)]
    pub missed_bytes: i64,
    /// Entries the agent had to drop because the operator was unreachable for too long.
    #[serde(default)]
    pub entries_dropped: i64,
    /// Set when the agent could not use the requested capture backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<Time>,
}

fn default_export_queue() -> i64 {
    10_000
}

fn default_packet_loss_threshold() -> f64 {
    0.01
}
fn default_dissectors() -> Vec<Dissector> {
    Dissector::ALL.to_vec()
}
fn default_tls_handshake_timeout_ms() -> i64 {
    10_000
}
fn default_dns_timeout_ms() -> i64 {
    5_000
}
fn default_syn_timeout_ms() -> i64 {
    3_000
}
fn default_close_timeout_ms() -> i64 {
    5_000
}
fn default_pair_timeout_ms() -> i64 {
    30_000
}
fn default_stream_timeout_ms() -> i64 {
    10_000
}
fn default_idle_timeout_ms() -> i64 {
    300_000
}
