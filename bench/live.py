#!/usr/bin/env python3
"""Live capture under load: the agent's AF_PACKET backend beside `tcpdump -w /dev/null` on the same veth,
fed by tcpreplay at increasing packet rates, each tool on its own run of the same packets. Prints what
each received and dropped (the kernel's counts: PACKET_STATISTICS for the agent, pcap_stats for tcpdump).

    python3 bench/live.py [--packets 1000000] [--rates 50000,100000,200000,400000,600000,0]   (0 = top speed)
                          [--engine-threads 1,2] [--backends afpacket,libpcap] [--export grpc|http/protobuf]

Each agent run is repeated for every number of engine threads (with afpacket, as many sockets in the
interface's fanout group); the last lines give, per tool, the highest rate it took without a drop.

Needs root (network namespaces). Traffic stays on a veth between two namespaces made here."""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TX, RX = "flbench-tx", "flbench-rx"


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def setup():
    teardown()
    sh("ip", "netns", "add", TX)
    sh("ip", "netns", "add", RX)
    sh("ip", "link", "add", "tx0", "netns", TX, "type", "veth", "peer", "name", "rx0", "netns", RX)
    for ns, dev in ((TX, "tx0"), (RX, "rx0")):
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")


def teardown():
    for ns in (TX, RX):
        sh("ip", "netns", "del", ns, check=False)


def replay(pcap, rate):
    speed = ["--topspeed"] if rate == 0 else [f"--pps={rate}"]
    out = sh("ip", "netns", "exec", TX, "tcpreplay", "-i", "tx0", *speed, str(pcap)).stdout
    sent = int(re.search(r"Actual: (\d+) packets", out).group(1))
    pps = float(re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", out).group(1))
    return sent, pps


def with_tcpdump(pcap, rate):
    p = subprocess.Popen(["ip", "netns", "exec", RX, "tcpdump", "-i", "rx0", "-n", "-w", "/dev/null"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    p.stderr.readline()  # "listening on rx0 ..."
    sent, pps = replay(pcap, rate)
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=30)[1]
    captured = int(re.search(r"(\d+) packets? captured", err).group(1))
    dropped = int(re.search(r"(\d+) packets? dropped by kernel", err).group(1))
    return sent, pps, captured, dropped


def agent_metrics(port):
    code = (f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics',"
            "timeout=2).read().decode())")
    text = sh("ip", "netns", "exec", RX, sys.executable, "-c", code).stdout
    m = {m.group(1): float(m.group(2)) for m in re.finditer(r"^faultline_agent_(\w+) ([\d.e+]+)$", text, re.M)}
    # The agent's own OTLP export (--export): records taken and entries dropped, whatever the reason.
    for name, key in (("export_records_total", "exported"), ("export_dropped_total", "export_dropped")):
        m[key] = sum(float(v) for v in re.findall(rf"^faultline_{name}{{[^}}]*}} ([\d.e+]+)$", text, re.M))
    return m


# Stands in for the operator: takes every batch of entries and answers 204, so that entries leave the agent
# as they do in a cluster (an agent whose operator is down keeps them, up to --buffer-bytes).
SINK = r"""
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


def start_collector(tmp, protocol):
    """A collector (e2e/build-otelcol.sh) in the agent's namespace, its file exporter writing to /dev/null:
    what the agent's own export costs it, not a disk. Returns the process and the agent's flags."""
    out = sh(str(REPO / "e2e" / "build-otelcol.sh")).stdout
    binary = Path(out.strip().splitlines()[-1]) / "otelcol"
    port, receiver = (14317, "grpc") if protocol == "grpc" else (14318, "http")
    config = Path(tmp) / "otelcol.yaml"
    config.write_text(json.dumps({
        "receivers": {"otlp": {"protocols": {receiver: {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {"file": {"path": "/dev/null"}},
        "service": {"telemetry": {"metrics": {"level": "none"}},
                    "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}}}}))
    log = open(Path(tmp) / "otelcol.log", "w")
    proc = subprocess.Popen(["ip", "netns", "exec", RX, str(binary), "--config", str(config)], stdout=log, stderr=log)
    deadline = time.time() + 30
    while "Everything is ready" not in (Path(tmp) / "otelcol.log").read_text():
        if time.time() > deadline:
            raise RuntimeError("the collector did not start")
        time.sleep(0.2)
    return proc, ["--otlp-endpoint", f"http://127.0.0.1:{port}", "--otlp-protocol", protocol,
                  "--otlp-queue-size", "200000", "--tapconfig", "bench"]


def with_agent(agent, backend, pcap, rate, token, threads, export=()):
    port, sink_port = 19102, 19103
    sink = subprocess.Popen(["ip", "netns", "exec", RX, sys.executable, "-c", SINK, str(sink_port)])
    try:
        return run_agent(agent, backend, pcap, rate, token, port, f"http://127.0.0.1:{sink_port}", threads, export)
    finally:
        sink.kill()
        sink.wait()


def run_agent(agent, backend, pcap, rate, token, port, operator_url, threads, export=()):
    p = subprocess.Popen(["ip", "netns", "exec", RX, agent, "run", "--interface", "rx0", "--node-name", "bench",
                          "--capture-backend", backend, "--engine-threads", str(threads),
                          "--operator-url", operator_url, "--token-file", token,
                          "--http-addr", f"127.0.0.1:{port}", *export],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            agent_metrics(port)
            break
        except (subprocess.CalledProcessError, ValueError):
            if time.time() > deadline:
                p.kill()
                raise RuntimeError("the agent did not start")
            time.sleep(0.2)
    time.sleep(0.5)
    sent, pps = replay(pcap, rate)
    time.sleep(2)
    m = agent_metrics(port)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)
    # Kernel drops (the socket or ring overflowed) plus frames the agent's own queue had no room for.
    dropped = int(m.get("kernel_dropped_total", 0) + m.get("queue_dropped_total", 0))
    if export:
        print(f"    export: {int(m.get('entries_total', 0))} entries found, {int(m['exported'])} exported, "
              f"{int(m['export_dropped'])} dropped", flush=True)
    return sent, pps, int(m.get("packets_received_total", 0)) - dropped, dropped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--rates", default="50000,100000,200000,400000,600000,0")
    ap.add_argument("--agent", default=str(REPO / "target" / "release" / "faultline-agent"))
    ap.add_argument("--backends", default="afpacket,libpcap")
    ap.add_argument("--engine-threads", default="1,2")
    ap.add_argument("--export", choices=["grpc", "http/protobuf"],
                    help="the agent also exports every entry over OTLP to a collector in its namespace")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/live.py needs root (network namespaces)")
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "live.pcap"
        conversations = max(1, args.packets // 9)
        subprocess.run([sys.executable, str(REPO / "bench" / "gen_capture.py"), str(pcap), "--conversations",
                        str(conversations)], check=True, stdout=subprocess.DEVNULL)
        token = Path(tmp) / "token"
        token.write_text("bench")
        setup()
        rows = []
        collector, export = (None, ())
        try:
            if args.export:
                collector, export = start_collector(tmp, args.export)
            print(f"{'rate':>10}  {'tool':<34} {'sent':>8} {'at pps':>9} {'received':>9} {'dropped':>8}")
            for rate in [int(r) for r in args.rates.split(",")]:
                runs = [("tcpdump -w /dev/null", with_tcpdump(pcap, rate))]
                for b in args.backends.split(","):
                    for n in [int(t) for t in args.engine_threads.split(",")]:
                        tool = f"agent ({b}, {n} engine thread{'s' if n > 1 else ''})"
                        if export:
                            tool += " +OTLP"
                        runs.append((tool, with_agent(args.agent, b, pcap, rate, str(token), n, export)))
                for tool, (sent, pps, got, dropped) in runs:
                    label = "top speed" if rate == 0 else str(rate)
                    print(f"{label:>10}  {tool:<34} {sent:>8} {pps:>9.0f} {got:>9} {dropped:>8}", flush=True)
                    rows.append({"rate": rate, "tool": tool, "sent": sent, "pps": pps, "received": got,
                                 "dropped": dropped})
        finally:
            if collector:
                collector.terminate()
                collector.wait()
            teardown()
    print()
    for tool in dict.fromkeys(r["tool"] for r in rows):
        clean = [r["pps"] for r in rows if r["tool"] == tool and r["dropped"] == 0]
        print(f"{tool:<34} highest rate without a drop: {max(clean) / 1e3:.0f}k pps" if clean
              else f"{tool:<34} dropped at every rate")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
