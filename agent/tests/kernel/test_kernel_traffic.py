"""Real kernel traffic, captured by tcpdump, analysed by faultline-agent: each test makes one error happen
for real in network namespaces and asserts the exact entries. Where tshark has an opinion (ICMP types and
codes, RSTs, HTTP pairing) it is asked too, as an independent oracle."""

import os

import pytest

from netlab import (CLIENT4, CLIENT6, ROUTER4_C, ROUTER6_C, SERVER4, SERVER6, Lab, analyze, tshark_fields)

FAMILIES = {
    "v4": dict(client=CLIENT4, server=SERVER4, router=ROUTER4_C, v6=False),
    "v6": dict(client=CLIENT6, server=SERVER6, router=ROUTER6_C, v6=True),
}


@pytest.fixture(params=["v4", "v6"])
def fam(request):
    return dict(FAMILIES[request.param], name=request.param)


def ep(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def view(e):
    """The parts of an entry a test asserts: what happened, between whom."""
    src = ep(e["src"]["ip"], e["src"]["port"]) if e["src"]["port"] is not None else e["src"]["ip"]
    dst = ep(e["dst"]["ip"], e["dst"]["port"]) if e["dst"]["port"] is not None else e["dst"]["ip"]
    if e.get("tcp"):
        t = e["tcp"]
        assert e["error"] == {"type": "connection", "msg": t["state"]}
        return ("tcp", t["state"], t.get("reason"), t.get("by"), src, dst)
    if e.get("icmp"):
        i = e["icmp"]
        o = i.get("original")
        orig = (o["protocol"], ep(o["src"]["ip"], o["src"]["port"]), ep(o["dst"]["ip"], o["dst"]["port"])) if o else None
        return ("icmp", i["type"], i["code"], i["typeName"], i["codeName"], src, dst, orig)
    err = e.get("error")
    if err:
        words = " ".join(err["msg"].split()[:2]).rstrip(":")
        path = (e.get("request") or {}).get("path")
        return (e["protocol"], err["type"], words, path, src, dst)
    return (e["protocol"], e["response"]["status"], e["request"]["method"], e["request"]["path"], src, dst)


def views(entries):
    return sorted(view(e) for e in entries)


def run_client(lab, *args):
    return lab.traffic(lab.c, *args)


# ---- TCP connection errors ---------------------------------------------------------------------------

def test_connect_to_closed_port_is_refused(tmp_path, fam):
    pcap = tmp_path / "refused.pcap"
    with Lab() as lab, lab.capture(pcap):
        run_client(lab, "connect", fam["server"], "1", "--sport", "40001")
    got = views(analyze(pcap))
    assert got == [("tcp", "SynSent", "refused", "server", ep(fam["client"], 40001), ep(fam["server"], 1))]
    assert len(tshark_fields(pcap, "tcp.flags.reset == 1", "tcp.stream")) == 1


def test_dropped_syn_is_one_timeout_despite_retransmissions(tmp_path, fam):
    pcap = tmp_path / "dropped.pcap"
    with Lab() as lab:
        lab.iptables(fam["v6"], "-A", "FORWARD", "-p", "tcp", "--dport", "82", "-j", "DROP")
        with lab.capture(pcap):
            run_client(lab, "connect", fam["server"], "82", "--sport", "40002", "--timeout", "2.5")
    syns = tshark_fields(pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.seq_raw")
    assert len(syns) >= 2, "the kernel retransmitted the SYN"
    assert len(set(syns)) == 1, "with the same ISN"
    want = [("tcp", "SynSent", "timeout", None, ep(fam["client"], 40002), ep(fam["server"], 82))]
    assert views(analyze(pcap)) == want
    # Decided by the timer, not only by the end of the capture.
    assert views(analyze(pcap, "--syn-timeout-ms", "500")) == want


def test_linger_zero_close_is_reset_by_client(tmp_path, fam):
    pcap = tmp_path / "linger0.pcap"
    with Lab() as lab:
        srv = lab.server("serve", "8080", "read-then-hold", "--hold", "0.5", *(["--v6"] if fam["v6"] else []))
        with lab.capture(pcap):
            run_client(lab, "connect", fam["server"], "8080", "--sport", "40003", "--send", "hi", "--close", "rst")
        srv.wait(timeout=5)
    got = views(analyze(pcap))
    assert got == [("tcp", "Reset", None, "client", ep(fam["client"], 40003), ep(fam["server"], 8080))]
    assert len(tshark_fields(pcap, "tcp.flags.reset == 1", "ip.src" if not fam["v6"] else "ipv6.src")) >= 1


def test_server_that_never_closes_is_close_wait(tmp_path, fam):
    pcap = tmp_path / "closewait.pcap"
    with Lab() as lab:
        lab.server("serve", "8080", "hold", "--hold", "5", *(["--v6"] if fam["v6"] else []))
        with lab.capture(pcap):
            run_client(lab, "connect", fam["server"], "8080", "--sport", "40004", "--linger-after", "1.3")
        # The capture ends before the server exits (its exit would close the connection).
    got = views(analyze(pcap, "--close-timeout-ms", "1000"))
    assert got == [("tcp", "CloseWait", None, "server", ep(fam["client"], 40004), ep(fam["server"], 8080))]


def test_lost_last_ack_is_last_ack(tmp_path, fam):
    pcap = tmp_path / "lastack.pcap"
    with Lab() as lab:
        tables = "ip6tables" if fam["v6"] else "iptables"
        drop = f"ip netns exec {lab.r} {tables} -I FORWARD -s {fam['client']} -p tcp -j DROP"
        lab.server("serve", "8080", "close-after-eof", "--hold", "3", "--before-close", drop,
                   *(["--v6"] if fam["v6"] else []))
        # Captured on the server's side, behind the router that eats the client's last ACK.
        with lab.capture(pcap, where="server"):
            run_client(lab, "connect", fam["server"], "8080", "--sport", "40005", "--linger-after", "2")
    fins = tshark_fields(pcap, f"tcp.flags.fin == 1 && tcp.srcport == 8080", "tcp.seq_raw")
    assert len(fins) >= 2, "the server retransmitted its unacknowledged FIN"
    got = views(analyze(pcap, "--close-timeout-ms", "1000"))
    assert got == [("tcp", "LastAck", None, "server", ep(fam["client"], 40005), ep(fam["server"], 8080))]


# ---- HTTP: half connections and dissection errors ----------------------------------------------------

REQUEST = "GET /api/orders HTTP/1.1\\r\\nHost: shop\\r\\n\\r\\n"


def http_case(tmp_path, fam, mode, wait):
    pcap = tmp_path / f"http-{mode}.pcap"
    with Lab() as lab:
        srv = lab.server("serve", "8080", mode, *(["--v6"] if fam["v6"] else []))
        with lab.capture(pcap):
            run_client(lab, "connect", fam["server"], "8080", "--sport", "40006", "--send", REQUEST,
                       "--wait", str(wait))
        srv.wait(timeout=5)
    return pcap, views(analyze(pcap))


def test_server_that_never_answers_is_missing_response(tmp_path, fam):
    _, got = http_case(tmp_path, fam, "silent", 1.0)
    assert got == [("http", "pair-not-found", "missing response", "/api/orders",
                    ep(fam["client"], 40006), ep(fam["server"], 8080))]


def test_garbage_answer_is_parser_error(tmp_path, fam):
    _, got = http_case(tmp_path, fam, "garbage", 0.5)
    assert got == [("http", "dissection", "parser error", "/api/orders",
                    ep(fam["client"], 40006), ep(fam["server"], 8080))]


def test_response_cut_short_is_unexpected_eof(tmp_path, fam):
    _, got = http_case(tmp_path, fam, "short", 0.5)
    assert got == [("http", "dissection", "unexpected EOF", "/api/orders",
                    ep(fam["client"], 40006), ep(fam["server"], 8080))]


def test_server_error_is_an_http_entry_without_error(tmp_path, fam):
    pcap, got = http_case(tmp_path, fam, "error", 0.5)
    assert got == [("http", 503, "GET", "/api/orders", ep(fam["client"], 40006), ep(fam["server"], 8080))]
    oracle = tshark_fields(pcap, "http.response", "http.response.code", decode_as=["tcp.port==8080,http"])
    assert oracle == [("503",)]


# ---- ICMP ---------------------------------------------------------------------------------------------

def icmp_view(fam, src, ty, code, tname, cname, proto, sport, dport):
    return ("icmp", ty, code, tname, cname, src, fam["client"],
            (proto, ep(fam["client"], sport), ep(fam["server"], dport)))


def tshark_icmp(pcap, v6):
    if v6:
        rows = tshark_fields(pcap, "icmpv6 && (icmpv6.type < 128 || icmpv6.type == 133 || icmpv6.type == 134 "
                             "|| icmpv6.type == 137)", "icmpv6.type", "icmpv6.code")
    else:
        rows = tshark_fields(pcap, "icmp && icmp.type != 0 && icmp.type != 8", "icmp.type", "icmp.code")
    return sorted((int(t.split(",")[0]), int(c.split(",")[0])) for t, c in rows)


def ours_icmp(entries):
    return sorted((e["icmp"]["type"], e["icmp"]["code"]) for e in entries if e.get("icmp"))


def test_udp_to_closed_port_is_port_unreachable(tmp_path, fam):
    pcap = tmp_path / "udp.pcap"
    with Lab() as lab, lab.capture(pcap):
        run_client(lab, "udp", fam["server"], "9", "--sport", "40007")
    entries = analyze(pcap)
    want = (1, 4, "DestinationUnreachable", "Port") if fam["v6"] else (3, 3, "DestinationUnreachable", "Port")
    assert views(entries) == [icmp_view(fam, fam["server"], *want, "udp", 40007, 9)]
    assert ours_icmp(entries) == tshark_icmp(pcap, fam["v6"])


REJECT_V4 = [("icmp-net-unreachable", 0, "Net"), ("icmp-host-unreachable", 1, "Host"),
             ("icmp-proto-unreachable", 2, "Protocol"), ("icmp-port-unreachable", 3, "Port"),
             ("icmp-net-prohibited", 9, "NetAdministrativelyProhibited"),
             ("icmp-host-prohibited", 10, "HostAdministrativelyProhibited"),
             ("icmp-admin-prohibited", 13, "CommunicationAdministrativelyProhibited")]
REJECT_V6 = [("icmp6-no-route", 0, "NoRouteToDestination"),
             ("icmp6-adm-prohibited", 1, "CommunicationAdministrativelyProhibited"),
             ("icmp6-addr-unreachable", 3, "Address"), ("icmp6-port-unreachable", 4, "Port")]


@pytest.mark.parametrize("v6,reject_with,code,code_name",
                         [(False, *r) for r in REJECT_V4] + [(True, *r) for r in REJECT_V6],
                         ids=[r[0] for r in REJECT_V4 + REJECT_V6])
def test_reject_with_each_icmp_code(tmp_path, v6, reject_with, code, code_name):
    fam = FAMILIES["v6" if v6 else "v4"]
    pcap = tmp_path / "reject.pcap"
    with Lab() as lab:
        lab.iptables(v6, "-A", "FORWARD", "-p", "tcp", "--dport", "83", "-j", "REJECT", "--reject-with", reject_with)
        with lab.capture(pcap):
            out = run_client(lab, "connect", fam["server"], "83", "--sport", "40008")
    assert "connect failed" in out, "the kernel gave up on the connection"
    entries = analyze(pcap)
    ty = 1 if v6 else 3
    # The kernel may retransmit the SYN once more before it gives up (the ICMP error can arrive while the
    # socket is busy), drawing a second ICMP error: one entry per ICMP message, one attempt.
    assert sorted(set(views(entries))) == sorted([
        icmp_view(fam, fam["router"], ty, code, "DestinationUnreachable", code_name, "tcp", 40008, 83),
        ("tcp", "SynSent", "unreachable", None, ep(fam["client"], 40008), ep(fam["server"], 83)),
    ])
    assert len([e for e in entries if e.get("tcp")]) == 1
    assert ours_icmp(entries) == tshark_icmp(pcap, v6)


def test_reject_with_tcp_reset_is_refused(tmp_path, fam):
    pcap = tmp_path / "reject-rst.pcap"
    with Lab() as lab:
        lab.iptables(fam["v6"], "-A", "FORWARD", "-p", "tcp", "--dport", "84", "-j", "REJECT",
                     "--reject-with", "tcp-reset")
        with lab.capture(pcap):
            run_client(lab, "connect", fam["server"], "84", "--sport", "40009")
    got = views(analyze(pcap))
    assert got == [("tcp", "SynSent", "refused", "server", ep(fam["client"], 40009), ep(fam["server"], 84))]


def test_ttl_one_through_the_router_is_time_exceeded(tmp_path, fam):
    pcap = tmp_path / "ttl.pcap"
    with Lab() as lab, lab.capture(pcap):
        run_client(lab, "udp", fam["server"], "33434", "--sport", "40010", "--ttl", "1")
    entries = analyze(pcap)
    want = (3, 0, "TimeExceeded", "HopLimitExceededInTransit") if fam["v6"] else (11, 0, "TimeExceeded", "TtlExceededInTransit")
    assert views(entries) == [icmp_view(fam, fam["router"], *want, "udp", 40010, 33434)]
    assert ours_icmp(entries) == tshark_icmp(pcap, fam["v6"])


def test_df_packet_over_small_mtu_is_fragmentation_needed(tmp_path, fam):
    pcap = tmp_path / "mtu.pcap"
    mtu = 1280 if fam["v6"] else 1000
    with Lab(server_side_mtu=mtu) as lab, lab.capture(pcap):
        run_client(lab, "udp", fam["server"], "9", "--sport", "40011", "--size", "1400", "--df")
    entries = analyze(pcap)
    want = (2, 0, "PacketTooBig", "NoCode") if fam["v6"] else (3, 4, "DestinationUnreachable", "FragmentationNeeded")
    assert views(entries) == [icmp_view(fam, fam["router"], *want, "udp", 40011, 9)]
    assert entries[0]["icmp"]["mtu"] == mtu
    assert ours_icmp(entries) == tshark_icmp(pcap, fam["v6"])


# ---- Healthy traffic ----------------------------------------------------------------------------------

def test_healthy_traffic_has_no_errors_and_pairs_like_tshark(tmp_path, fam):
    pcap = tmp_path / "healthy.pcap"
    with Lab() as lab:
        lab.server("http-server", "8080", *(["--v6"] if fam["v6"] else []))
        with lab.capture(pcap):
            run_client(lab, "http-get", fam["server"], "8080", "--sport", "40012", "GET /", "HEAD /", "GET /missing")
            run_client(lab, "http-get", fam["server"], "8080", "--sport", "40013", "GET /again")
            lab.ns(lab.c, "ping", "-c", "2", "-i", "0.2", fam["server"], capture=True)
    entries = analyze(pcap)
    assert [e for e in entries if e["error"] is not None or e["protocol"] != "http"] == []
    got = sorted((e["request"]["method"], e["request"]["path"], e["response"]["status"]) for e in entries)
    assert got == [("GET", "/", 200), ("GET", "/again", 200), ("GET", "/missing", 404), ("HEAD", "/", 200)]
    oracle = tshark_fields(pcap, "http.response", "http.response.code", "http.response_for.uri",
                           decode_as=["tcp.port==8080,http"])
    assert len(oracle) == len(entries)
    assert sorted(int(code) for code, _ in oracle) == sorted(e["response"]["status"] for e in entries)


# ---- KFL on a real capture ------------------------------------------------------------------------------

def test_query_filters_a_real_capture(tmp_path):
    fam = FAMILIES["v4"]
    pcap = tmp_path / "mixed.pcap"
    with Lab() as lab:
        lab.server("http-server", "8080")
        with lab.capture(pcap):
            run_client(lab, "http-get", fam["server"], "8080", "--sport", "40020", "GET /", "GET /missing")
            run_client(lab, "connect", fam["server"], "1", "--sport", "40021")
            run_client(lab, "udp", fam["server"], "9", "--sport", "40022")
    everything = views(analyze(pcap))
    assert [v[0] for v in everything] == ["http", "http", "icmp", "tcp"]
    dashboard = views(analyze(pcap, "--query", "response.status > 400 or error or icmp or tcp"))
    assert [v[:3] for v in dashboard] == [("http", 404, "GET"), ("icmp", 3, 3), ("tcp", "SynSent", "refused")]
    assert [v[:2] for v in views(analyze(pcap, "--query", "!error and !icmp and !tcp"))] == [("http", 200), ("http", 404)]
    assert views(analyze(pcap, "--query", "icmp.original.dst.port == 9")) == [v for v in everything if v[0] == "icmp"]


# ---- Recording for Wireshark --------------------------------------------------------------------------

def test_error_recordings_open_in_tshark(tmp_path):
    fam = FAMILIES["v4"]
    pcap = tmp_path / "mixed.pcap"
    with Lab() as lab:
        lab.server("serve", "8080", "error")
        with lab.capture(pcap):
            run_client(lab, "connect", fam["server"], "1", "--sport", "40030")
            run_client(lab, "connect", fam["server"], "8080", "--sport", "40031", "--send", REQUEST, "--wait", "0.5")
            run_client(lab, "udp", fam["server"], "9", "--sport", "40032")
    rec = tmp_path / "recordings"
    entries = analyze(pcap, "--record-errors", str(rec))
    recorded = [e for e in entries if e.get("pcap")]
    # The refused SYN and the ICMP error (the 503 is not an error entry).
    assert sorted(view(e)[0] for e in recorded) == ["icmp", "tcp"]
    for e in recorded:
        path = e["pcap"]
        assert oct(os.stat(path).st_mode & 0o777) == "0o600", "recordings may hold secrets"
        rows = tshark_fields(path, "", "frame.number", "_ws.col.Protocol")
        if e.get("tcp"):
            flags = tshark_fields(path, "tcp", "tcp.flags.syn", "tcp.flags.reset")
            assert flags[0][0] in ("1", "True") and flags[-1][1] in ("1", "True"), flags
            assert len(rows) == 2, "the SYN and the RST"
        else:
            assert [r[1] for r in rows] == ["UDP", "ICMP"], "the datagram, then the error it drew"
