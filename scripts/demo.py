#!/usr/bin/env python3
"""`make demo`: a client, a router and a server in network namespaces misbehave in every way Faultline
detects today, tcpdump captures it, and `faultline-agent analyze` explains what went wrong. The capture is
kept so you can open it in Wireshark next to the table. Needs root (network namespaces)."""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent" / "tests" / "kernel"))

import netlab  # noqa: E402
from netlab import CLIENT6, SERVER4, SERVER6, Lab  # noqa: E402

OUT = Path(os.environ.get("FAULTLINE_DEMO_DIR", "/tmp/faultline-demo"))
REQ = "GET /api/orders HTTP/1.1\\r\\nHost: shop\\r\\n\\r\\n"


def step(what):
    print(f"  - {what}", flush=True)


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root: it builds network namespaces")
    OUT.mkdir(parents=True, exist_ok=True)
    pcap = OUT / "demo.pcap"
    print("Building a client, a router and a server in network namespaces…")
    with Lab(server_side_mtu=1000) as lab:
        lab.iptables(False, "-A", "FORWARD", "-p", "tcp", "--dport", "82", "-j", "DROP")
        lab.iptables(False, "-A", "FORWARD", "-p", "tcp", "--dport", "83", "-j", "REJECT",
                     "--reject-with", "icmp-admin-prohibited")
        lab.server("http-server", "8080")
        for port, mode in ((8081, "silent"), (8082, "garbage"), (8083, "short"), (8084, "error")):
            lab.server("serve", str(port), mode)
        lab.server("serve", "8085", "hold", "--hold", "30")
        lab.server("serve", "8086", "read-then-hold", "--hold", "30")
        c = lab.c
        print(f"Capturing on the client's interface into {pcap}:")
        with lab.capture(pcap):
            step("healthy HTTP: two requests on a keep-alive connection")
            lab.traffic(c, "http-get", SERVER4, "8080", "--sport", "41000", "GET /", "GET /missing")
            step("a connection to a closed port (refused)")
            lab.traffic(c, "connect", SERVER4, "1", "--sport", "41001")
            step("a SYN the firewall drops (timeout)")
            lab.traffic(c, "connect", SERVER4, "82", "--sport", "41002", "--timeout", "1.2")
            step("a SYN the firewall rejects with ICMP admin-prohibited")
            lab.traffic(c, "connect", SERVER4, "83", "--sport", "41003")
            step("a client that aborts with SO_LINGER 0 (reset)")
            lab.traffic(c, "connect", SERVER4, "8086", "--sport", "41004", "--send", "hi", "--close", "rst")
            step("HTTP servers that never answer, answer garbage, cut the response short, or fail with 503")
            for i, port in enumerate((8081, 8082, 8083, 8084)):
                lab.traffic(c, "connect", SERVER4, str(port), "--sport", str(41010 + i), "--send", REQ,
                            "--wait", "0.5")
            step("a server that never closes after the client's FIN (CLOSE_WAIT)")
            lab.traffic(c, "connect", SERVER4, "8085", "--sport", "41005", "--linger-after", "0")
            step("UDP to a closed port, a packet with TTL 1, a 1400-byte DF packet over a 1000-byte MTU")
            lab.traffic(c, "udp", SERVER4, "9", "--sport", "41006")
            lab.traffic(c, "udp", SERVER4, "33434", "--sport", "41007", "--ttl", "1")
            lab.traffic(c, "udp", SERVER4, "9", "--sport", "41008", "--size", "1400", "--df")
            step("IPv6: a refused connection and UDP to a closed port")
            lab.traffic(c, "connect", SERVER6, "1", "--sport", "41009")
            lab.traffic(c, "udp", SERVER6, "9", "--sport", "41010")
            time.sleep(1.2)
    print()
    print(f"$ faultline-agent analyze --syn-timeout-ms 1000 --close-timeout-ms 1000 --output table {pcap}")
    sys.stdout.flush()
    os.execv(netlab.analyzer_binary(), [netlab.analyzer_binary(), "analyze", "--syn-timeout-ms", "1000",
                                        "--close-timeout-ms", "1000", "--output", "table", str(pcap)])


if __name__ == "__main__":
    del CLIENT6
    main()
