//! The kind an entry is counted under (SPEC §5, ErrorView `countsByKind`): `tcp/Reset`,
//! `icmp/DestinationUnreachable`, `half-connection`, `http/5xx`, `dns/SERVFAIL`, `tls/unknown_ca`,
//! `grpc/UNAVAILABLE`, `http2/CANCEL`, … — also the KFL selector `kind`, so that a count can be clicked
//! into a query. Written through `Display`, so matching on it allocates nothing.

use std::fmt;

use crate::entry::{Entry, ErrorType, Kind};

/// `KindLabel(&entry).to_string()`, or `format!("{}", …)` into any writer.
pub struct KindLabel<'a>(pub &'a Entry);

impl fmt::Display for KindLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        if let Some(t) = &e.tls {
            return write!(f, "tls/{}", t.alert.as_deref().unwrap_or("no-server-hello"));
        }
        if let Some(d) = &e.dns {
            return match (&e.error, &d.rcode_name) {
                (Some(err), _) if err.kind == ErrorType::PairNotFound => f.write_str("dns/timeout"),
                // Answered fine, but only after the client asked again.
                (Some(_), Some(rcode)) if rcode == "NOERROR" => f.write_str("dns/retransmitted"),
                (_, Some(rcode)) => write!(f, "dns/{rcode}"),
                (_, None) => f.write_str("dns"),
            };
        }
        if let (Some(err), Some(g)) = (&e.error, &e.grpc) {
            if err.kind == ErrorType::Grpc {
                return write!(f, "grpc/{}", g.status_name.as_deref().unwrap_or("no-status"));
            }
        }
        if let Some(h) = &e.http2 {
            return write!(f, "http2/{}", h.error_code);
        }
        match e.kind() {
            Kind::Tcp(state) => write!(f, "tcp/{}", state.as_str()),
            Kind::Icmp(type_name) => write!(f, "icmp/{type_name}"),
            Kind::Error(ErrorType::PairNotFound) => f.write_str("half-connection"),
            Kind::Error(ErrorType::Dissection) => f.write_str("dissection"),
            Kind::Error(ErrorType::Timeout) => f.write_str("stream-timeout"),
            Kind::Error(kind) => f.write_str(kind.as_str()),
            Kind::Response(status) => write!(f, "{}/{}xx", e.protocol.as_str(), status / 100),
            Kind::Other => f.write_str(e.protocol.as_str()),
        }
    }
}
