//! The ErrorViews being counted, fed as entries arrive: ingest hands every accepted batch to `observe`, so
//! a view counts every entry it matches whatever the rate — nothing is read back from the store's ring,
//! which a burst could overwrite first. Only the leader counts, and only from the moment its views were
//! resumed from their status (`activate`): a process that leads a second time resumes from what the
//! leader before it wrote, never recounts what it holds, and publishes no Event twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use faultline_crds::{ErrorView, ErrorViewStatus};
use faultline_model::{Entry, Timestamp};
use kube::ResourceExt;

use super::view::ViewState;
use crate::events::Events;
use crate::store::Store;

/// The most samples a view keeps (the CRD's maximum).
const MAX_SAMPLES: usize = 50;

struct Live {
    view: Arc<ErrorView>,
    namespace: String,
    cluster_wide: bool,
    state: ViewState,
}

pub struct Views {
    views: Mutex<HashMap<String, Live>>,
    /// Counting: views resumed for this lead term.
    active: AtomicBool,
    events: Arc<Events>,
    /// The operator's namespace: a view there sees the whole cluster.
    operator_namespace: String,
}

impl Views {
    pub fn new(events: Arc<Events>, operator_namespace: String) -> Views {
        Views { views: Mutex::new(HashMap::new()), active: AtomicBool::new(false), events, operator_namespace }
    }

    /// Whether entries are being counted (ingest refuses batches until they are).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Starts a lead term: every view resumes from its status, then counting starts.
    pub fn activate(&self, views: &[Arc<ErrorView>], store: &Store) {
        if let Ok(mut m) = self.views.lock() {
            m.clear();
        }
        self.sync(views, store);
        self.active.store(true, Ordering::Release);
    }

    /// Ends a lead term: what was counted is in the statuses written; the next leader resumes from there.
    pub fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
        if let Ok(mut m) = self.views.lock() {
            m.clear();
        }
    }

    /// Follows the ErrorViews as they are now: new ones start (from their status, or afresh with what the
    /// store holds), deleted ones go, a changed spec keeps its counts unless the query or window changed.
    /// Entries counted from the store are published as Events only by a view no one has counted yet, and
    /// only those since it was created: the others were published, or happened before the view.
    pub fn sync(&self, views: &[Arc<ErrorView>], store: &Store) {
        let Ok(mut m) = self.views.lock() else { return };
        m.retain(|uid, _| views.iter().any(|v| v.uid().as_deref() == Some(uid.as_str())));
        for v in views {
            let Some(uid) = v.uid() else { continue };
            let namespace = v.namespace().unwrap_or_default();
            let cluster_wide = namespace == self.operator_namespace;
            let fresh = match m.get_mut(&uid) {
                Some(live) if live.state.generation == v.metadata.generation => {
                    live.view = v.clone();
                    continue;
                }
                Some(live) if live.state.counts_for(v) => {
                    // Samples or publishEvents changed: the counts stand.
                    live.state.generation = v.metadata.generation;
                    live.view = v.clone();
                    continue;
                }
                // A changed query or window starts afresh; so does a view never counted before.
                Some(_) => true,
                None => v.status.as_ref().is_none_or(|st| st.observed_generation != v.metadata.generation),
            };
            let mut state = ViewState::resume(v);
            if fresh {
                // A view no one has counted yet publishes what happened since it was created: entries can
                // reach the store before the view reaches this map (its watch, then the next round), and
                // the first errors after `kubectl apply` are the ones its author is waiting for.
                let publish_since = (v.status.is_none() && v.spec.publish_events).then(|| created(v)).flatten();
                for e in store.snapshot() {
                    let counted = state.observe(&e, &namespace, cluster_wide, MAX_SAMPLES);
                    if counted && publish_since.is_some_and(|t| e.timestamp >= t) {
                        self.events.record_for_view(v, &e);
                    }
                }
            }
            m.insert(uid, Live { view: v.clone(), namespace, cluster_wide, state });
        }
    }

    /// Counts newly arrived entries in every view (and publishes them as Events where asked).
    pub fn observe(&self, entries: &[Arc<Entry>]) {
        if !self.active() {
            return;
        }
        let Ok(mut m) = self.views.lock() else { return };
        for live in m.values_mut() {
            let publish = live.view.spec.publish_events;
            for e in entries {
                if live.state.observe(e, &live.namespace, live.cluster_wide, MAX_SAMPLES) && publish {
                    self.events.record_for_view(&live.view, e);
                }
            }
        }
    }

    /// Every view with its status for the window ending `now`.
    pub fn statuses(&self, now: Timestamp) -> Vec<(Arc<ErrorView>, ErrorViewStatus)> {
        let Ok(mut m) = self.views.lock() else { return Vec::new() };
        m.values_mut()
            .map(|live| {
                let samples = usize::try_from(live.view.spec.samples.max(0)).unwrap_or(0);
                (live.view.clone(), live.state.status(now, samples))
            })
            .collect()
    }
}

/// When the view was created, as an entry timestamp.
fn created(v: &ErrorView) -> Option<Timestamp> {
    let t = v.metadata.creation_timestamp.as_ref()?;
    u64::try_from(t.0.as_nanosecond()).ok().map(Timestamp)
}

#[cfg(test)]
mod tests {
    use faultline_model::entry::{Endpoint, Protocol};
    use faultline_model::ingest::{AgentStats, Batch};

    use super::*;

    fn events() -> Arc<Events> {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
        let client = kube::Client::try_from(config).expect("client");
        Arc::new(Events::new(client, "test".into(), Arc::new(crate::metrics::Metrics::default())))
    }

    fn view(query: &str, publish: bool, generation: i64) -> Arc<ErrorView> {
        let spec = serde_json::json!({"query": query, "publishEvents": publish, "windowSeconds": 900});
        let mut v = ErrorView::new("errors", serde_json::from_value(spec).expect("spec"));
        v.metadata.namespace = Some("shop".into());
        v.metadata.uid = Some("uid-1".into());
        v.metadata.generation = Some(generation);
        Arc::new(v)
    }

    fn entries(store: &Store, seq: u64, n: usize) -> Vec<Arc<Entry>> {
        let mut src = Endpoint::new("10.0.0.1".parse().expect("ip"), Some(1));
        src.namespace = Some("shop".into());
        src.name = Some("a".into());
        let dst = Endpoint::new("10.0.0.2".parse().expect("ip"), Some(2));
        let now = crate::clock::now();
        let e = Entry { id: format!("e{seq}"), ..Entry::new(Protocol::Tcp, now, src, dst) };
        let batch = Batch {
            node: "n".into(),
            agent_run: "r".into(),
            seq,
            stats: AgentStats::default(),
            entries: vec![e; n],
            pcaps: Default::default(),
            ..Batch::default()
        };
        match store.ingest("t", batch, now) {
            crate::store::Accepted::New(v) => v,
            crate::store::Accepted::Duplicate => Vec::new(),
        }
    }

    fn matched(views: &Views) -> i64 {
        views.statuses(crate::clock::now()).first().map_or(-1, |(_, st)| st.matched)
    }

    #[tokio::test]
    async fn a_second_lead_term_resumes_from_status_without_recounting_or_republishing() {
        let (store, ev) = (Store::new(1000), events());
        let views = Views::new(ev.clone(), "faultline-system".into());
        let v = view("tcp", true, 1);
        views.activate(std::slice::from_ref(&v), &store);
        views.observe(&entries(&store, 1, 7));
        assert_eq!((matched(&views), ev.recorded()), (7, 7));
        // The status written, leadership lost, then won back: the store still holds the 7 entries.
        let mut written = (*v).clone();
        written.status = views.statuses(crate::clock::now()).pop().map(|(_, st)| st);
        views.deactivate();
        views.observe(&entries(&store, 2, 3));
        assert_eq!(ev.recorded(), 7, "a standby counts and publishes nothing");
        views.activate(&[Arc::new(written)], &store);
        assert_eq!(matched(&views), 7, "resumed from status, not recounted from the store");
        assert_eq!(ev.recorded(), 7, "no Event published again");
    }

    #[tokio::test]
    async fn entries_that_reach_the_store_before_a_new_view_is_synced_are_still_published() {
        let (store, ev) = (Store::new(1000), events());
        let views = Views::new(ev.clone(), "faultline-system".into());
        views.activate(&[], &store);
        let before = entries(&store, 1, 2);
        // The view is created after those two entries and before the next three, which arrive before
        // the view is synced into the map (they are not observed live).
        let created = Timestamp(before[0].timestamp.0 + 1);
        let late = entries(&store, 2, 3);
        views.observe(&late);
        let mut v = (*view("tcp", true, 1)).clone();
        v.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(created.0)).expect("time"),
        ));
        assert!(late.iter().all(|e| e.timestamp >= created), "the later entries are stamped after the view");
        views.sync(&[Arc::new(v)], &store);
        assert_eq!(matched(&views), 5, "counted, all of them");
        assert_eq!(ev.recorded(), 3, "published: those that happened after the view was created");
    }

    #[tokio::test]
    async fn a_spec_edit_that_keeps_the_query_keeps_the_counts_and_publishes_nothing_again() {
        let (store, ev) = (Store::new(1000), events());
        let views = Views::new(ev.clone(), "faultline-system".into());
        views.activate(&[view("tcp", true, 1)], &store);
        views.observe(&entries(&store, 1, 5));
        views.sync(&[view("tcp", false, 2)], &store);
        assert_eq!((matched(&views), ev.recorded()), (5, 5));
        // A new query counts the store afresh, still without publishing.
        views.sync(&[view("icmp or tcp", true, 3)], &store);
        assert_eq!((matched(&views), ev.recorded()), (5, 5));
    }
}
