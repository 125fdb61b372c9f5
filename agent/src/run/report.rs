//! Sends entries and statistics to the operator in batches, authenticated with the agent's ServiceAccount
//! token. When the operator is unreachable the batch goes back into the outbox and the reporter backs off;
//! it recovers by itself. A batch is retried with the same sequence number, so the operator counts it once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_core::ingest::{Batch, INGEST_PATH};

use super::counters::Counters;
use super::node_addresses;
use super::outbox::Outbox;
use crate::cli::RunArgs;

const MAX_BATCH: usize = 1000;
/// A batch's entries and recordings together, about: well under the operator's 32 MiB request limit
/// (a few hundred recorded errors' pcaps would pass it).
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Retries slow down to this, so that an operator back from an outage hears from every agent soon.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the operator's CA file is read again (a renewed CA is trusted within this).
const CA_RELOAD_EVERY: Duration = Duration::from_secs(10);

pub struct Reporter {
    url: Option<String>,
    token_file: std::path::PathBuf,
    node: String,
    run_id: String,
    interval: Duration,
    outbox: Arc<Outbox>,
    counters: Arc<Counters>,
    client: std::sync::Mutex<Client>,
}

/// The HTTP client, built for the operator CA it was built with.
struct Client {
    agent: ureq::Agent,
    ca_file: Option<std::path::PathBuf>,
    /// The CA file's bytes the agent trusts.
    ca: Vec<u8>,
    checked: Instant,
}

impl Client {
    fn new(ca_file: Option<&std::path::Path>) -> Result<Client, String> {
        let ca = match ca_file {
            Some(path) => std::fs::read(path).map_err(|e| format!("operator CA {}: {e}", path.display()))?,
            None => Vec::new(),
        };
        let mut config = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10)));
        if let Some(path) = ca_file {
            config = config.tls_config(operator_ca(path, &ca)?);
        }
        let agent = config.http_status_as_error(false).build().new_agent();
        Ok(Client { agent, ca_file: ca_file.map(Into::into), ca, checked: Instant::now() })
    }

    /// The agent to use now: rebuilt when the CA file changed (a renewal), checked every
    /// `CA_RELOAD_EVERY`. A CA file that cannot be used is logged and the current one kept.
    fn current(&mut self) -> ureq::Agent {
        if let Some(path) = self.ca_file.clone().filter(|_| self.checked.elapsed() >= CA_RELOAD_EVERY) {
            self.checked = Instant::now();
            if std::fs::read(&path).is_ok_and(|now| now != self.ca) {
                match Client::new(Some(&path)) {
                    Ok(fresh) => {
                        tracing::info!(ca = %path.display(), "trusting the renewed operator CA");
                        *self = fresh;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot use the renewed operator CA; keeping the current one"),
                }
            }
        }
        self.agent.clone()
    }
}

impl Reporter {
    pub fn new(args: &RunArgs, outbox: Arc<Outbox>, counters: Arc<Counters>) -> Result<Reporter, String> {
        let client = std::sync::Mutex::new(Client::new(args.operator_ca_file.as_deref())?);
        Ok(Reporter {
            url: args.operator_url.as_ref().map(|u| format!("{}{INGEST_PATH}", u.trim_end_matches('/'))),
            token_file: args.token_file.clone(),
            node: args.node_name.clone().unwrap_or_default(),
            run_id: args.run_id.clone(),
            interval: Duration::from_millis(args.report_interval_ms),
            outbox,
            counters,
            client,
        })
    }

    pub fn run(&self, stop: &AtomicBool) {
        let Some(url) = &self.url else {
            tracing::warn!("no --operator-url: entries are counted and logged, not sent");
            while !stop.load(Ordering::Relaxed) {
                for i in self.outbox.take(MAX_BATCH) {
                    tracing::info!(entry = %serde_json::to_string(&i.entry).unwrap_or_default(), "entry");
                }
                std::thread::sleep(self.interval);
            }
            return;
        };
        let mut seq = 0u64;
        let mut body = Vec::new();
        // Batches to send, in order: one at a time, unless a refused one was split.
        let mut pending: std::collections::VecDeque<Batch> = std::collections::VecDeque::new();
        let mut backoff = self.interval;
        let mut last_send = Instant::now() - self.interval;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            // Every interval, and at once while a full batch is waiting: at one batch per interval a busy
            // node would find entries faster than it sends them.
            let due = last_send.elapsed() >= self.interval || self.outbox.len_and_bytes().0 >= MAX_BATCH;
            if pending.is_empty() && (due || stopping) {
                let items = self.outbox.take_bounded(MAX_BATCH, MAX_BATCH_BYTES);
                seq += 1;
                let mut batch = Batch {
                    node: self.node.clone(),
                    agent_run: self.run_id.clone(),
                    seq,
                    stats: self.counters.snapshot(),
                    node_addresses: node_addresses::read(),
                    ..Batch::default()
                };
                for i in items {
                    if let Some(p) = i.pcap {
                        batch.pcaps.insert(i.entry.id.clone(), p);
                    }
                    batch.entries.push(i.entry);
                }
                pending.push_back(batch);
            }
            if let Some(batch) = pending.pop_front() {
                last_send = Instant::now();
                match self.send(url, &batch, &mut body) {
                    Ok(()) => {
                        self.counters.add(&self.counters.batches_sent, 1);
                        backoff = self.interval;
                    }
                    Err(SendError::Refused(e)) => {
                        // The operator will never take this batch as it is (too large, or not understood):
                        // retrying it would block every newer one. Halves are tried in its place, numbered
                        // anew; a single entry refused alone is dropped and counted.
                        self.counters.add(&self.counters.batches_failed, 1);
                        tracing::warn!(error = %e, entries = batch.entries.len(), "the operator refused a batch");
                        match split(batch, &mut seq) {
                            Some((first, second)) => {
                                pending.push_front(second);
                                pending.push_front(first);
                            }
                            None => self.counters.add(&self.counters.entries_refused, 1),
                        }
                        continue;
                    }
                    Err(SendError::Transient(e)) => {
                        self.counters.add(&self.counters.batches_failed, 1);
                        tracing::warn!(error = %e, entries = batch.entries.len(), "cannot reach the operator; will retry");
                        // Keep the batch (same sequence number) unless stopping; newer entries keep queueing.
                        if stopping {
                            let mut pcaps = batch.pcaps;
                            let items = batch
                                .entries
                                .into_iter()
                                .map(|e| super::outbox::Item { pcap: pcaps.remove(&e.id), entry: e })
                                .collect();
                            let lost = self.outbox.put_back(items);
                            self.counters.add(&self.counters.buffer_dropped, lost);
                            return;
                        }
                        pending.push_front(batch);
                        sleep_unless(stop, backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            if stopping && self.outbox.len_and_bytes().0 == 0 {
                return;
            }
            if !stopping {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Posts `batch`, serialised into `body` (kept by the caller from batch to batch: a body is most of a
    /// megabyte, and a fresh one per batch had the allocator fault in fresh pages for each).
    fn send(&self, url: &str, batch: &Batch, body: &mut Vec<u8>) -> Result<(), SendError> {
        // Projected tokens rotate: read it for every request.
        let token = std::fs::read_to_string(&self.token_file)
            .map_err(|e| SendError::Transient(format!("token {}: {e}", self.token_file.display())))?;
        body.clear();
        serde_json::to_writer(&mut *body, batch).map_err(|e| SendError::Refused(e.to_string()))?;
        let agent = match self.client.lock() {
            Ok(mut c) => c.current(),
            Err(_) => return Err(SendError::Transient("client lock poisoned".into())),
        };
        let resp = agent
            .post(url)
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .header("Content-Type", "application/json")
            .send(&body[..])
            .map_err(|e| SendError::Transient(e.to_string()))?;
        let status = resp.status().as_u16();
        // Read the answer to its end: only then can the connection go back to the pool and carry the next
        // batch (a connection dropped with the answer unread is closed, and reset by the kernel when the
        // operator's TLS close_notify arrives after it).
        let _ = resp.into_body().read_to_vec();
        match status {
            200..=299 => Ok(()),
            // Malformed for this operator (version skew), too large, or unprocessable: never better.
            400 | 413 | 422 => Err(SendError::Refused(format!("operator answered {status}"))),
            code => Err(SendError::Transient(format!("operator answered {code}"))),
        }
    }
}

/// Why a batch was not delivered.
#[derive(Debug)]
enum SendError {
    /// Worth retrying: the operator was unreachable, busy, not leading, or the token was not yet valid.
    Transient(String),
    /// The operator will never accept this batch as it is.
    Refused(String),
}

/// Halves of a refused batch (entries and their recordings), the first keeping its sequence number, the
/// second numbered after every batch so far; `None` for a single entry.
fn split(batch: Batch, seq: &mut u64) -> Option<(Batch, Batch)> {
    if batch.entries.len() < 2 {
        return None;
    }
    let Batch { node, agent_run, seq: first_seq, stats, mut entries, mut pcaps, node_addresses } = batch;
    let rest = entries.split_off(entries.len() / 2);
    let rest_pcaps = rest.iter().filter_map(|e| Some((e.id.clone(), pcaps.remove(&e.id)?))).collect();
    *seq += 1;
    let first = Batch {
        node: node.clone(),
        agent_run: agent_run.clone(),
        seq: first_seq,
        stats: stats.clone(),
        entries,
        pcaps,
        node_addresses: node_addresses.clone(),
    };
    let second = Batch { node, agent_run, seq: *seq, stats, entries: rest, pcaps: rest_pcaps, node_addresses };
    Some((first, second))
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// TLS that trusts exactly the certificates in `pem` (read from `path`), to verify the operator.
pub(crate) fn operator_ca(path: &std::path::Path, pem: &[u8]) -> Result<ureq::tls::TlsConfig, String> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let mut certs = Vec::new();
    for item in parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("operator CA {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("operator CA {}: no certificate in the file", path.display()));
    }
    Ok(TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(certs))).build())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;

    use clap::Parser;
    use faultline_core::entry::{Endpoint, Protocol};
    use faultline_core::{Entry, Timestamp};

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::run::outbox::Item;

    /// A real HTTP endpoint on loopback that answers every POST with 204 and counts the entries it got.
    fn sink(received: Arc<AtomicUsize>) -> String {
        sink_refusing(received, |_| false)
    }

    /// Like `sink`, but answers 413 to the batches `refuse` picks (counting none of their entries).
    fn sink_refusing(received: Arc<AtomicUsize>, refuse: fn(&Batch) -> bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let mut r = BufReader::new(conn);
                loop {
                    let mut len = 0;
                    let mut line = String::new();
                    while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        line.clear();
                    }
                    if line != "\r\n" {
                        break;
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        break;
                    }
                    let batch: Batch = serde_json::from_slice(&body).expect("a batch");
                    if refuse(&batch) {
                        let _ = r.get_mut().write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n");
                        continue;
                    }
                    received.fetch_add(batch.entries.len(), Ordering::SeqCst);
                    let _ = r.get_mut().write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
                }
            }
        });
        format!("http://{addr}")
    }

    /// `faultline-agent run` arguments reporting to `url` every `interval_ms`, with a token file of its own
    /// (named after `name`; the caller removes it).
    fn run_args(url: &str, name: &str, interval_ms: u64) -> (Box<crate::cli::RunArgs>, std::path::PathBuf) {
        let token = std::env::temp_dir().join(format!("faultline-report-{name}-{}", std::process::id()));
        std::fs::write(&token, "t").expect("token");
        let interval = interval_ms.to_string();
        let cli = Cli::try_parse_from([
            "faultline-agent",
            "run",
            "--operator-url",
            url,
            "--token-file",
            token.to_str().expect("utf-8"),
            "--report-interval-ms",
            &interval,
        ])
        .expect("arguments");
        let Command::Run(args) = cli.command else { panic!("not run") };
        (args, token)
    }

    /// `n` TCP entries between two fixed endpoints, with ids from `id`.
    fn tcp_entries(n: usize, id: impl Fn(usize) -> String) -> Vec<Item> {
        let src = Endpoint::new("10.0.0.1".parse().expect("ip"), Some(1));
        let dst = Endpoint::new("10.0.0.2".parse().expect("ip"), Some(2));
        (0..n)
            .map(|i| Item {
                entry: Entry { id: id(i), ..Entry::new(Protocol::Tcp, Timestamp(1), src.clone(), dst.clone()) },
                pcap: None,
            })
            .collect()
    }

    /// Runs `reporter` on a thread until the returned flag is set.
    fn start(reporter: Reporter) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let running = {
            let stop = stop.clone();
            std::thread::spawn(move || reporter.run(&stop))
        };
        (stop, running)
    }

    /// A batch the operator refuses (413) is split until its parts are accepted; an entry refused even
    /// alone is dropped and counted; nothing newer waits behind it.
    #[test]
    fn a_refused_batch_is_split_and_a_lone_refused_entry_dropped_and_counted() {
        let received = Arc::new(AtomicUsize::new(0));
        // More than 100 entries is "too large"; the entry "poison" is refused whatever it travels with.
        let url =
            sink_refusing(received.clone(), |b| b.entries.len() > 100 || b.entries.iter().any(|e| e.id == "poison"));
        let (args, token) = run_args(&url, "split", 10);
        let outbox = Arc::new(Outbox::new(1 << 30));
        outbox.push(tcp_entries(500, |i| if i == 250 { "poison".into() } else { i.to_string() }));
        let counters = Arc::new(Counters::default());
        let reporter = Reporter::new(&args, outbox.clone(), counters.clone()).expect("reporter");
        let (stop, running) = start(reporter);
        let deadline = Instant::now() + Duration::from_secs(20);
        while received.load(Ordering::SeqCst) < 499 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        running.join().expect("reporter");
        let _ = std::fs::remove_file(&token);
        assert_eq!(received.load(Ordering::SeqCst), 499, "every entry but the refused one");
        assert_eq!(counters.entries_refused.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_backlog_is_sent_at_once_not_one_batch_per_interval() {
        let received = Arc::new(AtomicUsize::new(0));
        let url = sink(received.clone());
        let (args, token) = run_args(&url, "test", 60_000);
        let outbox = Arc::new(Outbox::new(1 << 30));
        outbox.push(tcp_entries(3 * MAX_BATCH + 10, |i| i.to_string()));
        let reporter = Reporter::new(&args, outbox.clone(), Arc::new(Counters::default())).expect("reporter");
        let (stop, running) = start(reporter);
        // With a minute between batches, only sending a full backlog at once gets 3000 out in time.
        let deadline = Instant::now() + Duration::from_secs(20);
        while received.load(Ordering::SeqCst) < 3 * MAX_BATCH && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(received.load(Ordering::SeqCst), 3 * MAX_BATCH, "three full batches, the rest waits");
        assert_eq!(outbox.len_and_bytes().0, 10);
        stop.store(true, Ordering::SeqCst);
        running.join().expect("reporter thread");
        assert_eq!(received.load(Ordering::SeqCst), 3 * MAX_BATCH + 10, "stopping sends what is left");
        let _ = std::fs::remove_file(token);
    }
}
