//! `faultline-operator`: parses its settings, connects to the API server, campaigns for the leader lease,
//! and runs the controllers while it leads. Everything else lives in the modules.

mod auth;
mod cause;
mod cleanup;
mod clock;
mod context;
mod dashboard;
mod error_metrics;
mod errorview;
mod events;
mod export;
mod http;
mod ingest;
mod leader;
mod metrics;
mod naming;
mod node_report;
mod pcaps;
mod review_cache;
mod store;
mod tapconfig;
mod throttle;
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use faultline_crds::TapConfig;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::context::Context;
use crate::tapconfig::build::BuildParams;

#[derive(Parser, Debug)]
#[command(name = "faultline-operator", version, about = "The Faultline operator")]
struct Args {
    /// Namespace of the agents, their configuration and the leader lease.
    #[arg(long, env = "FAULTLINE_NAMESPACE", default_value = "faultline-system")]
    namespace: String,
    /// Agent image for TapConfigs that do not name one.
    #[arg(long, env = "FAULTLINE_AGENT_IMAGE", default_value = "ghcr.io/faultline-dev/faultline-agent:0.1.0")]
    agent_image: String,
    /// Address of /healthz, /readyz, /metrics and the agents' ingest endpoint.
    #[arg(long, env = "FAULTLINE_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Where agents reach this operator; by default its Service in its namespace.
    #[arg(long, env = "FAULTLINE_OPERATOR_URL")]
    operator_url: Option<String>,
    /// Label sets per entry metric (`faultline_errors_total`, `faultline_requests_total`); past it, entries
    /// are counted under an `other` series (and the capping is counted).
    #[arg(long, env = "FAULTLINE_METRIC_SERIES", default_value_t = metrics::DEFAULT_MAX_SERIES)]
    metric_series: usize,
    /// Recent entries kept in memory for ErrorViews.
    #[arg(long, default_value_t = 200_000)]
    store_capacity: usize,
    /// Campaign for a Lease before acting, so that several replicas can run.
    #[arg(long, env = "FAULTLINE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    #[arg(long, default_value = "faultline-operator")]
    lease_name: String,
    /// Show the dashboard to callers without a token (everything, cluster-wide). Off: callers must present
    /// a bearer token and see only the namespaces whose ErrorViews they may read.
    #[arg(long, env = "FAULTLINE_DASHBOARD_ANONYMOUS", default_value_t = false, action = clap::ArgAction::Set)]
    dashboard_anonymous: bool,
    /// Serve HTTPS with this PEM certificate chain (and `--tls-key-file`); plain HTTP without.
    #[arg(long, env = "FAULTLINE_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<std::path::PathBuf>,
    #[arg(long, env = "FAULTLINE_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<std::path::PathBuf>,
    /// A Secret in the operator's namespace whose `ca.crt` signs the serving certificate: mounted into the
    /// agents, which verify the operator with it.
    #[arg(long, env = "FAULTLINE_AGENT_CA_SECRET")]
    agent_ca_secret: Option<String>,
    /// This replica's name in the lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Pull secrets (comma-separated, in the operator's namespace) for TapConfigs that name none.
    #[arg(long, env = "FAULTLINE_AGENT_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    agent_image_pull_secrets: Vec<String>,
    /// The cluster's DNS domain: an NXDOMAIN for `<service>.<namespace>.svc.<domain>` may be a
    /// Service that does not exist (`ServiceNotFound`).
    #[arg(long, env = "FAULTLINE_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The agents' PriorityClass for TapConfigs that name none.
    #[arg(long, env = "FAULTLINE_AGENT_PRIORITY_CLASS")]
    agent_priority_class: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Deletes every TapConfig and ErrorView and waits until their agents are gone: what `helm uninstall`
    /// runs first (a pre-delete hook), so that nothing of Faultline outlives it.
    Cleanup {
        /// How long to wait for the agents to go, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!("{msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(Command::Cleanup { timeout }) = &args.command {
        let client = Client::try_default().await.map_err(|e| format!("cannot configure the Kubernetes client: {e}"))?;
        return cleanup::run(client, &args.namespace, std::time::Duration::from_secs(*timeout)).await;
    }
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key).map_err(|e| format!("TLS: {e}"))?),
        _ => None,
    };
    let client = Client::try_default().await.map_err(|e| format!("cannot configure the Kubernetes client: {e}"))?;
    let metrics = Arc::new(metrics::Metrics::new(args.metric_series));
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let store = Arc::new(store::Store::new(args.store_capacity));
    let health = http::Health { ready: ready.clone(), metrics: metrics.clone() };
    let leading = Arc::new(AtomicBool::new(false));
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let events = Arc::new(events::Events::new(client.clone(), identity.clone(), metrics.clone()));
    let views = Arc::new(errorview::live::Views::new(events.clone(), args.namespace.clone()));
    let (causes, pods, services) = cause::Explainer::start(client.clone(), args.cluster_domain.clone());
    let causes = Arc::new(causes);
    let names = naming::Names::start(client.clone(), pods, services);
    let exports = Arc::new(export::Exports::new(metrics.export.clone()));
    let ingest = ingest::Ingest::new(
        client.clone(),
        args.namespace.clone(),
        store.clone(),
        leading.clone(),
        ingest::Outputs { views: views.clone(), exports: exports.clone() },
        ingest::Cluster { names, causes },
        metrics.clone(),
    );
    let pcaps = pcaps::Pcaps {
        access: dashboard::access::Access::new(client.clone(), args.namespace.clone(), false),
        store: store.clone(),
    };
    let dashboard = dashboard::Dashboard {
        client: client.clone(),
        store: store.clone(),
        access: dashboard::access::Access::new(client.clone(), args.namespace.clone(), args.dashboard_anonymous),
        closing: stop_rx.clone(),
    };
    let http_server =
        tokio::spawn(http::serve(args.http_addr, health, ingest, pcaps, dashboard, tls, stopped(stop_rx.clone())));

    // Ready once the API server answers and the CRDs are installed.
    let taps: Api<TapConfig> = Api::all(client.clone());
    loop {
        match taps.list(&ListParams::default().limit(1)).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list TapConfigs yet (API server down, or CRDs not installed?)")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            _ = stopped(stop_rx.clone()) => return Ok(()),
        }
    }
    ready.store(true, Ordering::Relaxed);

    let (lead_tx, lead_rx) = watch::channel(!args.leader_election);
    let elector = args.leader_election.then(|| {
        let elector = leader::Elector::new(client.clone(), &args.namespace, &args.lease_name, identity.clone());
        tokio::spawn(elector.run(lead_tx, stop_rx.clone()))
    });
    // In a cluster, the pod this replica runs in: labelled while it leads, so the Service reaches the leader.
    let pod = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty());
    let operator_url = args.operator_url.clone().unwrap_or_else(|| {
        let scheme = if args.tls_cert_file.is_some() { "https" } else { "http" };
        format!("{scheme}://faultline-operator.{}.svc:{}", args.namespace, args.http_addr.port())
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        build: BuildParams {
            namespace: args.namespace.clone(),
            agent_image: args.agent_image.clone(),
            operator_url,
            operator_ca_secret: args.agent_ca_secret.clone(),
            agent_image_pull_secrets: args.agent_image_pull_secrets.iter().filter(|s| !s.is_empty()).cloned().collect(),
            agent_priority_class: args.agent_priority_class.clone().filter(|c| !c.is_empty()),
        },
        metrics: metrics.clone(),
        exports: exports.clone(),
    });
    let exports_at_exit = exports;
    // Lead while the lease is ours; when it is lost (the API server was unreachable too long, say), stop
    // acting and campaign again — without restarting the process.
    loop {
        tracing::info!(identity = %identity, "waiting to become leader");
        let mut lead = lead_rx.clone();
        tokio::select! {
            r = lead.wait_for(|l| *l) => { if r.is_err() { return Err("leader election ended".into()); } }
            _ = stopped(stop_rx.clone()) => break,
        }
        metrics.leader.set(1);
        leading.store(true, Ordering::Relaxed);
        if let Some(pod) = &pod {
            leader::mark_pod(&client, &args.namespace, pod, true).await;
        }
        lead_term(ctx.clone(), store.clone(), events.clone(), views.clone(), lead_rx.clone(), stop_rx.clone()).await;
        metrics.leader.set(0);
        leading.store(false, Ordering::Relaxed);
        if let Some(pod) = &pod {
            leader::mark_pod(&client, &args.namespace, pod, false).await;
        }
        if *stop_rx.borrow() {
            break;
        }
        tracing::warn!("leadership lost: stopped acting; campaigning again");
    }
    // Shutdown, in the order that leaves no gap and no second leader: the elector has stopped (it
    // watches the same signal) and the controllers have stopped acting; only then is the lease given up,
    // so a standby takes over at once and this process cannot take it back.
    if let Some(elector) = elector {
        let _ = elector.await;
        leader::Elector::release(client, &args.namespace, &args.lease_name, &identity).await;
    }
    // What was accepted while leading is still sent (the next leader exports only what it accepts).
    exports_at_exit.drain(std::time::Duration::from_secs(3)).await;
    // Live dashboard streams end on the same signal; anything else gets a few seconds to finish.
    if tokio::time::timeout(std::time::Duration::from_secs(5), http_server).await.is_err() {
        tracing::warn!("requests still open after 5 s; exiting anyway");
    }
    Ok(())
}

/// Runs every controller until leadership is lost or the process is asked to stop. A stop is graceful
/// (in-flight work finishes, Events are flushed, within a few seconds); a lost lease stops everything at
/// once: another replica may already lead, and a request hung on an unreachable API server must not keep
/// this one acting until it returns.
async fn lead_term(
    ctx: Arc<Context>,
    store: Arc<store::Store>,
    events: Arc<events::Events>,
    views: Arc<errorview::live::Views>,
    mut lost: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let (done_tx, done_rx) = watch::channel(false);
    let done = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|d| *d).await;
    };
    let mut tasks = [
        tokio::spawn(tapconfig::reconcile::run(ctx.clone(), done(done_rx.clone()))),
        tokio::spawn(errorview::run(ctx.clone(), store.clone(), views, done(done_rx.clone()))),
        tokio::spawn(tapconfig::stats::run(ctx.clone(), store.clone(), events.clone(), done(done_rx.clone()))),
        tokio::spawn({
            let (events, mut rx) = (events.clone(), done_rx.clone());
            async move {
                loop {
                    let last = tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => false,
                        _ = rx.wait_for(|d| *d) => true,
                    };
                    events.flush().await;
                    if last {
                        return;
                    }
                }
            }
        }),
    ];
    let graceful = tokio::select! {
        _ = lost.wait_for(|l| !*l) => {
            tracing::error!("leadership lost: stopping every controller at once");
            false
        }
        _ = stop.wait_for(|s| *s) => true,
    };
    done_tx.send_replace(true);
    if graceful {
        let all = futures::future::join_all(tasks.iter_mut());
        if tokio::time::timeout(GRACEFUL_STOP, all).await.is_ok() {
            return;
        }
        tracing::warn!("controllers still busy after {GRACEFUL_STOP:?}; stopping them");
    }
    for task in &tasks {
        task.abort();
    }
}

/// How long controllers get to finish their work when the process is asked to stop.
const GRACEFUL_STOP: std::time::Duration = std::time::Duration::from_secs(5);

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
