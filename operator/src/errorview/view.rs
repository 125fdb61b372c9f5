//! One ErrorView's running summary, fed entry by entry as entries arrive. Pure: the controller feeds it and
//! writes what `status` returns. Counts live in buckets of a sixtieth of the window (at least a second, so
//! a short window is counted to the second), persisted in the view's status, so a restarted operator — or
//! one that leads again — resumes them (see `ViewState::resume`). Status is bounded whatever the traffic:
//! about 60 buckets, 20 pairs each (endpoints that are not pods counted by address, not port), 50 samples.

use std::collections::{BTreeMap, VecDeque};

use faultline_crds::{Bucket, ErrorView, ErrorViewStatus, PairCount, Sample};
use faultline_kfl::{ParseError, Query};
use faultline_model::entry::Entry;
use faultline_model::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;

const TOP_PAIRS: usize = 5;
/// Pairs kept per bucket; the rest are counted under `OTHER_PAIRS`.
pub const PAIRS_PER_BUCKET: usize = 20;
pub const OTHER_PAIRS: &str = "(other pairs)";
/// Buckets per window.
const BUCKETS: i64 = 60;

pub struct ViewState {
    pub generation: Option<i64>,
    /// The query text the state counts for: a spec edit that keeps it keeps the counts.
    pub query_text: String,
    pub query: Result<Query, ParseError>,
    window: i64,
    width: i64,
    buckets: BTreeMap<i64, Bucket>,
    /// Matching entries' times and samples, newest last (bounded by the samples asked for).
    samples: VecDeque<(Timestamp, Sample)>,
    last_seen: Option<Timestamp>,
}

/// A bucket's width for a window: a sixtieth of it, at least a second.
pub fn bucket_seconds(window: i64) -> i64 {
    (window / BUCKETS).max(1)
}

impl ViewState {
    /// State for a view seen now: its counts resume from its status when the status was written for the
    /// same query and window; otherwise they start afresh.
    pub fn resume(view: &ErrorView) -> ViewState {
        let window = i64::from(view.spec.window_seconds.max(1));
        let mut s = ViewState {
            generation: view.metadata.generation,
            query_text: view.spec.query.clone(),
            query: Query::parse(&view.spec.query),
            window,
            width: bucket_seconds(window),
            buckets: BTreeMap::new(),
            samples: VecDeque::new(),
            last_seen: None,
        };
        if let Some(st) = &view.status {
            let same = st.observed_generation == view.metadata.generation && st.bucket_seconds == Some(s.width);
            if same && s.query.is_ok() {
                s.buckets = st.buckets.iter().map(|b| (b.start, b.clone())).collect();
                s.last_seen = st.last_seen.as_ref().map(from_time);
                s.samples = st
                    .samples
                    .iter()
                    .map(|x| (Timestamp::parse_rfc3339(&x.timestamp).unwrap_or_default(), x.clone()))
                    .collect();
            }
        }
        s
    }

    /// Whether a changed spec can keep this state: the same query and window (samples and publishEvents
    /// change nothing counted).
    pub fn counts_for(&self, view: &ErrorView) -> bool {
        self.query_text == view.spec.query && self.window == i64::from(view.spec.window_seconds.max(1))
    }

    /// Counts the entry if the view may see it and its query matches; returns whether it did.
    pub fn observe(&mut self, e: &Entry, namespace: &str, cluster_wide: bool, max_samples: usize) -> bool {
        let Ok(q) = &self.query else { return false };
        if !visible(e, namespace, cluster_wide) || !q.matches(e) {
            return false;
        }
        let secs = (e.timestamp.nanos() / 1_000_000_000) as i64;
        let start = secs - secs.rem_euclid(self.width);
        let b = self.buckets.entry(start).or_insert_with(|| Bucket { start, ..Default::default() });
        b.matched += 1;
        *b.kinds.entry(kind_of(e)).or_default() += 1;
        if let Some(c) = &e.cause {
            *b.causes.entry(c.reason.as_str().to_owned()).or_default() += 1;
        }
        let key = pair(e);
        if b.pairs.contains_key(&key) || b.pairs.len() < PAIRS_PER_BUCKET {
            *b.pairs.entry(key).or_default() += 1;
        } else {
            *b.pairs.entry(OTHER_PAIRS.to_owned()).or_default() += 1;
        }
        if self.last_seen.is_none_or(|t| e.timestamp > t) {
            self.last_seen = Some(e.timestamp);
        }
        let cause = e.cause.as_ref().map(|c| format!("{}: {}", c.reason, c.message));
        let sample = Sample { id: e.id.clone(), timestamp: e.timestamp.to_string(), summary: summary(e), cause };
        self.samples.push_back((e.timestamp, sample));
        while self.samples.len() > max_samples {
            self.samples.pop_front();
        }
        true
    }

    /// The status fields for the window that ends `now`: exactly the buckets whose start lies within it
    /// (to the bucket's width: a second for windows under two minutes), and only the samples and last
    /// sighting within it.
    pub fn status(&mut self, now: Timestamp, max_samples: usize) -> ErrorViewStatus {
        let now_s = (now.nanos() / 1_000_000_000) as i64;
        let oldest = now_s - self.window;
        self.buckets.retain(|start, _| *start >= oldest);
        let oldest_ts = Timestamp::from_millis(u64::try_from(oldest.max(0)).unwrap_or(0) * 1000);
        self.samples.retain(|(ts, _)| *ts >= oldest_ts);
        while self.samples.len() > max_samples {
            self.samples.pop_front();
        }
        if self.last_seen.is_some_and(|t| t < oldest_ts) {
            self.last_seen = None;
        }
        let mut matched = 0;
        let mut kinds: BTreeMap<String, i64> = BTreeMap::new();
        let mut causes: BTreeMap<String, i64> = BTreeMap::new();
        let mut pairs: BTreeMap<String, i64> = BTreeMap::new();
        for b in self.buckets.values() {
            matched += b.matched;
            for (k, n) in &b.kinds {
                *kinds.entry(k.clone()).or_default() += n;
            }
            for (k, n) in &b.causes {
                *causes.entry(k.clone()).or_default() += n;
            }
            for (k, n) in &b.pairs {
                *pairs.entry(k.clone()).or_default() += n;
            }
        }
        let mut top: Vec<(String, i64)> = pairs.into_iter().filter(|(k, _)| k != OTHER_PAIRS).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top_pairs = top
            .into_iter()
            .take(TOP_PAIRS)
            .map(|(k, count)| {
                let (source, destination) = k.split_once(" -> ").unwrap_or((k.as_str(), ""));
                PairCount { source: source.to_owned(), destination: destination.to_owned(), count }
            })
            .collect();
        ErrorViewStatus {
            observed_generation: self.generation,
            conditions: Vec::new(),
            matched,
            counts_by_kind: kinds,
            counts_by_cause: causes,
            top_pairs,
            last_seen: self.last_seen.map(to_time),
            samples: self.samples.iter().map(|(_, s)| s.clone()).collect(),
            buckets: self.buckets.values().cloned().collect(),
            bucket_seconds: Some(self.width),
        }
    }
}

/// An ErrorView sees entries whose source or destination pod is in its namespace; a view in the
/// operator's namespace sees everything (SPEC §5).
pub fn visible(e: &Entry, namespace: &str, cluster_wide: bool) -> bool {
    cluster_wide || [&e.src, &e.dst].iter().any(|ep| ep.namespace.as_deref() == Some(namespace))
}

/// The kind an entry is counted under: TCP state, ICMP type, dissection, half connection, HTTP class.
pub fn kind_of(e: &Entry) -> String {
    faultline_model::kind::Kind::of(e).to_string()
}

/// A pod as `namespace/name`; anything else by its address alone — an ephemeral port would make every
/// connection a pair of its own.
fn endpoint(ep: &faultline_model::entry::Endpoint) -> String {
    match ep.pod() {
        Some((ns, n)) => format!("{ns}/{n}"),
        None => ep.ip.to_string(),
    }
}

fn pair(e: &Entry) -> String {
    format!("{} -> {}", endpoint(&e.src), endpoint(&e.dst))
}

/// One line about the entry, for samples, Events and exported records (in the model: the agents'
/// exports use it too).
pub use faultline_model::summary::summary;

fn to_time(t: Timestamp) -> Time {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(t.nanos())).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    Time(ts)
}

fn from_time(t: &Time) -> Timestamp {
    crate::clock::from_api(&t.0)
}

#[cfg(test)]
mod tests;
