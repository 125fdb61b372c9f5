"""gRPC as grpc-go does it all day, on real kernels (SPEC §3.5, "Real protocol traffic, decided"): a client
cancelling a server stream, a call cut at its deadline, a 40 s long poll with keepalive pings, a server
stream, a channel closed with a stream open, a server stopping (GOAWAY, then the close) with a stream open;
and an HTTP/2 connection (the `h2` stack) that the capture joins mid-stream, whose RST_STREAM and GOAWAY are
still reported. The peers are `e2e/peers` (grpc-go, built from its Go module) and `grpc_peers.py`; what each
client printed is the ground truth, tshark decoding the capture as HTTP/2 the oracle for the frames."""

import subprocess
import sys
import time
from pathlib import Path

from netlab import SERVER4, Lab, analyze, tshark_fields

H2_PEERS = str(Path(__file__).resolve().parent / "grpc_peers.py")


def serve(lab, cmd):
    p = subprocess.Popen(["ip", "netns", "exec", lab.s, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    lab.procs.append(p)
    line = p.stdout.readline()
    assert "listening" in line, p.stderr.read() if p.poll() is not None else line
    return p


def client(lab, cmd):
    p = subprocess.Popen(["ip", "netns", "exec", lab.c, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    lab.procs.append(p)
    return p


def printed(p, timeout=90):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out.split()


def grpc_errors(entries, port):
    return [e for e in entries if e["dst"]["port"] == port and e.get("error")]


def test_what_grpc_go_does_all_day_is_reported_as_it_happened(tmp_path, peers):
    pcap = tmp_path / "grpc-go.pcap"
    with Lab() as lab:
        serve(lab, [peers, "grpc-server", "50061", "--keepalive-min", "1s"])
        serve(lab, [peers, "grpc-server", "50062", "--stop-after", "2s"])
        target, stopping = f"{SERVER4}:50061", f"{SERVER4}:50062"
        with lab.capture(pcap, bpf="tcp port 50061 or tcp port 50062"):
            calls = {
                "cancel": client(lab, [peers, "grpc-client", target, "stream", "--messages", "0",
                                       "--cancel-after", "300ms"]),
                "deadline": client(lab, [peers, "grpc-client", target, "slow", "--slow", "2s",
                                         "--deadline", "500ms"]),
                "long poll": client(lab, [peers, "grpc-client", target, "slow", "--slow", "40s",
                                          "--keepalive", "10s"]),
                "server stream": client(lab, [peers, "grpc-client", target, "stream", "--messages", "20"]),
                "closed with a stream open": client(lab, [peers, "grpc-client", target, "stream", "--messages",
                                                          "0", "--close-after", "1s"]),
                "unary": client(lab, [peers, "grpc-client", target, "echo", "--count", "3"]),
                "server stopped": client(lab, [peers, "grpc-client", stopping, "stream", "--messages", "0"]),
            }
            seen = {name: printed(p) for name, p in calls.items()}
            time.sleep(1)
    assert seen == {
        "cancel": ["Canceled"], "deadline": ["DeadlineExceeded"], "long poll": ["OK"], "server stream": ["OK"],
        "closed with a stream open": ["Canceled"], "unary": ["OK", "OK", "OK"], "server stopped": ["Unavailable"],
    }, seen

    entries = analyze(pcap)
    calls = [e for e in entries if e["protocol"] == "grpc"]
    # The only error on the healthy server is the call cut at its deadline: one entry, whichever of the
    # client's cancel and the server's DEADLINE_EXCEEDED reached the wire first.
    [late] = grpc_errors(entries, 50061)
    assert late["grpc"]["method"] == "Slow" and late["error"]["type"] == "grpc", late
    assert late["error"]["msg"].startswith("DEADLINE_EXCEEDED") and late["grpc"]["statusName"] == "DEADLINE_EXCEEDED"
    assert 400 <= late["elapsedTime"] < 1500, late
    # The client's cancel of its stream: a pair, CANCELLED, not an error.
    cancelled = [e for e in calls if e["grpc"].get("statusName") == "CANCELLED"]
    assert len(cancelled) >= 1 and all(not e.get("error") for e in cancelled), cancelled
    # The long poll: one clean pair after 40 s, never "missing" then "late".
    polls = [e for e in calls if e["grpc"]["method"] == "Slow" and not e.get("error")]
    assert [round(e["elapsedTime"] / 1000) for e in polls] == [40], polls
    ok = [e for e in calls if e["grpc"].get("statusName") == "OK"]
    assert sorted(e["grpc"]["method"] for e in ok) == ["Echo", "Echo", "Echo", "Slow", "Stream"], ok
    # The server stopping with a stream open: the stream it left unanswered is an error there.
    stopped = grpc_errors(entries, 50062)
    assert stopped and all(e["dst"]["port"] == 50062 for e in stopped), stopped
    assert not [e for e in entries if e.get("error") and e["dst"]["port"] not in (50061, 50062)]

    # tshark: the client's CANCEL, the keepalive pings and the stopping server's GOAWAY are on the wire.
    decode = ["tcp.port==50061,http2", "tcp.port==50062,http2"]
    rst = tshark_fields(pcap, "http2.type == 3", "tcp.srcport", "http2.rst_stream.error", decode_as=decode)
    assert any(port != "50061" and code == "8" for port, code in rst), rst
    pings = tshark_fields(pcap, "http2.type == 6 and http2.flags.ack.ping == 0", "tcp.srcport", decode_as=decode)
    assert len(pings) >= 3, pings
    goaway = tshark_fields(pcap, "http2.type == 7", "tcp.srcport", "http2.goaway.error", decode_as=decode)
    assert ("50062", "0") in goaway, goaway


def test_a_connection_joined_mid_stream_still_reports_its_reset_and_goaway(tmp_path):
    pcap = tmp_path / "midstream.pcap"
    with Lab() as lab:
        serve(lab, [sys.executable, H2_PEERS, "h2-server", "8083"])
        c = client(lab, [sys.executable, H2_PEERS, "h2-client", SERVER4, "8083", "3"])
        # The connection is open, its first request answered and HPACK's tables in use: the capture (an
        # agent started late) joins now.
        assert c.stderr.readline().strip() == "paused"
        with lab.capture(pcap, bpf="tcp port 8083"):
            out, err = c.communicate(timeout=30)
            time.sleep(0.5)
    assert c.returncode == 0, err
    assert out.strip() == '[["/ok", "200"], ["/reset", "reset REFUSED_STREAM"], ["/calm", "goaway ENHANCE_YOUR_CALM"]]'
    entries = analyze(pcap)
    assert tshark_fields(pcap, "tcp.flags.syn == 1", "tcp.srcport") == [], "no handshake in the capture"
    summary = sorted((e["protocol"], e["error"]["msg"]) for e in entries if e.get("error"))
    assert summary == [
        ("http2", "GOAWAY ENHANCE_YOUR_CALM from the server (last stream 3): too_many_requests"),
        ("http2", "RST_STREAM REFUSED_STREAM from the server (stream 3)"),
    ], entries
    rst = tshark_fields(pcap, "http2.type == 3", "http2.streamid", "http2.rst_stream.error",
                        decode_as=["tcp.port==8083,http2"])
    assert rst == [("3", "7")], rst
