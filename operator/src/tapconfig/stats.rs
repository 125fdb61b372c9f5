//! Per-node capture statistics in TapConfig status, and the `PacketLoss`, `BackendFallback` and
//! `AgentsReporting` conditions, from what the agents last reported, under a field manager of its own so
//! that it never fights the controller over the status fields that one owns.
//!
//! - Agents report every second, so a node silent for `SILENT_AFTER` has lost its agent (killed,
//!   crashing, or cut off from the operator): its statistics stay, with their `lastReport`, and the
//!   condition says so — as long as an agent pod is on that node. A node with no agent pod any more
//!   (deleted, or no longer selected) is forgotten.
//! - Status is written when what it says changes (a condition, the nodes, a backend), and otherwise
//!   refreshed every `REFRESH`: counters change every second, and every status write costs the API
//!   server (and, for a controller watching the object, a reconcile).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_crds::{NodeCaptureStats, TapConfig};
use faultline_model::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde_json::json;

use super::build::{label_value, TAPCONFIG_LABEL};
use super::status::condition;
use crate::context::Context;
use crate::store::{NodeReport, Store};

const MANAGER: &str = "faultline-operator-stats";

/// What this task owns of a TapConfig's status: the nodes' statistics and the conditions they decide
/// (`PacketLoss`, `BackendFallback`, `AgentsReporting`, in that order). Nothing else: server-side apply
/// would take every field it is sent from the controller.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeStatus {
    pub nodes: Vec<NodeCaptureStats>,
    pub conditions: Vec<Condition>,
}

/// The part of a `NodeStatus` worth writing at once: each node's backend note and each condition's
/// status, reason and message — not the counters and report times, which change every second and are
/// refreshed every `REFRESH`.
type Material = (Vec<(String, Option<String>)>, Vec<(String, String, String, String)>);

impl NodeStatus {
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    fn material(&self) -> Material {
        let nodes = self.nodes.iter().map(|n| (n.node.clone(), n.backend_note.clone())).collect();
        let conditions = self
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()))
            .collect();
        (nodes, conditions)
    }
}
const ROUND: Duration = Duration::from_secs(5);
/// The longest the written statistics lag the agents' reports when no condition changes.
pub const REFRESH: Duration = Duration::from_secs(60);
pub const SILENT_AFTER: Duration = Duration::from_secs(30);

pub async fn run(
    ctx: Arc<Context>,
    store: Arc<Store>,
    events: Arc<crate::events::Events>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    // What was last written per TapConfig (its material part), and when.
    let mut written: BTreeMap<String, (Material, Instant)> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = &mut shutdown => return,
        }
        let mut by_tap: BTreeMap<String, Vec<(String, NodeReport)>> = BTreeMap::new();
        for ((tap, node), r) in store.node_reports() {
            by_tap.entry(tap).or_default().push((node, r));
        }
        let api: Api<TapConfig> = Api::all(ctx.client.clone());
        for (tap, mut nodes) in by_tap {
            let obj = match api.get_opt(&tap).await {
                Ok(Some(obj)) => obj,
                Ok(None) => {
                    nodes.iter().for_each(|(node, _)| store.forget_node(&tap, node));
                    written.remove(&tap);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(tapconfig = %tap, error = %e, "cannot read the TapConfig");
                    continue;
                }
            };
            let now = crate::clock::now();
            if nodes.iter().any(|(_, r)| silent(r, now)) {
                if let Some(with_agent) = nodes_with_agent_pods(&ctx, &tap).await {
                    for node in gone(&nodes, &with_agent, now) {
                        tracing::info!(tapconfig = %tap, %node, "no agent on the node any more: forgetting it");
                        store.forget_node(&tap, &node);
                    }
                    nodes.retain(|(node, r)| !silent(r, now) || with_agent.contains(node));
                }
            }
            let status = node_status(&obj, &nodes, now);
            export(&ctx.metrics, &tap, &status);
            let material = status.material();
            let fresh = written.get(&tap).is_some_and(|(m, at)| *m == material && at.elapsed() < REFRESH);
            if fresh {
                continue;
            }
            if let Some(msg) = loss_began(&obj, &status) {
                events.record_for_tapconfig(&obj, "PacketLoss", msg);
            }
            let patch =
                json!({"apiVersion": TapConfig::api_version(&()), "kind": TapConfig::kind(&()), "status": status});
            match api.patch_status(&tap, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await {
                Ok(_) => {
                    ctx.metrics.wrote("tapconfig_stats");
                    written.insert(tap, (material, Instant::now()));
                }
                Err(e) => tracing::warn!(tapconfig = %tap, error = %e, "cannot write capture statistics"),
            }
        }
    }
}

/// The capture statistics as gauges, from the status just computed (the forgotten nodes' series go).
fn export(m: &crate::metrics::Metrics, tap: &str, status: &NodeStatus) {
    use crate::metrics::{NodeLabels, TapLabels};
    let labels = |node: &str| NodeLabels { tapconfig: tap.to_owned(), node: node.to_owned() };
    let now: BTreeSet<String> = status.nodes.iter().map(|n| n.node.clone()).collect();
    if let Ok(mut known) = m.capture_nodes.lock() {
        let before = known.remove(tap).unwrap_or_default();
        for gone in before.difference(&now) {
            m.capture_drop_ratio.remove(&labels(gone));
            m.capture_received.remove(&labels(gone));
            m.capture_dropped.remove(&labels(gone));
        }
        known.insert(tap.to_owned(), now);
    }
    for n in &status.nodes {
        m.capture_drop_ratio.get_or_create(&labels(&n.node)).set(n.drop_ratio);
        m.capture_received.get_or_create(&labels(&n.node)).set(n.received);
        m.capture_dropped.get_or_create(&labels(&n.node)).set(n.dropped);
    }
    let reporting = status.condition("AgentsReporting").is_some_and(|c| c.status == "True");
    m.agents_reporting.get_or_create(&TapLabels { tapconfig: tap.to_owned() }).set(i64::from(reporting));
}

fn silent(r: &NodeReport, now: Timestamp) -> bool {
    now.nanos().saturating_sub(r.at.nanos()) > u64::try_from(SILENT_AFTER.as_nanos()).unwrap_or(u64::MAX)
}

/// Silent nodes on which no agent pod of the TapConfig runs any more.
fn gone(nodes: &[(String, NodeReport)], with_agent: &BTreeSet<String>, now: Timestamp) -> Vec<String> {
    nodes.iter().filter(|(node, r)| silent(r, now) && !with_agent.contains(node)).map(|(n, _)| n.clone()).collect()
}

/// The nodes that have an agent pod of `tap` (running or not), or `None` if that cannot be known now.
async fn nodes_with_agent_pods(ctx: &Context, tap: &str) -> Option<BTreeSet<String>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.build.namespace);
    let lp = ListParams::default().labels(&format!("{TAPCONFIG_LABEL}={}", label_value(tap)));
    // Asked only while some node is silent: at most one small list per round.
    match pods.list(&lp).await {
        Ok(list) => Some(list.items.into_iter().filter_map(|p| p.spec.and_then(|s| s.node_name)).collect()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list agent pods");
            None
        }
    }
}

/// `nodes` and the conditions they decide, for one TapConfig, as of `at`.
pub fn node_status(tap: &TapConfig, reports: &[(String, NodeReport)], at: Timestamp) -> NodeStatus {
    let threshold = tap.spec.packet_loss_threshold;
    let nodes: Vec<NodeCaptureStats> = reports
        .iter()
        .map(|(node, r)| {
            let s = &r.stats;
            NodeCaptureStats {
                node: node.clone(),
                received: i64::try_from(s.received).unwrap_or(i64::MAX),
                dropped: i64::try_from(s.kernel_dropped + s.queue_dropped).unwrap_or(i64::MAX),
                drop_ratio: (r.recent_drop_ratio() * 10_000.0).round() / 10_000.0,
                streams_timed_out: i64::try_from(s.streams_timed_out).unwrap_or(i64::MAX),
                missed_bytes: i64::try_from(s.missed_bytes).unwrap_or(i64::MAX),
                entries_dropped: i64::try_from(s.buffer_dropped).unwrap_or(i64::MAX),
                backend_note: s.backend_note.clone(),
                last_report: jiff::Timestamp::from_nanosecond(i128::from(r.at.nanos())).ok().map(Time),
            }
        })
        .collect();
    let lossy: Vec<String> = nodes
        .iter()
        .filter(|n| n.drop_ratio > threshold)
        .map(|n| format!("{} drops {:.2}%", n.node, n.drop_ratio * 100.0))
        .collect();
    let old = tap.status.clone().unwrap_or_default().conditions;
    let now = Time(jiff::Timestamp::now());
    let (st, reason, msg) = if lossy.is_empty() {
        ("False", "WithinThreshold", format!("every node drops at most {:.2}% of packets", threshold * 100.0))
    } else {
        ("True", "AboveThreshold", format!("{} (threshold {:.2}%)", lossy.join(", "), threshold * 100.0))
    };
    let loss = condition(&old, "PacketLoss", st, reason, msg, tap.metadata.generation, &now);
    let notes: Vec<String> =
        nodes.iter().filter_map(|n| n.backend_note.as_ref().map(|note| format!("{}: {note}", n.node))).collect();
    let (st, reason, msg) = if notes.is_empty() {
        ("False", "AsRequested", format!("every agent captures with {}", tap.spec.capture_backend.as_str()))
    } else {
        ("True", "FellBack", notes.join("; "))
    };
    let fallback = condition(&old, "BackendFallback", st, reason, msg, tap.metadata.generation, &now);
    let silent: Vec<String> = reports
        .iter()
        .filter(|(_, r)| silent(r, at))
        .map(|(node, r)| format!("{node} (last report {})", r.at))
        .collect();
    let (st, reason, msg) = if silent.is_empty() {
        ("True", "Reporting", format!("every agent reported within {} s", SILENT_AFTER.as_secs()))
    } else {
        ("False", "AgentSilent", format!("no report for over {} s from {}", SILENT_AFTER.as_secs(), silent.join(", ")))
    };
    let reporting = condition(&old, "AgentsReporting", st, reason, msg, tap.metadata.generation, &now);
    NodeStatus { nodes, conditions: vec![loss, fallback, reporting] }
}

/// Whether this status says a node loses packets while the stored one did not: worth an Event.
pub fn loss_began(tap: &TapConfig, status: &NodeStatus) -> Option<String> {
    let now_lossy = status.condition("PacketLoss").filter(|c| c.status == "True")?;
    let was_lossy =
        tap.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "PacketLoss" && c.status == "True"));
    (!was_lossy).then(|| now_lossy.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_model::ingest::AgentStats;

    /// An agent that started a minute before T0 and has seen `received` packets and lost `dropped`.
    fn report(received: u64, dropped: u64, note: Option<&str>) -> NodeReport {
        let mut r = NodeReport::new("run", AgentStats::default(), Timestamp(T0.nanos() - 60_000_000_000));
        let stats = AgentStats {
            received,
            kernel_dropped: dropped,
            backend_note: note.map(Into::into),
            ..AgentStats::default()
        };
        r.update("run", stats, T0);
        r
    }

    const T0: Timestamp = Timestamp(1_795_821_177_000_000_000);

    fn tap() -> TapConfig {
        TapConfig::new("default", serde_json::from_str(r#"{"packetLossThreshold": 0.05}"#).expect("spec"))
    }

    #[test]
    fn packet_loss_above_the_threshold_sets_the_condition_and_an_event_once() {
        let mut t = tap();
        let ok = node_status(&t, &[("n1".into(), report(1000, 10, None))], T0);
        assert_eq!(ok.conditions[0].status, "False");
        assert_eq!(ok.nodes[0].drop_ratio, 0.01);
        assert_eq!(loss_began(&t, &ok), None);
        let lossy = node_status(&t, &[("n1".into(), report(1000, 100, None)), ("n2".into(), report(10, 0, None))], T0);
        assert_eq!(lossy.conditions[0].status, "True");
        assert_eq!(lossy.conditions[0].message, "n1 drops 10.00% (threshold 5.00%)");
        assert!(loss_began(&t, &lossy).is_some(), "an Event when loss begins");
        t.status = Some(serde_json::from_value(serde_json::to_value(&lossy).expect("json")).expect("status"));
        assert_eq!(loss_began(&t, &lossy), None, "not again while it lasts");
    }

    #[test]
    fn capture_statistics_are_gauges_and_a_forgotten_node_takes_its_series() {
        let m = crate::metrics::Metrics::default();
        let both =
            node_status(&tap(), &[("n1".into(), report(1000, 100, None)), ("n2".into(), report(10, 0, None))], T0);
        export(&m, "default", &both);
        let text = m.render();
        assert!(text.contains(r#"faultline_capture_drop_ratio{tapconfig="default",node="n1"} 0.1"#), "{text}");
        assert!(text.contains(r#"faultline_capture_packets_dropped{tapconfig="default",node="n1"} 100"#), "{text}");
        assert!(text.contains(r#"faultline_agents_reporting{tapconfig="default"} 1"#), "{text}");
        export(&m, "default", &node_status(&tap(), &[("n1".into(), report(1000, 100, None))], T0));
        assert!(!m.render().contains(r#"node="n2""#), "n2 was forgotten");
    }

    #[test]
    fn a_backend_fallback_is_a_condition() {
        let st = node_status(&tap(), &[("n1".into(), report(1, 0, Some("pfring requested but not loaded")))], T0);
        let c = &st.conditions[1];
        assert_eq!((c.type_.as_str(), c.status.as_str()), ("BackendFallback", "True"));
        assert_eq!(c.message, "n1: pfring requested but not loaded");
    }

    #[test]
    fn a_node_whose_agent_went_silent_is_named() {
        let reports = [("n1".into(), report(1, 0, None)), ("n2".into(), report(1, 0, None))];
        let fresh = node_status(&tap(), &reports, Timestamp(T0.nanos() + 29_000_000_000));
        assert_eq!(fresh.conditions[2].type_, "AgentsReporting");
        assert_eq!(fresh.conditions[2].status, "True");
        let mut later = reports.clone();
        later[0].1.at = Timestamp(T0.nanos() + 31_000_000_000);
        let st = node_status(&tap(), &later, Timestamp(T0.nanos() + 31_000_000_000));
        let c = &st.conditions[2];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "AgentSilent"));
        assert_eq!(c.message, "no report for over 30 s from n2 (last report 2026-11-27T23:12:57.000000Z)");
        assert_eq!(st.nodes.len(), 2, "the silent node's statistics stay");
    }

    #[test]
    fn only_silent_nodes_without_an_agent_pod_are_forgotten() {
        let now = Timestamp(T0.nanos() + 31_000_000_000);
        let mut reports = vec![
            ("alive".to_owned(), report(1, 0, None)),
            ("restarting".to_owned(), report(1, 0, None)),
            ("deleted".to_owned(), report(1, 0, None)),
        ];
        reports[0].1.at = now;
        let with_agent: BTreeSet<String> = ["restarting".to_owned()].into();
        assert_eq!(gone(&reports, &with_agent, now), vec!["deleted".to_owned()]);
        assert!(gone(&reports, &with_agent, T0).is_empty(), "nobody is silent yet");
    }

    #[test]
    fn counters_alone_are_not_worth_a_write() {
        let a = node_status(&tap(), &[("n1".into(), report(1000, 0, None))], T0);
        let b = node_status(&tap(), &[("n1".into(), report(5000, 1, None))], Timestamp(T0.nanos() + 5_000_000_000));
        assert_ne!(a, b);
        assert_eq!(a.material(), b.material(), "only counters and report times differ");
        let lossy = node_status(&tap(), &[("n1".into(), report(5000, 4000, None))], T0);
        assert_ne!(a.material(), lossy.material(), "a condition changed");
        let more = node_status(&tap(), &[("n1".into(), report(1, 0, None)), ("n2".into(), report(1, 0, None))], T0);
        assert_ne!(a.material(), more.material(), "a node came");
    }
}
