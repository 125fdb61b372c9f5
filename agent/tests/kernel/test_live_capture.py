"""`faultline-agent run` on a live interface, with each capture backend: a BPF filter applied in the
kernel lets through exactly the packets it names (the kernel's own count says so), and the engine finds
the error in them. Here the agent has no operator to report to; its /metrics tell what it saw."""

import os
import re
import subprocess
import sys
import time

import pytest

from netlab import SERVER4, Lab, analyzer_binary


def metrics(lab, port, ns=None):
    """The agent's metrics by name; the engine's counters as `engine.<counter>`. The agent runs in the
    client's namespace unless `ns` says otherwise."""
    code = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    out = lab.ns(ns or lab.c, sys.executable, "-c", code, capture=True, check=False).stdout
    got = {m[1]: float(m[2]) for m in re.finditer(r"^faultline_agent_(\w+) ([\d.e+]+)$", out, re.M)}
    got.update({f"engine.{m[1]}": float(m[2]) for m in re.finditer(
        r'^faultline_agent_engine_events_total\{counter="(\w+)"\} (\d+)$', out, re.M)})
    return got


@pytest.mark.parametrize("backend", ["afpacket", "libpcap"])
def test_live_capture_with_a_kernel_filter(backend, tmp_path):
    token = tmp_path / "token"
    token.write_text("unused")
    port = 19200 + (os.getpid() % 500)
    with Lab() as lab:
        agent = subprocess.Popen(
            ["ip", "netns", "exec", lab.c, analyzer_binary(), "run", "--interface", "c0", "--capture-backend",
             backend, "--bpf-filter", "tcp port 81", "--node-name", "lab",
             "--operator-url", "http://127.0.0.1:9", "--token-file", str(token), "--http-addr",
             f"127.0.0.1:{port}", "--syn-timeout-ms", "500"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "agent.log").open("wb"))
        try:
            deadline = time.time() + 10
            while not metrics(lab, port):
                assert agent.poll() is None and time.time() < deadline, (tmp_path / "agent.log").read_text()
                time.sleep(0.2)
            time.sleep(0.5)
            lab.traffic(lab.c, "connect", SERVER4, "81", "--sport", "40081")  # SYN, RST: let through
            lab.traffic(lab.c, "connect", SERVER4, "82", "--sport", "40082")  # SYN, RST: filtered out
            lab.traffic(lab.c, "udp", SERVER4, "81", "--sport", "40083")  # not TCP: filtered out
            deadline = time.time() + 10
            while (m := metrics(lab, port)).get("entries_total", 0) < 1 and time.time() < deadline:
                time.sleep(0.3)
            time.sleep(1.5)  # the kernel counters are read once a second
            m = metrics(lab, port)
            assert m["entries_total"] == 1, m
            assert m["packets_received_total"] == 2, m
            assert m["kernel_dropped_total"] == 0 and m["queue_dropped_total"] == 0, m
            # The engine's own counters are served too: it handled the two segments the filter let through.
            assert m["engine.packets"] == 2 and m["engine.tcpSegments"] == 2, m
        finally:
            agent.terminate()
            assert agent.wait(timeout=15) == 0, "the agent stops cleanly on SIGTERM, even on an idle link"
