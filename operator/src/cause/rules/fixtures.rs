//! A small cluster for the rules' tests: namespaces `shop` and `orders`; pods `shop/web` (app=web,
//! serving `http` 8080/TCP, Ready since 10 s), `shop/db` (app=db, 5432/TCP) and `orders/cart` (app=cart);
//! the Service `shop/web` (80 → 8080) on 10.96.0.50; errors at 100 s.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicy;

use faultline_model::entry::{
    DnsInfo, DnsQuestion, Endpoint, EntryError, ErrorType, Protocol, ServiceRef, SynReason, TcpInfo, TcpState,
};
use faultline_model::{Entry, Timestamp};

use crate::cause::state::{NamespaceState, PodState, PolicyState, Port, ServicePort, ServiceState, State, Target};

pub const WEB_IP: &str = "10.244.0.10";
pub const CART_IP: &str = "10.244.0.20";
pub const DB_IP: &str = "10.244.0.30";
pub const WEB_SVC: &str = "10.96.0.50";
pub const NODE_IP: &str = "192.0.2.2";

/// When the watch saw the objects: long after they were made (their times are settled to the second's end).
pub const LATER: Timestamp = Timestamp(u64::MAX);

pub fn at(secs: u64) -> Timestamp {
    Timestamp(secs * 1_000_000_000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

pub fn pod(ns: &str, name: &str, app: &str, addr: &str, ports: &[(&str, u16)]) -> PodState {
    PodState {
        namespace: ns.into(),
        name: name.into(),
        labels: [("app".to_owned(), app.to_owned())].into_iter().collect(),
        ips: vec![ip(addr)],
        node: Some("n1".into()),
        ports: ports
            .iter()
            .map(|(n, p)| Port { container: "app".into(), name: Some((*n).into()), port: *p, protocol: "TCP".into() })
            .collect(),
        created: at(1),
        ready: Some((true, at(10))),
        owner: Some(("ReplicaSet".into(), format!("{name}-5d8f7"))),
        ..PodState::default()
    }
}

pub fn shop() -> State {
    let mut s = State { cluster_domain: "cluster.local".into(), ..State::default() };
    for ns in ["shop", "orders", "default", "kube-system"] {
        let labels = [("kubernetes.io/metadata.name".to_owned(), ns.to_owned())].into_iter().collect();
        s.apply_namespace(ns.into(), NamespaceState { labels, created: at(0), gone: None }, LATER);
    }
    s.apply_pod(pod("shop", "web", "web", WEB_IP, &[("http", 8080)]), LATER);
    s.apply_pod(pod("shop", "db", "db", DB_IP, &[("pg", 5432)]), LATER);
    s.apply_pod(pod("orders", "cart", "cart", CART_IP, &[]), LATER);
    s.apply_service(
        ServiceState {
            namespace: "shop".into(),
            name: "web".into(),
            cluster_ips: vec![ip(WEB_SVC)],
            selector: Some([("app".to_owned(), "web".to_owned())].into_iter().collect()),
            ports: vec![ServicePort { name: None, port: 80, protocol: "TCP".into(), target: Target::Number(8080) }],
            created: at(1),
            gone: None,
        },
        LATER,
    );
    s
}

impl State {
    pub fn with_policy(self, ns: &str, name: &str, spec: &str) -> State {
        self.with_policy_at(ns, name, spec, at(1))
    }

    pub fn with_policy_at(mut self, ns: &str, name: &str, spec: &str, created: Timestamp) -> State {
        let spec: serde_json::Value = serde_json::from_str(spec).expect("a spec");
        let np: NetworkPolicy =
            serde_json::from_value(serde_json::json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
                .expect("a NetworkPolicy");
        let mut p = PolicyState::from_policy(&np, created);
        p.created = created;
        p.changed = created;
        self.apply_policy(p, LATER);
        self
    }

    pub fn edit_pod(mut self, ns: &str, name: &str, f: impl FnOnce(&mut PodState)) -> State {
        if let Some(p) = self.pods.get_mut(&(ns.to_owned(), name.to_owned())) {
            f(p);
        }
        self
    }

    pub fn edit_service(mut self, f: impl FnOnce(&mut ServiceState)) -> State {
        if let Some(s) = self.services.get_mut(&("shop".to_owned(), "web".to_owned())) {
            f(s);
        }
        self
    }
}

fn tcp(src: &str, dst: &str, port: u16, state: TcpState, reason: Option<SynReason>) -> Entry {
    let mut e =
        Entry::new(Protocol::Tcp, at(100), Endpoint::new(ip(src), Some(40000)), Endpoint::new(ip(dst), Some(port)));
    e.error = Some(EntryError { kind: ErrorType::Connection, msg: state.as_str().into() });
    e.tcp = Some(TcpInfo { state, reason, by: None });
    e
}

pub fn syn_timeout(src: &str, dst: &str, port: u16) -> Entry {
    tcp(src, dst, port, TcpState::SynSent, Some(SynReason::Timeout))
}

pub fn refused(src: &str, dst: &str, port: u16) -> Entry {
    tcp(src, dst, port, TcpState::SynSent, Some(SynReason::Refused))
}

pub fn reset(src: &str, dst: &str, port: u16) -> Entry {
    tcp(src, dst, port, TcpState::Reset, None)
}

/// A refused connection to the Service's ClusterIP (no DNAT happened: kube-proxy rejected it).
pub fn refused_at_service(src: &str) -> Entry {
    let mut e = refused(src, WEB_SVC, 80);
    e.service =
        Some(ServiceRef { ip: ip(WEB_SVC), port: 80, name: Some("web".into()), namespace: Some("shop".into()) });
    e
}

pub fn half(src: &str, dst: &str, port: u16) -> Entry {
    let mut e =
        Entry::new(Protocol::Http, at(100), Endpoint::new(ip(src), Some(40000)), Endpoint::new(ip(dst), Some(port)));
    e.error = Some(EntryError { kind: ErrorType::PairNotFound, msg: "missing response: connection reset".into() });
    e
}

pub fn nxdomain(name: &str) -> Entry {
    let mut e = Entry::new(
        Protocol::Dns,
        at(100),
        Endpoint::new(ip(CART_IP), Some(40000)),
        Endpoint::new(ip("10.96.0.10"), Some(53)),
    );
    e.error = Some(EntryError { kind: ErrorType::Dns, msg: format!("NXDOMAIN for {name} A") });
    e.dns = Some(DnsInfo {
        id: 1,
        question: DnsQuestion { name: name.into(), qtype: "A".into() },
        rcode: Some(3),
        rcode_name: Some("NXDOMAIN".into()),
        answers: vec![],
    });
    e
}
