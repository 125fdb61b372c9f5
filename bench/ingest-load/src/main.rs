//! Simulated agents: each posts one batch of entries per second to the operator's ingest endpoint (with
//! a burst every few seconds), as a node's agent does, and the latency of every post is recorded. Prints
//! one JSON line: batches and entries sent and accepted, failures by status, latency percentiles.
//!
//! The entries look like a cluster's: resets, refused and timed-out connections, HTTP 5xx and ICMP errors
//! between pods named `p-<node>-<k>` (IP 10.<64+node/256>.<node%256>.<k+2>, namespace `ns-<node%50>`)
//! on the agent's own node, and some to addresses outside the cluster.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use faultline_model::ingest::AgentStats;
use faultline_model::{Entry, Timestamp};

#[derive(Parser)]
struct Args {
    /// The operator, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    #[arg(long)]
    token_file: std::path::PathBuf,
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Entries per agent per second (outside bursts).
    #[arg(long, default_value_t = 200)]
    entries: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Every this many seconds an agent's batch is `burst_factor` times larger.
    #[arg(long, default_value_t = 10)]
    burst_every: u64,
    #[arg(long, default_value_t = 5)]
    burst_factor: usize,
    #[arg(long, default_value_t = 10)]
    pods_per_node: usize,
    /// Threads posting (each serves agents in turn).
    #[arg(long, default_value_t = 16)]
    workers: usize,
}

pub fn pod_ip(node: usize, k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 64 + (node / 256) as u8, (node % 256) as u8, (k + 2) as u8))
}

/// An entry as an agent sends it (JSON, as on the wire).
fn entry(node: usize, n: u64, pods: usize, now: &str) -> serde_json::Value {
    let k = n as usize % pods;
    let dst = if n % 10 == 9 { format!("203.0.113.{}", n % 250) } else { pod_ip(node, (k + 1) % pods).to_string() };
    let mut e = serde_json::json!({
        "id": format!("load-{node}-{n}"), "timestamp": now, "node": format!("node-{node}"), "protocol": "tcp",
        "src": {"ip": pod_ip(node, k).to_string(), "port": 40000 + n % 20000},
        "dst": {"ip": dst, "port": 8080}, "elapsedTime": 1.0,
    });
    match n % 4 {
        0 => {
            e["error"] = serde_json::json!({"type": "connection", "msg": "Reset"});
            e["tcp"] = serde_json::json!({"state": "Reset", "by": "server"});
        }
        1 => {
            e["error"] = serde_json::json!({"type": "connection", "msg": "SynSent"});
            e["tcp"] = serde_json::json!({"state": "SynSent", "reason": "refused", "by": "server"});
        }
        _ => {
            e["protocol"] = "http".into();
            e["request"] = serde_json::json!({"method": "GET", "path": "/api", "version": "1.1", "headers": {},
                                              "bodySize": 0});
            e["response"] = serde_json::json!({"status": 503, "statusText": "Service Unavailable", "version": "1.1",
                                               "headers": {}, "bodySize": 0});
        }
    }
    e
}

fn now_rfc3339() -> String {
    Timestamp::from(std::time::SystemTime::now()).to_string()
}

#[derive(Default)]
struct Totals {
    batches: AtomicU64,
    entries: AtomicU64,
    failed: Mutex<std::collections::BTreeMap<String, u64>>,
    latencies_us: Mutex<Vec<u32>>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let token = match std::fs::read_to_string(&args.token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            eprintln!("token {}: {e}", args.token_file.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    let url = format!("{}{}", args.url.trim_end_matches('/'), faultline_model::ingest::INGEST_PATH);
    // What is sent must be what an agent sends: every kind parses as an entry.
    for n in 0..4 {
        if let Err(e) = serde_json::from_value::<Entry>(entry(0, n, args.pods_per_node, &now_rfc3339())) {
            eprintln!("a generated entry does not parse: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let totals = Arc::new(Totals::default());
    // A new run of each agent: the operator counts each (run, seq) once, so a second load must not
    // reuse the first one's run names.
    let run = format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let start = Instant::now();
    let workers: Vec<_> = (0..args.workers)
        .map(|w| {
            let (url, token, totals, run) = (url.clone(), token.clone(), totals.clone(), run.clone());
            let mine: Vec<usize> = (0..args.agents).filter(|a| a % args.workers == w).collect();
            let (entries, seconds, pods) = (args.entries, args.seconds, args.pods_per_node);
            let (burst_every, burst_factor) = (args.burst_every, args.burst_factor);
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(30)))
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                let mut seqs = vec![0u64; mine.len()];
                let mut counters = vec![0u64; mine.len()];
                for second in 0..seconds {
                    let due = start + Duration::from_secs(second);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    for (slot, &node) in mine.iter().enumerate() {
                        // Agents' clocks are not aligned: their batches spread over the second.
                        let offset = Duration::from_micros((node as u64 * 7919) % 1_000_000);
                        if let Some(wait) = (due + offset).checked_duration_since(Instant::now()) {
                            if slot == 0 {
                                std::thread::sleep(wait);
                            }
                        }
                        let n = if burst_every > 0 && second % burst_every == burst_every - 1 {
                            entries * burst_factor
                        } else {
                            entries
                        };
                        seqs[slot] += 1;
                        let now = now_rfc3339();
                        let stats = AgentStats { received: 1000 * (second + 1), ..AgentStats::default() };
                        let batch = serde_json::json!({
                            "node": format!("node-{node}"), "agentRun": format!("load-{run}-{node}"), "seq": seqs[slot],
                            "stats": stats,
                            "entries": (0..n).map(|_| {
                                counters[slot] += 1;
                                entry(node, counters[slot], pods, &now)
                            }).collect::<Vec<_>>(),
                        });
                        let body = serde_json::to_vec(&batch).unwrap_or_default();
                        let sent = Instant::now();
                        let result = agent
                            .post(&url)
                            .header("Authorization", &format!("Bearer {token}"))
                            .header("Content-Type", "application/json")
                            .send(&body[..]);
                        let took = sent.elapsed();
                        let outcome = match result {
                            Ok(resp) => {
                                let status = resp.status().as_u16();
                                let _ = resp.into_body().read_to_vec();
                                (status == 200).then_some(()).ok_or_else(|| status.to_string())
                            }
                            Err(e) => Err(e.to_string()),
                        };
                        match outcome {
                            Ok(()) => {
                                totals.batches.fetch_add(1, Ordering::Relaxed);
                                totals.entries.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(why) => {
                                if let Ok(mut f) = totals.failed.lock() {
                                    *f.entry(why).or_default() += 1;
                                }
                            }
                        }
                        if let Ok(mut l) = totals.latencies_us.lock() {
                            l.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = totals.latencies_us.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_unstable();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    let failed = totals.failed.lock().map(|f| f.clone()).unwrap_or_default();
    let out = serde_json::json!({
        "agents": args.agents,
        "seconds": elapsed,
        "batches_accepted": totals.batches.load(Ordering::Relaxed),
        "entries_accepted": totals.entries.load(Ordering::Relaxed),
        "entries_per_second": totals.entries.load(Ordering::Relaxed) as f64 / elapsed,
        "failed": failed,
        "latency_ms": {"p50": f64::from(pct(0.5)) / 1000.0, "p99": f64::from(pct(0.99)) / 1000.0,
                       "max": f64::from(lat.last().copied().unwrap_or(0)) / 1000.0},
    });
    println!("{out}");
    std::process::ExitCode::SUCCESS
}
