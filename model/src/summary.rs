//! An entry in one line: what an ErrorView sample, an Event, the dashboard and an exported OTLP record
//! say about it.

use crate::Entry;

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
    let req = match (&e.request, &e.dns) {
        (Some(r), _) => format!(" {} {}", r.method, r.path),
        (None, Some(d)) => format!(" {} {}", d.question.name, d.question.qtype),
        (None, None) => match (&e.tls, crate::backend::call_of(e)) {
            (Some(t), _) => t.sni.as_ref().map(|sni| format!(" {sni}")).unwrap_or_default(),
            (None, Some((_, command, query))) => match query {
                Some(q) => format!(" {command} {q}"),
                None => format!(" {command}"),
            },
            (None, None) => String::new(),
        },
    };
    let via = match e.service.as_ref().and_then(|s| Some((s.namespace.as_ref()?, s.name.as_ref()?))) {
        Some((ns, name)) => format!(" (via service {ns}/{name})"),
        None => String::new(),
    };
    let named = |ep: &crate::entry::Endpoint| match ep.pod() {
        Some((ns, n)) => format!("{ns}/{n}"),
        None => ep.to_string(),
    };
    format!("{} {} -> {}{}{via}{req}: {what}", e.protocol.as_str(), named(&e.src), named(&e.dst), workloads(e))
}

/// ` [Deployment/client -> StatefulSet/db]` when either end's workload says more than its pod name (pod
/// names change with every rollout; workloads do not); nothing for bare pods and unknown ends.
fn workloads(e: &Entry) -> String {
    fn telling(ep: &crate::entry::Endpoint) -> Option<&str> {
        match (&ep.workload, &ep.name) {
            (Some(w), Some(n)) if w.is_the_pod(n) => None,
            (Some(w), _) => Some(w.as_str()),
            (None, _) => None,
        }
    }
    match (telling(&e.src), telling(&e.dst)) {
        (None, None) => String::new(),
        (s, d) => format!(" [{} -> {}]", s.unwrap_or("-"), d.unwrap_or("-")),
    }
}
