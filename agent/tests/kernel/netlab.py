"""A three-host lab in network namespaces: client — router — server, over veth pairs, IPv4 and IPv6.
The kernel in each namespace is the real thing: its TCP answers SYNs, its netfilter REJECTs, its router
sends Time Exceeded and Fragmentation Needed. Traffic never leaves the namespaces made here; addresses are
from the documentation ranges (RFC 5737, RFC 3849)."""

import itertools
import json
import os
import shutil
import socket
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAFFIC = str(HERE / "traffic.py")
REPO = HERE.parents[2]

CLIENT4, ROUTER4_C, ROUTER4_S, SERVER4 = "198.51.100.2", "198.51.100.1", "203.0.113.1", "203.0.113.2"
CLIENT6, ROUTER6_C, ROUTER6_S, SERVER6 = "2001:db8:1::2", "2001:db8:1::1", "2001:db8:2::1", "2001:db8:2::2"

_ids = itertools.count()


def sh(*cmd, check=True, capture=False):
    return subprocess.run(cmd, check=check, text=True, capture_output=capture)


def analyzer_binary():
    path = os.environ.get("FAULTLINE_AGENT") or str(REPO / "target" / "debug" / "faultline-agent")
    if not Path(path).exists():
        raise RuntimeError(f"{path} not found: build it first (make build) or set FAULTLINE_AGENT")
    return path


class Lab:
    """Namespaces `<prefix>-c`, `-r`, `-s`. Interfaces: c0 (client), r0/r1 (router), s0 (server)."""

    def __init__(self, server_side_mtu=1500):
        self.prefix = f"fl{os.getpid() % 10000}x{next(_ids)}"
        self.c, self.r, self.s = (f"{self.prefix}-{n}" for n in "crs")
        # IPv6 needs links of at least 1280 bytes: below that, the IPv4 route to the server gets the small
        # MTU instead of the link (the router honours a route MTU when it forwards).
        self.link_mtu = max(server_side_mtu, 1280)
        self.route_mtu = server_side_mtu if server_side_mtu < 1280 else None
        self.procs = []

    def __enter__(self):
        try:
            self._setup()
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _setup(self):
        # The servers' names resolve without a network: `ip netns exec` mounts /etc/netns/<ns>/* over /etc.
        # Servers look up the machine's name as they start (Kafka's JVM, RabbitMQ's Erlang node); through
        # the machine's resolvers, unreachable from here, each lookup waits for a timeout (5 s per resolver
        # and try): CI once saw a Kafka broker not listening after a minute.
        names = Path("/etc/netns") / self.s
        names.mkdir(parents=True, exist_ok=True)
        (names / "hosts").write_text(f"127.0.0.1 localhost {socket.gethostname()}\n::1 localhost\n")
        (names / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        for ns in (self.c, self.r, self.s):
            sh("ip", "netns", "add", ns)
            self.ns(ns, "ip", "link", "set", "lo", "up")
        for ns in (self.c, self.r, self.s):
            # No duplicate address detection (addresses are usable at once), no ICMP rate limits (every
            # REJECT answers), no router solicitations (ICMPv6 entries of their own that would land in
            # the middle of a test's capture), forwarding on the router.
            for key, val in (("net.ipv6.conf.all.accept_dad", "0"), ("net.ipv6.conf.default.accept_dad", "0"),
                             ("net.ipv4.icmp_ratelimit", "0"), ("net.ipv6.icmp.ratelimit", "0"),
                             ("net.ipv6.conf.default.router_solicitations", "0"),
                             ("net.ipv6.conf.all.router_solicitations", "0")):
                self.ns(ns, "sysctl", "-qw", f"{key}={val}")
        # Interfaces are made after the sysctls so that they inherit the defaults.
        sh("ip", "link", "add", "c0", "netns", self.c, "type", "veth", "peer", "name", "r0", "netns", self.r)
        sh("ip", "link", "add", "r1", "netns", self.r, "type", "veth", "peer", "name", "s0", "netns", self.s)
        self.ns(self.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ns(self.r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        plan = [
            (self.c, "c0", [f"{CLIENT4}/24", f"{CLIENT6}/64"], 1500),
            (self.r, "r0", [f"{ROUTER4_C}/24", f"{ROUTER6_C}/64"], 1500),
            (self.r, "r1", [f"{ROUTER4_S}/24", f"{ROUTER6_S}/64"], self.link_mtu),
            (self.s, "s0", [f"{SERVER4}/24", f"{SERVER6}/64"], self.link_mtu),
        ]
        for ns, dev, addrs, mtu in plan:
            for a in addrs:
                extra = ["nodad"] if ":" in a else []
                self.ns(ns, "ip", "addr", "add", a, "dev", dev, *extra)
            self.ns(ns, "ip", "link", "set", dev, "mtu", str(mtu), "up")
        if self.route_mtu:
            self.ns(self.r, "ip", "route", "replace", "203.0.113.0/24", "dev", "r1", "src", ROUTER4_S,
                    "mtu", str(self.route_mtu))
        self.ns(self.c, "ip", "route", "add", "default", "via", ROUTER4_C)
        self.ns(self.c, "ip", "-6", "route", "add", "default", "via", ROUTER6_C)
        self.ns(self.s, "ip", "route", "add", "default", "via", ROUTER4_S)
        self.ns(self.s, "ip", "-6", "route", "add", "default", "via", ROUTER6_S)
        # Neighbour discovery done up front, so it is not in the middle of the captured traffic.
        self.ns(self.c, "ping", "-c1", "-W2", SERVER4, capture=True)
        self.ns(self.c, "ping", "-6", "-c1", "-W2", SERVER6, capture=True)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if hasattr(p, "log"):  # what a server printed, kept until the lab goes
                os.unlink(p.log)
        for ns in (self.c, self.r, self.s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / self.s, ignore_errors=True)

    def ns(self, ns, *cmd, check=True, capture=False):
        return sh("ip", "netns", "exec", ns, *cmd, check=check, capture=capture)

    def traffic(self, ns, *args, check=False):
        """Runs a traffic.py command to completion in `ns`; returns its stdout."""
        r = self.ns(ns, sys.executable, TRAFFIC, *args, check=check, capture=True)
        return r.stdout

    def server(self, *args):
        """Starts a traffic.py server in the server namespace and waits until it listens."""
        p = start_server(self.s, *args)
        self.procs.append(p)
        return p

    def serve(self, *cmd, user=None):
        """Starts any server in the server namespace (as `user`, if given); what it prints is kept, for
        `wait_listening` to show when it never listens."""
        argv = ["ip", "netns", "exec", self.s, *(["runuser", "-u", user, "--"] if user else []), *cmd]
        log = tempfile.NamedTemporaryFile(prefix="served-", suffix=".log", delete=False)
        with log:  # the server writes to its own copy of the descriptor
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        p.log = log.name
        self.procs.append(p)
        return p

    def wait_listening(self, port, tries=300):
        """Returns once a TCP socket listens on `port` in the server namespace (checked every 0.1 s)."""
        for _ in range(tries):
            r = subprocess.run(["ip", "netns", "exec", self.s, "ss", "-ltnH", f"sport = :{port}"],
                               capture_output=True, text=True)
            if r.stdout.strip():
                return
            time.sleep(0.1)
        raise AssertionError(f"nothing listens on {port} after {tries / 10:.0f} s; the servers: {self.served()}")

    def served(self):
        """Each server `serve` started: still running or its exit status, and the last lines it printed."""
        out = []
        for p in self.procs:
            if hasattr(p, "log"):
                tail = Path(p.log).read_text(errors="replace").splitlines()[-15:]
                state = "running" if p.poll() is None else f"exited {p.returncode}"
                out.append(f"\n{' '.join(map(str, p.args[4:]))} ({state}):\n  " + "\n  ".join(tail))
        return "".join(out)

    @contextmanager
    def capture(self, path, where="client", bpf=None, also=()):
        """tcpdump on the client's (or server's) interface for the duration of the block; `bpf` filters
        what is written, `also` = [(path, bpf)] are further captures of the same interface at once."""
        ns, dev = (self.c, "c0") if where == "client" else (self.s, "s0")
        procs, dropped = [], []
        for out, flt in [(path, bpf), *also]:
            # `-B`: in immediate mode libpcap gives each ring slot the whole snapshot length (256 KiB on a
            # veth with offloads), so its default 2 MiB ring holds 8 packets and a burst of connections on
            # a loaded machine loses packets the test then misses. 64 MiB holds 256.
            p = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", dev, "-U", "-w", str(out),
                                  "--immediate-mode", "-s", "0", "-B", "65536", *([flt] if flt else [])],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            line = p.stderr.readline()
            if "listening" not in line:
                p.kill()
                raise RuntimeError(f"tcpdump did not start: {line}")
            procs.append(p)
        try:
            yield
        finally:
            time.sleep(0.3)
            for p in procs:
                p.send_signal(signal.SIGINT)
                _, err = p.communicate(timeout=10)
                dropped += [line for line in err.splitlines() if "dropped by kernel" in line and not line.startswith("0 ")]
        # A capture that lost packets cannot be the ground truth of a test: say so, not a wrong count.
        if dropped:
            raise RuntimeError(f"the test's own capture lost packets: {dropped}")

    def iptables(self, v6, *rule):
        self.ns(self.r, "ip6tables" if v6 else "iptables", *rule)


def start_server(ns, *args):
    """Starts a traffic.py server in network namespace `ns` and returns once it listens."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, TRAFFIC, *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "listening" not in line:
        raise RuntimeError(f"server did not start: {line!r} {p.stderr.read() if p.poll() is not None else ''}")
    return p


def analyze(pcap, *flags, summary=None):
    """Runs `faultline-agent analyze --output jsonl` and returns the entries; `summary` (a dict), if given,
    receives the closing summary's counts by name (e.g. "missed bytes", "duplicate packets").

    Unless the caller chose `--threads`, every capture is analysed by one engine and by four shards, which
    must print the same entries, in the same order, and the same summary (issue 18: every test capture)."""
    pcaps = pcap if isinstance(pcap, (list, tuple)) else [pcap]

    def run(*extra):
        r = subprocess.run([analyzer_binary(), "analyze", "--output", "jsonl", *extra, *flags, *map(str, pcaps)],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise AssertionError(f"analyze failed ({r.returncode}): {r.stderr}")
        return r

    r = run() if "--threads" in flags else run("--threads", "1")
    if "--threads" not in flags:
        sharded = run("--threads", "4")
        assert sharded.stdout == r.stdout, f"4 shards found otherwise than one engine:\n{r.stdout}\n---\n{sharded.stdout}"
        assert sharded.stderr == r.stderr, f"4 shards counted otherwise:\n{r.stderr}\n---\n{sharded.stderr}"
    if summary is not None:
        import re
        for n, name in re.findall(r"(\d+) ([a-zA-Z][a-zA-Z -]*?)(?=[,()]|$)", r.stderr, re.M):
            summary[name.strip()] = int(n)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def tshark_fields(pcap, display_filter, *fields, decode_as=(), prefs=()):
    args = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for d in decode_as:
        args += ["-d", d]
    for p in prefs:
        args += ["-o", p]
    for f in fields:
        args += ["-e", f]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    return [tuple(line.split("\t")) for line in r.stdout.splitlines() if line.strip()]
