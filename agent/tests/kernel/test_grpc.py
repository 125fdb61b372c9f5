"""HTTP/2 and gRPC on real kernels (SPEC §3.5): a real gRPC server and client (Python `grpcio`, cleartext,
prior knowledge) making calls that end OK, UNAVAILABLE and DEADLINE_EXCEEDED; a real HTTP/2 stack (`h2`)
resetting a stream with REFUSED_STREAM and ending a connection with GOAWAY ENHANCE_YOUR_CALM. The ground
truth is what the peers were told to do and what they reported; tshark, decoding the same capture as
HTTP/2, is the oracle for the statuses and error codes on the wire."""

import json
import subprocess
import sys
import time
from pathlib import Path

from netlab import SERVER4, Lab, analyze, tshark_fields

PEERS = str(Path(__file__).resolve().parent / "grpc_peers.py")


def start(lab, mode, *args):
    p = subprocess.Popen(["ip", "netns", "exec", lab.s, sys.executable, PEERS, mode, *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.procs.append(p)
    line = p.stdout.readline()
    assert "listening" in line, p.stderr.read() if p.poll() is not None else line
    return p


def run_client(lab, mode, *args):
    r = subprocess.run(["ip", "netns", "exec", lab.c, sys.executable, PEERS, mode, *args], capture_output=True,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "GRPC_ENABLE_FORK_SUPPORT": "0"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def header_values(pcap, port, name):
    """The values of header `name` in every HEADERS frame tshark decodes on `port`, in order."""
    # Values hold commas (grpc-accept-encoding: identity, deflate, gzip): fields are joined by "|".
    r = subprocess.run(["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},http2", "-Y", "http2.type == 1",
                        "-T", "fields", "-E", "aggregator=|", "-e", "http2.header.name", "-e", "http2.header.value"],
                       capture_output=True, text=True, check=True)
    out = []
    for line in r.stdout.splitlines():
        names, _, values = line.partition("\t")
        out += [v for n, v in zip(names.split("|"), values.split("|")) if n == name]
    return out


def test_real_grpc_calls_and_http2_errors_are_reported_as_they_happened(tmp_path):
    pcap = tmp_path / "grpc.pcap"
    with Lab() as lab:
        start(lab, "grpc-server", "50051")
        start(lab, "h2-server", "8082")
        with lab.capture(pcap, bpf="tcp port 50051 or tcp port 8082"):
            grpc_seen = run_client(lab, "grpc-client", f"{SERVER4}:50051")
            h2_seen = run_client(lab, "h2-client", SERVER4, "8082")
            time.sleep(2)  # the slow call's handler finishes on the server
    # What the peers themselves reported.
    assert grpc_seen == [["Add", "OK"], ["Checkout", "UNAVAILABLE"], ["Slow", "DEADLINE_EXCEEDED"],
                         ["Slow", "CANCELLED"], ["Add", "OK"]]
    assert h2_seen == [["/ok", "200"], ["/reset", "reset REFUSED_STREAM"], ["/calm", "goaway ENHANCE_YOUR_CALM"]]

    entries = analyze(pcap)
    calls = [e for e in entries if e["protocol"] == "grpc"]
    by_method = {}
    for e in calls:
        by_method.setdefault(e["grpc"]["method"], []).append(e)
    assert sorted(by_method) == ["Add", "Checkout", "Slow"], calls
    assert [e.get("error") for e in by_method["Add"]] == [None, None]
    assert all(e["grpc"]["statusName"] == "OK" and e["response"]["status"] == 200 for e in by_method["Add"])
    [checkout] = by_method["Checkout"]
    assert checkout["grpc"]["service"] == "shop.Cart"
    assert checkout["error"] == {"type": "grpc", "msg": "UNAVAILABLE: no healthy upstream"}, checkout
    # The deadline: the client gives up (RST_STREAM CANCEL at its deadline) and/or the server answers
    # DEADLINE_EXCEEDED, whichever reached the wire first — either way one entry, a gRPC error
    # DEADLINE_EXCEEDED, after about the deadline (SPEC §3.5).
    slow, cancelled = by_method["Slow"]
    # grpcio's cancel well before its deadline: the client's choice, a pair CANCELLED, not an error.
    assert (cancelled["grpc"]["statusName"], cancelled.get("error")) == ("CANCELLED", None), cancelled
    assert 250 <= cancelled["elapsedTime"] < 1000, cancelled
    assert slow["error"]["type"] == "grpc" and slow["error"]["msg"].startswith("DEADLINE_EXCEEDED"), slow
    assert slow["grpc"]["statusName"] == "DEADLINE_EXCEEDED", slow
    assert 400 <= slow["elapsedTime"] < 2000, slow

    plain = [e for e in entries if e["protocol"] == "http2"]
    summary = sorted((e.get("request", {}).get("path", ""), (e.get("response") or {}).get("status"),
                      (e.get("error") or {}).get("msg", "")) for e in plain)
    assert summary == [
        ("", None, "GOAWAY ENHANCE_YOUR_CALM from the server (last stream 3): too_many_requests"),
        ("/ok", 200, ""),
        ("/reset", None, "RST_STREAM REFUSED_STREAM from the server (stream 3)"),
    ], summary

    # tshark sees the same statuses and codes on the wire.
    statuses = header_values(pcap, 50051, "grpc-status")
    assert statuses[:2] == ["0", "14"] and statuses[-1] == "0", statuses
    rst = tshark_fields(pcap, "http2.type == 3", "tcp.srcport", "http2.rst_stream.error",
                        decode_as=["tcp.port==8082,http2", "tcp.port==50051,http2"])
    assert ("8082", "7") in rst, rst  # REFUSED_STREAM from the h2 server
    goaway = tshark_fields(pcap, "http2.type == 7", "http2.goaway.error", "http2.goaway.last_stream_id",
                           decode_as=["tcp.port==8082,http2"])
    assert ("11", "3") in goaway, goaway
    # Whichever reached the wire first made the Slow call's DEADLINE_EXCEEDED: the server's grpc-status 4,
    # or the client's RST_STREAM CANCEL at its deadline — a second client CANCEL beside the one that
    # cancelled the other Slow call on purpose. The server never resets.
    client_cancels = [code for port, code in rst if port != "50051" and code == "8"]
    assert ("50051", "8") not in rst, rst
    assert "4" in statuses or len(client_cancels) >= 2, (statuses, rst)
    assert client_cancels, "grpcio's cancel is on the wire"
