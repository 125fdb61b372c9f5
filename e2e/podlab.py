"""Pods without a kubelet: each "pod" is a network namespace with one veth, whose host end is plugged into
a bridge in the root namespace (as a CNI would), so an agent process on the host can capture a pod's
traffic on its veth. Addresses are from a documentation range; nothing leaves the bridge."""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent" / "tests" / "kernel"))

from netlab import start_server  # noqa: E402

TRAFFIC = str(Path(__file__).resolve().parents[1] / "agent" / "tests" / "kernel" / "traffic.py")


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class PodLab:
    def __init__(self):
        self.tag = f"{os.getpid() % 10000}"
        self.bridge = f"flbr{self.tag}"
        self.pods = {}  # name -> (netns, host veth, ip)
        self.procs = []

    def __enter__(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("sysctl", "-qw", f"net.ipv6.conf.{self.bridge}.disable_ipv6=1")
        sh("ip", "link", "set", self.bridge, "up")
        return self

    def add_pod(self, name, ip):
        ns, host = f"flpod{self.tag}{name}", f"flv{self.tag}{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
        for cmd in (["sysctl", "-qw", f"net.ipv6.conf.{host}.disable_ipv6=1"],
                    ["ip", "link", "set", host, "master", self.bridge],
                    ["ip", "link", "set", host, "up"]):
            sh(*cmd)
        for cmd in (["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], ["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"]):
            sh("ip", "netns", "exec", ns, *cmd)
        self.pods[name] = (ns, host, ip)
        return host

    def traffic(self, pod, *args):
        ns = self.pods[pod][0]
        return sh("ip", "netns", "exec", ns, sys.executable, TRAFFIC, *args, check=False).stdout

    def server(self, pod, *args):
        p = start_server(self.pods[pod][0], *args)
        self.procs.append(p)
        return p

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns, host, _ in self.pods.values():
            subprocess.run(["ip", "link", "del", host], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
