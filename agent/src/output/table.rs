//! One line per entry, in words a person on call can act on.

use faultline_core::entry::{ErrorType, Protocol, Side, SynReason, TcpState};
use faultline_core::kind::Kind;
use faultline_core::Entry;

const WIDTHS: [usize; 5] = [27, 5, 24, 24, 38];

pub fn header() -> String {
    line(["TIME", "PROTO", "SOURCE", "DESTINATION", "WHAT"], "DETAIL")
}

pub fn row(e: &Entry) -> String {
    let (what, detail) = describe(e);
    line([&e.timestamp.to_string(), e.protocol.as_str(), &e.src.to_string(), &e.dst.to_string(), &what], &detail)
}

fn line(cols: [&str; 5], last: &str) -> String {
    let mut s = String::new();
    for (c, w) in cols.iter().zip(WIDTHS) {
        s.push_str(c);
        let pad = w.saturating_sub(c.chars().count()) + 1;
        s.extend(std::iter::repeat_n(' ', pad.max(1)));
    }
    s.push_str(last);
    s.trim_end().to_owned()
}

/// The kind of entry (`tcp/Reset`, `http/5xx`, …), as ErrorViews and metrics count it: the summary's buckets.
pub fn kind(e: &Entry) -> String {
    Kind::of(e).to_string()
}

fn side(s: Option<Side>) -> &'static str {
    s.map_or("peer", |s| s.as_str())
}

fn other(s: Option<Side>) -> &'static str {
    match s {
        Some(Side::Client) => "server",
        Some(Side::Server) => "client",
        None => "peer",
    }
}

fn describe(e: &Entry) -> (String, String) {
    let ms = e.elapsed_time;
    if let Some(t) = &e.tcp {
        let what = match t.reason {
            Some(r) => format!("{} ({})", t.state.as_str(), r.as_str()),
            None => format!("{} ({})", t.state.as_str(), side(t.by)),
        };
        let detail = match (t.state, t.reason) {
            (TcpState::SynSent, Some(SynReason::Refused)) => "connection refused: the SYN was answered by RST".into(),
            (TcpState::SynSent, Some(SynReason::Unreachable)) => {
                "connection failed: the SYN was answered by an ICMP error".into()
            }
            (TcpState::SynSent, _) => format!("no answer to the SYN after {ms} ms"),
            (TcpState::Reset, _) => format!("connection reset by the {} after {ms} ms", side(t.by)),
            (TcpState::CloseWait, _) => {
                format!("the {} never closed after the {}'s FIN (CLOSE_WAIT for {ms} ms)", side(t.by), other(t.by))
            }
            (TcpState::LastAck, _) => {
                format!("the {}'s last FIN was not acknowledged (LAST_ACK for {ms} ms)", side(t.by))
            }
        };
        return (what, detail);
    }
    if let Some(i) = &e.icmp {
        let mut detail = match &i.original {
            Some(o) => format!("about {} {} -> {}", o.protocol, o.src, o.dst),
            None => String::new(),
        };
        if let Some(mtu) = i.mtu {
            detail.push_str(&format!(" (next-hop MTU {mtu})"));
        }
        return (format!("{}/{}", i.type_name, i.code_name), detail);
    }
    if let Some((name, command, query)) = faultline_core::backend::call_of(e) {
        let what = match &e.error {
            Some(err) if err.kind == ErrorType::PairNotFound => format!("{name} unanswered"),
            Some(err) if err.kind == ErrorType::Dissection => format!("{name} dissection error"),
            Some(_) => format!("{name} error"),
            None => name.to_owned(),
        };
        let asked = query.map_or_else(|| command.to_owned(), |q| format!("{command} {q}"));
        let detail = match &e.error {
            Some(err) => format!("{asked}: {}", err.msg),
            None => format!("{asked} ({ms} ms)"),
        };
        return (what, detail);
    }
    let request = e.request.as_ref().map(|r| format!("{} {}", r.method, r.path));
    if let (Some(t), Some(err)) = (&e.tls, &e.error) {
        let what = match &t.alert {
            Some(alert) => format!("TLS {alert}"),
            None => "TLS no ServerHello".to_owned(),
        };
        let by = t.by.map(|b| format!(" (by the {})", b.as_str())).unwrap_or_default();
        let sni = t.sni.as_deref().map(|s| format!("{s} ")).unwrap_or_default();
        let version = t.version.as_deref().unwrap_or("TLS");
        return (what, format!("{sni}{version}: {}{by}", err.msg));
    }
    if let Some(d) = &e.dns {
        let question = format!("{} {}", d.question.name, d.question.qtype);
        let what = match (&e.error, &d.rcode_name) {
            (Some(err), _) if err.kind == ErrorType::PairNotFound => "DNS query unanswered".to_owned(),
            (_, Some(rcode)) => format!("DNS {rcode}"),
            (_, None) => "DNS".to_owned(),
        };
        let detail = match &e.error {
            Some(err) => format!("{question}: {}", err.msg),
            None if d.answers.is_empty() => format!("{question} ({ms} ms)"),
            None => format!("{question} -> {} ({ms} ms)", d.answers.join(", ")),
        };
        return (what, detail);
    }
    match (&e.error, &e.response) {
        (Some(err), _) => {
            let what = match err.kind {
                ErrorType::PairNotFound => "half connection".to_owned(),
                ErrorType::Dissection => format!("{} dissection error", e.protocol.as_str()),
                ErrorType::Timeout => "stream timeout".to_owned(),
                ErrorType::Connection => "connection error".to_owned(),
                ErrorType::Dns => "DNS error".to_owned(),
                ErrorType::Tls => "TLS handshake failed".to_owned(),
                ErrorType::Grpc => format!(
                    "gRPC {}",
                    e.grpc.as_ref().and_then(|g| g.status_name.as_deref()).unwrap_or("without status")
                ),
                ErrorType::Redis => "Redis error".to_owned(),
                ErrorType::Postgresql => "PostgreSQL error".to_owned(),
                ErrorType::Mysql => "MySQL error".to_owned(),
                ErrorType::Amqp => "AMQP error".to_owned(),
                ErrorType::Kafka => "Kafka error".to_owned(),
                ErrorType::Http2 => match &e.http2 {
                    Some(h) => format!("HTTP/2 {} {}", h.frame, h.error_code),
                    None => "HTTP/2 error".to_owned(),
                },
            };
            let detail = match request {
                Some(r) => format!("{r}: {}", err.msg),
                None => err.msg.clone(),
            };
            (what, detail)
        }
        (None, Some(resp)) if matches!(e.protocol, Protocol::Http | Protocol::Http2 | Protocol::Grpc) => {
            (format!("{} {}", resp.status, resp.status_text), format!("{} ({ms} ms)", request.unwrap_or_default()))
        }
        _ => (String::new(), String::new()),
    }
}
