//! Label selectors as the API defines them (`metav1.LabelSelector`): every `matchLabels` pair and every
//! `matchExpressions` requirement must hold; an empty selector selects everything.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// Whether `selector` selects an object with `labels`. An operator the API does not define selects
/// nothing (the API server refuses such objects; one that slipped through admits no one).
pub fn matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let pairs = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|r| {
        let value = labels.get(&r.key);
        let listed = |v: &String| r.values.iter().flatten().any(|x| x == v);
        match r.operator.as_str() {
            "In" => value.is_some_and(listed),
            "NotIn" => !value.is_some_and(listed),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

/// A Service's selector (plain equality pairs): `None` or empty selects nothing — a Service without a
/// selector has its endpoints managed by hand.
pub fn service_selects(selector: Option<&Labels>, labels: &Labels) -> bool {
    selector.is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn pairs_and_every_operator() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let sel = |pairs: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            match_expressions: Some(exprs),
        };
        assert!(matches(&LabelSelector::default(), &web), "empty selects all");
        assert!(matches(&sel(&[("app", "web")], vec![]), &web));
        assert!(!matches(&sel(&[("app", "db")], vec![]), &web));
        assert!(matches(&sel(&[], vec![req("tier", "In", &["front", "back"])]), &web));
        assert!(!matches(&sel(&[], vec![req("tier", "In", &["back"])]), &web));
        assert!(!matches(&sel(&[], vec![req("missing", "In", &["x"])]), &web));
        assert!(matches(&sel(&[], vec![req("tier", "NotIn", &["back"])]), &web));
        assert!(matches(&sel(&[], vec![req("missing", "NotIn", &["x"])]), &web), "NotIn holds without the key");
        assert!(!matches(&sel(&[], vec![req("tier", "NotIn", &["front"])]), &web));
        assert!(matches(&sel(&[], vec![req("app", "Exists", &[])]), &web));
        assert!(!matches(&sel(&[], vec![req("app", "DoesNotExist", &[])]), &web));
        assert!(matches(&sel(&[], vec![req("zone", "DoesNotExist", &[])]), &web));
        assert!(!matches(&sel(&[], vec![req("app", "Matches", &["web"])]), &web), "unknown operator");
        assert!(!matches(&sel(&[("app", "web")], vec![req("tier", "In", &["back"])]), &web), "all must hold");
        assert!(service_selects(Some(&labels(&[("app", "web")])), &web));
        assert!(!service_selects(Some(&labels(&[])), &web), "an empty Service selector selects nothing");
        assert!(!service_selects(None, &web));
    }
}
