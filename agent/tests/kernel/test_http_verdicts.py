"""HTTP/1.x requests a real server cannot parse (SPEC §3.5, "HTTP/1.x by either side"): Go's net/http
answers them with a status line, and that verdict must not vanish — the entry is a `parser error` carrying
the server's `response.status`. An HTTP/0.9 request line (`GET /`, no version) that the server answers is
no error. The bytes are written raw from the client's namespace; tshark reads what the server answered."""

import sys

from netlab import SERVER4, Lab, analyze, tshark_fields

RAW = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(sys.argv[3].encode().decode("unicode_escape").encode("latin-1"))
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
s.close()
"""


def send_raw(lab, port, data):
    lab.ns(lab.c, sys.executable, "-c", RAW, SERVER4, str(port), data)


def test_a_servers_verdict_on_a_request_it_cannot_parse_is_kept(tmp_path, peers):
    pcap = tmp_path / "verdicts.pcap"
    with Lab() as lab:
        lab.serve(peers, "http-server", "8080")
        lab.wait_listening(8080)
        with lab.capture(pcap, bpf="tcp port 8080"):
            send_raw(lab, 8080, r"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            # A header line without a colon: Go answers 400 and closes.
            send_raw(lab, 8080, r"GET /healthz HTTP/1.1\r\nHost: a\r\nBroken header line\r\n\r\n")
            # No HTTP probe recognises this request line; Go answers 400: HTTP after all.
            send_raw(lab, 8080, r"GET/ HTTP/1.1\r\nHost: a\r\n\r\n")
            # HTTP/0.9: Go answers with an HTTP/1.1 status line (400): the server's answer, no error.
            send_raw(lab, 8080, r"GET /healthz\r\n")
    statuses = sorted(int(c) for (c,) in tshark_fields(pcap, "http.response", "http.response.code"))
    assert statuses == [200, 400, 400, 400], statuses
    http = [e for e in analyze(pcap) if e["protocol"] == "http"]
    assert len(http) == 4, http
    ok, broken, unrecognised, simple = sorted(http, key=lambda e: e["timestamp"])
    assert unrecognised["error"]["msg"].startswith("parser error"), unrecognised
    assert unrecognised["response"]["status"] == 400, unrecognised
    assert (ok["response"]["status"], ok["error"]) == (200, None), ok
    assert broken["error"]["type"] == "dissection" and broken["error"]["msg"].startswith("parser error"), broken
    assert broken["response"]["status"] == 400, broken
    assert simple["error"] is None, simple
    assert (simple["request"]["version"], simple["response"]["status"]) == ("HTTP/0.9", 400), simple
