#!/usr/bin/env python3
"""`make demo`: the whole system on one machine. A real kube-apiserver and etcd, the operator (with its own
ServiceAccount's token), a TapConfig whose agents run as processes on two simulated nodes, pods made of
network namespaces, and a traffic generator that makes every kind of error Faultline detects. At the end:
`kubectl get errorviews`, the Events on the pods, the per-node capture statistics, the dashboard's URL, and a
pcap of it all to open in Wireshark. Everything is cleaned up afterwards but the pcap. Needs root (network namespaces)."""

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

from cluster import ADMIN_TOKEN, Cluster  # noqa: E402
from podlab import PodLab  # noqa: E402
from processes import NAMESPACE, Agent, Operator  # noqa: E402

OUT = Path(os.environ.get("FAULTLINE_DEMO_DIR", "/tmp/faultline-demo"))
PODS = {  # key: (namespace, pod, node, ip)
    "web": ("shop", "web", "node-a", "198.51.100.10"),
    "api": ("shop", "api", "node-b", "198.51.100.11"),
    "db": ("shop", "db", "node-b", "198.51.100.12"),
}
DASHBOARD = "response.status > 400 or error or icmp or tcp"
REQ = "GET /api/orders HTTP/1.1\\r\\nHost: api\\r\\n\\r\\n"


def say(text):
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def step(text):
    print(f"   - {text}", flush=True)


def traffic(lab):
    api, db = PODS["api"][3], PODS["db"][3]
    t = lab.traffic
    step("healthy: web GETs from api (200, 404)")
    srv = lab.server("api", "http-server", "8080")
    t("web", "http-get", api, "8080", "--sport", "41000", "GET /", "GET /missing")
    srv.kill()
    step("TCP SynSent/refused: web connects to a port nobody listens on")
    t("web", "connect", api, "81", "--sport", "41001")
    step("TCP SynSent/timeout: db's firewall drops the SYN")
    lab_ns_iptables(lab, "db", "-A", "INPUT", "-p", "tcp", "--dport", "5433", "-j", "DROP")
    t("web", "connect", db, "5433", "--sport", "41002", "--timeout", "1.5")
    step("ICMP DestinationUnreachable/CommunicationAdministrativelyProhibited: db's firewall rejects")
    lab_ns_iptables(lab, "db", "-A", "INPUT", "-p", "tcp", "--dport", "5434", "-j", "REJECT",
                    "--reject-with", "icmp-admin-prohibited")
    t("web", "connect", db, "5434", "--sport", "41003")
    step("ICMP DestinationUnreachable/Port: UDP to a closed port")
    t("web", "udp", db, "53", "--sport", "41004")
    step("TCP Reset: web aborts a connection with SO_LINGER 0")
    srv = lab.server("api", "serve", "8081", "read-then-hold", "--hold", "1")
    t("web", "connect", api, "8081", "--sport", "41005", "--send", "hi", "--close", "rst")
    srv.wait()
    step("HTTP 503, a request never answered, an answer that is not HTTP, a response cut short")
    for i, mode in enumerate(("error", "silent", "garbage", "short")):
        srv = lab.server("api", "serve", str(8090 + i), mode)
        t("web", "connect", api, str(8090 + i), "--sport", str(41010 + i), "--send", REQ, "--wait", "0.5")
        srv.wait()
    step("TCP CloseWait: api never closes after web's FIN")
    lab.server("api", "serve", "8085", "hold", "--hold", "60")
    t("web", "connect", api, "8085", "--sport", "41006", "--linger-after", "0")
    step("TCP LastAck: web's last ACK is lost (dropped on its way out)")
    drop_ack = f"ip netns exec {lab.pods['web'][0]} iptables -A OUTPUT -p tcp --sport 41007 -j DROP"
    lab.server("api", "serve", "8086", "close-after-eof", "--hold", "5", "--before-close", drop_ack)
    t("web", "connect", api, "8086", "--sport", "41007", "--linger-after", "0.5")


def lab_ns_iptables(lab, pod, *rule):
    subprocess.run(["ip", "netns", "exec", lab.pods[pod][0], "iptables", *rule], check=True)


def show_dashboard(port):
    """Prints the dashboard's URL and what it lists now; holds the system up while someone looks."""
    q = urllib.parse.quote(DASHBOARD)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/entries?q={q}",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        listing = json.load(r)
    say(f"The error dashboard lists {listing['total']} entries: {listing['counts']}")
    # The token rides in the fragment, which the browser never sends; the page keeps it and drops it from the URL.
    print(f"   http://127.0.0.1:{port}/?q={q}#token={ADMIN_TOKEN}")
    hold = int(os.environ.get("FAULTLINE_DEMO_HOLD", "0"))
    if sys.stdin.isatty():
        input("   (the system stays up until you press Enter)")
    elif hold:
        print(f"   (up for {hold} s: FAULTLINE_DEMO_HOLD)")
        time.sleep(hold)


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root: it builds network namespaces")
    OUT.mkdir(parents=True, exist_ok=True)
    pcap = OUT / "demo.pcap"
    say("Starting a control plane: etcd and kube-apiserver on 127.0.0.1")
    cluster = Cluster(OUT / "cluster").up()
    procs = []
    try:
        cluster.kubectl("apply", "-f", str(REPO / "crds" / "faultline.dev.yaml"), "-f",
                        str(REPO / "deploy" / "operator-rbac.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/tapconfigs.faultline.dev",
                        "crd/errorviews.faultline.dev", "--timeout=60s")
        say("Starting faultline-operator with its ServiceAccount's token")
        op_kc = cluster.service_account_kubeconfig(NAMESPACE, "faultline-operator", OUT / "operator.kubeconfig")
        operator = Operator(op_kc, OUT / "operator.log", "demo")
        procs.append(operator)
        operator.wait_ready()
        with PodLab() as lab:
            say("Pods: shop/web on node-a, shop/api and shop/db on node-b (network namespaces)")
            cluster.kubectl("create", "namespace", "shop", check=False)
            veths = {}
            for key, (ns, name, node, ip) in PODS.items():
                veths[key] = lab.add_pod(key, ip)
                cluster.kubectl("apply", "-f", "-", input=json.dumps({
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                    "spec": {"nodeName": node, "containers": [{"name": "app", "image": "example/" + name}]}}))
                cluster.kubectl("-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
                                json.dumps({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}))
            say("kubectl apply: a TapConfig and an ErrorView")
            cluster.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "faultline.dev/v1alpha1", "kind": "TapConfig", "metadata": {"name": "default"},
                "spec": {"timeouts": {"synTimeoutMs": 1000, "closeTimeoutMs": 2000}}}))
            cluster.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "faultline.dev/v1alpha1", "kind": "ErrorView",
                "metadata": {"name": "errors", "namespace": "shop"},
                "spec": {"query": DASHBOARD, "publishEvents": True}}))
            deadline = time.time() + 30
            while cluster.kubectl("-n", NAMESPACE, "get", "sa", "faultline-agent-default", check=False).returncode:
                if time.time() > deadline:
                    sys.exit("the operator did not create the agents' ServiceAccount")
                time.sleep(0.5)
            token = OUT / "agent.token"
            token.write_text(cluster.kubectl("create", "token", "faultline-agent-default", "-n", NAMESPACE).stdout)
            agent_kc = cluster.service_account_kubeconfig(NAMESPACE, "faultline-agent-default",
                                                          OUT / "agent.kubeconfig")
            say("Starting one agent per node (what the DaemonSet would run), and tcpdump for Wireshark")
            procs.append(Agent("node-a", [veths["web"]], operator.port, token, agent_kc, OUT / "agent-node-a.log"))
            procs.append(Agent("node-b", [veths["api"], veths["db"]], operator.port, token, agent_kc,
                               OUT / "agent-node-b.log"))
            dump = subprocess.Popen(["tcpdump", "-i", lab.bridge, "-U", "-w", str(pcap)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            dump.stderr.readline()
            time.sleep(2)
            say("Making trouble")
            traffic(lab)
            say("Waiting for the timeouts (SYN 1 s, close 2 s) and for the summaries (every 2 s)")
            time.sleep(8)
            dump.terminate()
            dump.wait()
            say("$ kubectl get errorviews -n shop")
            print(cluster.kubectl("get", "errorviews", "-n", "shop").stdout)
            st = cluster.kubectl_json("-n", "shop", "get", "errorview", "errors").get("status", {})
            say("Counts by kind (kubectl get errorview errors -n shop -o yaml)")
            for kind, n in sorted(st.get("countsByKind", {}).items()):
                print(f"   {n:3}  {kind}")
            say("$ kubectl get events -n shop")
            print(cluster.kubectl("get", "events", "-n", "shop", "--sort-by=.lastTimestamp").stdout)
            say("$ kubectl get tapconfigs (capture statistics per node are in its status)")
            print(cluster.kubectl("get", "tapconfigs").stdout)
            for n in cluster.kubectl_json("get", "tapconfig", "default").get("status", {}).get("nodes", []):
                print(f"   {n['node']}: {n['received']} packets, {n['dropped']} dropped, ratio {n['dropRatio']}")
            show_dashboard(operator.port)
    finally:
        for p in procs:
            p.stop()
        cluster.down()
    say(f"The traffic is in {pcap} — open it in Wireshark, or:")
    print(f"   faultline-agent analyze {pcap}\n")


if __name__ == "__main__":
    main()
