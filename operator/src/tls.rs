//! HTTPS for everything the operator serves (agents' ingest with their tokens, the dashboard, recordings),
//! when it is given a certificate. Handshakes run in tasks of their own, so a client that connects and
//! never finishes its handshake delays nobody; finished connections are handed to axum in order.
//!
//! Certificates are renewed (cert-manager, a rotated Secret) while the operator runs: the files are read
//! again every `RELOAD_EVERY`, and new handshakes use what they hold once it parses; a pair that does not
//! parse (a half-written update) is logged and the previous one kept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are read again.
const RELOAD_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The server configuration from a PEM certificate chain and its PEM private key, read again every
/// `RELOAD_EVERY` (by a task; call from within the runtime).
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let resolver = Arc::new(Reloading::load(cert.to_owned(), key.to_owned())?);
    tokio::spawn({
        let resolver = resolver.clone();
        async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                resolver.reload();
            }
        }
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver))
}

/// The current certificate and key, and the files they come from.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    /// The files' bytes (to notice a change) and what they make.
    current: RwLock<(Vec<u8>, Arc<CertifiedKey>)>,
}

impl Reloading {
    fn load(cert: PathBuf, key: PathBuf) -> Result<Reloading, TlsError> {
        let (bytes, certified) = read_pair(&cert, &key)?;
        Ok(Reloading { cert, key, current: RwLock::new((bytes, certified)) })
    }

    /// Reads the files again; swaps in what they hold if it changed and parses. Returns whether it did.
    fn reload(&self) -> bool {
        match read_pair(&self.cert, &self.key) {
            Ok((bytes, certified)) => {
                let Ok(mut current) = self.current.write() else { return false };
                if current.0 == bytes {
                    return false;
                }
                *current = (bytes, certified);
                tracing::info!(cert = %self.cert.display(), "serving a renewed certificate");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the renewed certificate; keeping the current one");
                false
            }
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.1.clone())
    }
}

/// The bytes of both files, and the certified key they make.
fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Arc<CertifiedKey>), TlsError> {
    let file_err = |path: &Path, detail: String| TlsError::File { path: path.display().to_string(), detail };
    let mut bytes = std::fs::read(cert).map_err(|e| file_err(cert, e.to_string()))?;
    let key_bytes = std::fs::read(key).map_err(|e| file_err(key, e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<_, _>>().map_err(|e| file_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| file_err(key, e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, private, &provider)?;
    bytes.extend_from_slice(&key_bytes);
    Ok((bytes, Arc::new(certified)))
}

/// Accepts TCP connections and completes their handshakes concurrently.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: rustls::ServerConfig) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, done) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = done.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task only ends when this listener is gone; wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
