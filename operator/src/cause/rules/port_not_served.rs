//! `PortNotServed`: a refused connection to a port the pod does not declare while it declares others —
//! nothing listens where the client knocked — or a connection through a Service whose `targetPort` no
//! selected pod declares (a named target no container has, or a number none listens on): refused after
//! translation, or — never translated — rejected or unanswered at the ClusterIP. A pod that declares no
//! port at all proves nothing (declaring is optional).

use faultline_model::cause::{Cause, CauseReason, ObjectRef};
use faultline_model::Entry;

use super::{Attempt, Failure, Verdict};
use crate::cause::state::{PodState, State, Target};

pub fn explain(e: &Entry, s: &State) -> Verdict {
    let Some(a) = Attempt::of(e) else { return Ok(None) };
    let refused = matches!(a.failure, Failure::Refused | Failure::PortUnreachable);
    // Through a Service: the client's address for it (seen before DNAT), or the ClusterIP itself — where,
    // with no endpoint to translate to, any failure (a REJECT, or a SYN routed nowhere) is explained.
    let addressed = e.service.as_ref().map(|r| (r.ip, r.port)).unwrap_or((a.server, a.port));
    let untranslated = s.service_at(&a.server, a.at).is_some();
    let failed = refused || (untranslated && matches!(a.failure, Failure::Timeout | Failure::Unreachable));
    if !failed {
        return Ok(None);
    }
    if let Some(svc) = s.service_at(&addressed.0, a.at) {
        let Some(port) = svc.ports.iter().find(|p| p.port == addressed.1 && p.protocol == a.protocol) else {
            return Ok(None);
        };
        let pods: Vec<&PodState> = s.selected_pods(svc, a.at).collect();
        let declared: Vec<&PodState> = pods.iter().copied().filter(|p| !p.ports.is_empty()).collect();
        if declared.is_empty() {
            return Ok(None);
        }
        let served = |p: &PodState| match &port.target {
            Target::Name(n) => p.named_port(n, &port.protocol).is_some(),
            Target::Number(n) => p.declares(*n, &port.protocol),
        };
        if declared.iter().any(|p| served(p)) {
            return Ok(None);
        }
        let target = match &port.target {
            Target::Name(n) => format!("targetPort {n:?}"),
            Target::Number(n) => format!("targetPort {n}"),
        };
        let ports = list_ports(declared[0]);
        let message = format!(
            "Service {}/{} sends port {} to {target}, which no selected pod declares (they declare {ports})",
            svc.namespace, svc.name, port.port
        );
        let mut objects = vec![ObjectRef::new("Service", Some(&svc.namespace), &svc.name)];
        objects.extend(declared.iter().map(|p| ObjectRef::new("Pod", Some(&p.namespace), &p.name)));
        let evidence =
            declared.iter().map(|p| format!("pod {}/{} declares {}", p.namespace, p.name, list_ports(p))).collect();
        return Ok(Some(Cause { reason: CauseReason::PortNotServed, message, objects, evidence }));
    }
    let Some(pod) = s.pod_at(&a.server, a.at).filter(|_| refused) else { return Ok(None) };
    let mine: Vec<_> = pod.ports.iter().filter(|p| p.protocol == a.protocol).collect();
    if mine.is_empty() || pod.declares(a.port, a.protocol) {
        return Ok(None);
    }
    let ports = list_ports(pod);
    let message = format!(
        "pod {}/{} does not declare port {}/{} (it declares {ports}): nothing listens there",
        pod.namespace, pod.name, a.port, a.protocol
    );
    let evidence = vec![
        format!("the connection to {}:{} was refused at {}", a.server, a.port, a.at),
        format!("pod {}/{} declares {ports}", pod.namespace, pod.name),
    ];
    let objects = vec![ObjectRef::new("Pod", Some(&pod.namespace), &pod.name)];
    Ok(Some(Cause { reason: CauseReason::PortNotServed, message, objects, evidence }))
}

fn list_ports(p: &PodState) -> String {
    let each: Vec<String> = p
        .ports
        .iter()
        .map(|x| match &x.name {
            Some(n) => format!("{}/{} ({n})", x.port, x.protocol),
            None => format!("{}/{}", x.port, x.protocol),
        })
        .collect();
    each.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::rules::fixtures::*;
    use crate::cause::state::Target;

    #[test]
    fn a_refusal_on_an_undeclared_port() {
        let c = explain(&refused(CART_IP, WEB_IP, 9090), &shop()).expect("known").expect("a cause");
        assert_eq!(
            c.message,
            "pod shop/web does not declare port 9090/TCP (it declares 8080/TCP (http)): nothing listens there"
        );
    }

    #[test]
    fn no_cause_on_a_declared_port_or_a_pod_that_declares_none() {
        assert_eq!(explain(&refused(CART_IP, WEB_IP, 8080), &shop()), Ok(None), "declared: something else refused");
        assert_eq!(explain(&refused(WEB_IP, CART_IP, 9090), &shop()), Ok(None), "cart declares nothing");
        assert_eq!(explain(&syn_timeout(CART_IP, WEB_IP, 9090), &shop()), Ok(None), "not refused");
    }

    #[test]
    fn a_service_whose_target_port_no_pod_declares() {
        let named = shop().edit_service(|s| s.ports[0].target = Target::Name("htp".into()));
        let c = explain(&refused_at_service(CART_IP), &named).expect("known").expect("a cause");
        assert_eq!(c.message, "Service shop/web sends port 80 to targetPort \"htp\", which no selected pod declares (they declare 8080/TCP (http))");
        let number = shop().edit_service(|s| s.ports[0].target = Target::Number(8081));
        assert!(explain(&refused_at_service(CART_IP), &number).expect("known").is_some());
        assert_eq!(explain(&refused_at_service(CART_IP), &shop()), Ok(None), "8080 is declared");
        // Never translated, the SYN went nowhere (an enforcer accepted it before kube-proxy's REJECT).
        let mut timeout = syn_timeout(CART_IP, WEB_SVC, 80);
        timeout.service = refused_at_service(CART_IP).service;
        assert!(explain(&timeout, &named).expect("known").is_some());
        assert_eq!(explain(&syn_timeout(CART_IP, WEB_IP, 9090), &shop()), Ok(None), "a pod's timeout is no refusal");
    }
}
