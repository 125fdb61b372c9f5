//! One entry as one OTLP log record: the body is the entry's summary (what an Event or the dashboard
//! says), attributes follow OpenTelemetry's semantic conventions where one exists and are `faultline.*`
//! for the rest, and the severity comes from the kind (an error is ERROR, a 4xx/5xx answer that is not
//! an error WARN, anything else INFO).
//!
//! The client is the source, the server the destination, as in the entry. `k8s.pod.name` and
//! `k8s.namespace.name` name one pod, as a record about a pod does: the client's when it is a pod, else
//! the server's; both ends are also in `faultline.client.pod` and `faultline.server.pod`.

use faultline_model::entry::{Endpoint, Entry, Protocol};
use faultline_model::kind::Kind;

use crate::proto::{AnyValue, KeyValue, LogRecord, Value, SEVERITY_ERROR, SEVERITY_INFO, SEVERITY_WARN};
use faultline_model::summary::summary;

/// The `event_name` of every record.
pub const EVENT_NAME: &str = "faultline.entry";

pub fn record(e: &Entry, observed_nanos: u64) -> LogRecord {
    let kind = Kind::of(e);
    let (severity_number, severity_text) = if kind.is_error() {
        (SEVERITY_ERROR, "ERROR")
    } else if e.response.as_ref().is_some_and(|r| r.status >= 400) {
        (SEVERITY_WARN, "WARN")
    } else {
        (SEVERITY_INFO, "INFO")
    };
    LogRecord {
        time_unix_nano: e.timestamp.0,
        severity_number,
        severity_text: severity_text.to_owned(),
        body: Some(AnyValue::string(summary(e))),
        attributes: attributes(e, kind),
        observed_time_unix_nano: observed_nanos,
        event_name: EVENT_NAME.to_owned(),
    }
}

/// Attributes are added only when the entry has the value: an absent attribute says "unknown", an
/// empty one would claim something.
struct Attributes(Vec<KeyValue>);

impl Attributes {
    fn put(&mut self, key: &str, value: Value) {
        self.0.push(KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }) });
    }
    fn text(&mut self, key: &str, value: impl Into<String>) {
        self.put(key, Value::String(value.into()));
    }
    fn int(&mut self, key: &str, value: impl Into<i64>) {
        self.put(key, Value::Int(value.into()));
    }
}

fn attributes(e: &Entry, kind: Kind<'_>) -> Vec<KeyValue> {
    let mut a = Attributes(Vec::with_capacity(24));
    let is_error = kind.is_error();
    let kind = kind.to_string();
    a.text("faultline.entry.id", e.id.as_str());
    a.text("faultline.kind", kind.as_str());
    a.text("faultline.protocol", e.protocol.as_str());
    a.put("faultline.elapsed_ms", Value::Double(e.elapsed_time));
    if is_error {
        a.text("error.type", kind.as_str());
    }
    if let Some(err) = &e.error {
        a.text("faultline.error.message", err.msg.as_str());
    }
    if let Some(node) = &e.node {
        a.text("k8s.node.name", node.as_str());
    }
    if let Some((ns, pod)) = e.src.pod().or_else(|| e.dst.pod()) {
        a.text("k8s.namespace.name", ns);
        a.text("k8s.pod.name", pod);
    }
    end(&mut a, "client", &e.src);
    end(&mut a, "server", &e.dst);
    a.text("network.peer.address", e.dst.ip.to_string());
    if let Some(port) = e.dst.port {
        a.int("network.peer.port", port);
    }
    a.text("network.type", if e.dst.ip.is_ipv4() { "ipv4" } else { "ipv6" });
    if let Some(transport) = transport(e.protocol) {
        a.text("network.transport", transport);
    }
    if let Some(s) = &e.service {
        if let (Some(ns), Some(name)) = (&s.namespace, &s.name) {
            a.text("faultline.service", format!("{ns}/{name}"));
        }
    }
    if let Some(t) = &e.tcp {
        a.text("faultline.tcp.state", t.state.as_str());
        if let Some(r) = t.reason {
            a.text("faultline.tcp.reason", r.as_str());
        }
        if let Some(by) = t.by {
            a.text("faultline.tcp.by", by.as_str());
        }
    }
    if let Some(i) = &e.icmp {
        a.int("faultline.icmp.type", i.icmp_type);
        a.int("faultline.icmp.code", i.code);
        a.text("faultline.icmp.type_name", i.type_name.as_str());
        a.text("faultline.icmp.code_name", i.code_name.as_str());
    }
    if let Some(r) = &e.request {
        a.text("http.request.method", r.method.as_str());
        a.text("url.path", r.path.as_str());
    }
    if let (Some(r), Protocol::Http | Protocol::Http2 | Protocol::Grpc) = (&e.response, e.protocol) {
        a.int("http.response.status_code", r.status);
    }
    if let Some(d) = &e.dns {
        a.text("dns.question.name", d.question.name.as_str());
        a.text("faultline.dns.question.type", d.question.qtype.as_str());
        if let Some(rcode) = &d.rcode_name {
            a.text("faultline.dns.rcode", rcode.as_str());
        }
    }
    if let Some(t) = &e.tls {
        a.text("tls.protocol.name", "tls");
        if let Some(sni) = &t.sni {
            a.text("tls.server.name", sni.as_str());
        }
        if let Some(v) = t.version.as_deref().and_then(|v| v.strip_prefix("TLS ")) {
            a.text("tls.protocol.version", v);
        }
        if let Some(alert) = &t.alert {
            a.text("faultline.tls.alert", alert.as_str());
        }
        if let Some(by) = t.by {
            a.text("faultline.tls.alert_by", by.as_str());
        }
    }
    if let Some(g) = &e.grpc {
        a.text("rpc.system", "grpc");
        a.text("rpc.service", g.service.as_str());
        a.text("rpc.method", g.method.as_str());
        if let Some(status) = g.status {
            a.int("rpc.grpc.status_code", status);
        }
    }
    if let Some(h) = &e.http2 {
        a.text("faultline.http2.frame", h.frame.as_str());
        a.text("faultline.http2.error_code", h.error_code.as_str());
        a.text("faultline.http2.by", h.by.as_str());
    }
    if let Some((_, command, _)) = faultline_model::backend::call_of(e) {
        match e.protocol {
            Protocol::Redis | Protocol::Postgresql | Protocol::Mysql => a.text("db.system.name", e.protocol.as_str()),
            Protocol::Kafka => a.text("messaging.system", "kafka"),
            // AMQP 0-9-1 is RabbitMQ's protocol, but not only RabbitMQ's: no system is claimed.
            _ => {}
        }
        a.text("faultline.command", command);
    }
    if let Some(c) = &e.cause {
        a.text("faultline.cause.reason", c.reason.as_str());
        a.text("faultline.cause.message", c.message.as_str());
    }
    if let Some(p) = &e.pcap {
        a.text("faultline.pcap", p.as_str());
    }
    a.0
}

/// `client.*`/`server.*` (the address and port), and the end's pod and workload when it is known.
fn end(a: &mut Attributes, side: &str, ep: &Endpoint) {
    a.text(&format!("{side}.address"), ep.ip.to_string());
    if let Some(port) = ep.port {
        a.int(&format!("{side}.port"), port);
    }
    if let Some((ns, pod)) = ep.pod() {
        a.text(&format!("faultline.{side}.pod"), format!("{ns}/{pod}"));
    }
    if let Some(w) = &ep.workload {
        a.text(&format!("faultline.{side}.workload"), w.as_str());
    }
}

/// The transport under the protocol, where the protocol fixes it; DNS runs over either, and ICMP has none.
fn transport(p: Protocol) -> Option<&'static str> {
    match p {
        Protocol::Dns | Protocol::Icmp => None,
        _ => Some("tcp"),
    }
}

#[cfg(test)]
mod tests {
    use faultline_model::cause::{Cause, CauseReason};
    use faultline_model::entry::{EntryError, ErrorType, SynReason, TcpInfo, TcpState, Workload, WorkloadKind};
    use faultline_model::Timestamp;

    use super::*;

    fn attrs(r: &LogRecord) -> std::collections::BTreeMap<&str, &Value> {
        r.attributes.iter().filter_map(|kv| Some((kv.key.as_str(), kv.value.as_ref()?.value.as_ref()?))).collect()
    }

    fn refused() -> Entry {
        let client = Endpoint {
            namespace: Some("shop".into()),
            name: Some("cart-1".into()),
            workload: Some(Workload::new(WorkloadKind::Deployment, "cart")),
            ..Endpoint::new("10.0.0.1".parse().expect("ip"), Some(40000))
        };
        let server = Endpoint::new("10.0.0.2".parse().expect("ip"), Some(8080));
        Entry {
            id: "e1".into(),
            node: Some("n1".into()),
            tcp: Some(TcpInfo { state: TcpState::SynSent, reason: Some(SynReason::Refused), by: None }),
            error: Some(EntryError { kind: ErrorType::Connection, msg: "connection refused".into() }),
            cause: Some(Cause {
                reason: CauseReason::PortNotServed,
                message: "nothing listens on 8080".into(),
                objects: Vec::new(),
                evidence: Vec::new(),
            }),
            ..Entry::new(Protocol::Tcp, Timestamp(1_700_000_000_123_000_000), client, server)
        }
    }

    #[test]
    fn an_error_is_an_error_record_with_the_conventions_attributes() {
        let r = record(&refused(), 5);
        assert_eq!((r.severity_number, r.severity_text.as_str()), (SEVERITY_ERROR, "ERROR"));
        assert_eq!((r.time_unix_nano, r.observed_time_unix_nano), (1_700_000_000_123_000_000, 5));
        assert_eq!(r.body, Some(AnyValue::string(summary(&refused()))));
        let a = attrs(&r);
        let s = |v: &str| Value::String(v.into());
        assert_eq!(a["k8s.namespace.name"], &s("shop"));
        assert_eq!(a["k8s.pod.name"], &s("cart-1"));
        assert_eq!(a["k8s.node.name"], &s("n1"));
        assert_eq!(a["client.address"], &s("10.0.0.1"));
        assert_eq!(a["client.port"], &Value::Int(40000));
        assert_eq!(a["server.address"], &s("10.0.0.2"));
        assert_eq!(a["server.port"], &Value::Int(8080));
        assert_eq!(a["network.transport"], &s("tcp"));
        assert_eq!(a["error.type"], &s("tcp/SynSent"));
        assert_eq!(a["faultline.kind"], &s("tcp/SynSent"));
        assert_eq!(a["faultline.tcp.reason"], &s("refused"));
        assert_eq!(a["faultline.cause.reason"], &s("PortNotServed"));
        assert_eq!(a["faultline.client.workload"], &s("Deployment/cart"));
        assert!(!a.contains_key("faultline.server.pod"), "an unknown server has no pod");
        assert!(!a.contains_key("dns.question.name"));
    }

    #[test]
    fn an_answer_that_is_no_error_is_not_an_error_record() {
        let mut e = refused();
        (e.tcp, e.error, e.cause) = (None, None, None);
        let r = record(&e, 0);
        assert_eq!(r.severity_number, SEVERITY_INFO);
        assert!(!attrs(&r).contains_key("error.type"));
    }
}
