//! Kubernetes Events for entries, on the Pod involved (else on the ErrorView). Entries are aggregated
//! into Event series per (object, reason): the first creates an Event, later ones raise its series count,
//! written at most every `SERIES_EVERY` per series; and every write spends a token from one bucket, so API
//! writes stay bounded whatever the error rate. What cannot be written now is written later, summed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use faultline_core::entry::{Entry, ErrorType, Kind};
use faultline_crds::ErrorView;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::errorview::view::summary;

const SERIES_EVERY: Duration = Duration::from_secs(10);
/// Token bucket: at most `BURST` writes at once, `PER_SECOND` on average.
const BURST: f64 = 20.0;
const PER_SECOND: f64 = 2.0;
/// Series kept in memory; the least recently seen go first.
const MAX_SERIES: usize = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    namespace: String,
    kind: &'static str,
    name: String,
    reason: String,
}

struct Series {
    regarding: Value,
    note: String,
    count: u64,
    written: u64,
    event_name: Option<String>,
    last_write: Option<Instant>,
    last_seen: Instant,
}

pub struct Events {
    client: Client,
    instance: String,
    series: Mutex<HashMap<Key, Series>>,
    tokens: Mutex<(f64, Instant)>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// The PascalCase reason for an entry (SPEC §5).
pub fn reason(e: &Entry) -> String {
    match e.kind() {
        Kind::Tcp(state) => format!("TCP{}", state.as_str()),
        Kind::Icmp(type_name) => format!("ICMP{type_name}"),
        Kind::Error(ErrorType::PairNotFound) => "HalfConnection".into(),
        Kind::Error(ErrorType::Dissection) => "DissectionError".into(),
        Kind::Error(ErrorType::Timeout) => "StreamTimeout".into(),
        Kind::Error(ErrorType::Connection) => "ConnectionError".into(),
        Kind::Response(status) if status >= 500 => "HTTPServerError".into(),
        Kind::Response(status) if status >= 400 => "HTTPClientError".into(),
        Kind::Response(_) | Kind::Other => "HTTPResponse".into(),
    }
}

impl Events {
    pub fn new(client: Client, instance: String, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Events {
        Events { client, instance, series: Mutex::default(), tokens: Mutex::new((BURST, Instant::now())), metrics }
    }

    /// Records a matching entry of `view`: on the involved pod the view may see, else on the view.
    pub fn record_for_view(&self, view: &ErrorView, e: &Entry) {
        let view_ns = view.namespace().unwrap_or_default();
        // The server side first: that is usually where the error is.
        let pod = [&e.dst, &e.src].into_iter().find_map(|ep| match (&ep.namespace, &ep.name) {
            (Some(ns), Some(name)) if *ns == view_ns => Some((ns.clone(), name.clone())),
            _ => None,
        });
        let (key, regarding) = match pod {
            Some((ns, name)) => (
                Key { namespace: ns.clone(), kind: "Pod", name: name.clone(), reason: reason(e) },
                json!({"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name}),
            ),
            None => (
                Key { namespace: view_ns.clone(), kind: "ErrorView", name: view.name_any(), reason: reason(e) },
                json!({"apiVersion": ErrorView::api_version(&()), "kind": "ErrorView", "namespace": view_ns,
                       "name": view.name_any(), "uid": view.uid()}),
            ),
        };
        let note = format!("{} (ErrorView {})", summary(e), view.name_any());
        self.record(key, regarding, note);
    }

    /// An Event on a TapConfig (cluster-scoped, so the Event lives in `default`).
    pub fn record_for_tapconfig(&self, tap: &faultline_crds::TapConfig, reason: &str, note: String) {
        let key = Key { namespace: "default".into(), kind: "TapConfig", name: tap.name_any(), reason: reason.into() };
        let regarding = json!({"apiVersion": faultline_crds::TapConfig::api_version(&()), "kind": "TapConfig",
                               "name": tap.name_any(), "uid": tap.uid()});
        self.record(key, regarding, note);
    }

    fn record(&self, key: Key, regarding: Value, note: String) {
        let Ok(mut m) = self.series.lock() else { return };
        if m.len() >= MAX_SERIES && !m.contains_key(&key) {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone()) {
                m.remove(&oldest);
            }
        }
        let s = m.entry(key).or_insert_with(|| Series {
            regarding,
            note: String::new(),
            count: 0,
            written: 0,
            event_name: None,
            last_write: None,
            last_seen: Instant::now(),
        });
        s.count += 1;
        s.note = note;
        s.last_seen = Instant::now();
    }

    fn take_token(&self) -> bool {
        let Ok(mut t) = self.tokens.lock() else { return false };
        let (tokens, at) = *t;
        let refilled = (tokens + at.elapsed().as_secs_f64() * PER_SECOND).min(BURST);
        if refilled >= 1.0 {
            *t = (refilled - 1.0, Instant::now());
            true
        } else {
            *t = (refilled, Instant::now());
            false
        }
    }

    /// Series with counts not yet written and not written too recently.
    #[allow(clippy::type_complexity)]
    fn due(&self) -> Vec<(Key, Value, String, u64, Option<String>)> {
        let Ok(m) = self.series.lock() else { return Vec::new() };
        m.iter()
            .filter(|(_, s)| s.count > s.written && s.last_write.is_none_or(|t| t.elapsed() >= SERIES_EVERY))
            .map(|(k, s)| (k.clone(), s.regarding.clone(), s.note.clone(), s.count, s.event_name.clone()))
            .collect()
    }

    fn written(&self, key: &Key, count: u64, regarding: Value, created: Option<String>) {
        if let Ok(mut m) = self.series.lock() {
            if let Some(s) = m.get_mut(key) {
                s.written = count;
                s.last_write = Some(Instant::now());
                s.regarding = regarding;
                if created.is_some() {
                    s.event_name = created;
                }
            }
        }
    }

    fn retry_later(&self, key: &Key) {
        if let Ok(mut m) = self.series.lock() {
            if let Some(s) = m.get_mut(key) {
                s.last_write = Some(Instant::now());
            }
        }
    }

    /// Writes what is due. Called every second.
    pub async fn flush(&self) {
        for (key, mut regarding, note, count, existing) in self.due() {
            if !self.take_token() {
                break;
            }
            if key.kind == "Pod" && regarding.get("uid").is_none() {
                // kubectl describe pod selects Events by the pod's uid.
                if let Ok(pod) = Api::<Pod>::namespaced(self.client.clone(), &key.namespace).get(&key.name).await {
                    regarding["uid"] = json!(pod.uid());
                }
            }
            let result = match &existing {
                None => self.create(&key, &regarding, &note, count).await.map(Some),
                Some(name) => self.bump(&key, name, count).await.map(|()| None),
            };
            self.metrics.wrote("event");
            match result {
                Ok(created) => self.written(&key, count, regarding, created),
                Err(e) => {
                    tracing::warn!(error = %e, reason = %key.reason, object = %key.name, "cannot write Event");
                    // Try again after the usual interval, not every second.
                    self.retry_later(&key);
                }
            }
        }
    }

    async fn create(&self, key: &Key, regarding: &Value, note: &str, count: u64) -> Result<String, kube::Error> {
        let digest = Sha256::digest(format!("{}/{}/{}/{}", key.namespace, key.kind, key.name, key.reason));
        let name = format!("{}.{:x}", key.name, u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])));
        let mut body = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": name, "namespace": key.namespace},
            "eventTime": MicroTime(Timestamp::now()),
            "reportingController": "faultline.dev/operator",
            "reportingInstance": self.instance,
            "action": "Observed",
            "reason": key.reason,
            "regarding": regarding,
            "note": truncate(note),
            "type": "Warning",
        });
        if count >= 2 {
            // Seen more than once before the first write: the series starts at that count (a series of
            // one is no series, and the API refuses a count below 2).
            body["series"] = json!({"count": count, "lastObservedTime": MicroTime(Timestamp::now())});
        }
        let ev: k8s_openapi::api::events::v1::Event = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => Ok(name),
            // Left by an earlier run of the operator: continue that series with what this run counted.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                self.bump(key, &name, count).await?;
                Ok(name)
            }
            Err(e) => Err(e),
        }
    }

    async fn bump(&self, key: &Key, name: &str, count: u64) -> Result<(), kube::Error> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &key.namespace);
        // Only the series changes: an Event's note (like most of it) is immutable once created.
        let patch = json!({"series": {"count": count, "lastObservedTime": MicroTime(Timestamp::now())}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
    }
}

/// Event notes are limited to 1 KiB.
fn truncate(s: &str) -> String {
    let mut end = s.len().min(1000);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(800);
        let t = truncate(&s);
        assert!(t.len() <= 1000 && s.starts_with(&t));
    }
}
