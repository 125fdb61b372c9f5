"""`faultline-agent run --engine-threads 2` on a live interface: the kernel spreads the interface's packets
over a fanout group of two AF_PACKET sockets (PACKET_FANOUT_HASH: both directions of a flow reach one
socket), each with its ring and capture thread, and the engine shards flows over two threads. Two agents
capture the same real traffic at once — one socket and one engine, two and two — and must report the same
entries: handshakes and their answers, HTTP requests and responses, and ICMP errors that reach the shard
of the flow they quote (a REJECTed SYN is `SynSent`/`unreachable`, not a timeout)."""

import json
import os
import re
import subprocess
import time

import pytest

from netlab import SERVER4, Lab, analyzer_binary
from test_live_capture import metrics

REFUSED, REJECTED, UDP_CLOSED, HTTP_503 = 12, 8, 8, 6


def start_agent(lab, tmp_path, name, port, threads):
    token = tmp_path / "token"
    token.write_text("unused")
    log = tmp_path / f"{name}.log"
    # No operator: the agent logs each entry it would send, as JSON.
    p = subprocess.Popen(
        ["ip", "netns", "exec", lab.c, analyzer_binary(), "run", "--interface", "c0", "--capture-backend",
         "afpacket", "--engine-threads", str(threads), "--node-name", "lab", "--token-file", str(token),
         "--http-addr", f"127.0.0.1:{port}", "--syn-timeout-ms", "1500", "--report-interval-ms", "200"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    lab.procs.append(p)
    return p, log


def stamp(ts):
    """Seconds since the epoch of an entry's RFC 3339 timestamp (µs)."""
    from datetime import datetime
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def same_entries(a, b):
    """Equal but for when each socket stamped the packets (each socket of the kernel stamps its own copy
    of a packet: microseconds apart)."""
    def split(entries):
        out = []
        for e in entries:
            e = dict(e)
            times = (stamp(e.pop("timestamp")), e.pop("elapsedTime"))
            out.append((json.dumps(e, sort_keys=True), times))
        return sorted(out)
    a, b = split(a), split(b)
    assert [k for k, _ in a] == [k for k, _ in b], "the entries differ"
    for (k, (ta, ea)), (_, (tb, eb)) in zip(a, b):
        assert abs(ta - tb) < 0.001 and abs(ea - eb) < 1.0, (k, ta, tb, ea, eb)


def entries(log):
    found = []
    for line in log.read_text().splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # the log's colours
        m = re.search(r" entry entry=(\{.*\})$", line)
        if m:
            e = json.loads(m[1])
            e.pop("id")
            found.append(e)
    return sorted(found, key=lambda e: json.dumps(e, sort_keys=True))


def test_two_engine_threads_on_a_fanout_group_report_what_one_engine_reports(tmp_path):
    port = 19700 + (os.getpid() % 200)
    with Lab() as lab:
        lab.iptables(False, "-A", "FORWARD", "-p", "tcp", "--dport", "83", "-j", "REJECT", "--reject-with",
                     "icmp-admin-prohibited")
        one, one_log = start_agent(lab, tmp_path, "one", port, 1)
        two, two_log = start_agent(lab, tmp_path, "two", port + 1, 2)
        deadline = time.time() + 10
        while not (metrics(lab, port) and metrics(lab, port + 1)):
            assert one.poll() is None and two.poll() is None, two_log.read_text()
            assert time.time() < deadline, two_log.read_text()
            time.sleep(0.2)
        assert metrics(lab, port + 1)["capture_sockets"] == 2 and metrics(lab, port + 1)["engine_threads"] == 2
        assert metrics(lab, port)["capture_sockets"] == 1
        time.sleep(0.5)
        for i in range(REFUSED):
            lab.traffic(lab.c, "connect", SERVER4, "9", "--sport", str(42000 + i))
        for i in range(REJECTED):
            lab.traffic(lab.c, "connect", SERVER4, "83", "--sport", str(43000 + i), "--timeout", "0.5")
        for i in range(UDP_CLOSED):
            lab.traffic(lab.c, "udp", SERVER4, "9", "--sport", str(44000 + i))
        for i in range(HTTP_503):
            lab.server("serve", str(8101 + i), "error", "--hold", "0.1")
            lab.traffic(lab.c, "connect", SERVER4, str(8101 + i), "--sport", str(45000 + i),
                        "--send", "GET /busy HTTP/1.1\\r\\nHost: s\\r\\n\\r\\n", "--wait", "0.3")
        want = REFUSED + 2 * REJECTED + UDP_CLOSED + HTTP_503
        deadline = time.time() + 15
        while time.time() < deadline and (len(entries(one_log)) < want or len(entries(two_log)) < want):
            time.sleep(0.3)
        time.sleep(1.5)  # anything late, and the kernel counters (read once a second)
        m1, m2 = metrics(lab, port), metrics(lab, port + 1)
    a, b = entries(one_log), entries(two_log)
    assert len(a) == want, json.dumps(a, indent=1)
    same_entries(a, b)
    kinds = {}
    for e in a:
        t = e.get("tcp") or {}
        key = (e["protocol"], t.get("state"), t.get("reason"), (e.get("response") or {}).get("status"),
               (e.get("icmp") or {}).get("codeName"))
        kinds[key] = kinds.get(key, 0) + 1
    assert kinds == {
        ("tcp", "SynSent", "refused", None, None): REFUSED,
        ("tcp", "SynSent", "unreachable", None, None): REJECTED,
        ("icmp", None, None, None, "CommunicationAdministrativelyProhibited"): REJECTED,
        ("icmp", None, None, None, "Port"): UDP_CLOSED,
        ("http", None, None, 503, None): HTTP_503,
    }, kinds
    # The group's two sockets together gave the engines every segment, datagram and ICMP message the single
    # socket gave its engine (the shards' counters summed), and the kernel dropped none.
    for c in ("engine.tcpSegments", "engine.udpDatagrams", "engine.icmpMessages", "engine.flowsCreated"):
        assert m2[c] == m1[c] > 0, (c, {k: (v, m2.get(k)) for k, v in m1.items() if v != m2.get(k)})
    assert m1["kernel_dropped_total"] == m2["kernel_dropped_total"] == 0


def router_metrics(lab, port):
    """`metrics` of an agent running in the router's namespace."""
    return metrics(lab, port, ns=lab.r)


SERVICE = "192.0.2.80"


@pytest.mark.parametrize("missed_syns", [False, True])
def test_natted_connections_seen_on_two_interfaces_are_reported_once_by_shards(tmp_path, missed_syns):
    """The router DNATs a "Service" address to the server, as kube-proxy does; agents capture both of its
    interfaces (before DNAT on r0, after it on r1), each interface a fanout group: copies of one packet
    reach the front from different capture threads, under two tuples. One engine and two shards must each
    report every connection once, under the backend. With `missed_syns` the agents' filter drops the SYNs
    after DNAT to the HTTP backends (as a loaded ring would): the pair shows only at the SYN-ACK, when the
    tuple before DNAT is tracked already — on another shard its state must move."""
    port = 19900 + (os.getpid() % 80) + (40 if missed_syns else 0)
    with Lab() as lab:
        # Service ports 1000.. to one-connection servers on 8201..; port 81 to a closed port.
        for i in range(HTTP_503):
            lab.iptables(False, "-t", "nat", "-A", "PREROUTING", "-d", SERVICE, "-p", "tcp", "--dport",
                         str(1000 + i), "-j", "DNAT", "--to-destination", f"{SERVER4}:{8201 + i}")
        lab.iptables(False, "-t", "nat", "-A", "PREROUTING", "-d", SERVICE, "-p", "tcp", "--dport", "81", "-j",
                     "DNAT", "--to-destination", f"{SERVER4}:9")
        agents = []
        for name, p, threads in (("one", port, 1), ("two", port + 100, 2)):
            log = tmp_path / f"{name}.log"
            (tmp_path / "token").write_text("unused")
            proc = subprocess.Popen(
                ["ip", "netns", "exec", lab.r, analyzer_binary(), "run", "--interface", "r0", "--interface", "r1",
                 "--capture-backend", "afpacket", "--engine-threads", str(threads), "--node-name", "lab",
                 *(["--bpf-filter", f"not (dst host {SERVER4} and dst portrange 8201-8299 and tcp[13] == 2)"]
                   if missed_syns else []),
                 "--token-file", str(tmp_path / "token"), "--http-addr", f"127.0.0.1:{p}", "--syn-timeout-ms",
                 "1500", "--report-interval-ms", "200"],
                stdout=subprocess.DEVNULL, stderr=log.open("wb"))
            lab.procs.append(proc)
            agents.append((proc, log, p))
        deadline = time.time() + 10
        while not all(router_metrics(lab, p) for _, _, p in agents):
            assert all(a.poll() is None for a, _, _ in agents), agents[1][1].read_text()
            assert time.time() < deadline, agents[1][1].read_text()
            time.sleep(0.2)
        assert router_metrics(lab, port + 100)["capture_sockets"] == 4, "two interfaces, two sockets each"
        time.sleep(0.5)
        for i in range(HTTP_503):
            lab.server("serve", str(8201 + i), "error", "--hold", "0.1")
            lab.traffic(lab.c, "connect", SERVICE, str(1000 + i), "--sport", str(46000 + i),
                        "--send", "GET /busy HTTP/1.1\\r\\nHost: s\\r\\n\\r\\n", "--wait", "0.3")
        for i in range(REFUSED):
            lab.traffic(lab.c, "connect", SERVICE, "81", "--sport", str(47000 + i))
        want = HTTP_503 + REFUSED
        deadline = time.time() + 15
        while time.time() < deadline and any(len(entries(log)) < want for _, log, _ in agents):
            time.sleep(0.3)
        time.sleep(1.5)  # a second report of anything would come now
        m1, m2 = router_metrics(lab, port), router_metrics(lab, port + 100)
    a, b = entries(agents[0][1]), entries(agents[1][1])
    assert len(a) == want, json.dumps(a, indent=1)
    same_entries(a, b)
    assert all(e["dst"]["ip"] == SERVER4 for e in a), json.dumps(a, indent=1)
    assert sorted((e["dst"]["port"], e["protocol"], (e.get("response") or {}).get("status")) for e in a) == \
        sorted([(8201 + i, "http", 503) for i in range(HTTP_503)] + [(9, "tcp", None)] * REFUSED)
    # The refused connections' Service, from their SYN's two copies.
    assert all(e["service"] == {"ip": SERVICE, "port": 81, "name": None, "namespace": None}
               for e in a if e["protocol"] == "tcp"), json.dumps(a, indent=1)
    # The HTTP connections' Service: from their SYN's two copies, or (missed) from their SYN-ACK's.
    assert all(e["service"]["port"] == 1000 + e["dst"]["port"] - 8201 for e in a if e["protocol"] == "http"), \
        json.dumps(a, indent=1)
    # Every packet was seen twice (before and after DNAT; the filtered SYNs once): each engine counted the
    # second copies alike.
    for c in ("engine.natCopies", "engine.tcpSegments", "engine.flowsCreated"):
        assert m2[c] == m1[c] > 0, (c, m1.get(c), m2.get(c))
    assert m2["engine.natTuplesApart"] == 0
    assert m1["kernel_dropped_total"] == m2["kernel_dropped_total"] == 0
