//! The upstream NetworkPolicy e2e cases (kubernetes `test/e2e/network/netpol/network_policy.go`), on
//! their model: namespaces x, y, z (labelled `ns: <name>` and `kubernetes.io/metadata.name`), pods a, b,
//! c in each (labelled `pod: <name>`), each serving 80 and 81 over TCP and UDP under the names
//! `serve-<port>-<protocol>`. Each case is the policies and the reachability the upstream test expects.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{json, Value};

use super::*;
use crate::cause::state::{NamespaceState, PodState, PolicyState, Port, State};

const T: Timestamp = Timestamp(100_000_000_000);
/// When the watch saw the objects: long after they were made (their times are settled to the second's end).
const LATER: Timestamp = Timestamp(u64::MAX);

fn ip_of(ns: &str, pod: &str) -> IpAddr {
    let n = match ns {
        "x" => 1,
        "y" => 2,
        _ => 3,
    };
    let p = match pod {
        "a" => 1,
        "b" => 2,
        _ => 3,
    };
    IpAddr::from([10, 0, n, p])
}

fn model(policies: &[Value]) -> State {
    let mut s = State::default();
    for ns in ["x", "y", "z"] {
        let labels = [("ns", ns), ("kubernetes.io/metadata.name", ns)]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        s.apply_namespace(ns.to_owned(), NamespaceState { labels, created: Timestamp(0), gone: None }, LATER);
        for pod in ["a", "b", "c"] {
            let mut ports = Vec::new();
            for port in [80u16, 81] {
                for proto in ["TCP", "UDP"] {
                    ports.push(Port {
                        container: format!("cont-{port}-{}", proto.to_lowercase()),
                        name: Some(format!("serve-{port}-{}", proto.to_lowercase())),
                        port,
                        protocol: proto.to_owned(),
                    });
                }
            }
            s.apply_pod(
                PodState {
                    namespace: ns.to_owned(),
                    name: pod.to_owned(),
                    labels: [("pod".to_owned(), pod.to_owned())].into_iter().collect(),
                    ips: vec![ip_of(ns, pod)],
                    ports,
                    ..PodState::default()
                },
                LATER,
            );
        }
    }
    for p in policies {
        let np: NetworkPolicy = serde_json::from_value(p.clone()).expect("a NetworkPolicy");
        s.apply_policy(PolicyState::from_policy(&np, Timestamp(0)), LATER);
    }
    s
}

/// Whether `from` ("x/a") reaches `to` on `port`/`protocol`: its egress and the destination's ingress.
fn reach(s: &State, from: &str, to: &str, port: u16, protocol: &str) -> bool {
    let pod = |id: &str| {
        let (ns, name) = id.split_once('/').expect("ns/pod");
        s.pods.get(&(ns.to_owned(), name.to_owned())).expect("a pod")
    };
    let (src, dst) = (pod(from), pod(to));
    let out = judge(s, Direction::Egress, src, Peer::Pod(dst, dst.ips[0]), port, protocol, T).expect("known");
    let inn = judge(s, Direction::Ingress, dst, Peer::Pod(src, src.ips[0]), port, protocol, T).expect("known");
    out.admitted && inn.admitted
}

const ALL: [&str; 9] = ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"];

/// Every pod's reach to `to`, as the set of sources that get through.
fn into(s: &State, to: &str, port: u16, protocol: &str) -> Vec<&'static str> {
    ALL.iter().copied().filter(|from| reach(s, from, to, port, protocol)).collect()
}

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"metadata": {"namespace": ns, "name": name, "creationTimestamp": "1970-01-01T00:00:01Z"}, "spec": spec})
}

#[test]
fn no_policy_admits_everything() {
    let s = model(&[]);
    assert_eq!(into(&s, "x/a", 80, "TCP"), ALL);
}

#[test]
fn default_deny_ingress() {
    let s = model(&[policy("x", "deny", json!({"podSelector": {}, "policyTypes": ["Ingress"]}))]);
    for to in ["x/a", "x/b", "x/c"] {
        assert!(into(&s, to, 80, "TCP").is_empty(), "{to}");
    }
    assert_eq!(into(&s, "y/a", 80, "TCP"), ALL, "egress from x is not touched");
}

#[test]
fn default_deny_all() {
    let s = model(&[policy("x", "deny", json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))]);
    assert!(into(&s, "x/a", 80, "TCP").is_empty());
    assert_eq!(into(&s, "y/a", 80, "TCP"), ["y/a", "y/b", "y/c", "z/a", "z/b", "z/c"], "x sends nothing");
}

#[test]
fn allow_from_pods_within_the_namespace_by_pod_selector() {
    let s = model(&[policy(
        "x",
        "allow-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    )]);
    assert_eq!(into(&s, "x/a", 80, "TCP"), ["x/b"]);
    assert_eq!(into(&s, "x/b", 80, "TCP"), ALL, "x/b is not selected");
}

#[test]
fn allow_only_from_another_namespace_by_namespace_selector() {
    let s = model(&[policy(
        "x",
        "from-y",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
    )]);
    assert_eq!(into(&s, "x/a", 80, "TCP"), ["y/a", "y/b", "y/c"]);
}

#[test]
fn pod_selector_with_match_expressions() {
    let s = model(&[policy(
        "x",
        "expr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}}]}]}),
    )]);
    assert_eq!(into(&s, "x/a", 80, "TCP"), ["x/b"]);
}

#[test]
fn namespace_selector_with_match_expressions() {
    let s = model(&[policy(
        "x",
        "expr",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "In", "values": ["y"]}]}}]}]}),
    )]);
    assert_eq!(into(&s, "x/a", 80, "TCP"), ["y/a", "y/b", "y/c"]);
}

#[test]
fn pod_selector_or_namespace_selector() {
    let s = model(&[policy(
        "x",
        "or",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"pod": "b"}}},
            {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}}
        ]}]}),
    )]);
    assert_eq!(into(&s, "x/a", 80, "TCP"), ["x/b", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"]);
}

#[test]
fn pod_selector_and_namespace_selector() {
    let s = model(&[policy(
        "x",
        "and",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{
            "namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]},
            "podSelector": {"matchLabels": {"pod": "b"}}
        }]}]}),
    )]);
    assert_eq!(into(&s, "x/a", 80, "TCP"), ["y/b", "z/b"]);
}

#[test]
fn default_namespace_label() {
    let s = model(&[policy(
        "x",
        "by-name",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}),
    )]);
    assert_eq!(into(&s, "x/c", 81, "TCP"), ["y/a", "y/b", "y/c"]);
}

#[test]
fn ports_and_named_ports_and_end_port() {
    let only_81 = model(&[policy(
        "x",
        "p",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 81}]}]}),
    )]);
    assert_eq!(into(&only_81, "x/a", 81, "TCP"), ["y/a", "y/b", "y/c"]);
    assert!(into(&only_81, "x/a", 80, "TCP").is_empty());
    let named = model(&[policy(
        "x",
        "named",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
    )]);
    assert_eq!(into(&named, "x/a", 81, "TCP"), ALL);
    assert!(into(&named, "x/a", 80, "TCP").is_empty());
    assert!(into(&named, "x/a", 81, "UDP").is_empty(), "the name is TCP's");
    let range = model(&[policy(
        "x",
        "range",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "TCP"}]}]}),
    )]);
    assert_eq!(into(&range, "x/a", 81, "TCP"), ALL);
    assert!(into(&range, "x/a", 82, "TCP").is_empty());
}

#[test]
fn sctp_is_not_tcp() {
    let s = model(&[policy(
        "x",
        "sctp",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 81, "protocol": "SCTP"}]}]}),
    )]);
    assert!(into(&s, "x/a", 81, "TCP").is_empty());
}

#[test]
fn an_allow_all_policy_takes_precedence_over_a_narrower_one() {
    let s = model(&[
        policy(
            "x",
            "only-80",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 80}]}]}),
        ),
        policy("x", "all", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{}]})),
    ]);
    assert_eq!(into(&s, "x/a", 81, "TCP"), ALL);
}

#[test]
fn egress_on_one_named_port_and_to_a_pod_in_another_namespace() {
    let named = model(&[policy(
        "x",
        "egress-80",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
    )]);
    assert!(reach(&named, "x/a", "y/b", 80, "TCP"));
    assert!(!reach(&named, "x/a", "y/b", 81, "TCP"));
    let to_ya = model(&[policy(
        "x",
        "to-y-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": [{
            "namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "a"}}
        }]}]}),
    )]);
    let reached: Vec<_> = ALL.iter().filter(|to| reach(&to_ya, "x/a", to, 80, "TCP")).collect();
    assert_eq!(reached, [&"y/a"]);
}

#[test]
fn egress_except_clause_and_an_ip_in_both_cidr_and_except() {
    let server = ip_of("y", "b");
    let except = json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": [
        {"ipBlock": {"cidr": "10.0.0.0/16", "except": [format!("{server}/32")]}}
    ]}]});
    let s = model(&[policy("x", "except", except.clone())]);
    assert!(!reach(&s, "x/a", "y/b", 80, "TCP"));
    assert!(reach(&s, "x/a", "y/c", 80, "TCP"));
    let also = json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{"to": [
        {"ipBlock": {"cidr": format!("{server}/32")}}
    ]}]});
    let s = model(&[policy("x", "except", except), policy("x", "allow-server", also)]);
    assert!(reach(&s, "x/a", "y/b", 80, "TCP"), "another policy admits it: policies are ORed");
}

#[test]
fn egress_denied_on_the_client_even_when_the_server_allows_it() {
    let s = model(&[
        policy("x", "deny-egress", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"]})),
        policy(
            "y",
            "allow-x-a",
            json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": {"matchLabels": {"pod": "a"}}
            }]}]}),
        ),
    ]);
    assert!(!reach(&s, "x/a", "y/b", 80, "TCP"));
    assert!(into(&s, "y/b", 80, "TCP").is_empty(), "y/b admits only x/a, and x/a may not send");
}

#[test]
fn ingress_and_egress_together_and_the_egress_default() {
    let both = model(&[policy(
        "x",
        "both",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
               "egress": [{"ports": [{"port": 80}]}]}),
    )]);
    assert_eq!(into(&both, "x/a", 81, "TCP"), ["x/b"]);
    assert!(reach(&both, "x/a", "y/c", 80, "TCP"));
    assert!(!reach(&both, "x/a", "y/c", 81, "TCP"));
    // No policyTypes, egress rules present: the API server defaults to both.
    let defaulted = model(&[policy(
        "x",
        "defaulted",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "egress": [{"ports": [{"port": 80}]}]}),
    )]);
    assert!(!reach(&defaulted, "x/a", "y/c", 81, "TCP"));
    assert!(into(&defaulted, "x/a", 80, "TCP").is_empty(), "and Ingress, with no rules: denies all");
}

#[test]
fn a_policy_created_after_the_time_or_changed_since_is_not_judged() {
    let mut s = model(&[]);
    let later: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"namespace": "x", "name": "later", "creationTimestamp": "1970-01-01T00:02:00Z"},
        "spec": {"podSelector": {}}
    }))
    .expect("policy");
    s.apply_policy(PolicyState::from_policy(&later, Timestamp(0)), LATER);
    assert!(reach(&s, "y/a", "x/a", 80, "TCP"), "created at 120 s: not in force at 100 s");
    let changed: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"namespace": "x", "name": "changed", "creationTimestamp": "1970-01-01T00:00:01Z", "generation": 2},
        "spec": {"podSelector": {}}
    }))
    .expect("policy");
    s.apply_policy(PolicyState::from_policy(&changed, Timestamp(150_000_000_000)), LATER);
    let a = s.pods.get(&("x".to_owned(), "a".to_owned())).expect("pod");
    let b = s.pods.get(&("y".to_owned(), "a".to_owned())).expect("pod");
    assert!(judge(&s, Direction::Ingress, a, Peer::Pod(b, b.ips[0]), 80, "TCP", T).is_err(), "changed at 150 s");
}

#[test]
fn addresses_that_are_no_pod_match_only_ip_blocks() {
    let s = model(&[policy(
        "x",
        "pods-only",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}, {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]}),
    )]);
    let a = s.pods.get(&("x".to_owned(), "a".to_owned())).expect("pod");
    let outside = |ip: [u8; 4]| {
        judge(&s, Direction::Ingress, a, Peer::Ip(IpAddr::from(ip)), 80, "TCP", T).expect("known").admitted
    };
    assert!(outside([192, 0, 2, 9]));
    assert!(!outside([198, 51, 100, 9]), "a namespace selector selects pods, never addresses");
    assert!(in_cidr("fd00::/8", "fd12::1".parse().expect("ip")));
    assert!(!in_cidr("fd00::/8", "10.0.0.1".parse().expect("ip")));
    assert!(in_cidr("0.0.0.0/0", "10.0.0.1".parse().expect("ip")));
}
