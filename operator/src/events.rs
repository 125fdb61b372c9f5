//! Kubernetes Events for entries, on the Pod involved (else on the ErrorView). Entries are aggregated
//! into Event series per (object, reason): the first creates an Event, later ones raise its series count,
//! written at most every `SERIES_EVERY` per series; and every write spends a token from one bucket, so API
//! writes stay bounded whatever the error rate. What cannot be written now is written later, summed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use faultline_crds::ErrorView;
use faultline_model::entry::Entry;
use faultline_model::kind::Kind;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::errorview::view::summary;

const SERIES_EVERY: Duration = Duration::from_secs(10);
/// The longest one series' write may take (its API calls together).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// The count an Event left by an earlier run already had when this run took it over: what this run
    /// counts is added to it, so the series never goes back.
    base: u64,
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
    Kind::of(e).event_reason()
}

impl Events {
    pub fn new(client: Client, instance: String, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Events {
        Events { client, instance, series: Mutex::default(), tokens: Mutex::new((BURST, Instant::now())), metrics }
    }

    /// Records a matching entry of `view`: on the involved pod the view may see, else on the view.
    pub fn record_for_view(&self, view: &ErrorView, e: &Entry) {
        let view_ns = view.namespace().unwrap_or_default();
        // The server side first: that is usually where the error is.
        let pod = [&e.dst, &e.src].into_iter().find_map(|ep| ep.pod().filter(|(ns, _)| *ns == view_ns));
        let (key, regarding) = match pod {
            Some((ns, name)) => (
                Key { namespace: ns.to_owned(), kind: "Pod", name: name.to_owned(), reason: reason(e) },
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
    /// How many occurrences were recorded in all series (written or not): for tests.
    #[cfg(test)]
    pub fn recorded(&self) -> u64 {
        self.series.lock().map(|m| m.values().map(|s| s.count).sum()).unwrap_or(0)
    }

    pub fn record_for_tapconfig(&self, tap: &faultline_crds::TapConfig, reason: &str, note: String) {
        let key = Key { namespace: "default".into(), kind: "TapConfig", name: tap.name_any(), reason: reason.into() };
        let regarding = json!({"apiVersion": faultline_crds::TapConfig::api_version(&()), "kind": "TapConfig",
                               "name": tap.name_any(), "uid": tap.uid()});
        self.record(key, regarding, note);
    }

    fn record(&self, key: Key, regarding: Value, note: String) {
        let Ok(mut m) = self.series.lock() else { return };
        if m.len() >= MAX_SERIES && !m.contains_key(&key) {
            evict_oldest(&mut m);
        }
        let s = m.entry(key).or_insert_with(|| Series {
            regarding,
            note: String::new(),
            count: 0,
            written: 0,
            base: 0,
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

    /// Series with counts not yet written and not written too recently: (key, regarding, note, count to
    /// write — base included —, the Event's name once created).
    #[allow(clippy::type_complexity)]
    fn due(&self) -> Vec<(Key, Value, String, u64, Option<String>)> {
        let Ok(m) = self.series.lock() else { return Vec::new() };
        m.iter()
            .filter(|(_, s)| s.count > s.written && s.last_write.is_none_or(|t| t.elapsed() >= SERIES_EVERY))
            .map(|(k, s)| (k.clone(), s.regarding.clone(), s.note.clone(), s.base + s.count, s.event_name.clone()))
            .collect()
    }

    fn written(&self, key: &Key, outcome: Written, regarding: Value) {
        if let Ok(mut m) = self.series.lock() {
            if let Some(s) = m.get_mut(key) {
                match outcome {
                    Written::Count(total) => s.written = total - s.base,
                    Written::Created { name, total } => {
                        s.written = total - s.base;
                        s.event_name = Some(name);
                    }
                    Written::Adopted { name, base, counted } => {
                        // An earlier run's Event with `base` occurrences, raised by the `counted` of this run
                        // that were known when the write began — not by those recorded while it was in
                        // flight, which the next write carries.
                        s.base = base;
                        s.written = counted;
                        s.event_name = Some(name);
                    }
                    Written::Gone => {
                        // Expired (the API server's --event-ttl): the next write creates it again, with the
                        // whole count so far (`base` included, so that the series never goes back).
                        s.event_name = None;
                        s.written = 0;
                        return;
                    }
                }
                s.last_write = Some(Instant::now());
                s.regarding = regarding;
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
        for (key, regarding, note, count, existing) in self.due() {
            if !self.take_token() {
                break;
            }
            // A write that hangs (a connection the API server no longer answers) must not hold back every
            // other series: it is given up and tried again after the usual interval.
            let write = self.write(&key, regarding, &note, count, existing);
            if tokio::time::timeout(WRITE_TIMEOUT, write).await.is_err() {
                tracing::warn!(reason = %key.reason, object = %key.name, "Event write timed out; will retry");
                self.retry_later(&key);
            }
        }
    }

    /// Writes one series: creates its Event, or raises its count, or recreates it once expired.
    async fn write(&self, key: &Key, mut regarding: Value, note: &str, count: u64, existing: Option<String>) {
        if key.kind == "Pod" && regarding.get("uid").is_none() {
            // kubectl describe pod selects Events by the pod's uid.
            if let Ok(pod) = Api::<Pod>::namespaced(self.client.clone(), &key.namespace).get(&key.name).await {
                regarding["uid"] = json!(pod.uid());
            }
        }
        let result = match &existing {
            None => self.create(key, &regarding, note, count).await,
            Some(name) => match self.bump(key, name, count).await {
                Ok(()) => Ok(Written::Count(count)),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(Written::Gone),
                Err(e) => Err(e),
            },
        };
        self.metrics.wrote("event");
        let result = match result {
            Ok(Written::Gone) => {
                // Recreated at once, with the whole count of this series so far.
                self.written(key, Written::Gone, regarding.clone());
                self.create(key, &regarding, note, count).await
            }
            other => other,
        };
        match result {
            Ok(w) => self.written(key, w, regarding),
            Err(e) => {
                tracing::warn!(error = %e, reason = %key.reason, object = %key.name, "cannot write Event");
                // Try again after the usual interval, not every second.
                self.retry_later(key);
            }
        }
    }

    async fn create(&self, key: &Key, regarding: &Value, note: &str, count: u64) -> Result<Written, kube::Error> {
        let name = event_name(key);
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
            Ok(_) => Ok(Written::Created { name, total: count }),
            // Left by an earlier run of the operator: continue that series — its count plus what this
            // run counted, never less than it already says.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let old = api.get(&name).await?;
                let base = old.series.as_ref().map_or(1, |s| u64::try_from(s.count).unwrap_or(1)).max(1);
                self.bump(key, &name, base + count).await?;
                Ok(Written::Adopted { name, base, counted: count })
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

/// What a write did.
enum Written {
    /// The series now says this total.
    Count(u64),
    Created {
        name: String,
        total: u64,
    },
    /// An Event of an earlier run, which counted `base`, now continued with `counted` of this run's.
    Adopted {
        name: String,
        base: u64,
        counted: u64,
    },
    /// The Event expired.
    Gone,
}

/// The Event's name: the object's name and a digest of the series. Names are at most 253 characters,
/// and an object's name may be that long itself: it is cut to leave room for the digest.
fn event_name(key: &Key) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}/{}", key.namespace, key.kind, key.name, key.reason));
    let suffix = format!("{:x}", u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])));
    let mut prefix = key.name.as_str();
    let room = 253 - 1 - suffix.len();
    if prefix.len() > room {
        let mut end = room;
        while !prefix.is_char_boundary(end) {
            end -= 1;
        }
        prefix = prefix[..end].trim_end_matches(['.', '-']);
    }
    format!("{prefix}.{suffix}")
}

/// Makes room in a full map of series: the least recently seen sixteenth goes, in one pass (so each new
/// series costs O(1) amortised, not a scan of ten thousand).
fn evict_oldest(m: &mut HashMap<Key, Series>) {
    let drop = (m.len() / 16).max(1);
    let mut seen: Vec<Instant> = m.values().map(|s| s.last_seen).collect();
    let (_, cutoff, _) = seen.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    let mut dropped = 0;
    m.retain(|_, s| {
        if dropped < drop && s.last_seen <= cutoff {
            dropped += 1;
            false
        } else {
            true
        }
    });
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

    fn events() -> Events {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
        let client = kube::Client::try_from(config).expect("client");
        Events::new(client, "test".into(), std::sync::Arc::new(crate::metrics::Metrics::default()))
    }

    fn key() -> Key {
        Key { namespace: "shop".into(), kind: "Pod", name: "web".into(), reason: "TCPReset".into() }
    }

    /// Found by the e2e storm after an operator restart: occurrences recorded while the write that adopted
    /// an earlier run's Event was in flight were marked written, and the series stopped short of them.
    #[tokio::test]
    async fn occurrences_recorded_during_an_adopting_write_are_written_next() {
        let ev = events();
        for _ in 0..5 {
            ev.record(key(), json!({}), "n".into());
        }
        let due = ev.due();
        assert_eq!(due.len(), 1);
        let (k, count) = (due[0].0.clone(), due[0].3);
        assert_eq!((count, due[0].4.clone()), (5, None));
        for _ in 0..3 {
            ev.record(key(), json!({}), "n".into());
        }
        ev.written(&k, Written::Adopted { name: "web.1".into(), base: 10, counted: count }, json!({}));
        // Written just now: due again after SERIES_EVERY, with everything this run counted on top of the base.
        if let Ok(mut m) = ev.series.lock() {
            m.values_mut().for_each(|s| s.last_write = None);
        }
        let due = ev.due();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].3, 10 + 8, "the earlier run's 10 and this run's 8");
    }

    #[tokio::test]
    async fn an_expired_event_is_recreated_with_the_whole_count_and_never_goes_back() {
        let ev = events();
        for _ in 0..4 {
            ev.record(key(), json!({}), "n".into());
        }
        ev.written(&key(), Written::Adopted { name: "web.1".into(), base: 10, counted: 4 }, json!({}));
        ev.record(key(), json!({}), "n".into());
        ev.written(&key(), Written::Gone, json!({}));
        if let Ok(mut m) = ev.series.lock() {
            m.values_mut().for_each(|s| s.last_write = None);
        }
        let due = ev.due();
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].3, due[0].4.clone()), (15, None), "created again with 10 + 5");
        ev.written(&key(), Written::Created { name: "web.1".into(), total: 15 }, json!({}));
        if let Ok(mut m) = ev.series.lock() {
            m.values_mut().for_each(|s| s.last_write = None);
        }
        assert!(ev.due().is_empty(), "nothing left to write");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_hangs_is_given_up_at_the_timeout_and_retried_later() {
        // An API server that accepts connections and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(4).collect();
            std::thread::sleep(Duration::from_secs(600));
            drop(held);
        });
        let config = kube::Config::new(format!("http://{addr}").parse().expect("uri"));
        let ev = Events::new(
            kube::Client::try_from(config).expect("client"),
            "test".into(),
            std::sync::Arc::new(crate::metrics::Metrics::default()),
        );
        ev.record(key(), json!({"kind": "Pod", "name": "web", "uid": "u"}), "note".into());
        let t0 = tokio::time::Instant::now();
        ev.flush().await;
        let took = t0.elapsed();
        assert!(took >= WRITE_TIMEOUT && took < WRITE_TIMEOUT + Duration::from_secs(1), "{took:?}");
        assert!(ev.due().is_empty(), "retried after the series interval, not at once");
        assert_eq!(ev.series.lock().map(|m| m.values().map(|s| s.written).sum::<u64>()).ok(), Some(0));
    }

    #[test]
    fn event_names_fit_however_long_the_pod_name() {
        let key =
            |name: &str| Key { namespace: "shop".into(), kind: "Pod", name: name.into(), reason: "TCPReset".into() };
        let long = "a".repeat(253);
        let n = event_name(&key(&long));
        assert!(n.len() <= 253 && n.starts_with("aaaa"), "{} characters", n.len());
        assert_ne!(event_name(&key("web")), event_name(&key("web2")));
    }

    #[test]
    fn a_full_map_of_series_evicts_a_sixteenth_of_the_oldest_at_once() {
        let mut m = HashMap::new();
        let t0 = Instant::now();
        for i in 0..1600u64 {
            let key = Key { namespace: "ns".into(), kind: "Pod", name: format!("p{i}"), reason: "R".into() };
            let s = Series {
                regarding: Value::Null,
                note: String::new(),
                count: 1,
                written: 0,
                base: 0,
                event_name: None,
                last_write: None,
                last_seen: t0 + Duration::from_millis(i),
            };
            m.insert(key, s);
        }
        evict_oldest(&mut m);
        assert_eq!(m.len(), 1500);
        assert!(m.keys().all(|k| k.name.trim_start_matches('p').parse::<u64>().expect("n") >= 100), "the oldest went");
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(800);
        let t = truncate(&s);
        assert!(t.len() <= 1000 && s.starts_with(&t));
    }
}
