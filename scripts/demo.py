#!/usr/bin/env python3
"""`make demo`: the whole system on this machine, for real. A one-node Kubernetes cluster (kubelet,
containerd, a bridge CNI, kube-proxy, CoreDNS; e2e/node.py), Faultline installed by `helm install` with its
defaults (the operator and the agents run as pods), and workloads — real pods of the toolbox image — that
make every kind of error Faultline detects. At the end: `kubectl get pods -A`, `kubectl get tapconfigs`,
`kubectl get errorviews`, the Events in `kubectl describe pod`, the dashboard (through `kubectl
port-forward`) and a pcap of one error's flow for Wireshark. The node is torn down afterwards (left up with
FAULTLINE_DEMO_KEEP=1); the pcap stays. Needs root."""

import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

from cluster import ADMIN_TOKEN  # noqa: E402
from node import NAMESPACE, Node  # noqa: E402

OUT = Path(os.environ.get("FAULTLINE_DEMO_DIR", "/tmp/faultline-demo"))
TOOLBOX = "ghcr.io/faultline-dev/faultline-toolbox:0.1.0"
DASHBOARD = "response.status > 400 or error or icmp or tcp"
# ICMP messages the dashboard lists that are not errors: the pods' router solicitations, and advertisements.
INFORMATIONAL = {"icmp/RouterSolicitation", "icmp/RouterAdvertisement"}


def say(text):
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def step(text):
    print(f"   - {text}", flush=True)


def show(node, *args):
    say("$ kubectl " + " ".join(args))
    print(node.kubectl(*args).stdout.rstrip())


def pod(name, command, labels=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop", "labels": labels or {}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": TOOLBOX, "imagePullPolicy": "IfNotPresent",
                                     "command": command}]}}


def workloads(node):
    items = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        pod("web", ["faultline-toolbox", "http-server", "8080"], {"app": "web"}),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        pod("db", ["sh", "-c", "faultline-toolbox hold-server 5432 & exec faultline-toolbox close-server 5433"],
            {"app": "db"}),
        pod("client", ["sleep", "3600"]),
        {"apiVersion": "faultline.dev/v1alpha1", "kind": "ErrorView", "metadata": {"name": "errors", "namespace": "shop"},
         "spec": {"query": DASHBOARD, "publishEvents": True, "samples": 20}},
    ]
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    node.kubectl("-n", "shop", "wait", "--for=condition=Ready", "pod/web", "pod/db", "pod/client", "--timeout=120s")
    return {p: node.kubectl_json("-n", "shop", "get", "pod", p)["status"]["podIP"] for p in ("web", "db", "client")}


def trouble(node, ip):
    """Makes every kind of error, once or a known number of times; returns how many entries it made."""
    made = 0

    def expect(n):
        nonlocal made
        made += n

    def client(*args):
        return node.kubectl("-n", "shop", "exec", "client", "--", "faultline-toolbox", *args, check=False).stdout.strip()

    def firewall(action, *rule):
        subprocess.run(["iptables", action, "FORWARD", *rule], check=True)

    web, db, me = ip["web"], ip["db"], ip["client"]
    step("healthy: GETs through the Service web.shop (kube-proxy's DNAT), answered 200")
    client("http-get", "http://web.shop.svc.cluster.local/", "--count", "3")
    step("HTTP 503 and 502, through the Service: one connection each, named by the pod and the Service")
    client("http-get", "http://web.shop.svc.cluster.local/status/503", "--count", "2")
    client("http-get", "http://web.shop.svc.cluster.local/status/502")
    expect(3)
    step("TCP SynSent/refused: a port nobody listens on")
    client("connect", f"{web}:9999")
    expect(1)
    step("TCP SynSent/timeout: the node's firewall drops the SYN")
    drop = ["-d", db, "-p", "tcp", "--dport", "7777", "-j", "DROP"]
    firewall("-I", *drop)
    client("connect", f"{db}:7777")
    expect(1)
    firewall("-D", *drop)
    step("ICMP DestinationUnreachable/CommunicationAdministrativelyProhibited: the node's firewall rejects")
    reject = ["-d", db, "-p", "tcp", "--dport", "7778", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]
    firewall("-I", *reject)
    client("connect", f"{db}:7778")
    expect(2)  # the ICMP message, and the attempt it refused
    firewall("-D", *reject)
    step("ICMP DestinationUnreachable/Port: UDP to a closed port")
    client("udp", f"{db}:53")
    expect(1)
    step("TCP Reset and a half connection: the server resets instead of answering")
    client("http-get", f"http://{web}:8080/reset")
    expect(2)  # the connection's fate, and the request's
    step("a request never answered, an answer that is not HTTP, a response cut short")
    client("connect", f"{web}:8080", "--send", "GET /hang HTTP/1.1\\r\\n\\r\\n", "--wait", "4")
    client("connect", f"{web}:8080", "--send", "GET /garbage HTTP/1.1\\r\\n\\r\\n", "--wait", "0.5")
    client("connect", f"{web}:8080", "--send", "GET /short HTTP/1.1\\r\\n\\r\\n", "--wait", "0.5")
    # The hung server never answers (a half connection) and never closes after the client gives up (its
    # CLOSE_WAIT); the other two break HTTP.
    expect(4)
    step("TCP CloseWait: db never closes after the client's FIN")
    client("connect", f"{db}:5432", "--sport", "41006")
    expect(1)
    step("TCP LastAck: a firewall in the client pod drops its last ACK; db retransmits its FIN")
    # Every bare ACK from the client's port but the first (the handshake's), before it leaves the pod.
    acks = ["-p", "tcp", "--sport", "41007", "--tcp-flags", "ALL", "ACK"]
    first = [*acks, "-m", "statistic", "--mode", "nth", "--every", "1000000", "--packet", "0", "-j", "ACCEPT"]
    netns = pod_netns(me)
    in_pod = ["ip", "netns", "exec", netns, "iptables"]
    subprocess.run([*in_pod, "-I", "OUTPUT", *acks, "-j", "DROP"], check=True)
    subprocess.run([*in_pod, "-I", "OUTPUT", *first], check=True)
    client("connect", f"{db}:5433", "--sport", "41007", "--wait", "0.3")
    time.sleep(4)
    subprocess.run([*in_pod, "-F", "OUTPUT"], check=True)
    expect(1)
    step("Why (SPEC §3.7): a NetworkPolicy admits only app=frontend into db; kube-router, the node's enforcer, "
         "rejects the client — the error names the policy")
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "db-frontend-only", "namespace": "shop"},
              "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]}}
    node.kubectl("apply", "-f", "-", input=json.dumps(policy))
    time.sleep(3)
    client("connect", f"{db}:5432", "--wait", "1")
    # kube-router rejects with an ICMP error from the node: its own entry beside the client's SynSent.
    expect(2)
    step("Why: a name in a namespace that does not exist (web.shopp): ServiceNotFound names shop")
    client("dns", "web.shopp.svc.cluster.local")
    expect(1)
    return made


def pod_netns(ip):
    """The network namespace (under /run/netns, made by the CNI) of the pod with this address."""
    for name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
        if not name.startswith("cni-"):
            continue
        addrs = subprocess.run(["ip", "netns", "exec", name, "ip", "-4", "-o", "addr"], capture_output=True,
                               text=True).stdout
        if f" {ip}/" in addrs:
            return name
    raise RuntimeError(f"no network namespace holds {ip}")


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root: it runs a kubelet and containerd")
    OUT.mkdir(parents=True, exist_ok=True)
    say("A one-node cluster (kubelet, containerd, CNI, kube-proxy, CoreDNS) and `helm install` of the chart")
    node = Node(OUT / "node")
    node.up(chart=True)
    try:
        show(node, "get", "pods", "-A", "-o", "wide")
        say("Shorter timeouts for the demo, and a pcap of every error's flow (recorder: errors)")
        node.kubectl("patch", "tapconfig", "default", "--type=merge", "-p", json.dumps({"spec": {
            "timeouts": {"synTimeoutMs": 1000, "closeTimeoutMs": 2000, "pairTimeoutMs": 3000},
            "recorder": {"mode": "errors"}}}))
        node.kubectl("-n", NAMESPACE, "rollout", "status", "daemonset/faultline-agent-default", "--timeout=120s")
        show(node, "get", "tapconfigs")
        say("Workloads: shop/web (HTTP), shop/db (a server that never closes, one that closes last), shop/client")
        ips = workloads(node)
        time.sleep(2)
        say("Making trouble")
        made = trouble(node, ips)
        say("Waiting for the timeouts (SYN 1 s, close 2 s, pair 3 s) and the summaries")
        time.sleep(10)
        show(node, "get", "errorviews", "-n", "shop")
        st = node.kubectl_json("-n", "shop", "get", "errorview", "errors").get("status", {})
        say("Counts by kind and by cause (kubectl get errorview errors -n shop -o yaml)")
        for kind, n in sorted(st.get("countsByKind", {}).items()):
            print(f"   {n:3}  {kind}")
        for cause, n in sorted(st.get("countsByCause", {}).items()):
            print(f"   {n:3}  because {cause}")
        for name in ("web", "db"):
            described = node.kubectl("-n", "shop", "describe", "pod", name).stdout
            say(f"$ kubectl describe pod {name} -n shop   (its Events; a cause leads the message)")
            print(described[described.find("Events:"):].rstrip())
        show(node, "get", "tapconfig", "default", "-o", "jsonpath={range .status.nodes[*]}{.node}: {.received} "
                                                        "packets, {.dropped} dropped{\"\\n\"}{end}")
        listing = node.dashboard("/api/entries?q=" + urllib.parse.quote(DASHBOARD) + "&limit=1000")
        say(f"The error dashboard lists {listing['total']} entries: {listing['counts']}")
        errors = [e for e in listing["entries"] if e["kind"] not in INFORMATIONAL]
        ours = [e for e in errors if "shop" in (e["src"].get("namespace"), e["dst"].get("namespace"))]
        others = [e for e in errors if e not in ours]
        print(f"   {made} errors made, {len(ours)} reported, {len(others)} others"
              f" (and {len(listing['entries']) - len(errors)} router solicitations and advertisements, once each)")
        for e in others:
            print(f"   other: {e['kind']}: {e['summary']}")
        for e in ours:
            if e.get("cause"):
                print(f"   because: {e['kind']}: {e['cause']['reason']}: {e['cause']['message']}")
        print(f"   kubectl -n {NAMESPACE} port-forward svc/faultline-operator 8080   # then open:")
        print(f"   https://127.0.0.1:8080/?q={urllib.parse.quote(DASHBOARD)}#token={ADMIN_TOKEN}")
        print(f"   (already forwarded for this demo: https://127.0.0.1:{node._forward[1]}/?q="
              f"{urllib.parse.quote(DASHBOARD)}#token={ADMIN_TOKEN})")
        error_map = node.dashboard("/api/map?q=" + urllib.parse.quote(DASHBOARD))
        say(f"The error map: {len(error_map['edges'])} failing pairs, "
            f"{sum(len(n['nodes']) for n in error_map['namespaces'])} workloads")
        for e in error_map["edges"]:
            print(f"   {e['source']} -> {e['destination']}: {e['count']} ({e['topKind']}"
                  + (f", {e['cause']}" if e.get("cause") else "") + ")")
        print(f"   https://127.0.0.1:{node._forward[1]}/?q={urllib.parse.quote(DASHBOARD)}&view=map#token={ADMIN_TOKEN}")
        say("Ask from an AI assistant (MCP): point it at the operator's /mcp with a token, over HTTP:")
        print(f'   {{"mcpServers": {{"faultline": {{"type": "http", "url": "https://127.0.0.1:{node._forward[1]}/mcp",'
              f' "headers": {{"Authorization": "Bearer {ADMIN_TOKEN}"}}}}}}}}')
        print("   or as a stdio server it starts itself (the CA of the operator's certificate is in the Secret"
              f" {NAMESPACE}/faultline-operator-tls):")
        print(f"   FAULTLINE_TOKEN={ADMIN_TOKEN} faultline-agent mcp --url https://127.0.0.1:{node._forward[1]}/mcp"
              " --ca-file ca.crt")
        pcap = save_pcap(node, listing)
        hold = int(os.environ.get("FAULTLINE_DEMO_HOLD", "0"))
        if sys.stdin.isatty():
            input("   (the system stays up until you press Enter)")
        elif hold:
            print(f"   (up for {hold} s: FAULTLINE_DEMO_HOLD)")
            time.sleep(hold)
    finally:
        if os.environ.get("FAULTLINE_DEMO_KEEP") == "1":
            print(f"\n   the node stays up: export KUBECONFIG={node.kubeconfig}; `make node-down` ends it")
        else:
            node.down()
    if pcap:
        say(f"One error's flow is in {pcap} — open it in Wireshark, or:")
        print(f"   faultline-agent analyze {pcap}\n")


def save_pcap(node, listing):
    """The recording of the first TCP error listed, fetched from the operator as a user would."""
    for e in listing["entries"]:
        if e.get("pcap") and e.get("tcp"):
            data = node.dashboard_bytes(e["pcap"])
            path = OUT / f"{e['tcp']['state']}-{e['id']}.pcap"
            path.write_bytes(data)
            return path
    return None


if __name__ == "__main__":
    main()
