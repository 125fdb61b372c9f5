//! `ServiceNotFound`: a final NXDOMAIN for `<service>.<namespace>.svc.<cluster domain>` while no such
//! Service existed — a mistyped namespace or Service name. It names the namespace asked for and the
//! Services of that name in other namespaces. Names outside the cluster domain are not judged.

use faultline_model::cause::{Cause, CauseReason, ObjectRef};
use faultline_model::entry::ErrorType;
use faultline_model::Entry;

use super::Verdict;
use crate::cause::state::State;

pub fn explain(e: &Entry, s: &State) -> Verdict {
    let (Some(d), Some(err)) = (&e.dns, &e.error) else { return Ok(None) };
    if err.kind != ErrorType::Dns || d.rcode != Some(3) {
        return Ok(None);
    }
    let suffix = format!(".svc.{}", s.cluster_domain);
    let Some(rest) = d.question.name.strip_suffix(suffix.as_str()) else { return Ok(None) };
    let Some((service, namespace)) = rest.split_once('.') else { return Ok(None) };
    if namespace.contains('.') || service.is_empty() || namespace.is_empty() {
        return Ok(None);
    }
    let t = e.timestamp;
    if s.services.get(&(namespace.to_owned(), service.to_owned())).is_some_and(|svc| svc.existed_at(t)) {
        return Ok(None);
    }
    let ns_exists = s.namespaces.get(namespace).is_some_and(|n| n.created <= t && n.gone.is_none_or(|g| t <= g));
    let mut elsewhere: Vec<&str> = s
        .services
        .values()
        .filter(|svc| svc.name == service && svc.namespace != namespace && svc.existed_at(t))
        .map(|svc| svc.namespace.as_str())
        .collect();
    elsewhere.sort_unstable();
    let missing = if ns_exists {
        format!("namespace {namespace} has no Service {service}")
    } else {
        format!("no namespace {namespace}, so no Service {service} in it")
    };
    let message = match elsewhere.as_slice() {
        [] => missing,
        [one] => format!("{missing}; a Service {service} exists in namespace {one}"),
        many => format!("{missing}; Services named {service} exist in namespaces {}", many.join(", ")),
    };
    let mut objects = Vec::new();
    if ns_exists {
        objects.push(ObjectRef::new("Namespace", None, namespace));
    }
    objects.extend(elsewhere.iter().map(|ns| ObjectRef::new("Service", Some(ns), service)));
    let evidence = vec![
        format!("{} asks for Service {service} in namespace {namespace}", d.question.name),
        format!("at {t}: {}", if ns_exists { "the namespace exists" } else { "the namespace does not exist" }),
    ];
    Ok(Some(Cause { reason: CauseReason::ServiceNotFound, message, objects, evidence }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::rules::fixtures::*;

    #[test]
    fn a_mistyped_namespace_names_the_one_that_has_the_service() {
        let c = explain(&nxdomain("web.shopp.svc.cluster.local"), &shop()).expect("known").expect("a cause");
        assert_eq!(c.message, "no namespace shopp, so no Service web in it; a Service web exists in namespace shop");
        assert_eq!(c.objects, [ObjectRef::new("Service", Some("shop"), "web")]);
        let c = explain(&nxdomain("api.shop.svc.cluster.local"), &shop()).expect("known").expect("a cause");
        assert_eq!(c.message, "namespace shop has no Service api");
    }

    #[test]
    fn no_cause_outside_the_cluster_domain_or_when_the_service_exists() {
        assert_eq!(explain(&nxdomain("web.shopp.svc.example.com"), &shop()), Ok(None));
        assert_eq!(explain(&nxdomain("nosuch"), &shop()), Ok(None));
        assert_eq!(explain(&nxdomain("a.web.shop.svc.cluster.local"), &shop()), Ok(None), "a pod's hostname form");
        assert_eq!(explain(&nxdomain("web.shop.svc.cluster.local"), &shop()), Ok(None), "it exists: something else");
    }
}
