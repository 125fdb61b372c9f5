//! What an entry is: the one decision every part that counts or names entries uses — ErrorView
//! `countsByKind` and KFL's `kind` (`tcp/Reset`, `icmp/DestinationUnreachable`, `half-connection`,
//! `http/5xx`, `dns/SERVFAIL`, `tls/unknown_ca`, `grpc/UNAVAILABLE`, `http2/CANCEL`, …), Event reasons
//! (`TCPReset`, `HTTPServerError`, …), `faultline_errors_total{kind}`, `analyze`'s table and summary and
//! the dashboard. Each matches [`Kind`] exhaustively: a kind added here is a compile error wherever it must
//! be named. The label is written through `Display`, so matching a KFL query on it allocates nothing.

use std::fmt;

use crate::entry::{Entry, ErrorType, Protocol, TcpState};

/// What an entry is about, most telling first: a protocol's own failure (TLS, DNS, gRPC, HTTP/2), else a
/// TCP state, an ICMP message, an error by its type, an exchange's answer, or only the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A TCP connection error (SPEC §3.1).
    Tcp(TcpState),
    /// An ICMP message (§3.4), by its type's name; `error`: an error message (not a router solicitation
    /// or advertisement, a redirect of IPv6 or an echo).
    Icmp { type_name: &'a str, error: bool },
    /// A TLS handshake that failed (§3.5): its alert, or none (no ServerHello; an encrypted alert).
    Tls(Option<&'a str>),
    /// A DNS exchange (§3.5).
    Dns(Dns<'a>),
    /// A gRPC call that failed: its status's name, or none (it ended without trailers).
    Grpc(Option<&'a str>),
    /// An HTTP/2 stream reset, or connection ended, with an error code (its RFC 9113 name).
    Http2 { goaway: bool, code: &'a str },
    /// A backend's error (§3.5): its protocol and code — a Redis error's first word, a PostgreSQL
    /// SQLSTATE, a MySQL error number, an AMQP reply code, a Kafka error's name.
    Backend { protocol: Protocol, code: Code<'a> },
    /// A request without response or a response without request (§3.5).
    HalfConnection,
    /// A payload that broke its protocol's grammar, or ended inside a message.
    Dissection,
    /// A stream whose protocol was never identified (§3.2).
    StreamTimeout,
    /// An error of a type whose details the entry does not carry.
    OtherError(ErrorType),
    /// An exchange answered: its protocol and status (HTTP status, DNS rcode).
    Response(Protocol, u16),
    /// None of the above: the protocol alone.
    Other(Protocol),
}

/// A backend error's code, as its protocol writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code<'a> {
    Text(&'a str),
    Number(u16),
}

/// A DNS exchange, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dns<'a> {
    /// No answer to the query or any copy of it.
    Unanswered,
    /// Answered (NOERROR) only after the client asked again.
    Retransmitted,
    /// Answered with this rcode; `error`: the answer is an error (SERVFAIL, a final NXDOMAIN, …).
    Answered { rcode: &'a str, error: bool },
    /// Neither question answered nor known unanswered.
    Bare,
}

impl<'a> Kind<'a> {
    pub fn of(e: &'a Entry) -> Kind<'a> {
        if let Some(t) = &e.tls {
            return Kind::Tls(t.alert.as_deref());
        }
        if let Some(d) = &e.dns {
            return Kind::Dns(match (&e.error, &d.rcode_name) {
                (Some(err), _) if err.kind == ErrorType::PairNotFound => Dns::Unanswered,
                (Some(_), Some(rcode)) if rcode == "NOERROR" => Dns::Retransmitted,
                (err, Some(rcode)) => Dns::Answered { rcode, error: err.is_some() },
                (_, None) => Dns::Bare,
            });
        }
        if let (Some(err), Some(g)) = (&e.error, &e.grpc) {
            if err.kind == ErrorType::Grpc {
                return Kind::Grpc(g.status_name.as_deref());
            }
        }
        // A client's cancel carries its RST_STREAM too, without an error: it is the pair it was.
        if let (Some(_), Some(h)) = (&e.error, &e.http2) {
            return Kind::Http2 { goaway: h.frame == "GOAWAY", code: &h.error_code };
        }
        if let Some(kind) = backend(e) {
            return kind;
        }
        if let Some(t) = &e.tcp {
            return Kind::Tcp(t.state);
        }
        if let Some(i) = &e.icmp {
            return Kind::Icmp { type_name: &i.type_name, error: icmp_error(i.version, i.icmp_type) };
        }
        match (&e.error, &e.response) {
            (Some(err), _) => match err.kind {
                ErrorType::PairNotFound => Kind::HalfConnection,
                ErrorType::Dissection => Kind::Dissection,
                ErrorType::Timeout => Kind::StreamTimeout,
                other => Kind::OtherError(other),
            },
            (None, Some(r)) => Kind::Response(e.protocol, r.status),
            (None, None) => Kind::Other(e.protocol),
        }
    }

    /// Whether an entry of this kind is an error: what `faultline_errors_total` counts and the dashboard's
    /// error query shows — an error, a TCP connection error, an ICMP error message, an HTTP status of 400
    /// or more. Router solicitations and the like are entries, not errors; so is an NXDOMAIN that was one
    /// step of a search list.
    pub fn is_error(self) -> bool {
        match self {
            Kind::Tcp(_)
            | Kind::Tls(_)
            | Kind::Grpc(_)
            | Kind::Http2 { .. }
            | Kind::Backend { .. }
            | Kind::HalfConnection
            | Kind::Dissection
            | Kind::StreamTimeout
            | Kind::OtherError(_) => true,
            Kind::Icmp { error, .. } => error,
            Kind::Dns(Dns::Unanswered | Dns::Retransmitted) => true,
            Kind::Dns(Dns::Answered { error, .. }) => error,
            Kind::Dns(Dns::Bare) => false,
            Kind::Response(p, status) => {
                matches!(p, Protocol::Http | Protocol::Http2 | Protocol::Grpc) && status >= 400
            }
            Kind::Other(_) => false,
        }
    }

    /// The PascalCase reason of a Kubernetes Event about an entry of this kind (SPEC §5).
    pub fn event_reason(self) -> String {
        let fixed = match self {
            Kind::Tcp(state) => return format!("TCP{}", state.as_str()),
            Kind::Icmp { type_name, .. } => return format!("ICMP{type_name}"),
            Kind::Tls(_) => "TLSHandshakeFailure",
            Kind::Dns(Dns::Unanswered) => "DNSTimeout",
            Kind::Dns(Dns::Retransmitted) | Kind::Dns(Dns::Answered { error: true, .. }) => "DNSError",
            Kind::Dns(Dns::Answered { error: false, .. } | Dns::Bare) => "DNSResponse",
            Kind::Grpc(_) => "GRPCError",
            Kind::Http2 { goaway: true, .. } => "HTTP2GoAway",
            Kind::Http2 { goaway: false, .. } => "HTTP2StreamReset",
            Kind::Backend { protocol, .. } => backend_reason(protocol),
            Kind::HalfConnection => "HalfConnection",
            Kind::Dissection => "DissectionError",
            Kind::StreamTimeout => "StreamTimeout",
            Kind::OtherError(t) => match t {
                ErrorType::Connection => "ConnectionError",
                ErrorType::Dns => "DNSError",
                ErrorType::Tls => "TLSHandshakeFailure",
                ErrorType::Grpc => "GRPCError",
                ErrorType::Http2 => "HTTP2StreamReset",
                ErrorType::PairNotFound => "HalfConnection",
                ErrorType::Dissection => "DissectionError",
                ErrorType::Timeout => "StreamTimeout",
                ErrorType::Redis => "RedisError",
                ErrorType::Postgresql => "PostgreSQLError",
                ErrorType::Mysql => "MySQLError",
                ErrorType::Amqp => "AMQPError",
                ErrorType::Kafka => "KafkaError",
            },
            Kind::Response(_, status) if status >= 500 => "HTTPServerError",
            Kind::Response(_, status) if status >= 400 => "HTTPClientError",
            Kind::Response(..) | Kind::Other(_) => "HTTPResponse",
        };
        fixed.to_owned()
    }
}

/// A backend's error, where the entry is one: an error of its protocol's own type (a half
/// connection or broken grammar on the same connection is counted as such).
fn backend(e: &Entry) -> Option<Kind<'_>> {
    let err = e.error.as_ref()?;
    let (protocol, code) = match err.kind {
        ErrorType::Redis => (Protocol::Redis, Code::Text(e.redis.as_ref()?.code.as_deref()?)),
        ErrorType::Postgresql => (Protocol::Postgresql, Code::Text(e.postgresql.as_ref()?.sqlstate.as_deref()?)),
        ErrorType::Mysql => (Protocol::Mysql, Code::Number(e.mysql.as_ref()?.code?)),
        ErrorType::Amqp => (Protocol::Amqp, Code::Number(e.amqp.as_ref()?.reply_code?)),
        ErrorType::Kafka => (Protocol::Kafka, Code::Text(e.kafka.as_ref()?.error_name.as_deref()?)),
        _ => return None,
    };
    Some(Kind::Backend { protocol, code })
}

/// The Event reason of a backend's error (SPEC §3.5).
fn backend_reason(p: Protocol) -> &'static str {
    match p {
        Protocol::Redis => "RedisError",
        Protocol::Postgresql => "PostgreSQLError",
        Protocol::Mysql => "MySQLError",
        Protocol::Amqp => "AMQPError",
        Protocol::Kafka => "KafkaError",
        _ => "Error",
    }
}

/// ICMP error messages (SPEC §3.4): IPv4 types 3, 4, 5, 11, 12; IPv6 types 1 to 4. Router solicitations and
/// advertisements, IPv6 redirects, echoes and neighbour discovery are entries, not errors.
fn icmp_error(version: u8, icmp_type: u8) -> bool {
    match version {
        4 => matches!(icmp_type, 3 | 4 | 5 | 11 | 12),
        _ => matches!(icmp_type, 1..=4),
    }
}

/// The label: `tcp/Reset`, `dns/timeout`, `http/5xx`, …
impl fmt::Display for Kind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Kind::Tcp(state) => write!(f, "tcp/{}", state.as_str()),
            Kind::Icmp { type_name, .. } => write!(f, "icmp/{type_name}"),
            Kind::Tls(alert) => write!(f, "tls/{}", alert.unwrap_or("no-server-hello")),
            Kind::Dns(Dns::Unanswered) => f.write_str("dns/timeout"),
            Kind::Dns(Dns::Retransmitted) => f.write_str("dns/retransmitted"),
            Kind::Dns(Dns::Answered { rcode, .. }) => write!(f, "dns/{rcode}"),
            Kind::Dns(Dns::Bare) => f.write_str("dns"),
            Kind::Grpc(status) => write!(f, "grpc/{}", status.unwrap_or("no-status")),
            Kind::Http2 { code, .. } => write!(f, "http2/{code}"),
            Kind::Backend { protocol, code: Code::Text(c) } => write!(f, "{}/{c}", protocol.as_str()),
            Kind::Backend { protocol, code: Code::Number(n) } => write!(f, "{}/{n}", protocol.as_str()),
            Kind::HalfConnection => f.write_str("half-connection"),
            Kind::Dissection => f.write_str("dissection"),
            Kind::StreamTimeout => f.write_str("stream-timeout"),
            Kind::OtherError(t) => f.write_str(t.as_str()),
            Kind::Response(p, status) => write!(f, "{}/{}xx", p.as_str(), status / 100),
            Kind::Other(p) => f.write_str(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{
        DnsInfo, DnsQuestion, Endpoint, EntryError, Http2Info, IcmpInfo, MysqlInfo, PostgresqlInfo, RedisInfo,
        Response, Side, TcpInfo, TlsInfo,
    };
    use crate::headers::Headers;
    use crate::time::Timestamp;

    fn entry(protocol: Protocol) -> Entry {
        let ep = |p| Endpoint::new("10.0.0.1".parse().expect("ip"), Some(p));
        Entry::new(protocol, Timestamp(0), ep(1), ep(2))
    }

    fn error(kind: ErrorType) -> Option<EntryError> {
        Some(EntryError { kind, msg: String::new() })
    }

    /// Every kind, its label, its Event reason and whether it is an error: one table for what six places
    /// decided apart before (and disagreed on: an HTTP/2 reset was `http2 http2` in analyze's summary).
    #[test]
    fn every_kind_has_one_label_one_reason_and_one_verdict() {
        let mut tcp = entry(Protocol::Tcp);
        tcp.tcp = Some(TcpInfo { state: TcpState::Reset, reason: None, by: Some(Side::Client) });
        tcp.error = error(ErrorType::Connection);
        let icmp = |version, icmp_type, name: &str| {
            let mut e = entry(Protocol::Icmp);
            e.icmp = Some(IcmpInfo {
                version,
                icmp_type,
                code: 0,
                type_name: name.into(),
                code_name: String::new(),
                original: None,
                mtu: None,
                pointer: None,
            });
            e
        };
        let mut tls = entry(Protocol::Tls);
        tls.tls = Some(TlsInfo { sni: None, version: None, alert: Some("unknown_ca".into()), by: None });
        tls.error = error(ErrorType::Tls);
        let dns = |rcode: &str, err: Option<ErrorType>| {
            let mut e = entry(Protocol::Dns);
            e.dns = Some(DnsInfo {
                id: 1,
                question: DnsQuestion { name: "x".into(), qtype: "A".into() },
                rcode: Some(0),
                rcode_name: Some(rcode.into()),
                answers: Vec::new(),
            });
            e.error = err.and_then(error);
            e
        };
        let mut unanswered = dns("", Some(ErrorType::PairNotFound));
        if let Some(d) = unanswered.dns.as_mut() {
            d.rcode_name = None;
        }
        let mut reset = entry(Protocol::Grpc);
        reset.http2 =
            Some(Http2Info { stream: 1, frame: "RST_STREAM".into(), error_code: "CANCEL".into(), by: Side::Client });
        reset.error = error(ErrorType::Http2);
        let response = |protocol, status| {
            let mut e = entry(protocol);
            e.response = Some(Response {
                status,
                status_text: String::new(),
                version: String::new(),
                headers: Headers::default(),
                body_size: 0,
            });
            e
        };
        let mut half = response(Protocol::Http, 200);
        half.error = error(ErrorType::PairNotFound);
        let mut redis = entry(Protocol::Redis);
        redis.redis =
            Some(RedisInfo { command: "GET".into(), reply: Some("error".into()), code: Some("WRONGTYPE".into()) });
        redis.error = error(ErrorType::Redis);
        let mut redis_ok = redis.clone();
        redis_ok.error = None;
        let mut pg = entry(Protocol::Postgresql);
        pg.postgresql = Some(PostgresqlInfo {
            command: "startup".into(),
            query: None,
            severity: Some("FATAL".into()),
            sqlstate: Some("28P01".into()),
        });
        pg.error = error(ErrorType::Postgresql);
        let mut mysql = entry(Protocol::Mysql);
        mysql.mysql = Some(MysqlInfo { command: "login".into(), query: None, code: Some(1045), sqlstate: None });
        mysql.error = error(ErrorType::Mysql);
        let mut mysql_half = mysql.clone();
        mysql_half.error = error(ErrorType::PairNotFound);
        let cases: Vec<(Entry, &str, &str, bool)> = vec![
            (redis, "redis/WRONGTYPE", "RedisError", true),
            (redis_ok, "redis", "HTTPResponse", false),
            (pg, "postgresql/28P01", "PostgreSQLError", true),
            (mysql, "mysql/1045", "MySQLError", true),
            (mysql_half, "half-connection", "HalfConnection", true),
            (tcp, "tcp/Reset", "TCPReset", true),
            (icmp(4, 3, "DestinationUnreachable"), "icmp/DestinationUnreachable", "ICMPDestinationUnreachable", true),
            (icmp(6, 133, "RouterSolicitation"), "icmp/RouterSolicitation", "ICMPRouterSolicitation", false),
            (tls, "tls/unknown_ca", "TLSHandshakeFailure", true),
            (dns("SERVFAIL", Some(ErrorType::Dns)), "dns/SERVFAIL", "DNSError", true),
            (dns("NXDOMAIN", None), "dns/NXDOMAIN", "DNSResponse", false),
            (dns("NOERROR", Some(ErrorType::Dns)), "dns/retransmitted", "DNSError", true),
            (unanswered, "dns/timeout", "DNSTimeout", true),
            (reset, "http2/CANCEL", "HTTP2StreamReset", true),
            (half, "half-connection", "HalfConnection", true),
            (response(Protocol::Http, 503), "http/5xx", "HTTPServerError", true),
            (response(Protocol::Http2, 404), "http2/4xx", "HTTPClientError", true),
            (response(Protocol::Http, 200), "http/2xx", "HTTPResponse", false),
            (entry(Protocol::Tcp), "tcp", "HTTPResponse", false),
        ];
        for (e, label, reason, is_error) in cases {
            let k = Kind::of(&e);
            assert_eq!((k.to_string().as_str(), k.event_reason().as_str(), k.is_error()), (label, reason, is_error));
        }
    }
}
