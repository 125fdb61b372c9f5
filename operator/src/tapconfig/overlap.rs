//! Two TapConfigs that select the same node would run two agents there, each capturing and reporting
//! everything: every error twice, and two agents on one host port. Decided here: TapConfigs may not
//! overlap. The older one (by creation time, then name) keeps its agents; a younger one that could select
//! a node the older one selects is refused with a condition saying which TapConfig it overlaps, and runs
//! no agent until its node selector no longer overlaps.
//!
//! Could: two node selectors overlap unless some label key is required with different values by the two
//! (no node can carry both) — decided from the specs alone, the same way whatever nodes exist now.

use std::collections::BTreeMap;

use faultline_crds::TapConfig;
use kube::ResourceExt;

/// Whether a node could match both selectors (no selector matches every node).
pub fn selectors_overlap(a: Option<&BTreeMap<String, String>>, b: Option<&BTreeMap<String, String>>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return true };
    a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

/// The oldest of `all` that `tap` overlaps and that is older than `tap`, if any.
pub fn overlapped_by<'a>(tap: &TapConfig, all: impl IntoIterator<Item = &'a TapConfig>) -> Option<&'a TapConfig> {
    let key = |t: &TapConfig| (t.metadata.creation_timestamp.clone().map(|c| c.0), t.name_any());
    let mine = key(tap);
    let mut older: Vec<&TapConfig> = all
        .into_iter()
        .filter(|o| o.name_any() != tap.name_any() && o.metadata.deletion_timestamp.is_none())
        .filter(|o| key(o) < mine)
        .filter(|o| selectors_overlap(o.spec.node_selector.as_ref(), tap.spec.node_selector.as_ref()))
        .collect();
    older.sort_by_key(|o| key(o));
    older.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn sel(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    fn tap(name: &str, created: i64, selector: Option<BTreeMap<String, String>>) -> TapConfig {
        let mut t = TapConfig::new(name, serde_json::from_str("{}").expect("empty spec"));
        t.spec.node_selector = selector;
        t.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_800_000_000 + created).expect("time")));
        t
    }

    #[test]
    fn selectors_overlap_unless_a_key_conflicts() {
        assert!(selectors_overlap(None, sel(&[("pool", "a")]).as_ref()), "no selector: every node");
        assert!(selectors_overlap(sel(&[("pool", "a")]).as_ref(), sel(&[("zone", "1")]).as_ref()));
        assert!(selectors_overlap(sel(&[("pool", "a")]).as_ref(), sel(&[("pool", "a"), ("zone", "1")]).as_ref()));
        assert!(!selectors_overlap(sel(&[("pool", "a")]).as_ref(), sel(&[("pool", "b")]).as_ref()));
    }

    #[test]
    fn the_younger_of_two_overlapping_tapconfigs_is_refused() {
        let all = vec![
            tap("default", 0, None),
            tap("gpu", 10, sel(&[("pool", "gpu")])),
            tap("web", 5, sel(&[("pool", "web")])),
        ];
        assert!(overlapped_by(&all[0], &all).is_none(), "the oldest keeps its agents");
        assert_eq!(overlapped_by(&all[1], &all).map(|t| t.name_any()), Some("default".into()));
        // Disjoint from each other, both overlap the catch-all.
        let pools = vec![tap("gpu", 10, sel(&[("pool", "gpu")])), tap("web", 5, sel(&[("pool", "web")]))];
        assert!(overlapped_by(&pools[0], &pools).is_none());
        assert!(overlapped_by(&pools[1], &pools).is_none());
    }
}
