//! Captures of a healthy node (`tcpdump -i any` on the real node of `e2e/node.py`: a bridge CNI,
//! kube-proxy in iptables mode, CoreDNS; see `fixtures/node/README.md`). Each holds one path a packet
//! takes on a node — pod veths and the bridge, DNAT to a pod or to the node itself, the masquerade of
//! host-network clients with its reply half translated back on the bridge, the bridge's hairpin — and
//! what clients and servers really do there. Nothing in them is an error: every entry must say so, and each
//! connection and each exchange must be one.

mod common;

use std::net::IpAddr;

use faultline_core::entry::{Entry, Protocol};
use faultline_core::pcap::PcapReader;
use faultline_core::{EngineConfig, Stats};

fn analyze(name: &str) -> (Vec<Entry>, Stats) {
    let path = format!("{}/tests/fixtures/node/{name}.pcapng", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture");
    let mut reader = PcapReader::new(&bytes[..]).expect("a pcapng");
    let mut engine = common::test_engine(EngineConfig::default());
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().expect("a record") {
        // Loopback is the node talking to itself: the agent never captures it, nor do these captures.
        let _ = engine.handle_frame_on(r.interface, r.link_type, r.data, r.ts, &mut out);
    }
    engine.finish(&mut out);
    (out, engine.stats())
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

/// Entries that are errors, or ICMP messages other than router solicitations, as one line each.
fn errors(out: &[Entry]) -> Vec<String> {
    let end = out.iter().map(|e| e.timestamp).max();
    out.iter()
        .filter(|e| e.error.is_some() || e.icmp.as_ref().is_some_and(|i| i.type_name != "RouterSolicitation"))
        // A capture cut at an arbitrary moment ends in the middle of exchanges: those are decided by the end
        // of input (SPEC §3.6), not by the network.
        .filter(|e| e.error.as_ref().is_none_or(|err| !err.msg.contains("capture ended")))
        .filter(|e| Some(e.timestamp) != end || e.tcp.is_some())
        .map(|e| {
            format!(
                "{} {}:{:?} -> {}:{:?} {:?}",
                e.protocol.as_str(),
                e.src.ip,
                e.src.port,
                e.dst.ip,
                e.dst.port,
                e.error.as_ref().map(|err| &err.msg)
            )
        })
        .collect()
}

#[test]
fn a_host_network_clients_lookups_through_the_masquerade_are_answered_exchanges() {
    // The query is seen only after DNAT and masquerade (10.88.0.1, the bridge, to CoreDNS); the answer on
    // CoreDNS's veth under that tuple, then on the bridge half translated back (to the node's address and
    // the client's own port). Before, the answer's second tuple was kept and its first dropped: every
    // query that shared a socket with an earlier one was reported unanswered.
    let (out, stats) = analyze("host-network-dns-through-masquerade");
    assert_eq!(errors(&out), Vec::<String>::new());
    let dns: Vec<&Entry> = out.iter().filter(|e| e.protocol == Protocol::Dns).collect();
    assert!(dns.len() > 100, "{} exchanges", dns.len());
    for e in &dns {
        assert_eq!((e.src.ip, e.dst.ip, e.dst.port), (ip("10.88.0.1"), ip("10.88.0.12"), Some(53)), "{e:?}");
        assert!(e.response.is_some(), "answered: {e:?}");
    }
    assert!(stats.nat_copies > 0 && stats.dns_unmatched_responses == 0, "{stats:?}");
}

#[test]
fn a_pod_reaching_the_api_server_on_its_own_node_completes_every_handshake() {
    // kubernetes.default (10.96.0.1:443) DNATed to the node's own address (192.0.2.2:6443): the client's
    // packets are seen before DNAT on its veth and after it on the bridge; the host's replies only as the
    // ClusterIP (reverse NAT on output). Before, the tuple after DNAT was kept and every reply dropped:
    // `no ServerHello` on handshakes that worked.
    let (out, stats) = analyze("pod-to-api-server-through-kubernetes-service");
    assert_eq!(errors(&out), Vec::<String>::new());
    assert_eq!(stats.tls_broken + stats.streams_timed_out, 0, "{stats:?}");
    assert!(stats.nat_copies > 0 && stats.closed_by_reset > 0, "{stats:?}");
}

#[test]
fn tls_clients_and_https_probes_close_without_errors() {
    // Go's TLS clients (the kubelet's HTTPS probes among them) send close_notify and close their socket
    // with the server's close_notify unread: the kernel answers it, or the server's FIN, with an RST.
    let (out, stats) = analyze("tls-clients-and-https-probes-closing");
    assert_eq!(errors(&out), Vec::<String>::new());
    assert!(stats.closed_by_reset > 3, "{stats:?}");
}

#[test]
fn grpc_calls_and_the_kubelets_grpc_probes_are_clean_pairs() {
    // grpc-go clients close their channel after its GOAWAY with an RST (the server's last frames unread).
    let (out, stats) = analyze("grpc-calls-and-grpc-probes");
    assert_eq!(errors(&out), Vec::<String>::new());
    let calls: Vec<&Entry> = out.iter().filter(|e| e.protocol == Protocol::Grpc).collect();
    assert!(calls.len() > 5, "{} gRPC calls", calls.len());
    assert!(calls.iter().all(|e| e.grpc.as_ref().is_some_and(|g| g.status == Some(0))), "{calls:?}");
    assert!(stats.closed_by_reset > 0, "{stats:?}");
}

#[test]
fn each_router_solicitation_is_one_entry_whatever_the_bridge_copies() {
    // A pod's solicitation is seen entering its veth, leaving it again (the bridge's hairpin), and leaving
    // every other port: one packet. Linux solicits again after 4 s at the soonest.
    let (out, _) = analyze("router-solicitations-on-a-bridge");
    let mut rs: Vec<(IpAddr, u64)> = out
        .iter()
        .filter(|e| e.icmp.as_ref().is_some_and(|i| i.type_name == "RouterSolicitation"))
        .map(|e| (e.src.ip, e.timestamp.nanos()))
        .collect();
    assert!(rs.len() > 10, "{} solicitations", rs.len());
    rs.sort();
    let twice: Vec<_> = rs.windows(2).filter(|w| w[0].0 == w[1].0 && w[1].1 - w[0].1 < 1_000_000_000).collect();
    assert!(twice.is_empty(), "reported twice: {twice:?}");
}

#[test]
fn http_through_a_service_is_reported_from_the_pod_to_the_backend_via_the_service() {
    let (out, _) = analyze("pod-to-service-to-pod-http");
    assert_eq!(errors(&out), Vec::<String>::new());
    let http: Vec<&Entry> = out.iter().filter(|e| e.protocol == Protocol::Http).collect();
    assert!(http.len() > 5, "{} exchanges", http.len());
    for e in http {
        assert_eq!(e.src.ip, ip("10.88.0.31"), "the client pod: {e:?}");
        assert_eq!(e.dst.port, Some(8080), "the backend after DNAT: {e:?}");
        let svc = e.service.as_ref().expect("the Service the client addressed");
        assert_eq!(svc.port, 80);
    }
}

#[test]
fn host_network_http_through_the_masquerade_and_the_kubelets_probes_are_clean() {
    let (out, _) = analyze("host-network-http-through-masquerade-and-probes");
    assert_eq!(errors(&out), Vec::<String>::new());
    let http: Vec<&Entry> = out.iter().filter(|e| e.protocol == Protocol::Http).collect();
    assert!(http.len() > 10, "{} exchanges", http.len());
    for e in http {
        // DNATed and masqueraded before any capture point (the host's own output): the client is the
        // bridge's address and the server the pod, as on the wire; the Service was never seen.
        assert_eq!((e.src.ip, e.dst.port), (ip("10.88.0.1"), Some(8080)), "{e:?}");
        assert!(e.response.as_ref().is_some_and(|r| r.status / 100 == 2), "{e:?}");
    }
}
