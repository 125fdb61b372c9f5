#!/usr/bin/env python3
"""Writes a large, deterministic pcap of many short HTTP/1.1 conversations with a few percent of errors
(refused, reset, unanswered, 5xx, ICMP port unreachable), for `make bench`. The expected entry counts are
printed as JSON on stdout, so the benchmark can check the analyzer found them all while it was timed.

    python3 bench/gen_capture.py OUT.pcap [--conversations N]
"""

import argparse
import json
import random
import struct

ETH = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def tcp(src, dst, sport, dport, seq, ack, flags, data=b""):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    pseudo = struct.pack("!4s4sBBH", src, dst, 0, 6, len(seg) + len(data))
    csum = checksum(pseudo + seg + data)
    seg = seg[:16] + struct.pack("!H", csum) + seg[18:]
    return ETH + ipv4(src, dst, 6, seg + data)


def icmp_port_unreachable(router, client, quoted):
    body = struct.pack("!BBHI", 3, 3, 0, 0) + quoted[:28]
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ETH + ipv4(router, client, 1, body)


def udp(src, dst, sport, dport, data):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return ipv4(src, dst, 17, seg)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--conversations", type=int, default=92_000)
    p.add_argument("--body-padding", type=int, default=0,
                   help="bytes of padding in every JSON response body (large frames, as bulk traffic has)")
    a = p.parse_args()
    rng = random.Random(7)
    expected = {"http": 0, "http5xx": 0, "refused": 0, "reset": 0, "unanswered": 0, "icmp": 0, "packets": 0}
    t = 1_795_821_177.0
    with open(a.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))

        def emit(frame):
            nonlocal t
            t += 0.00002
            sec = int(t)
            f.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)))
            f.write(frame)
            expected["packets"] += 1

        for i in range(a.conversations):
            client = bytes([10, 1, (i >> 8) & 0xFF, i & 0xFF])
            server = bytes([10, 2, 0, 1 + i % 50])
            sport, dport = 20000 + i % 40000, 8080
            c, s = rng.randrange(1 << 32), rng.randrange(1 << 32)
            r = rng.random()
            if r < 0.01:  # refused
                emit(tcp(client, server, sport, dport, c, 0, SYN))
                emit(tcp(server, client, dport, sport, 0, c + 1, RST | ACK))
                expected["refused"] += 1
                continue
            if r < 0.02:  # UDP to a closed port, answered by ICMP
                dgram = udp(client, server, sport, 53, b"\x12\x34" + b"\0" * 10)
                emit(ETH + dgram)
                emit(icmp_port_unreachable(server, client, dgram))
                expected["icmp"] += 1
                continue
            emit(tcp(client, server, sport, dport, c, 0, SYN))
            emit(tcp(server, client, dport, sport, s, c + 1, SYN | ACK))
            emit(tcp(client, server, sport, dport, c + 1, s + 1, ACK))
            req = f"GET /api/items/{i} HTTP/1.1\r\nHost: shop\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n".encode()
            emit(tcp(client, server, sport, dport, c + 1, s + 1, PSH | ACK, req))
            c2 = c + 1 + len(req)
            if r < 0.03:  # reset by the server: a Reset and a half connection
                emit(tcp(server, client, dport, sport, s + 1, c2, RST | ACK))
                expected["reset"] += 1
                continue
            if r < 0.04:  # never answered; the client gives up and both close
                emit(tcp(server, client, dport, sport, s + 1, c2, ACK))
                emit(tcp(client, server, sport, dport, c2, s + 1, FIN | ACK))
                emit(tcp(server, client, dport, sport, s + 1, c2 + 1, FIN | ACK))
                emit(tcp(client, server, sport, dport, c2 + 1, s + 2, ACK))
                expected["unanswered"] += 1
                continue
            status = "503 Service Unavailable" if r < 0.06 else "200 OK"
            body = b'{"id": %d, "name": "item", "price": 12.5, "pad": "%s"}' % (i, b"x" * a.body_padding) \
                if a.body_padding else b'{"id": %d, "name": "item", "price": 12.5}' % i
            resp = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            emit(tcp(server, client, dport, sport, s + 1, c2, PSH | ACK, resp))
            s2 = s + 1 + len(resp)
            emit(tcp(client, server, sport, dport, c2, s2, ACK))
            emit(tcp(client, server, sport, dport, c2, s2, FIN | ACK))
            emit(tcp(server, client, dport, sport, s2, c2 + 1, FIN | ACK))
            emit(tcp(client, server, sport, dport, c2 + 1, s2 + 1, ACK))
            expected["http"] += 1
            expected["http5xx"] += status.startswith("503")
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
