#!/usr/bin/env python3
"""Times faultline-agent analyze beside tcpdump (the cost of reading the file at all) and tshark's expert
analysis (a full dissection) on the same capture, in one run, and prints packets/s, ratios and peak RSS.
It also checks that the analyzer found every error the generator put in: a fast wrong answer is no
result. Best of `--runs` wall times; peak RSS from wait4."""

import argparse
import json
import os
import re
import subprocess
import sys
import time

TARGETS = {"tcpdump_ratio": 2.0, "tcpdump_ratio_2_threads": 1.2, "tshark_ratio": 20.0, "rss_mib": 64}


def run(argv):
    """Wall time and peak RSS (MiB) of one run. GNU time measures the RSS: a child forked from this Python
    process would start with Python's own RSS as its maximum."""
    start = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {r.stderr[-500:]}")
    return wall, int(r.stderr.strip().splitlines()[-1]) / 1024


def best(argv, runs):
    results = [run(argv) for _ in range(runs)]
    return min(w for w, _ in results), max(r for _, r in results)


def thread_cpu(analyzer, capture, threads, runs):
    """CPU milliseconds per thread (reader, engine or front, engine-k, writer), the mean of `runs` runs, as
    each thread logs it when it ends (from /proc/thread-self/schedstat)."""
    env = dict(os.environ, FAULTLINE_LOG="faultline_agent::thread_cpu=debug", NO_COLOR="1")
    totals = {}
    for _ in range(runs):
        r = subprocess.run([analyzer, "analyze", "--threads", str(threads), "--output", "jsonl", capture],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=True)
        text = re.sub(r"\x1b\[[0-9;]*m", "", r.stderr)
        for role, ms in re.findall(r'thread="([^"]+)" cpu_ms=([0-9.]+)', text):
            totals[role] = totals.get(role, 0.0) + float(ms) / runs
    return totals


def check_entries(analyzer, capture, expected):
    """The entries of one engine against the generator's counts; two engine threads must print exactly the
    same (entry for entry, ids included) and the same summary."""
    one = subprocess.run([analyzer, "analyze", "--threads", "1", "--output", "jsonl", capture], capture_output=True,
                         text=True, check=True)
    two = subprocess.run([analyzer, "analyze", "--threads", "2", "--output", "jsonl", capture], capture_output=True,
                         text=True, check=True)
    if (one.stdout, one.stderr) != (two.stdout, two.stderr):
        sys.exit("analyze --threads 2 printed otherwise than --threads 1")
    out = one.stdout
    got = {"http": 0, "http5xx": 0, "refused": 0, "reset": 0, "unanswered": 0, "icmp": 0}
    for line in out.splitlines():
        e = json.loads(line)
        tcp, err, resp = e.get("tcp"), e.get("error"), e.get("response")
        if tcp and tcp.get("reason") == "refused":
            got["refused"] += 1
        elif tcp and tcp["state"] == "Reset":
            got["reset"] += 1
        elif e.get("icmp"):
            got["icmp"] += 1
        elif err and err["msg"].startswith("missing response: server closed"):
            got["unanswered"] += 1
        elif resp and not err:
            got["http"] += 1
            got["http5xx"] += resp["status"] >= 500
    want = {k: v for k, v in expected.items() if k in got}
    if got != want:
        sys.exit(f"analyzer found {got}, the capture holds {want}")
    return got


def main():
    p = argparse.ArgumentParser()
    p.add_argument("capture")
    p.add_argument("--analyzer", default="target/release/faultline-agent")
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    expected = json.load(open(a.capture + ".expected.json"))
    packets = expected["packets"]
    print(f"capture: {a.capture}: {packets} packets, {os.path.getsize(a.capture) / 2**20:.0f} MiB")
    tools = [
        ("faultline-agent analyze, 1 thread", [a.analyzer, "analyze", "--threads", "1", "--output", "jsonl",
                                              a.capture]),
        ("faultline-agent analyze, 2 threads", [a.analyzer, "analyze", "--threads", "2", "--output", "jsonl",
                                               a.capture]),
        ("tcpdump -r FILE -w /dev/null", ["tcpdump", "-r", a.capture, "-w", "/dev/null"]),
        ("tshark -r FILE -q -z expert", ["tshark", "-r", a.capture, "-q", "-z", "expert"]),
    ]
    rows = {}
    print(f"\n{'tool':34} {'wall s':>8} {'packets/s':>12} {'peak RSS':>10}")
    for name, argv in tools:
        runs = 1 if "tshark" in name else a.runs
        wall, rss = best(argv, runs)
        rows[name] = (wall, rss)
        print(f"{name:34} {wall:8.3f} {packets / wall / 1e6:10.2f} M {rss:8.1f} MiB")
    ours, rss = rows[tools[0][0]]
    two, rss2 = rows[tools[1][0]]
    tcpdump, _ = rows[tools[2][0]]
    tshark, _ = rows[tools[3][0]]
    print()
    print(f"analyze / tcpdump wall time, 1 thread:  {ours / tcpdump:5.2f}x  (target at most {TARGETS['tcpdump_ratio']}x)")
    print(f"analyze / tcpdump wall time, 2 threads: {two / tcpdump:5.2f}x  "
          f"(target at most {TARGETS['tcpdump_ratio_2_threads']}x)")
    print(f"tshark / analyze wall time:  {tshark / min(ours, two):5.1f}x  (target at least {TARGETS['tshark_ratio']}x)")
    print(f"analyze peak RSS: 1 thread {rss:5.1f} MiB, 2 threads {rss2:5.1f} MiB "
          f"(target at most {TARGETS['rss_mib']} MiB)")
    print(f"\nentries found and checked against the generator: {check_entries(a.analyzer, a.capture, expected)}")
    # Where the time goes, thread by thread. The reader, the front and the writer are one thread each
    # whatever the shards: on a machine with cores to spare, the busiest of them bounds the wall time.
    print("\nCPU time per thread (ms, mean of the runs):")
    for threads in (1, 2, 4):
        cpu = thread_cpu(a.analyzer, a.capture, threads, a.runs)
        if not cpu:
            print("  (no thread logged its CPU time)")
            return
        print(f"  --threads {threads}: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items()))
              + f"; all {sum(cpu.values()):.0f}")
    # Shards (engine-k) and JSON formatters (format-k, from 4 engine threads on) divide their work.
    serial = {k: v for k, v in cpu.items() if not k.startswith(("engine-", "format-"))}
    bound = max(serial.values())
    print(f"  with enough cores, sharding's wall time is bounded below by its busiest single thread: "
          f"{max(serial, key=serial.get)} {bound:.0f} ms, i.e. at most {ours / (bound / 1e3):.1f}x the speed of "
          f"one engine thread")


if __name__ == "__main__":
    main()
