"""DNS on real kernels (SPEC §3.5): CoreDNS (built from its Go module) answers NOERROR, NXDOMAIN, SERVFAIL and
REFUSED; the client asks through glibc's own resolver (`getent`, with a pod's `ndots:5` search list); the
router drops the first copy of one query and every copy of another. The ground truth is what the test set
up, and tshark reads the rcodes."""

import os
import subprocess
from pathlib import Path

from netlab import REPO, SERVER4, Lab, analyze, tshark_fields

# 40 addresses: more than a 512-byte UDP answer holds, so the answer is truncated and glibc asks over TCP.
MANY = "".join(f'        answer "{{{{ .Name }}}} 60 IN A 192.0.2.{i}"\n' for i in range(1, 41))
COREFILE = """
cluster.local:53 {
    template IN A cluster.local {
        match "^api[.]shop[.]svc[.]cluster[.]local[.]$"
        answer "{{ .Name }} 60 IN A 192.0.2.7"
        fallthrough
    }
    template ANY ANY cluster.local {
        rcode NXDOMAIN
    }
}
test:53 {
    acl refused.test {
        block
    }
    template ANY ANY servfail.test {
        rcode SERVFAIL
    }
    template IN A many.test {
MANY    }
    template IN A ok.test slow.test lost.test slow5.test goslow.test {
        answer "{{ .Name }} 60 IN A 192.0.2.8"
    }
    template IN AAAA ok.test goslow.test {
        rcode NOERROR
    }
    template ANY ANY test {
        rcode NXDOMAIN
    }
}
.:53 {
    template ANY ANY {
        rcode NXDOMAIN
    }
}
"""


def coredns():
    out = subprocess.run([str(REPO / "e2e" / "build-coredns.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "coredns"


def label_match(name):
    """iptables hex-string for a query of type A for `name` (its wire-format labels, root, type, class)."""
    wire = "".join(f"|{len(label):02x}|{label}" for label in name.split("."))
    return wire + "|00 00 01 00 01|"


def start_coredns(lab, tmp_path, resolv_conf):
    """CoreDNS in the server's namespace, and `resolv_conf` as the client's /etc/resolv.conf (`ip netns exec`
    puts /etc/netns/<ns>/resolv.conf in its place). Returns the file to remove."""
    (tmp_path / "Corefile").write_text(COREFILE.replace("MANY", MANY))
    conf = Path("/etc/netns") / lab.c
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "resolv.conf").write_text(resolv_conf)
    server = subprocess.Popen(["ip", "netns", "exec", lab.s, str(coredns()), "-conf", str(tmp_path / "Corefile"),
                               "-dns.port", "53"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    lab.procs.append(server)
    # CoreDNS is up when it answers.
    for _ in range(50):
        if resolve(lab, "ok.test.") == 0:
            break
        subprocess.run(["sleep", "0.2"], check=True)
    return conf


def drop_first_copy(lab, name):
    """The router drops the first A query for `name` (as a conntrack race loses one), not its retries."""
    lab.iptables(False, "-A", "FORWARD", "-p", "udp", "--dport", "53", "-m", "string", "--algo", "bm",
                 "--hex-string", label_match(name), "-m", "statistic", "--mode", "nth",
                 "--every", "1000000", "--packet", "0", "-j", "DROP")


def resolve(lab, name):
    r = lab.ns(lab.c, "getent", "ahostsv4", name, check=False, capture=True)
    return r.returncode


def test_real_resolvers_and_a_real_server_make_exactly_the_dns_entries(tmp_path):
    pcap = tmp_path / "dns.pcap"
    (tmp_path / "Corefile").write_text(COREFILE.replace("MANY", MANY))
    binary = coredns()
    with Lab() as lab:
        # A pod's resolv.conf: `ip netns exec` puts /etc/netns/<ns>/resolv.conf in place of /etc/resolv.conf.
        conf = Path("/etc/netns") / lab.c
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "resolv.conf").write_text(f"nameserver {SERVER4}\nsearch shop.svc.cluster.local svc.cluster.local "
                                          "cluster.local\noptions ndots:5 timeout:1 attempts:2\n")
        server = subprocess.Popen(["ip", "netns", "exec", lab.s, str(binary), "-conf", str(tmp_path / "Corefile"),
                                   "-dns.port", "53"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        lab.procs.append(server)
        try:
            # The first A query for slow.test is lost on the way (as to a conntrack race); every query for
            # lost.test is.
            lab.iptables(False, "-A", "FORWARD", "-p", "udp", "--dport", "53", "-m", "string", "--algo", "bm",
                         "--hex-string", label_match("slow.test"), "-m", "statistic", "--mode", "nth",
                         "--every", "1000000", "--packet", "0", "-j", "DROP")
            lab.iptables(False, "-A", "FORWARD", "-p", "udp", "--dport", "53", "-m", "string", "--algo", "bm",
                         "--hex-string", label_match("lost.test"), "-j", "DROP")
            # CoreDNS is up when it answers.
            for _ in range(50):
                if resolve(lab, "ok.test.") == 0:
                    break
                subprocess.run(["sleep", "0.2"], check=True)
            with lab.capture(pcap, bpf="port 53"):
                assert resolve(lab, "api") == 0, "found through the search list"
                assert resolve(lab, "nosuch") != 0
                assert resolve(lab, "servfail.test.") != 0
                assert resolve(lab, "refused.test.") != 0
                assert resolve(lab, "slow.test.") == 0, "answered after the resolver asked again"
                assert resolve(lab, "lost.test.") != 0
                assert resolve(lab, "many.test.") == 0, "truncated over UDP, answered over TCP"
        finally:
            os.unlink(conf / "resolv.conf")
            conf.rmdir()
    entries = analyze(pcap)
    dns = [e for e in entries if e["protocol"] == "dns"]
    by_name = {}
    for e in dns:
        by_name.setdefault(e["dns"]["question"]["name"], []).append(e)

    # tshark agrees on every answer's code (pairs by id and name).
    rcodes = {(int(i, 16) if i.startswith("0x") else int(i), n): int(c) for i, n, c in
              tshark_fields(pcap, "dns.flags.response == 1", "dns.id", "dns.qry.name", "dns.flags.rcode")}
    for e in dns:
        if e["dns"].get("rcode") is not None:
            assert rcodes[(e["dns"]["id"], e["dns"]["question"]["name"])] == e["dns"]["rcode"], e

    # api: the first search domain answers.
    assert [(e["dns"]["rcodeName"], e["error"]) for e in by_name["api.shop.svc.cluster.local"]] == [("NOERROR", None)]
    # nosuch: three search steps answered NXDOMAIN are not errors; the final NXDOMAIN is.
    for step in ("nosuch.shop.svc.cluster.local", "nosuch.svc.cluster.local", "nosuch.cluster.local"):
        assert [(e["dns"]["rcodeName"], e["error"]) for e in by_name[step]] == [("NXDOMAIN", None)], step
    assert [(e["dns"]["rcodeName"], e["error"]["type"], e["error"]["msg"]) for e in by_name["nosuch"]] == \
        [("NXDOMAIN", "dns", "NXDOMAIN for nosuch A")]
    # SERVFAIL and REFUSED are errors. glibc asks a failing server again, from a new socket with the same id:
    # one exchange, one entry, one error (SPEC: copies of one query within dnsTimeoutMs).
    for name, rcode in (("servfail.test", "SERVFAIL"), ("refused.test", "REFUSED")):
        answers = tshark_fields(pcap, f'dns.flags.response == 1 && dns.qry.name == "{name}"', "dns.id", "udp.dstport")
        assert len(answers) == 2 and len({i for i, _ in answers}) == 1 and len({p for _, p in answers}) == 2, answers
        [e] = by_name[name]
        assert (e["error"]["type"], e["error"]["msg"]) == ("dns", f"{rcode} for {name} A")
    # slow.test: one exchange, an error, and the wait is the resolver's whole wait (its 1 s timeout).
    [slow] = by_name["slow.test"]
    assert slow["error"]["type"] == "dns" and "answered after retransmission: 2 queries" in slow["error"]["msg"]
    assert 1000 <= slow["elapsedTime"] < 1500, slow["elapsedTime"]
    assert slow["dns"]["answers"] == ["A 192.0.2.8"]
    # lost.test: never answered; the resolver's two copies are one half exchange.
    [lost] = by_name["lost.test"]
    assert lost["error"] == {"type": "pair-not-found", "msg": "missing response: no answer within dnsTimeoutMs (2 queries)"}
    # many.test: a truncated answer over UDP, the question again over TCP: one exchange, the TCP answer's.
    assert tshark_fields(pcap, 'udp && dns.flags.truncated == 1 && dns.qry.name == "many.test"', "dns.id")
    assert tshark_fields(pcap, 'tcp && dns.flags.response == 1 && dns.qry.name == "many.test"', "dns.id")
    [many] = by_name["many.test"]
    assert (many["dns"]["rcodeName"], many["error"], len(many["dns"]["answers"])) == ("NOERROR", None, 16), many
    # Nothing else is an error.
    errors = {n for n, es in by_name.items() if any(e["error"] for e in es)}
    assert errors == {"nosuch", "servfail.test", "refused.test", "slow.test", "lost.test"}, errors


def test_the_5_second_dns_delay_from_glibc_and_go_and_dns_over_tcp_from_dig(tmp_path, peers):
    """Kubernetes' 5 s DNS delay as resolvers really make it: glibc (default timeout 5 s) retries a few ms
    *after* its own timeout — past dnsTimeoutMs — with the same id; Go's resolver retries from a new socket
    with a new id. Each is one exchange answered after retransmission, its elapsedTime the whole wait.
    `dig +tcp +adflag` sends AD-flagged queries over one TCP connection: each an exchange."""
    pcap = tmp_path / "dns5.pcap"
    with Lab() as lab:
        conf = start_coredns(lab, tmp_path, f"nameserver {SERVER4}\noptions ndots:1\n")
        try:
            drop_first_copy(lab, "slow5.test")
            drop_first_copy(lab, "goslow.test")
            with lab.capture(pcap, bpf="port 53"):
                assert resolve(lab, "slow5.test.") == 0, "glibc: answered after its retry"
                go = lab.ns(lab.c, peers, "lookup", "goslow.test.", capture=True)
                assert go.stdout.strip() == "192.0.2.8", go.stdout
                d = lab.ns(lab.c, "dig", "+tcp", "+adflag", "+keepopen", "+tries=1", f"@{SERVER4}", "ok.test", "A",
                           "servfail.test", "A", capture=True, check=False)
                assert "status: NOERROR" in d.stdout and "status: SERVFAIL" in d.stdout, d.stdout
        finally:
            os.unlink(conf / "resolv.conf")
            conf.rmdir()
    dns = [e for e in analyze(pcap) if e["protocol"] == "dns"]
    by_name = {}
    for e in dns:
        by_name.setdefault((e["dns"]["question"]["name"], e["dns"]["question"]["type"]), []).append(e)

    # glibc: two copies with one id, the second just after 5 s.
    copies = tshark_fields(pcap, 'dns.flags.response == 0 && dns.qry.name == "slow5.test"', "frame.time_relative",
                           "dns.id")
    assert len(copies) == 2 and copies[0][1] == copies[1][1], copies
    assert float(copies[1][0]) - float(copies[0][0]) >= 5.0, copies
    [slow] = by_name[("slow5.test", "A")]
    assert slow["error"]["type"] == "dns", slow
    assert slow["error"]["msg"].startswith("answered after retransmission: 2 queries"), slow
    assert 5000 <= slow["elapsedTime"] < 5600, slow["elapsedTime"]

    # Go: the retry has another id and another source port; still one exchange, reported under the first.
    copies = tshark_fields(pcap, 'dns.flags.response == 0 && dns.qry.name == "goslow.test" && dns.qry.type == 1',
                           "dns.id", "udp.srcport")
    assert len(copies) == 2 and copies[0] != copies[1] and copies[0][1] != copies[1][1], copies
    [go_a] = by_name[("goslow.test", "A")]
    assert go_a["error"]["msg"].startswith("answered after retransmission: 2 queries"), go_a
    assert 5000 <= go_a["elapsedTime"] < 5600, go_a["elapsedTime"]
    assert go_a["src"]["port"] == int(copies[0][1]), "under the first copy's socket"
    [go_aaaa] = by_name[("goslow.test", "AAAA")]
    assert (go_aaaa["dns"]["rcodeName"], go_aaaa["error"]) == ("NOERROR", None)

    # dig over TCP: both questions on one connection, AD set; tshark agrees on the codes.
    tcp_queries = tshark_fields(pcap, "tcp && dns.flags.response == 0", "tcp.stream", "dns.flags.authenticated",
                                "dns.qry.name")
    assert {s for s, _, _ in tcp_queries} == {tcp_queries[0][0]} and len(tcp_queries) == 2, tcp_queries
    assert all(ad in ("1", "True") for _, ad, _ in tcp_queries), tcp_queries
    ok = [e for e in by_name[("ok.test", "A")] if e["src"]["port"] == e["src"]["port"] and e["error"] is None]
    assert ok, by_name[("ok.test", "A")]
    [sf] = by_name[("servfail.test", "A")]
    assert (sf["dns"]["rcodeName"], sf["error"]["msg"]) == ("SERVFAIL", "SERVFAIL for servfail.test A"), sf

    # Nothing else is an error.
    errors = {k for k, es in by_name.items() if any(e["error"] for e in es)}
    assert errors == {("slow5.test", "A"), ("goslow.test", "A"), ("servfail.test", "A")}, errors
