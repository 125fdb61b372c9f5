//! Kubernetes Events for entries, on the Pod involved (else on the ErrorView). Entries are aggregated
//! into Event series per (object, reason) (`series`: pure); this is the writer: the first write of a series
//! creates an Event, later ones raise its series count, and every write spends a token from one bucket, so
//! API writes stay bounded whatever the error rate. What cannot be written now is written later, summed.

mod series;

use std::sync::Mutex;
use std::time::Duration;

use faultline_model::entry::Entry;
use faultline_model::kind::Kind;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use series::{Due, Key, SeriesMap, Written};
use sha2::{Digest, Sha256};

use crate::errorview::view::summary;
use crate::throttle::TokenBucket;

/// The longest one series' write may take (its API calls together).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Writes: at most `BURST` at once, `PER_SECOND` on average.
const BURST: u32 = 20;
const PER_SECOND: u32 = 2;

pub struct Events {
    client: Client,
    instance: String,
    series: Mutex<SeriesMap>,
    tokens: TokenBucket,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// The PascalCase reason for an entry (SPEC §5).
pub fn reason(e: &Entry) -> String {
    Kind::of(e).event_reason()
}

/// A reference to an object by kind, namespace and name (its uid added when known).
fn reference(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        namespace: namespace.map(str::to_owned),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}

impl Events {
    pub fn new(client: Client, instance: String, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Events {
        Events { client, instance, series: Mutex::default(), tokens: TokenBucket::new(BURST, PER_SECOND), metrics }
    }

    /// Records a matching entry of `view`: on the involved pod the view may see, else on the view.
    pub fn record_for_view(&self, view: &faultline_crds::ErrorView, e: &Entry) {
        let view_ns = view.namespace().unwrap_or_default();
        // The server side first: that is usually where the error is.
        let pod = [&e.dst, &e.src].into_iter().find_map(|ep| ep.pod().filter(|(ns, _)| *ns == view_ns));
        let cause = e.cause.as_ref().map_or("", |c| c.reason.as_str());
        let (key, regarding) = match pod {
            Some((ns, name)) => (
                Key { namespace: ns.to_owned(), kind: "Pod", name: name.to_owned(), reason: reason(e), cause },
                reference("v1", "Pod", Some(ns), name),
            ),
            None => (
                Key { namespace: view_ns.clone(), kind: "ErrorView", name: view.name_any(), reason: reason(e), cause },
                view.object_ref(&()),
            ),
        };
        // The cause first: the one line that says what to do; then what was seen.
        let note = match &e.cause {
            Some(c) => format!("{}: {}. Seen: {} (ErrorView {})", c.reason, c.message, summary(e), view.name_any()),
            None => format!("{} (ErrorView {})", summary(e), view.name_any()),
        };
        self.record(key, regarding, note);
    }

    /// An Event on a TapConfig (cluster-scoped, so the Event lives in `default`).
    pub fn record_for_tapconfig(&self, tap: &faultline_crds::TapConfig, reason: &str, note: String) {
        let key = Key {
            namespace: "default".into(),
            kind: "TapConfig",
            name: tap.name_any(),
            reason: reason.into(),
            cause: "",
        };
        self.record(key, tap.object_ref(&()), note);
    }

    fn record(&self, key: Key, regarding: ObjectReference, note: String) {
        if let Ok(mut m) = self.series.lock() {
            m.record(key, regarding, note);
        }
    }

    /// How many occurrences were recorded in all series (written or not): for tests.
    #[cfg(test)]
    pub fn recorded(&self) -> u64 {
        self.series.lock().map(|m| m.recorded()).unwrap_or(0)
    }

    fn due(&self) -> Vec<Due> {
        self.series.lock().map(|m| m.due()).unwrap_or_default()
    }

    fn written(&self, key: &Key, outcome: Written, regarding: ObjectReference) {
        if let Ok(mut m) = self.series.lock() {
            m.written(key, outcome, regarding);
        }
    }

    fn retry_later(&self, key: &Key) {
        if let Ok(mut m) = self.series.lock() {
            m.retry_later(key);
        }
    }

    /// Writes what is due. Called every second.
    pub async fn flush(&self) {
        for due in self.due() {
            if !self.tokens.take() {
                break;
            }
            // A write that hangs (a connection the API server no longer answers) must not hold back every
            // other series: it is given up and tried again after the usual interval.
            let key = due.key.clone();
            if tokio::time::timeout(WRITE_TIMEOUT, self.write(due)).await.is_err() {
                tracing::warn!(reason = %key.reason, object = %key.name, "Event write timed out; will retry");
                self.retry_later(&key);
            }
        }
    }

    /// Writes one series: creates its Event, or raises its count, or recreates it once expired.
    async fn write(&self, due: Due) {
        let Due { key, mut regarding, note, count, event_name } = due;
        if key.kind == "Pod" && regarding.uid.is_none() {
            // kubectl describe pod selects Events by the pod's uid.
            if let Ok(pod) = Api::<Pod>::namespaced(self.client.clone(), &key.namespace).get(&key.name).await {
                regarding.uid = pod.uid();
            }
        }
        let result = match &event_name {
            None => self.create(&key, &regarding, &note, count).await,
            Some(name) => match self.bump(&key, name, count).await {
                Ok(()) => Ok(Written::Count(count)),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(Written::Gone),
                Err(e) => Err(e),
            },
        };
        self.metrics.wrote("event");
        let result = match result {
            Ok(Written::Gone) => {
                // Recreated at once, with the whole count of this series so far.
                self.written(&key, Written::Gone, regarding.clone());
                self.create(&key, &regarding, &note, count).await
            }
            other => other,
        };
        match result {
            Ok(w) => self.written(&key, w, regarding),
            Err(e) => {
                tracing::warn!(error = %e, reason = %key.reason, object = %key.name, "cannot write Event");
                // Try again after the usual interval, not every second.
                self.retry_later(&key);
            }
        }
    }

    async fn create(
        &self,
        key: &Key,
        regarding: &ObjectReference,
        note: &str,
        count: u64,
    ) -> Result<Written, kube::Error> {
        let name = event_name(key);
        let now = MicroTime(Timestamp::now());
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(key.namespace.clone()),
                ..Default::default()
            },
            event_time: Some(now.clone()),
            reporting_controller: Some("faultline.dev/operator".into()),
            reporting_instance: Some(self.instance.clone()),
            action: Some("Observed".into()),
            reason: Some(key.reason.clone()),
            regarding: Some(regarding.clone()),
            note: Some(truncate(note)),
            type_: Some("Warning".into()),
            // Seen more than once before the first write: the series starts at that count (a series of one
            // is no series, and the API refuses a count below 2).
            series: (count >= 2).then(|| EventSeries { count: saturating(count), last_observed_time: now }),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => Ok(Written::Created { name, total: count }),
            // Left by an earlier run of the operator: continue that series — its count plus what this run
            // counted, never less than it already says.
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
        let api: Api<Event> = Api::namespaced(self.client.clone(), &key.namespace);
        // Only the series changes: an Event's note (like most of it) is immutable once created.
        let series = EventSeries { count: saturating(count), last_observed_time: MicroTime(Timestamp::now()) };
        let patch = serde_json::json!({ "series": series });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
    }
}

fn saturating(count: u64) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// The Event's name: the object's name and a digest of the series. Names are at most 253 characters,
/// and an object's name may be that long itself: it is cut to leave room for the digest.
fn event_name(key: &Key) -> String {
    // Without a cause, the names earlier runs gave their Events (continued after a restart).
    let series = match key.cause {
        "" => format!("{}/{}/{}/{}", key.namespace, key.kind, key.name, key.reason),
        cause => format!("{}/{}/{}/{}/{cause}", key.namespace, key.kind, key.name, key.reason),
    };
    let digest = Sha256::digest(series);
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

    fn key() -> Key {
        Key { namespace: "shop".into(), kind: "Pod", name: "web".into(), reason: "TCPReset".into(), cause: "" }
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
        let web = ObjectReference { uid: Some("u".into()), ..reference("v1", "Pod", Some("shop"), "web") };
        ev.record(key(), web, "note".into());
        let t0 = tokio::time::Instant::now();
        ev.flush().await;
        let took = t0.elapsed();
        assert!(took >= WRITE_TIMEOUT && took < WRITE_TIMEOUT + Duration::from_secs(1), "{took:?}");
        assert!(ev.due().is_empty(), "retried after the series interval, not at once");
        assert_eq!(ev.series.lock().map(|mut m| m.series_mut().map(|s| s.written).sum::<u64>()).ok(), Some(0));
    }

    #[test]
    fn event_names_fit_however_long_the_pod_name() {
        let key = |name: &str| Key {
            namespace: "shop".into(),
            kind: "Pod",
            name: name.into(),
            reason: "TCPReset".into(),
            cause: "",
        };
        let long = "a".repeat(253);
        let n = event_name(&key(&long));
        assert!(n.len() <= 253 && n.starts_with("aaaa"), "{} characters", n.len());
        assert_ne!(event_name(&key("web")), event_name(&key("web2")));
        // A series with a cause is an Event of its own; without one, the name earlier runs gave it.
        let caused = Key { cause: "NetworkPolicyDenied", ..key("web") };
        assert_ne!(event_name(&caused), event_name(&key("web")));
        let digest = Sha256::digest("shop/Pod/web/TCPReset");
        let suffix = format!("{:x}", u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")));
        assert_eq!(event_name(&key("web")), format!("web.{suffix}"));
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(800);
        let t = truncate(&s);
        assert!(t.len() <= 1000 && s.starts_with(&t));
    }
}
