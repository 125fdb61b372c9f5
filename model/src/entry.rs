//! The entry: the one record every part of Faultline speaks (SPEC §2). Serialises to exactly the JSON
//! form of the spec; fields that do not apply are left out.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::backend::{AmqpInfo, KafkaInfo, MysqlInfo, PostgresqlInfo, RedisInfo};
pub use crate::cause::{Cause, CauseReason, ObjectRef};
pub use crate::headers::Headers;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    #[serde(serialize_with = "ser_ts", deserialize_with = "de_ts")]
    pub timestamp: Timestamp,
    pub node: Option<String>,
    pub protocol: Protocol,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub error: Option<EntryError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    /// A DNS exchange: the question, the answer's code and records (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfo>,
    /// A TLS handshake that failed: the server name, version, alert and who sent it (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// A gRPC call: service, method and the status from the trailers (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcInfo>,
    /// An HTTP/2 RST_STREAM or GOAWAY: the frame, its error code and who sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<Http2Info>,
    /// A Redis command and its reply (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisInfo>,
    /// A PostgreSQL query (or startup) and how it ended (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<PostgresqlInfo>,
    /// A MySQL command (or login) and how it ended (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlInfo>,
    /// An AMQP 0-9-1 method and the broker's answer (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Option<AmqpInfo>,
    /// A Kafka request and its response (SPEC §3.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaInfo>,
    /// Milliseconds: request to response for HTTP, attempt or event to the packet or timer that decided
    /// it for TCP, 0 for ICMP.
    pub elapsed_time: f64,
    /// Where a pcap of the entry's flow can be had, when recording is on: a file path offline, the
    /// operator's API path in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcap: Option<String>,
    /// The address the client asked for when it was translated on the way (a Service's ClusterIP, seen
    /// before DNAT); `dst` is where the connection went. The operator names the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// Why it failed, where the cluster's state shows it (SPEC §3.7): set by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

/// A Service as the client addressed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRef {
    pub ip: IpAddr,
    pub port: u16,
    /// The Service's name and namespace, filled in by the operator when the entry arrives.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl Entry {
    /// An entry about the flow from `src` to `dst` at `timestamp` with nothing found on it yet: no id,
    /// node, error, TCP/ICMP/HTTP details, elapsed time or recording. The engine fills in what it saw.
    pub fn new(protocol: Protocol, timestamp: Timestamp, src: Endpoint, dst: Endpoint) -> Entry {
        Entry {
            id: String::new(),
            timestamp,
            node: None,
            protocol,
            src,
            dst,
            error: None,
            tcp: None,
            icmp: None,
            request: None,
            response: None,
            dns: None,
            tls: None,
            grpc: None,
            http2: None,
            redis: None,
            postgresql: None,
            mysql: None,
            amqp: None,
            kafka: None,
            elapsed_time: 0.0,
            pcap: None,
            service: None,
            cause: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Dns,
    Tls,
    /// HTTP/2 streams that are not gRPC.
    Http2,
    /// gRPC calls (HTTP/2 streams with a gRPC content type).
    Grpc,
    Redis,
    Postgresql,
    Mysql,
    Amqp,
    Kafka,
    Tcp,
    Icmp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Dns => "dns",
            Protocol::Tls => "tls",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Redis => "redis",
            Protocol::Postgresql => "postgresql",
            Protocol::Mysql => "mysql",
            Protocol::Amqp => "amqp",
            Protocol::Kafka => "kafka",
            Protocol::Tcp => "tcp",
            Protocol::Icmp => "icmp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// Absent for ICMP, which has no ports.
    pub port: Option<u16>,
    /// Pod name, filled in by the operator when the entry arrives from a node; null offline.
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// What runs the pod (`Deployment/web`, `StatefulSet/db`, …; a pod without a controller:
    /// `Pod/<name>`), or `Node/<node>` for the node itself (the kubelet, a host-network pod): filled in by
    /// the operator; absent offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

impl Endpoint {
    pub fn new(ip: IpAddr, port: Option<u16>) -> Self {
        Endpoint { ip, port, name: None, namespace: None, workload: None }
    }

    /// The pod at this end, as (namespace, name), when it is one.
    pub fn pod(&self) -> Option<(&str, &str)> {
        Some((self.namespace.as_deref()?, self.name.as_deref()?))
    }
}

/// What runs a pod, or the node itself: what outlives a pod's own name (which changes with every
/// rollout). Written `Kind/name`, in JSON and KFL alike; kept in that form, so a query compares it as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    kind: WorkloadKind,
    /// `Kind/name`.
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    /// A pod without a controller: the workload is the pod.
    Pod,
    /// The node itself.
    Node,
    /// Another controller kind (an operator's own resource), by its name.
    Other(String),
}

impl WorkloadKind {
    pub fn as_str(&self) -> &str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Node => "Node",
            WorkloadKind::Other(kind) => kind,
        }
    }

    pub fn of(kind: &str) -> WorkloadKind {
        match kind {
            "Deployment" => WorkloadKind::Deployment,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "Job" => WorkloadKind::Job,
            "CronJob" => WorkloadKind::CronJob,
            "Pod" => WorkloadKind::Pod,
            "Node" => WorkloadKind::Node,
            other => WorkloadKind::Other(other.to_owned()),
        }
    }
}

impl Workload {
    pub fn new(kind: WorkloadKind, name: &str) -> Workload {
        let text = format!("{}/{name}", kind.as_str());
        Workload { kind, text }
    }

    pub fn kind(&self) -> &WorkloadKind {
        &self.kind
    }

    pub fn name(&self) -> &str {
        &self.text[self.kind.as_str().len() + 1..]
    }

    /// `Kind/name`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it says no more than the pod's own name (a pod without a controller).
    pub fn is_the_pod(&self, pod_name: &str) -> bool {
        self.kind == WorkloadKind::Pod && self.name() == pod_name
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Workload, String> {
        match s.split_once('/') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                Ok(Workload::new(WorkloadKind::of(kind), name))
            }
            _ => Err(format!("a workload is Kind/name, not {s:?}")),
        }
    }
}

impl Serialize for Workload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Workload, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `10.0.0.1:80`, `[2001:db8::1]:80`, or the bare address when there is no port.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V6(ip), Some(port)) => write!(f, "[{ip}]:{port}"),
            (ip, Some(port)) => write!(f, "{ip}:{port}"),
            (ip, None) => write!(f, "{ip}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorType {
    /// A TCP connection error (§3.1).
    #[serde(rename = "connection")]
    Connection,
    /// The payload broke its protocol, or the connection ended inside a message (§3.5).
    #[serde(rename = "dissection")]
    Dissection,
    /// An L4 stream whose protocol was not identified in time (§3.2).
    #[serde(rename = "timeout")]
    Timeout,
    /// A half connection: a request without response or a response without request (§3.5).
    #[serde(rename = "pair-not-found")]
    PairNotFound,
    /// A DNS answer that is an error (SERVFAIL, REFUSED, a final NXDOMAIN, …) or came only after the
    /// client asked again (§3.5).
    #[serde(rename = "dns")]
    Dns,
    /// A TLS handshake that failed: a fatal alert, or no ServerHello (§3.5).
    #[serde(rename = "tls")]
    Tls,
    /// A gRPC call that ended with a status other than OK (§3.5).
    #[serde(rename = "grpc")]
    Grpc,
    /// An HTTP/2 stream reset (RST_STREAM) or connection ended (GOAWAY) with an error code (§3.5).
    #[serde(rename = "http2")]
    Http2,
    /// A Redis error reply (§3.5).
    #[serde(rename = "redis")]
    Redis,
    /// A PostgreSQL ErrorResponse of severity ERROR, FATAL or PANIC (§3.5).
    #[serde(rename = "postgresql")]
    Postgresql,
    /// A MySQL ERR packet (§3.5).
    #[serde(rename = "mysql")]
    Mysql,
    /// An AMQP `connection.close` or `channel.close` from the broker with a reply code other than 200, or
    /// a `basic.return` (§3.5).
    #[serde(rename = "amqp")]
    Amqp,
    /// A Kafka response with an error code other than NONE, top-level or per partition (§3.5).
    #[serde(rename = "kafka")]
    Kafka,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Connection => "connection",
            ErrorType::Dissection => "dissection",
            ErrorType::Timeout => "timeout",
            ErrorType::PairNotFound => "pair-not-found",
            ErrorType::Dns => "dns",
            ErrorType::Tls => "tls",
            ErrorType::Grpc => "grpc",
            ErrorType::Http2 => "http2",
            ErrorType::Redis => "redis",
            ErrorType::Postgresql => "postgresql",
            ErrorType::Mysql => "mysql",
            ErrorType::Amqp => "amqp",
            ErrorType::Kafka => "kafka",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryError {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub msg: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TcpState {
    SynSent,
    Reset,
    CloseWait,
    LastAck,
}

impl TcpState {
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::SynSent => "SynSent",
            TcpState::Reset => "Reset",
            TcpState::CloseWait => "CloseWait",
            TcpState::LastAck => "LastAck",
        }
    }
}

/// Why a connection attempt failed (`SynSent` only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SynReason {
    /// The SYN was answered by RST.
    Refused,
    /// The SYN was not answered within `synTimeoutMs`.
    Timeout,
    /// The SYN was answered by an ICMP error (unreachable, time exceeded, parameter problem): the entry
    /// for that ICMP message says which.
    Unreachable,
}

impl SynReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SynReason::Refused => "refused",
            SynReason::Timeout => "timeout",
            SynReason::Unreachable => "unreachable",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpInfo {
    pub state: TcpState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<SynReason>,
    /// `Reset`: the side that sent the RST. `SynSent`/refused: the server. `CloseWait` and `LastAck`: the
    /// side stuck in that state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Side>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IcmpInfo {
    pub version: u8,
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
    pub type_name: String,
    pub code_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<OriginalFlow>,
    /// Next-hop MTU of "fragmentation needed" and "packet too big".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Byte offset of the fault, for parameter problems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<u32>,
}

/// The datagram an ICMP error quotes: the flow it reports on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalFlow {
    /// `tcp`, `udp`, `icmp`, `sctp`, or the IP protocol number.
    pub protocol: String,
    pub src: FlowEndpoint,
    pub dst: FlowEndpoint,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEndpoint {
    pub ip: IpAddr,
    /// 0 where the protocol has no ports or the quote was too short to hold them.
    pub port: u16,
}

impl fmt::Display for FlowEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Endpoint::new(self.ip, Some(self.port)).fmt(f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub method: String,
    pub path: String,
    pub version: String,
    /// Header names in lower case (HTTP names are case-insensitive); repeated headers joined with ", ".
    pub headers: Headers,
    pub body_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub status: u16,
    pub status_text: String,
    pub version: String,
    pub headers: Headers,
    pub body_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsInfo {
    pub id: u16,
    pub question: DnsQuestion,
    /// The answer's response code; absent when there was no answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode_name: Option<String>,
    /// The answer records, summarised (`A 10.0.0.1`, `CNAME web.example.`), at most 16.
    #[serde(default)]
    pub answers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// The server name the client asked for (SNI), lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The version offered by the client, or the one the server chose (`TLS 1.2`, `TLS 1.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The fatal alert, by its RFC 8446 name (`unknown_ca`, `protocol_version`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// Who sent the alert, or closed or reset the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Side>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcInfo {
    /// `package.Service` from the path `/package.Service/Method`.
    pub service: String,
    pub method: String,
    /// `grpc-status`; absent when the call ended without one (reset, or no trailers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// The status by its name in the gRPC spec (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_name: Option<String>,
    /// `grpc-message`, percent-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Http2Info {
    /// The stream reset, or the last stream the sender of a GOAWAY processed.
    pub stream: u32,
    /// `RST_STREAM` or `GOAWAY`.
    pub frame: String,
    /// The error code by its RFC 9113 §7 name (`CANCEL`, `ENHANCE_YOUR_CALM`, …).
    pub error_code: String,
    pub by: Side,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsQuestion {
    /// Lower case, without the trailing dot.
    pub name: String,
    /// The record type's mnemonic (`A`, `AAAA`, …), or `TYPE<n>`.
    #[serde(rename = "type")]
    pub qtype: String,
}

fn ser_ts<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(ts)
}

fn de_ts<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    let text = String::deserialize(d)?;
    Timestamp::parse_rfc3339(&text).ok_or_else(|| serde::de::Error::custom(format!("bad timestamp {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_matches_the_spec() {
        let e = Entry {
            id: "7".into(),
            timestamp: Timestamp(1_795_821_177_123_456_000),
            node: None,
            protocol: Protocol::Tcp,
            src: Endpoint::new("10.0.1.5".parse().expect("ip"), Some(43120)),
            dst: Endpoint::new("2001:db8::7".parse().expect("ip"), Some(8080)),
            error: Some(EntryError { kind: ErrorType::Connection, msg: "SynSent".into() }),
            tcp: Some(TcpInfo { state: TcpState::SynSent, reason: Some(SynReason::Refused), by: Some(Side::Server) }),
            icmp: None,
            request: None,
            response: None,
            dns: None,
            tls: None,
            grpc: None,
            http2: None,
            redis: None,
            postgresql: None,
            mysql: None,
            amqp: None,
            kafka: None,
            elapsed_time: 0.25,
            pcap: None,
            service: None,
            cause: None,
        };
        let json = serde_json::to_string(&e).expect("serialises");
        assert_eq!(
            json,
            r#"{"id":"7","timestamp":"2026-11-27T23:12:57.123456Z","node":null,"protocol":"tcp","src":{"ip":"10.0.1.5","port":43120,"name":null,"namespace":null},"dst":{"ip":"2001:db8::7","port":8080,"name":null,"namespace":null},"error":{"type":"connection","msg":"SynSent"},"tcp":{"state":"SynSent","reason":"refused","by":"server"},"elapsedTime":0.25}"#
        );
        let back: Entry = serde_json::from_str(&json).expect("parses back");
        assert_eq!(back, e);
        assert_eq!(e.dst.to_string(), "[2001:db8::7]:8080");
    }

    #[test]
    fn workloads_are_kind_slash_name_and_read_back_typed() {
        let w: Workload = "Deployment/web".parse().expect("a workload");
        assert_eq!(w, Workload::new(WorkloadKind::Deployment, "web"));
        assert_eq!(serde_json::to_string(&w).expect("json"), r#""Deployment/web""#);
        let odd: Workload = serde_json::from_str(r#""Rollout/shop-api""#).expect("another controller");
        assert_eq!((odd.kind(), odd.name()), (&WorkloadKind::Other("Rollout".into()), "shop-api"));
        assert!(serde_json::from_str::<Workload>(r#""web""#).is_err());
        assert!(Workload::new(WorkloadKind::Pod, "x").is_the_pod("x"));
    }
}
