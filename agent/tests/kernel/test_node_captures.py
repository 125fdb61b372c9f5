"""The captures of a healthy real node (core/tests/fixtures/node, `tcpdump -i any` on e2e/node.py's node)
through `faultline-agent analyze`, with tshark as the oracle: every answer, response and solicitation
the node carried is one entry — however many interfaces, NAT tuples and hairpins showed it — and none is
an error. tshark sees each copy of a packet as a frame of its own; what NAT leaves alone (the IP
identification, TCP sequence numbers, the DNS id) tells copies of one packet apart from packets."""

from pathlib import Path

import pytest

from netlab import analyze, tshark_fields

FIXTURES = Path(__file__).resolve().parents[3] / "core" / "tests" / "fixtures" / "node"


def fixture(name):
    return FIXTURES / f"{name}.pcapng"


def errors(entries):
    """Errors, and ICMP other than router solicitations, but what the end of the capture cut short."""
    return [e for e in entries
            if (e.get("error") or (e.get("icmp") and e["icmp"]["typeName"] != "RouterSolicitation"))
            and "capture ended" not in (e.get("error") or {}).get("msg", "")]


def test_each_dns_answer_through_the_masquerade_is_one_answered_exchange():
    pcap = fixture("host-network-dns-through-masquerade")
    entries = analyze(pcap)
    assert errors(entries) == []
    # One answer per (IP id, DNS id): the same answer on CoreDNS's veth and, half translated, on the bridge.
    answers = set(tshark_fields(pcap, "dns.flags.response == 1", "ip.id", "dns.id"))
    assert len([e for e in entries if e["protocol"] == "dns" and e.get("response")]) == len(answers)


@pytest.mark.parametrize("name,protocol,oracle,decode_as", [
    ("pod-to-service-to-pod-http", "http", "http.response", ()),
    ("host-network-http-through-masquerade-and-probes", "http", "http.response", ()),
    # gRPC's trailers (and a trailers-only answer) carry its status: one per call.
    ("grpc-calls-and-grpc-probes", "grpc", 'http2.header.name == "grpc-status"', ("tcp.port==9090,http2",)),
])
def test_each_response_is_one_clean_pair(name, protocol, oracle, decode_as):
    pcap = fixture(name)
    entries = analyze(pcap)
    assert errors(entries) == []
    # A response seen under several tuples and on several interfaces keeps its sequence numbers.
    responses = set(tshark_fields(pcap, oracle, "tcp.seq_raw", "tcp.ack_raw", decode_as=decode_as))
    assert responses
    pairs = [e for e in entries if e["protocol"] == protocol and e.get("response")]
    assert len(pairs) == len(responses), (len(pairs), len(responses))


def test_tls_handshakes_and_their_closes_are_no_entries():
    for name in ("tls-clients-and-https-probes-closing", "pod-to-api-server-through-kubernetes-service"):
        pcap = fixture(name)
        summary = {}
        entries = analyze(pcap, summary=summary)
        assert entries == [] or errors(entries) == [], name
        assert summary.get("stream timeouts", 0) == 0, (name, summary)
        # The oracle: handshakes answered by a ServerHello, and no fatal alert in the clear.
        assert tshark_fields(pcap, "tls.alert_message.level == 2", "frame.number") == [], name
        assert tshark_fields(pcap, "tls.handshake.type == 2", "frame.number"), name


def test_each_router_solicitation_is_one_entry():
    pcap = fixture("router-solicitations-on-a-bridge")
    entries = analyze(pcap)
    sent = []
    for t, src in sorted(tshark_fields(pcap, "icmpv6.type == 133", "frame.time_epoch", "ipv6.src")):
        # Copies are microseconds apart; Linux solicits again after 4 s at the soonest.
        if not any(s == src and float(t) - u < 1 for u, s in sent):
            sent.append((float(t), src))
    reported = [e for e in entries if e.get("icmp") and e["icmp"]["typeName"] == "RouterSolicitation"]
    assert len(reported) == len(sent)
    assert sorted(e["src"]["ip"] for e in reported) == sorted(s for _, s in sent)
