//! One ErrorView's running summary, fed entry by entry. Pure: the controller feeds it from the store and
//! writes what `status` returns. Counts live in per-minute buckets, persisted in the view's status, so a
//! restarted operator resumes them (see `ViewState::resume`).

use std::collections::{BTreeMap, VecDeque};

use faultline_core::entry::{Entry, ErrorType, Kind};
use faultline_core::Timestamp;
use faultline_crds::{ErrorView, ErrorViewStatus, MinuteBucket, PairCount, Sample};
use faultline_kfl::{ParseError, Query};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;

const TOP_PAIRS: usize = 5;

pub struct ViewState {
    pub generation: Option<i64>,
    pub query: Result<Query, ParseError>,
    /// Store position read up to.
    pub cursor: u64,
    buckets: BTreeMap<i64, MinuteBucket>,
    last_seen: Option<Timestamp>,
    samples: VecDeque<Sample>,
}

impl ViewState {
    /// State for a view first seen now: its counts resume from its status when the status was written for
    /// the same spec (generation); a changed query starts afresh. Reading starts at `head`.
    pub fn resume(view: &ErrorView, head: u64) -> ViewState {
        let generation = view.metadata.generation;
        let mut s = ViewState {
            generation,
            query: Query::parse(&view.spec.query),
            cursor: head,
            buckets: BTreeMap::new(),
            last_seen: None,
            samples: VecDeque::new(),
        };
        if let Some(st) = &view.status {
            if st.observed_generation == generation && s.query.is_ok() {
                s.buckets = st.buckets.iter().map(|b| (b.minute, b.clone())).collect();
                s.last_seen = st.last_seen.as_ref().map(from_time);
                s.samples = st.samples.iter().cloned().collect();
            }
        }
        s
    }

    /// Counts the entry if the view may see it and its query matches; returns whether it did.
    pub fn observe(&mut self, e: &Entry, namespace: &str, cluster_wide: bool, max_samples: usize) -> bool {
        let Ok(q) = &self.query else { return false };
        if !visible(e, namespace, cluster_wide) || !q.matches(e) {
            return false;
        }
        let minute = (e.timestamp.nanos() / 1_000_000_000 / 60 * 60) as i64;
        let b = self.buckets.entry(minute).or_insert_with(|| MinuteBucket { minute, ..Default::default() });
        b.matched += 1;
        *b.kinds.entry(kind_of(e)).or_default() += 1;
        *b.pairs.entry(pair(e)).or_default() += 1;
        if self.last_seen.is_none_or(|t| e.timestamp > t) {
            self.last_seen = Some(e.timestamp);
        }
        self.samples.push_back(Sample { id: e.id.clone(), timestamp: e.timestamp.to_string(), summary: summary(e) });
        while self.samples.len() > max_samples {
            self.samples.pop_front();
        }
        true
    }

    /// The status fields, summed over the minutes within the window that ends `now`.
    pub fn status(&mut self, view: &ErrorView, now: Timestamp) -> ErrorViewStatus {
        let window = i64::from(view.spec.window_seconds.max(1));
        let now_s = (now.nanos() / 1_000_000_000) as i64;
        // A bucket stays while any second of its minute is within the window.
        self.buckets.retain(|m, _| *m + 60 > now_s - window);
        let mut matched = 0;
        let mut kinds: BTreeMap<String, i64> = BTreeMap::new();
        let mut pairs: BTreeMap<String, i64> = BTreeMap::new();
        for b in self.buckets.values() {
            matched += b.matched;
            for (k, n) in &b.kinds {
                *kinds.entry(k.clone()).or_default() += n;
            }
            for (k, n) in &b.pairs {
                *pairs.entry(k.clone()).or_default() += n;
            }
        }
        let mut top: Vec<(String, i64)> = pairs.into_iter().collect();
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
            top_pairs,
            last_seen: self.last_seen.map(to_time),
            samples: self.samples.iter().cloned().collect(),
            buckets: self.buckets.values().cloned().collect(),
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
    match e.kind() {
        Kind::Tcp(state) => format!("tcp/{}", state.as_str()),
        Kind::Icmp(type_name) => format!("icmp/{type_name}"),
        Kind::Error(ErrorType::PairNotFound) => "half-connection".into(),
        Kind::Error(ErrorType::Dissection) => "dissection".into(),
        Kind::Error(ErrorType::Timeout) => "stream-timeout".into(),
        Kind::Error(ErrorType::Connection) => "connection".into(),
        Kind::Response(status) => format!("{}/{}xx", e.protocol.as_str(), status / 100),
        Kind::Other => e.protocol.as_str().to_owned(),
    }
}

fn endpoint(ep: &faultline_core::entry::Endpoint) -> String {
    match (&ep.namespace, &ep.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        _ => ep.to_string(),
    }
}

fn pair(e: &Entry) -> String {
    format!("{} -> {}", endpoint(&e.src), endpoint(&e.dst))
}

/// One line about the entry, for samples and Events.
pub fn summary(e: &Entry) -> String {
    let what = if let Some(t) = &e.tcp {
        match (t.reason, t.by) {
            (Some(r), _) => format!("{} ({})", t.state.as_str(), r.as_str()),
            (None, Some(by)) => format!("{} by {}", t.state.as_str(), by.as_str()),
            _ => t.state.as_str().to_owned(),
        }
    } else if let Some(i) = &e.icmp {
        format!("{}/{}", i.type_name, i.code_name)
    } else if let Some(err) = &e.error {
        err.msg.clone()
    } else if let Some(r) = &e.response {
        format!("{} {}", r.status, r.status_text)
    } else {
        String::new()
    };
    let req = e.request.as_ref().map(|r| format!(" {} {}", r.method, r.path)).unwrap_or_default();
    let via = match e.service.as_ref().and_then(|s| Some((s.namespace.as_ref()?, s.name.as_ref()?))) {
        Some((ns, name)) => format!(" (via service {ns}/{name})"),
        None => String::new(),
    };
    format!("{} {} -> {}{via}{req}: {what}", e.protocol.as_str(), endpoint(&e.src), endpoint(&e.dst))
}

fn to_time(t: Timestamp) -> Time {
    let ts = jiff::Timestamp::from_nanosecond(i128::from(t.nanos())).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    Time(ts)
}

fn from_time(t: &Time) -> Timestamp {
    Timestamp(u64::try_from(t.0.as_nanosecond()).unwrap_or(0))
}

#[cfg(test)]
mod tests;
