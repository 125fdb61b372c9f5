"""make bench, the backend lines: each real capture of core/tests/fixtures/backends (Redis, PostgreSQL,
MySQL, AMQP, Kafka, from the kernel test's real servers) replayed as many distinct connections (the client's address
and port rewritten, times shifted) into one capture per protocol of about --megabytes, then analysed by the
release analyzer on one thread, best of --runs: MB/s of that protocol's traffic, and the entries found
(which must be the replicas' times the fixture's own)."""

import argparse
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "core" / "tests" / "fixtures" / "backends"
AGENT = REPO / "target" / "release" / "faultline-agent"


def records(path):
    data = path.read_bytes()
    header, at, out = data[:24], 24, []
    while at + 16 <= len(data):
        sec, usec, caplen, length = struct.unpack_from("<IIII", data, at)
        out.append((sec * 1_000_000 + usec, data[at + 16:at + 16 + caplen], length))
        at += 16 + caplen
    return header, out


def replica(frame, k, server_ports):
    """The frame with its client (the side not on a server port) moved to 10.<k>.x.x."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return frame
    f = bytearray(frame)
    ihl = (f[14] & 15) * 4
    sport, dport = struct.unpack_from(">HH", f, 14 + ihl)
    client_is_src = dport in server_ports
    addr = 14 + (12 if client_is_src else 16)
    f[addr:addr + 4] = bytes([10, (k >> 16) & 255, (k >> 8) & 255, k & 255])
    return bytes(f)


def build(name, ports, megabytes, out):
    header, recs = records(FIXTURES / f"{name}.pcap")
    size = sum(len(f) for _, f, _ in recs)
    span = recs[-1][0] - recs[0][0] + 1000
    copies = max(1, megabytes * 1_000_000 // size)
    with open(out, "wb") as w:
        w.write(header)
        for k in range(copies):
            for ts, frame, length in recs:
                t = ts + k * span
                data = replica(frame, k + 1, ports)
                w.write(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(data), length) + data)
    return copies, copies * size


def entries(pcap):
    r = subprocess.run([str(AGENT), "analyze", "--output", "jsonl", "--threads", "1", str(pcap)],
                       capture_output=True, text=True, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--megabytes", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    out_dir = REPO / "target" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    one = {n: entries(FIXTURES / f"{n}.pcap") for n in ("redis", "postgresql", "mysql", "amqp", "kafka")}
    for name, ports in [("redis", (6379, 6380, 6381)), ("postgresql", (5432,)), ("mysql", (3306,)), ("amqp", (5672,)),
                        ("kafka", (9092, 9094))]:
        cap = out_dir / f"{name}.pcap"
        copies, size = build(name, ports, a.megabytes, cap)
        best = None
        for _ in range(a.runs):
            start = time.perf_counter()
            subprocess.run([str(AGENT), "analyze", "--output", "jsonl", "--threads", "1", str(cap)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            took = time.perf_counter() - start
            best = took if best is None else min(best, took)
        found = entries(cap)
        errors = sum(1 for e in found if e.get("error"))
        want = copies * sum(1 for e in one[name] if e.get("error"))
        print(f"{name:<11} {size / 1e6:7.1f} MB {copies:5d} replicas  {best:6.2f} s  {size / 1e6 / best:7.1f} MB/s  "
              f"{len(found)} entries, {errors} errors (expected {want})")
        if errors != want:
            sys.exit(f"{name}: {errors} errors, expected {want}")


if __name__ == "__main__":
    main()
