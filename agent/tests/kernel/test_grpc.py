"""HTTP/2 and gRPC on real kernels (SPEC §3.5): a real gRPC server and client (Python `grpcio`, cleartext,
prior knowledge) making calls that end OK, UNAVAILABLE and DEADLINE_EXCEEDED; a real HTTP/2 stack (`h2`)
resetting a stream with REFUSED_STREAM and ending a connection with GOAWAY ENHANCE_YOUR_CALM. The ground
truth is what the peers were told to do and what they reported; tshark, decoding the same capture as
HTTP/2, is the oracle for the statuses and error codes on the wire."""

import json
import subprocess
import sys
import time

from netlab import SERVER4, Lab, analyze, tshark_fields

GRPC_SERVER = """
import sys, time, grpc
from concurrent import futures

def add(req, ctx):
    return b"ok"

def checkout(req, ctx):
    ctx.abort(grpc.StatusCode.UNAVAILABLE, "no healthy upstream")

def slow(req, ctx):
    time.sleep(2)
    return b"late"

methods = {"Add": add, "Checkout": checkout, "Slow": slow}
handler = grpc.method_handlers_generic_handler(
    "shop.Cart", {n: grpc.unary_unary_rpc_method_handler(f) for n, f in methods.items()})
server = grpc.server(futures.ThreadPoolExecutor(4))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port("0.0.0.0:" + sys.argv[1])
server.start()
print("listening", flush=True)
server.wait_for_termination()
"""

GRPC_CLIENT = """
import json, sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
grpc.channel_ready_future(channel).result(timeout=10)
results = []
for method, timeout in [("Add", 5), ("Checkout", 5), ("Slow", 0.5), ("Add", 5)]:
    try:
        channel.unary_unary("/shop.Cart/" + method)(b"x", timeout=timeout)
        results.append([method, "OK"])
    except grpc.RpcError as e:
        results.append([method, e.code().name])
channel.close()
print(json.dumps(results))
"""

# An HTTP/2 server on the `h2` protocol stack: /ok answers 200, /reset is refused with RST_STREAM
# REFUSED_STREAM, /calm ends the connection with GOAWAY ENHANCE_YOUR_CALM.
H2_SERVER = """
import socket, sys
import h2.config, h2.connection, h2.events
from h2.errors import ErrorCodes

s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
print("listening", flush=True)
sock, _ = s.accept()
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
conn.initiate_connection(); sock.sendall(conn.data_to_send())
done = False
while not done:
    data = sock.recv(65535)
    if not data:
        break
    for ev in conn.receive_data(data):
        if isinstance(ev, h2.events.RequestReceived):
            path = dict(ev.headers)[b":path"]
            if path == b"/ok":
                conn.send_headers(ev.stream_id, [(":status", "200")], end_stream=True)
            elif path == b"/reset":
                conn.reset_stream(ev.stream_id, error_code=ErrorCodes.REFUSED_STREAM)
            elif path == b"/calm":
                conn.close_connection(error_code=ErrorCodes.ENHANCE_YOUR_CALM, additional_data=b"too_many_requests",
                                      last_stream_id=ev.stream_id - 2)
                done = True
    sock.sendall(conn.data_to_send())
sock.close()
"""

H2_CLIENT = """
import json, socket, sys
import h2.config, h2.connection, h2.events

sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
conn.initiate_connection(); sock.sendall(conn.data_to_send())
seen = []
for path in ("/ok", "/reset", "/calm"):
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "web"), (":path", path)],
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    waiting = True
    while waiting:
        data = sock.recv(65535)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                seen.append([path, dict(ev.headers)[b":status"].decode()])
            elif isinstance(ev, h2.events.StreamReset):
                seen.append([path, "reset " + ev.error_code.name])
            elif isinstance(ev, h2.events.ConnectionTerminated):
                seen.append([path, "goaway " + ev.error_code.name])
            if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
                waiting = False
        sock.sendall(conn.data_to_send())
sock.close()
print(json.dumps(seen))
"""


def start(lab, script, *args):
    p = subprocess.Popen(["ip", "netns", "exec", lab.s, sys.executable, "-c", script, *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.procs.append(p)
    line = p.stdout.readline()
    assert "listening" in line, p.stderr.read() if p.poll() is not None else line
    return p


def run_client(lab, script, *args):
    r = subprocess.run(["ip", "netns", "exec", lab.c, sys.executable, "-c", script, *args], capture_output=True,
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
        start(lab, GRPC_SERVER, "50051")
        start(lab, H2_SERVER, "8082")
        with lab.capture(pcap, bpf="tcp port 50051 or tcp port 8082"):
            grpc_seen = run_client(lab, GRPC_CLIENT, f"{SERVER4}:50051")
            h2_seen = run_client(lab, H2_CLIENT, SERVER4, "8082")
            time.sleep(2)  # the slow call's handler finishes on the server
    # What the peers themselves reported.
    assert grpc_seen == [["Add", "OK"], ["Checkout", "UNAVAILABLE"], ["Slow", "DEADLINE_EXCEEDED"], ["Add", "OK"]]
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
    # The deadline: the client gives up (RST_STREAM CANCEL) and/or the server answers DEADLINE_EXCEEDED,
    # whichever reached the wire first — either way one entry, an error, after about the deadline.
    [slow] = by_method["Slow"]
    assert slow["error"]["type"] in ("grpc", "http2"), slow
    assert "DEADLINE_EXCEEDED" in slow["error"]["msg"] or "RST_STREAM CANCEL" in slow["error"]["msg"], slow
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
    if "DEADLINE_EXCEEDED" in slow["error"]["msg"]:
        assert "4" in statuses, statuses
    else:
        assert ("50051", "8") not in rst and any(code == "8" for _, code in rst), rst
