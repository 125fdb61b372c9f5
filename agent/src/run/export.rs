//! Entries exported by the agent itself (a TapConfig's `export.otlp` with `sender: agents`): every
//! entry found goes, besides the outbox to the operator, into a bounded OTLP queue sent by the runtime's
//! tasks (`faultline-otlp`). The engine thread never waits on it; what does not fit is counted in
//! `faultline_export_dropped_total` on this agent's /metrics.
//!
//! What the agent sends is what it found: no pod names, workloads or causes (those are the operator's),
//! and a connection between two nodes may be found by both nodes' agents — the price of keeping the
//! operator out of the path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use faultline_core::Entry;
use faultline_otlp::{ExportMetrics, Exporter, Protocol, Target};

use crate::cli::RunArgs;

pub struct AgentExport {
    exporter: Arc<Exporter>,
    metrics: ExportMetrics,
}

impl AgentExport {
    /// The export `args` ask for, its senders started on the current runtime; none when not asked.
    /// The mounted Secrets are read again every `RELOAD`: the kubelet updates a Secret's volume when the
    /// Secret changes, and a rotated token is then sent from here without a rollout or a lost queue.
    pub fn start(args: &RunArgs) -> Result<Option<AgentExport>, String> {
        let Some(endpoint) = &args.otlp_endpoint else { return Ok(None) };
        let protocol = Protocol::from_name(&args.otlp_protocol)
            .ok_or_else(|| format!("--otlp-protocol {:?}: grpc or http/protobuf", args.otlp_protocol))?;
        let source = Source {
            endpoint: endpoint.clone(),
            protocol,
            headers_dir: args.otlp_headers_dir.clone(),
            ca_file: args.otlp_ca_file.clone(),
            server_name: args.otlp_server_name.clone(),
        };
        let secrets = Secrets::read(&source)?;
        let target = source.target(&secrets)?;
        let metrics = ExportMetrics::default();
        // The senders run as long as the process: their handles are not needed.
        let (exporter, _senders) = Exporter::start(&args.tapconfig, args.otlp_queue_size, metrics.clone(), &target);
        tracing::info!(%endpoint, protocol = %args.otlp_protocol, queue_size = args.otlp_queue_size,
            "exporting entries over OTLP");
        tokio::spawn(reload(exporter.clone(), source, secrets));
        Ok(Some(AgentExport { exporter, metrics }))
    }

    /// Entries just found: queued if they fit (copies: the outbox keeps the originals).
    pub fn push(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let shared: Vec<Arc<Entry>> = entries.iter().cloned().map(Arc::new).collect();
        self.exporter.push(&shared);
    }

    /// `faultline_export_*` in Prometheus text, for /metrics.
    pub fn render(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        self.metrics.register(registry.sub_registry_with_prefix("faultline"));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        // The encoder ends with `# EOF`, which only the last part of a page may carry.
        out.lines().filter(|l| *l != "# EOF").map(|l| format!("{l}\n")).collect()
    }
}

/// How often the mounted Secrets are read again.
const RELOAD: Duration = Duration::from_secs(20);

/// Where the agent sends, as its flags say.
struct Source {
    endpoint: String,
    protocol: Protocol,
    headers_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
}

impl Source {
    fn target(&self, secrets: &Secrets) -> Result<Target, String> {
        let ca = secrets.ca.as_deref();
        Target::new(&self.endpoint, self.protocol, &secrets.headers, ca, self.server_name.as_deref())
            .map_err(|e| format!("OTLP export: {e}"))
    }
}

/// What the mounted Secrets held when last read.
#[derive(PartialEq)]
struct Secrets {
    headers: Vec<(String, String)>,
    ca: Option<Vec<u8>>,
}

impl Secrets {
    fn read(source: &Source) -> Result<Secrets, String> {
        let headers = match &source.headers_dir {
            Some(dir) => headers(dir).map_err(|e| format!("--otlp-headers-dir {}: {e}", dir.display()))?,
            None => Vec::new(),
        };
        let ca = match &source.ca_file {
            Some(f) => Some(std::fs::read(f).map_err(|e| format!("--otlp-ca-file {}: {e}", f.display()))?),
            None => None,
        };
        Ok(Secrets { headers, ca })
    }
}

/// Follows the mounted Secrets: a change becomes the exporter's target; one that cannot be used (a file
/// gone half-way through an update, a bad header) is logged and the last good target kept.
async fn reload(exporter: Arc<Exporter>, source: Source, mut last: Secrets) {
    loop {
        tokio::time::sleep(RELOAD).await;
        let now = match Secrets::read(&source) {
            Ok(now) if now != last => now,
            Ok(_) => continue,
            Err(why) => {
                tracing::warn!(%why, "the OTLP export's Secrets cannot be read again; the last ones are used");
                continue;
            }
        };
        match source.target(&now) {
            Ok(target) => {
                exporter.retarget(target);
                tracing::info!("the OTLP export's Secrets changed; sending with the new ones");
                last = now;
            }
            Err(why) => tracing::warn!(%why, "the OTLP export's changed Secrets cannot be used; the last ones are"),
        }
    }
}

/// A mounted Secret as headers: every file is one, its name the header's, its content the value.
/// Kubernetes' own entries (`..data`, `..2024_…`) start with dots and are skipped.
fn headers(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        out.push((name, std::fs::read_to_string(entry.path())?.trim().to_owned()));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mounted_secret_is_read_as_headers() {
        let dir = std::env::temp_dir().join(format!("faultline-otlp-headers-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("..2026_12_06")).expect("dir");
        std::fs::write(dir.join("authorization"), "Bearer t0ken\n").expect("write");
        std::fs::write(dir.join("x-scope-orgid"), "team-a").expect("write");
        std::fs::write(dir.join("..data"), "not a header").expect("write");
        let got = headers(&dir).expect("reads");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(
            got,
            vec![("authorization".into(), "Bearer t0ken".into()), ("x-scope-orgid".into(), "team-a".into())]
        );
    }
}
