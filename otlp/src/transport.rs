//! Sending one encoded `ExportLogsServiceRequest` to an OTLP endpoint, over gRPC (HTTP/2, the unary
//! `LogsService/Export` call) or HTTP/protobuf (`POST /v1/logs`, HTTP/1.1), in the clear or over TLS —
//! and saying what the receiver made of it, in the terms the OTLP specification gives for retrying:
//! throttling and unavailability are retried, a refusal is not.
//!
//! One connection is kept and reused; any transport error drops it and the next attempt connects again.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::proto::ExportLogsServiceResponse;

const GRPC_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const HTTP_PATH: &str = "/v1/logs";
/// A connection, and then a request, get this long.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A response body read at most (a receiver's answer is a few bytes; an error page may be more).
const MAX_RESPONSE: usize = 64 << 10;

/// How records go: the two OTLP transports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: `LogsService/Export` over HTTP/2 (a collector's port 4317).
    #[default]
    Grpc,
    /// HTTP/protobuf: `POST /v1/logs` over HTTP/1.1 (port 4318).
    HttpProtobuf,
}

impl Protocol {
    /// By its name in OTLP's configuration (`OTEL_EXPORTER_OTLP_PROTOCOL`): `grpc`, `http/protobuf`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("endpoint {0:?} is not an http:// or https:// URL with a host")]
    Endpoint(String),
    #[error("header {0:?} from the headers Secret is not a valid HTTP header")]
    Header(String),
    #[error("the CA bundle holds no PEM certificate")]
    NoCertificate,
    #[error("the CA bundle: {0}")]
    Certificate(#[from] rustls::Error),
    #[error("server name {0:?} is not a DNS name or an address")]
    ServerName(String),
}

/// Where and how to send: built once per configuration, by the reconcile that read it.
#[derive(Clone)]
pub struct Target {
    protocol: Protocol,
    host: String,
    port: u16,
    /// The request's URI (path and authority).
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Target {
    /// `ca` is a PEM bundle to trust instead of the public roots; `server_name` the name the certificate
    /// must carry when it is not the endpoint's host.
    pub fn new(
        endpoint: &str,
        protocol: Protocol,
        headers: &[(String, String)],
        ca: Option<&[u8]>,
        server_name: Option<&str>,
    ) -> Result<Target, TargetError> {
        let bad = || TargetError::Endpoint(endpoint.to_owned());
        let parsed: Uri = endpoint.parse().map_err(|_| bad())?;
        let https = match parsed.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = parsed.authority().ok_or_else(bad)?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = match (protocol, parsed.path()) {
            (Protocol::Grpc, _) => GRPC_PATH,
            (Protocol::HttpProtobuf, "" | "/") => HTTP_PATH,
            (Protocol::HttpProtobuf, p) => p,
        };
        let uri = Uri::builder()
            .scheme(if https { "https" } else { "http" })
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| bad())?;
        let headers = headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::try_from(k.to_ascii_lowercase()).map_err(|_| TargetError::Header(k.clone()))?;
                let value = HeaderValue::try_from(v.trim()).map_err(|_| TargetError::Header(k.clone()))?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, TargetError>>()?;
        let tls = if https {
            let name = server_name.unwrap_or(&host);
            let name = ServerName::try_from(name.to_owned()).map_err(|_| TargetError::ServerName(name.to_owned()))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(client_config(ca, protocol)?)), name))
        } else {
            None
        };
        Ok(Target { protocol, host, port, uri, headers, tls })
    }
}

fn client_config(ca: Option<&[u8]>, protocol: Protocol) -> Result<rustls::ClientConfig, TargetError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem) => {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect();
            if certs.is_empty() {
                return Err(TargetError::NoCertificate);
            }
            for cert in certs {
                roots.add(cert)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = match protocol {
        Protocol::Grpc => vec![b"h2".to_vec()],
        Protocol::HttpProtobuf => vec![b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// What the receiver made of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Taken; `rejected` records of it refused by the receiver (OTLP partial success).
    Sent { rejected: u64 },
    /// Not taken now (unreachable, throttled, unavailable): the same request may be sent again.
    Retry(String),
    /// Refused for good (bad request, unauthorised): sending it again would be refused again.
    Refused(String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Connection {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// A target and the connection to it, if one is open.
pub struct Sender {
    target: Target,
    connection: Option<Connection>,
}

impl Sender {
    pub fn new(target: Target) -> Sender {
        Sender { target, connection: None }
    }

    pub async fn send(&mut self, message: Bytes) -> Outcome {
        match tokio::time::timeout(TIMEOUT * 2, self.attempt(message)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                self.connection = None;
                Outcome::Retry(e)
            }
            Err(_) => {
                self.connection = None;
                Outcome::Retry("no answer in time".into())
            }
        }
    }

    async fn attempt(&mut self, message: Bytes) -> Result<Outcome, String> {
        if self.connection.as_ref().is_none_or(|c| !c.ready()) {
            self.connection = Some(self.connect().await?);
        }
        let t = &self.target;
        let (content_type, body) = match t.protocol {
            Protocol::Grpc => ("application/grpc", grpc_frame(&message)),
            Protocol::HttpProtobuf => ("application/x-protobuf", message),
        };
        let mut req = Request::builder().method(Method::POST).uri(t.uri.clone()).header(CONTENT_TYPE, content_type);
        if t.protocol == Protocol::Grpc {
            req = req.header("te", "trailers");
        } else {
            req = req.header(http::header::HOST, t.uri.authority().map(|a| a.as_str()).unwrap_or_default());
        }
        for (k, v) in &t.headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| format!("request: {e}"))?;
        let response = match self.connection.as_mut() {
            Some(Connection::Http1(s)) => s.send_request(req).await,
            Some(Connection::Http2(s)) => s.send_request(req).await,
            None => return Err("not connected".into()),
        }
        .map_err(|e| format!("sending: {e}"))?;
        let (parts, body) = response.into_parts();
        let collected = http_body_util::Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        Ok(match t.protocol {
            Protocol::Grpc => grpc_outcome(parts.status, &parts.headers, trailers.as_ref(), &body),
            Protocol::HttpProtobuf => http_outcome(parts.status, &body),
        })
    }

    async fn connect(&self) -> Result<Connection, String> {
        let t = &self.target;
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect((t.host.as_str(), t.port)))
            .await
            .map_err(|_| format!("connecting to {}:{}: timed out", t.host, t.port))?
            .map_err(|e| format!("connecting to {}:{}: {e}", t.host, t.port))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &t.tls {
            Some((connector, name)) => Box::new(
                tokio::time::timeout(TIMEOUT, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| "TLS handshake: timed out".to_owned())?
                    .map_err(|e| format!("TLS handshake: {e}"))?,
            ),
            None => Box::new(tcp),
        };
        let io = TokioIo::new(io);
        match t.protocol {
            Protocol::Grpc => {
                let (send, conn) =
                    http2::handshake(TokioExecutor::new(), io).await.map_err(|e| format!("HTTP/2: {e}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Connection::Http2(send))
            }
            Protocol::HttpProtobuf => {
                let (send, conn) = http1::handshake(io).await.map_err(|e| format!("HTTP/1.1: {e}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Connection::Http1(send))
            }
        }
    }
}

impl Connection {
    fn ready(&self) -> bool {
        match self {
            Connection::Http1(s) => s.is_ready(),
            Connection::Http2(s) => s.is_ready(),
        }
    }
}

/// A gRPC message: not compressed, its length, itself.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    b.put_slice(message);
    b.freeze()
}

/// Partial success, from an `ExportLogsServiceResponse` (an empty or unreadable one rejects nothing).
fn rejected(message: &[u8]) -> u64 {
    ExportLogsServiceResponse::decode(message)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0))
}

/// OTLP/HTTP: 2xx is taken; 429, 502, 503 and 504 may be retried; anything else is refused.
fn http_outcome(status: StatusCode, body: &[u8]) -> Outcome {
    if status.is_success() {
        return Outcome::Sent { rejected: rejected(body) };
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned();
    let what = format!("HTTP {status}: {text}");
    match status.as_u16() {
        429 | 502 | 503 | 504 => Outcome::Retry(what),
        _ => Outcome::Refused(what),
    }
}

/// gRPC: the status is in the trailers (or, for a trailers-only answer, the headers). The codes OTLP
/// names retryable are retried; the rest are refusals.
fn grpc_outcome(
    status: StatusCode,
    headers: &http::HeaderMap,
    trailers: Option<&http::HeaderMap>,
    body: &[u8],
) -> Outcome {
    if !status.is_success() {
        return http_outcome(status, body);
    }
    let field = |name: &str| trailers.and_then(|t| t.get(name)).or_else(|| headers.get(name));
    let code = field("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u32>().ok());
    let message = field("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match code {
        Some(0) => Outcome::Sent { rejected: body.get(5..).map_or(0, rejected) },
        // CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS.
        Some(c @ (1 | 4 | 8 | 10 | 11 | 14 | 15)) => Outcome::Retry(format!("gRPC status {c}: {message}")),
        Some(c) => Outcome::Refused(format!("gRPC status {c}: {message}")),
        None => Outcome::Retry("gRPC answer without a status".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ExportLogsPartialSuccess;

    #[test]
    fn endpoints_become_the_request_uri() {
        let t = Target::new("http://collector:4318", Protocol::HttpProtobuf, &[], None, None).expect("valid");
        assert_eq!(
            (t.host.as_str(), t.port, t.uri.to_string().as_str()),
            ("collector", 4318, "http://collector:4318/v1/logs")
        );
        let t = Target::new("http://[::1]:4317", Protocol::Grpc, &[], None, None).expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 4317));
        assert!(t.uri.path().ends_with("LogsService/Export"));
        let t = Target::new("https://otel.example/custom/logs", Protocol::HttpProtobuf, &[], None, None).expect("ok");
        assert_eq!((t.port, t.uri.path()), (443, "/custom/logs"));
        assert!(t.tls.is_some());
        for bad in ["collector:4317", "ftp://x", "http://", "not a url"] {
            assert!(Target::new(bad, Protocol::Grpc, &[], None, None).is_err(), "{bad}");
        }
        let bad_header = [("bad header".to_owned(), "x".to_owned())];
        assert!(matches!(
            Target::new("http://c:1", Protocol::Grpc, &bad_header, None, None),
            Err(TargetError::Header(_))
        ));
        assert!(matches!(
            Target::new("https://c:1", Protocol::Grpc, &[], Some(b"no pem here"), None),
            Err(TargetError::NoCertificate)
        ));
    }

    #[test]
    fn answers_are_sorted_as_otlp_says() {
        let partial = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess { rejected_log_records: 3, error_message: "x".into() }),
        }
        .encode_to_vec();
        assert_eq!(http_outcome(StatusCode::OK, &partial), Outcome::Sent { rejected: 3 });
        assert_eq!(http_outcome(StatusCode::OK, b""), Outcome::Sent { rejected: 0 });
        assert!(matches!(http_outcome(StatusCode::SERVICE_UNAVAILABLE, b""), Outcome::Retry(_)));
        assert!(matches!(http_outcome(StatusCode::TOO_MANY_REQUESTS, b""), Outcome::Retry(_)));
        assert!(matches!(http_outcome(StatusCode::UNAUTHORIZED, b""), Outcome::Refused(_)));
        let h = http::HeaderMap::new();
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("14"));
        assert!(matches!(grpc_outcome(StatusCode::OK, &h, Some(&t), b""), Outcome::Retry(_)));
        t.insert("grpc-status", HeaderValue::from_static("16"));
        assert!(matches!(grpc_outcome(StatusCode::OK, &h, Some(&t), b""), Outcome::Refused(_)));
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let framed = grpc_frame(&partial);
        assert_eq!(grpc_outcome(StatusCode::OK, &h, Some(&t), &framed), Outcome::Sent { rejected: 3 });
        assert_eq!(&framed[..5], &[0, 0, 0, 0, u8::try_from(partial.len()).expect("small")]);
    }
}
