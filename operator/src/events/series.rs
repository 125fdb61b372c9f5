//! Event series, without the API: entries are aggregated per (object, reason) into a series whose count
//! grows; a series is due for a write when it counted more than was written, and not within
//! `SERIES_EVERY` of its last write. Pure, so that every rule of it is unit-tested.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;

/// A series' count is written at most this often.
pub const SERIES_EVERY: Duration = Duration::from_secs(10);
/// Series kept in memory; the least recently seen go first.
pub const MAX_SERIES: usize = 10_000;

/// A series: an object and a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub namespace: String,
    pub kind: &'static str,
    pub name: String,
    pub reason: String,
    /// The cause's reason (SPEC §3.7), empty without one: errors with a cause are a series of their own,
    /// so that the note that says why is not hidden behind an earlier Event's (a note is immutable).
    pub cause: &'static str,
}

pub struct Series {
    pub regarding: ObjectReference,
    pub note: String,
    pub count: u64,
    pub written: u64,
    /// The count an Event left by an earlier run already had when this run took it over: what this run
    /// counts is added to it, so the series never goes back.
    pub base: u64,
    pub event_name: Option<String>,
    pub last_write: Option<Instant>,
    pub last_seen: Instant,
}

/// A series due for a write: its key, what the Event is about, the note, the count to write (the base
/// included) and the Event's name once created.
pub struct Due {
    pub key: Key,
    pub regarding: ObjectReference,
    pub note: String,
    pub count: u64,
    pub event_name: Option<String>,
}

/// What a write did.
pub enum Written {
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

#[derive(Default)]
pub struct SeriesMap {
    map: HashMap<Key, Series>,
}

impl SeriesMap {
    /// One more occurrence of `key`.
    pub fn record(&mut self, key: Key, regarding: ObjectReference, note: String) {
        if self.map.len() >= MAX_SERIES && !self.map.contains_key(&key) {
            self.evict_oldest();
        }
        let s = self.map.entry(key).or_insert_with(|| Series {
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

    /// How many occurrences were recorded in all series (written or not).
    #[cfg(test)]
    pub fn recorded(&self) -> u64 {
        self.map.values().map(|s| s.count).sum()
    }

    /// Series with counts not yet written and not written too recently.
    pub fn due(&self) -> Vec<Due> {
        self.map
            .iter()
            .filter(|(_, s)| s.count > s.written && s.last_write.is_none_or(|t| t.elapsed() >= SERIES_EVERY))
            .map(|(k, s)| Due {
                key: k.clone(),
                regarding: s.regarding.clone(),
                note: s.note.clone(),
                count: s.base + s.count,
                event_name: s.event_name.clone(),
            })
            .collect()
    }

    pub fn written(&mut self, key: &Key, outcome: Written, regarding: ObjectReference) {
        let Some(s) = self.map.get_mut(key) else { return };
        match outcome {
            Written::Count(total) => s.written = total - s.base,
            Written::Created { name, total } => {
                s.written = total - s.base;
                s.event_name = Some(name);
            }
            Written::Adopted { name, base, counted } => {
                // An earlier run's Event with `base` occurrences, raised by the `counted` of this run that
                // were known when the write began — not by those recorded while it was in flight, which
                // the next write carries.
                s.base = base;
                s.written = counted;
                s.event_name = Some(name);
            }
            Written::Gone => {
                // Expired (the API server's --event-ttl): the next write creates it again, with the whole
                // count so far (`base` included, so that the series never goes back).
                s.event_name = None;
                s.written = 0;
                return;
            }
        }
        s.last_write = Some(Instant::now());
        s.regarding = regarding;
    }

    /// A write failed or hung: try again after the usual interval, not every second.
    pub fn retry_later(&mut self, key: &Key) {
        if let Some(s) = self.map.get_mut(key) {
            s.last_write = Some(Instant::now());
        }
    }

    /// Makes room in a full map: the least recently seen sixteenth goes, in one pass (so each new series
    /// costs O(1) amortised, not a scan of ten thousand).
    fn evict_oldest(&mut self) {
        let m = &mut self.map;
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

    #[cfg(test)]
    pub fn series_mut(&mut self) -> impl Iterator<Item = &mut Series> {
        self.map.values_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key { namespace: "shop".into(), kind: "Pod", name: "web".into(), reason: "TCPReset".into(), cause: "" }
    }

    fn now_due(m: &mut SeriesMap) -> Vec<Due> {
        m.series_mut().for_each(|s| s.last_write = None);
        m.due()
    }

    /// Found by the e2e storm after an operator restart: occurrences recorded while the write that adopted
    /// an earlier run's Event was in flight were marked written, and the series stopped short of them.
    #[test]
    fn occurrences_recorded_during_an_adopting_write_are_written_next() {
        let mut m = SeriesMap::default();
        for _ in 0..5 {
            m.record(key(), ObjectReference::default(), "n".into());
        }
        let due = m.due();
        assert_eq!(due.len(), 1);
        let (k, count) = (due[0].key.clone(), due[0].count);
        assert_eq!((count, due[0].event_name.clone()), (5, None));
        for _ in 0..3 {
            m.record(key(), ObjectReference::default(), "n".into());
        }
        m.written(&k, Written::Adopted { name: "web.1".into(), base: 10, counted: count }, ObjectReference::default());
        // Written just now: due again after SERIES_EVERY, with everything this run counted on top of the base.
        let due = now_due(&mut m);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].count, 10 + 8, "the earlier run's 10 and this run's 8");
    }

    #[test]
    fn an_expired_event_is_recreated_with_the_whole_count_and_never_goes_back() {
        let mut m = SeriesMap::default();
        for _ in 0..4 {
            m.record(key(), ObjectReference::default(), "n".into());
        }
        m.written(&key(), Written::Adopted { name: "web.1".into(), base: 10, counted: 4 }, ObjectReference::default());
        m.record(key(), ObjectReference::default(), "n".into());
        m.written(&key(), Written::Gone, ObjectReference::default());
        let due = now_due(&mut m);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].count, due[0].event_name.clone()), (15, None), "created again with 10 + 5");
        m.written(&key(), Written::Created { name: "web.1".into(), total: 15 }, ObjectReference::default());
        assert!(now_due(&mut m).is_empty(), "nothing left to write");
    }

    #[test]
    fn a_full_map_of_series_evicts_a_sixteenth_of_the_oldest_at_once() {
        let mut m = SeriesMap::default();
        let t0 = Instant::now();
        for i in 0..1600u64 {
            let key = Key { namespace: "ns".into(), kind: "Pod", name: format!("p{i}"), reason: "R".into(), cause: "" };
            let s = Series {
                regarding: ObjectReference::default(),
                note: String::new(),
                count: 1,
                written: 0,
                base: 0,
                event_name: None,
                last_write: None,
                last_seen: t0 + Duration::from_millis(i),
            };
            m.map.insert(key, s);
        }
        m.evict_oldest();
        assert_eq!(m.map.len(), 1500);
        assert!(
            m.map.keys().all(|k| k.name.trim_start_matches('p').parse::<u64>().expect("n") >= 100),
            "the oldest went"
        );
    }
}
