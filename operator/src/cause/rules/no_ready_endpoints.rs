//! `NoReadyEndpoints`: a connection to a Service's ClusterIP that was never translated to a pod —
//! refused or answered port-unreachable by kube-proxy's REJECT, or unanswered — while the Service had
//! no pod ready to serve: it selected none, or every one it selected was starting, failing its
//! readiness probe, or terminating at the time. A Service without a selector (endpoints kept by hand)
//! is not judged.

use faultline_model::cause::{Cause, CauseReason, ObjectRef};
use faultline_model::Entry;

use super::{Attempt, Failure, Verdict};
use crate::cause::state::{State, Target};

pub fn explain(e: &Entry, s: &State) -> Verdict {
    let Some(a) = Attempt::of(e) else { return Ok(None) };
    if !matches!(a.failure, Failure::Refused | Failure::PortUnreachable | Failure::Unreachable | Failure::Timeout) {
        return Ok(None);
    }
    // Reached the ClusterIP itself: no DNAT to a pod happened.
    let Some(svc) = s.service_at(&a.server, a.at) else { return Ok(None) };
    if svc.selector.is_none() {
        return Ok(None);
    }
    let Some(port) = svc.ports.iter().find(|p| p.port == a.port && p.protocol == a.protocol) else {
        return Ok(None);
    };
    let pods: Vec<_> = s.selected_pods(svc, a.at).collect();
    if let Target::Name(name) = &port.target {
        // No pod declares the port's name: there are no endpoints whatever the pods' readiness —
        // `PortNotServed`'s to say.
        if !pods.iter().any(|p| p.named_port(name, &port.protocol).is_some()) {
            return Ok(None);
        }
    }
    let mut why = Vec::new();
    for p in &pods {
        match p.not_serving_at(a.at) {
            Some(reason) => why.push((p, reason)),
            None => return Ok(None),
        }
    }
    let service = format!("{}/{}", svc.namespace, svc.name);
    let message = if pods.is_empty() {
        let selector: Vec<String> = svc.selector.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
        format!("Service {service} selects no pod ({{{}}} matches none in {})", selector.join(", "), svc.namespace)
    } else {
        let each: Vec<String> = why.iter().map(|(p, r)| format!("{}: {r}", p.name)).collect();
        format!("Service {service} had no ready endpoint for port {}: {}", a.port, each.join("; "))
    };
    let mut objects = vec![ObjectRef::new("Service", Some(&svc.namespace), &svc.name)];
    objects.extend(pods.iter().map(|p| ObjectRef::new("Pod", Some(&p.namespace), &p.name)));
    let mut evidence =
        vec![format!("{} reached the ClusterIP {} itself, not a pod: nothing to translate it to", a.client, a.server)];
    evidence.extend(why.iter().map(|(p, r)| format!("pod {}/{} at {}: {r}", p.namespace, p.name, a.at)));
    Ok(Some(Cause { reason: CauseReason::NoReadyEndpoints, message, objects, evidence }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::rules::fixtures::*;

    #[test]
    fn a_service_whose_only_pod_fails_readiness() {
        let s = shop().edit_pod("shop", "web", |p| p.ready = Some((false, at(90))));
        let c = explain(&refused_at_service(CART_IP), &s).expect("known").expect("a cause");
        assert_eq!(c.reason, CauseReason::NoReadyEndpoints);
        assert!(
            c.message.starts_with("Service shop/web had no ready endpoint for port 80: web: not Ready since"),
            "{}",
            c.message
        );
        assert_eq!(
            c.objects,
            [ObjectRef::new("Service", Some("shop"), "web"), ObjectRef::new("Pod", Some("shop"), "web")]
        );
    }

    #[test]
    fn a_service_that_selects_no_pod() {
        let s = shop()
            .edit_service(|svc| svc.selector = Some([("app".to_owned(), "wbe".to_owned())].into_iter().collect()));
        let c = explain(&refused_at_service(CART_IP), &s).expect("known").expect("a cause");
        assert_eq!(c.message, "Service shop/web selects no pod ({app=wbe} matches none in shop)");
    }

    #[test]
    fn no_cause_while_a_pod_was_ready_or_after_dnat_or_without_a_selector() {
        assert_eq!(explain(&refused_at_service(CART_IP), &shop()), Ok(None), "web was Ready");
        let unready_later = shop().edit_pod("shop", "web", |p| p.ready = Some((false, at(150))));
        assert_eq!(explain(&refused_at_service(CART_IP), &unready_later), Ok(None), "not ready only after the error");
        let s = shop().edit_pod("shop", "web", |p| p.ready = Some((false, at(90))));
        assert_eq!(explain(&refused(CART_IP, WEB_IP, 8080), &s), Ok(None), "translated to a pod");
        let manual = s.edit_service(|svc| svc.selector = None);
        assert_eq!(explain(&refused_at_service(CART_IP), &manual), Ok(None));
    }
}
