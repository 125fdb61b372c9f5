#!/usr/bin/env python3
"""Writes the hand-made part of the fuzz seed corpus (files named `made-*` in fuzz/seeds/<target>/): real
conversations the fuzzer would take long to find on its own — a small capture from bench/gen_capture.py
(HTTP, refused, reset, unanswered, 5xx, ICMP), the same frames in the engine target's format, an HTTP
exchange in the http target's format, and the queries of the docs. The rest of the corpus is what
`cargo fuzz cmin` kept from fuzzing runs. Deterministic; rerun after changing a target's input format."""

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"made-{name}").write_bytes(data)


def pcap_frames(data):
    """(frames) of a little-endian classic pcap."""
    frames, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return frames


def engine_seed(frames, step=5):
    """`step` % 5 == 0 picks Ethernet; frames are 2-byte little-endian length prefixed."""
    return bytes([step]) + b"".join(struct.pack("<H", len(f)) + f for f in frames)


def http_seed(chunks):
    """(direction, bytes) chunks as the http target reads them: control byte = len << 3 | direction."""
    out = b""
    for direction, data in chunks:
        for i in range(0, len(data), 31):
            part = data[i:i + 31]
            out += bytes([len(part) << 3 | direction]) + part
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "small.pcap"
        subprocess.run([sys.executable, str(HERE.parent / "bench" / "gen_capture.py"), str(cap), "--conversations",
                        "40"], check=True, stdout=subprocess.DEVNULL)
        data = cap.read_bytes()
    write("pcap", "small.pcap", data)
    write("pcap", "truncated.pcap", data[:1000])
    frames = pcap_frames(data)
    for i in range(0, len(frames), 40):
        write("engine", f"conversation-{i // 40}", engine_seed(frames[i:i + 40]))
    write("engine", "nat-copies-missed", nat_seed())
    req = b"GET /api/orders HTTP/1.1\r\nHost: shop\r\nAccept: */*\r\n\r\n"
    write("http", "exchange", http_seed([(0, req), (1, b"HTTP/1.1 503 Service Unavailable\r\n"
                                                      b"Content-Length: 5\r\n\r\nbusy!")]))
    write("http", "chunked", http_seed([(0, req), (1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                      b"4\r\nabcd\r\n0\r\n\r\n")]))
    write("http", "pipelined", http_seed([(0, req + req), (1, b"HTTP/1.1 204 No Content\r\n\r\n" * 2)]))
    # A request that does not parse, answered by the server's verdict; an HTTP/0.9 request answered.
    write("http", "broken-request-answered", http_seed([(0, b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n"),
                                                        (1, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")]))
    write("http", "http09", http_seed([(0, b"GET /index.html\r\n"), (1, b"<html>hello</html>")]))
    queries = ["response.status > 400 or error or icmp or tcp", "!error", "!icmp and !tcp",
               'tcp.state == "SynSent" and tcp.reason == "refused"', 'src.namespace == "shop" && dst.port == 8080',
               'request.path.startsWith("/api") and response.status >= 500', 'request.headers["host"] == "shop"',
               "icmp.type == 3 and (icmp.code == 1 or icmp.code == 3)", 'dst.ip == "10.0.0.0/8"', "elapsedTime > 1000",
               'src.name == r"^web-.*" or not (protocol == "http")', "error.type == null"]
    for i, q in enumerate(queries):
        write("kfl", f"query-{i}", q.encode())
    datastore_seeds()
    amqp_seeds()


def tcp_streams(pcap, server_port):
    """The TCP payloads of a classic Ethernet/IPv4 pcap, per connection to `server_port`, in capture order:
    {client port: [(from_server, bytes)]}."""
    data = Path(pcap).read_bytes()
    at, streams = 24, {}
    while at + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, at + 8)[0]
        frame = data[at + 16:at + 16 + caplen]
        at += 16 + caplen
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ip = frame[14:]
        tcp = ip[(ip[0] & 15) * 4:]
        sport, dport = struct.unpack_from(">HH", tcp)
        payload = tcp[(tcp[12] >> 4) * 4:struct.unpack_from(">H", ip, 2)[0] - (ip[0] & 15) * 4]
        if payload and server_port in (sport, dport):
            streams.setdefault(dport if sport == server_port else sport, []).append((int(sport == server_port), payload))
    return streams


def stream_seed(chunks):
    """(from_server, bytes) as the stream targets read them: [control][length][bytes], bit 0 the server."""
    out = b""
    for direction, data in chunks:
        for i in range(0, len(data), 255):
            part = data[i:i + 255]
            out += bytes([direction, len(part)]) + part
    return out


def amqp_frame(kind, channel, payload):
    return bytes([kind]) + struct.pack(">HI", channel, len(payload)) + payload + b"\xce"


def amqp_method(channel, cls, method, args=b""):
    return amqp_frame(1, channel, struct.pack(">HH", cls, method) + args)


def amqp_seeds():
    """Crafted AMQP beside the real ones: a declare answered by a close, a declare with no-wait, a return
    before content frames and a heartbeat."""
    text = b"NOT_FOUND - no queue 'q'"
    close = amqp_method(1, 20, 40, struct.pack(">H", 404) + bytes([len(text)]) + text + struct.pack(">HH", 50, 10))
    declare = amqp_method(1, 50, 10, b"\0\0\x01q\x01\0\0\0\0")
    write("amqp", "declare-closed", stream_seed([(0, b"AMQP\0\0\x09\x01" + amqp_method(1, 20, 10, b"\0")),
                                                 (1, amqp_method(1, 20, 11, b"\0\0\0\0")), (0, declare),
                                                 (1, close)]))
    ret = amqp_method(1, 60, 50, struct.pack(">H", 312) + b"\x08NO_ROUTE\x00\x01k")
    write("amqp", "returned", stream_seed([(0, b"AMQP\0\0\x09\x01" + amqp_method(1, 50, 10, b"\0\0\x01q\x10")),
                                           (1, ret + amqp_frame(2, 1, b"\0" * 14) + amqp_frame(3, 1, b"x")
                                            + amqp_frame(8, 0, b""))]))


def datastore_seeds():
    """Each connection of the real backend captures (core/tests/fixtures/backends) as a seed of its
    protocol's target, and its first quarter, half and three quarters (calls cut short)."""
    fixtures = HERE.parent / "core" / "tests" / "fixtures" / "backends"
    for target, ports in [("redis", (6379, 6380, 6381)), ("postgresql", (5432,)), ("mysql", (3306,)),
                          ("amqp", (5672,)), ("kafka", (9092, 9094))]:
        n = 0
        for port in ports:
            for chunks in tcp_streams(fixtures / f"{target}.pcap", port).values():
                write(target, f"real-{n}", stream_seed(chunks))
                for quarter in (1, 2, 3):
                    cut = stream_seed(chunks[:max(1, len(chunks) * quarter // 4)])
                    write(target, f"real-{n}-cut" if quarter == 2 else f"real-{n}-cut{quarter}", cut)
                n += 1


def tcp_frame(src, dst, sport, dport, flags, seq, ack, payload=b""):
    """An Ethernet/IPv4/TCP frame (checksums zero: the engine does not check them)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, bytes(src), bytes(dst))
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp


def nat_seed():
    """Eight connections to a Service seen on two interfaces (the `shards` target alternates them when the
    first byte's high bit is set): after DNAT on interface 0, before it on interface 1, whose copy of each
    SYN was missed. The pair shows on the SYN-ACK, when the tuple after DNAT is already tracked: on
    another shard, its state has to move."""
    service, backend = (10, 96, 0, 30), (10, 244, 1, 7)
    get = b"GET / HTTP/1.1\r\nHost: s\r\n\r\n"
    resp = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    syn, ack, psh_ack, syn_ack = 0x02, 0x10, 0x18, 0x12
    frames = []
    for n, port in enumerate(range(40001, 40009)):
        client = (10, 244, 1, 20 + n)
        c, srv = 1000 + n * 7919, 50000 + n * 104729
        frames.append(tcp_frame(client, backend, port, 8080, syn, c, 0))
        for frm, flags, seq, ack_no, payload in [(False, syn_ack, srv, c + 1, b""), (True, ack, c + 1, srv + 1, b""),
                                                  (True, psh_ack, c + 1, srv + 1, get),
                                                  (False, psh_ack, srv + 1, c + 1 + len(get), resp)]:
            # Interface 1 (before DNAT), then interface 0 (after): the alternation the target makes.
            if frm:
                frames.append(tcp_frame(client, service, port, 80, flags, seq, ack_no, payload))
                frames.append(tcp_frame(client, backend, port, 8080, flags, seq, ack_no, payload))
            else:
                frames.append(tcp_frame(service, client, 80, port, flags, seq, ack_no, payload))
                frames.append(tcp_frame(backend, client, 8080, port, flags, seq, ack_no, payload))
        # Keep the alternation: the next connection's SYN is on interface 0 again.
    # 130: Ethernet (130 % 5 == 0), two interfaces (high bit), 2 ms between frames (the low bits).
    return engine_seed(frames, step=130)


def dns_name(name):
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\0"


def dns_message(qid, name, qtype=1, flags=0x0100, answers=b"", ancount=0):
    return struct.pack(">HHHHHH", qid, flags, 1, ancount, 0, 0) + dns_name(name) + struct.pack(">HH", qtype, 1) + answers


def dns_seed(datagrams):
    """(direction, 100 ms steps, bytes) datagrams as the dns target reads them."""
    return b"".join(bytes([steps << 1 | direction, len(d)]) + d for direction, steps, d in datagrams)


def dns_seeds():
    a = struct.pack(">HHHIH", 0xc00c, 1, 1, 60, 4) + bytes([10, 0, 2, 7])
    cname = struct.pack(">HHHIH", 0xc00c, 5, 1, 60, 2) + b"\xc0\x10"
    q = dns_message(1, "web.shop.svc.cluster.local")
    write("dns", "noerror", dns_seed([(0, 0, q), (1, 0, dns_message(1, "web.shop.svc.cluster.local", 1, 0x8180, a, 1))]))
    write("dns", "cname", dns_seed([(0, 0, dns_message(2, "www.example.com")),
                                    (1, 0, dns_message(2, "www.example.com", 1, 0x8180, cname + a, 2))]))
    for rcode, name in ((2, "servfail"), (3, "nxdomain"), (5, "refused"), (1, "formerr"), (4, "notimp")):
        write("dns", name, dns_seed([(0, 0, dns_message(3, "db.example")),
                                      (1, 1, dns_message(3, "db.example", 1, 0x8180 | rcode))]))
    steps = ["x.shop.svc.cluster.local", "x.svc.cluster.local", "x.cluster.local", "x"]
    write("dns", "search", dns_seed([d for i, n in enumerate(steps) for d in
                                     ((0, 0, dns_message(10 + i, n)), (1, 0, dns_message(10 + i, n, 1, 0x8183)))]))
    write("dns", "retransmitted", dns_seed([(0, 0, q), (0, 50, q), (1, 0, dns_message(1, "web.shop.svc.cluster.local", 1, 0x8180, a, 1))]))
    write("dns", "unanswered", dns_seed([(0, 0, dns_message(4, "slow.example", 28)), (0, 60, b"")]))
    write("dns", "pointer-loop", dns_seed([(0, 0, struct.pack(">HHHHHH", 5, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1")]))
    # Every opcode paired (an UPDATE refused), an answer without a question, Go's retry with a new id, an
    # application retrying a name through its search list.
    write("dns", "update-refused", dns_seed([(0, 0, dns_message(6, "shop.example", 6, 0x2800)),
                                             (1, 0, dns_message(6, "shop.example", 6, 0xa805))]))
    write("dns", "no-question", dns_seed([(0, 0, dns_message(7, "x.example")),
                                          (1, 0, struct.pack(">HHHHHH", 7, 0x8181, 0, 0, 0, 0))]))
    write("dns", "new-id-retry", dns_seed([(0, 0, dns_message(8, "api.example")), (0, 50, dns_message(9, "api.example")),
                                           (1, 0, dns_message(9, "api.example", 1, 0x8180, a, 1))]))
    write("dns", "search-retried", dns_seed([d for _ in range(2) for i, n in enumerate(steps) for d in
                                             ((0, 0, dns_message(10 + i, n)), (1, 0, dns_message(10 + i, n, 1, 0x8183)))]))
    write("dns", "truncated", dns_seed([(0, 0, q[:20]), (1, 0, dns_message(1, "web.shop.svc.cluster.local", 1, 0x8380))]))


def h2_frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(name, value, index=False):
    """A literal field (new name), with incremental indexing or without; lengths under 127."""
    return bytes([0x40 if index else 0x00, len(name)]) + name + bytes([len(value)]) + value


def h2_seed(chunks):
    """(control, bytes) chunks as the http2 target reads them, cut to 255 bytes each."""
    out = b""
    for ctl, data in chunks:
        for i in range(0, max(len(data), 1), 255):
            part = data[i:i + 255]
            out += bytes([ctl, len(part)]) + part
    return out


def http2_seeds():
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"")
    grpc_req = (b"\x83\x86" + hpack_literal(b":path", b"/shop.Cart/Add", True)
                + hpack_literal(b"content-type", b"application/grpc", True) + hpack_literal(b"te", b"trailers"))
    req = h2_frame(1, 4, 1, grpc_req) + h2_frame(0, 1, 1, b"\0\0\0\0\2\x08\x01")
    head = h2_frame(1, 4, 1, b"\x88" + hpack_literal(b"content-type", b"application/grpc", True))
    trailers = h2_frame(1, 5, 1, hpack_literal(b"grpc-status", b"14") + hpack_literal(b"grpc-message", b"down%21"))
    server = h2_frame(4, 0, 0, b"") + head + h2_frame(0, 0, 1, b"\0\0\0\0\1\x07") + trailers
    write("http2", "grpc-unavailable", h2_seed([(0, preface + req), (1, server)]))
    # The second request refers to the dynamic table the first filled (index 62, 63).
    req3 = h2_frame(1, 4, 3, b"\x83\x86\xbf\xbe") + h2_frame(0, 1, 3, b"")
    write("http2", "two-calls", h2_seed([(0, preface + req), (1, server), (0, req3),
                                         (1, h2_frame(1, 5, 3, b"\x88\xbe" + hpack_literal(b"grpc-status", b"0")))]))
    write("http2", "rst-cancel", h2_seed([(0, preface + req + h2_frame(3, 0, 1, b"\0\0\0\x08"))]))
    write("http2", "goaway", h2_seed([(0, preface + req), (1, h2_frame(7, 0, 0, b"\0\0\0\0\0\0\0\x0bcalm"))]))
    write("http2", "unanswered", h2_seed([(0, preface + req), (8 << 3, b"")]))
    write("http2", "trailers-only", h2_seed([(0, preface + req), (1, h2_frame(1, 5, 1, b"\x88" + hpack_literal(
        b"content-type", b"application/grpc") + hpack_literal(b"grpc-status", b"4")))]))
    write("http2", "continuation", h2_seed([(0, preface + h2_frame(1, 1, 1, grpc_req[:5]) + h2_frame(9, 4, 1, grpc_req[5:]))]))
    write("http2", "gap-in-data", h2_seed([(0, preface + req), (1, server[:60]), (3, server[60:64]), (1, server[64:])]))
    write("http2", "gap-in-headers", h2_seed([(0, preface + req), (3, server[:20]), (1, server[20:])]))
    write("http2", "bad-frame", h2_seed([(0, preface + req), (1, h2_frame(3, 0, 0, b"\0\0\0\1"))]))
    write("http2", "byte-by-byte", b"".join(bytes([0, 1, b]) for b in preface + req))
    write("http2", "table-size", h2_seed([(0, preface + h2_frame(1, 5, 1, b"\x3f\xe1\x1f\x82"))]))
    # A deadline, a client's cancel at it; a server answering HTTP/1.1; grpc-status after many trailers.
    timed = h2_frame(1, 4, 1, grpc_req + hpack_literal(b"grpc-timeout", b"500m")) + h2_frame(0, 1, 1, b"\0\0\0\0\0")
    write("http2", "deadline-cancel", h2_seed([(0, preface + timed), (8 << 3, b""), (0, h2_frame(3, 0, 1, b"\0\0\0\x08"))]))
    write("http2", "answered-http1", h2_seed([(0, preface + req), (1, b"HTTP/1.1 400 Bad Request\r\n\r\n")]))
    many = b"".join(hpack_literal(b"x-t%d" % i, b"v" * 100) for i in range(80)) + hpack_literal(b"grpc-status", b"14")
    write("http2", "late-grpc-status", h2_seed([(0, preface + req), (1, server[:len(server) - len(trailers)]
                                                                     + h2_frame(1, 5, 1, many))]))
    # Mid-stream (the harness starts mid-stream after "MID"): the middle of a DATA frame, then frames.
    write("http2", "midstream", b"MID" + h2_seed([(1, b"\x07" * 40), (1, h2_frame(3, 0, 5, b"\0\0\0\x07")),
                                                   (0, h2_frame(8, 0, 0, b"\0\0\1\0") + req3),
                                                   (1, h2_frame(7, 0, 0, b"\0\0\0\3\0\0\0\x0b"))]))


def tls_record(kind, body):
    return bytes([kind, 3, 3]) + struct.pack(">H", len(body)) + body


def tls_hello(kind, body):
    return tls_record(22, bytes([kind, 0]) + struct.pack(">H", len(body)) + body)


def tls_seeds():
    """TLS 1.3 as record sizes tell it, in the tls target's chunks (h2_seed's format)."""
    sni = b"\0\x0c\0\0\x09shop.test"
    ch = tls_hello(1, b"\3\3" + b"\7" * 32 + b"\0\0\2\x13\x01\1\0" + struct.pack(">H", 4 + len(sni) + 7)
                   + b"\0\0" + struct.pack(">H", len(sni)) + sni + b"\0\x2b\0\3\2\3\4")
    sh = tls_hello(2, b"\3\3" + b"\x09" * 32 + b"\0\x13\x01\0\0\6\0\x2b\0\2\3\4")
    hrr_random = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
    hrr = tls_hello(2, b"\3\3" + hrr_random + b"\0\x13\x01\0\0\6\0\x2b\0\2\3\4")
    flight = sh + tls_record(20, b"\1") + tls_record(23, b"\xee" * 200)
    alert = tls_record(23, b"\xa1" * 19)
    write("tls", "tls13-client-alert", h2_seed([(0, ch), (1, flight), (4, alert)]))
    write("tls", "tls13-mtls", h2_seed([(0, ch), (1, flight), (0, tls_record(23, b"\1" * 200) + tls_record(23, b"\2" * 53)),
                                        (5, alert)]))
    write("tls", "tls13-hrr", h2_seed([(0, ch), (1, hrr), (0, tls_record(20, b"\1") + ch), (1, flight),
                                       (0, tls_record(23, b"\1" * 53)), (1, tls_record(23, b"\2" * 300) + alert),
                                       (0, b"")]))
    write("tls", "tls12-warning", h2_seed([(0, ch), (1, tls_record(21, b"\1\x70")), (5, b"")]))
    write("tls", "answered-http", h2_seed([(0, ch), (1, b"HTTP/1.1 400 Bad Request\r\n\r\n")]))


if __name__ == "__main__":
    main()
    dns_seeds()
    http2_seeds()
    tls_seeds()
