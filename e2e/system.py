"""The running system the pipeline and dashboard tests share: real packets between pod network namespaces,
captured by one agent process per simulated node, sent to an operator — against a real kube-apiserver, with
Pod objects whose podIP is patched in (there is no kubelet)."""

import contextlib
import json
import time

from processes import NAMESPACE, Agent, Operator, eventually, ingest_token
from podlab import PodLab


PODS = {"a": ("shop", "pod-a", "node-a", "198.51.100.10"),
        "b": ("shop", "pod-b", "node-b", "198.51.100.11"),
        "c": ("other", "pod-c", "node-b", "198.51.100.12"),
        "d": ("other", "pod-d", "node-a", "198.51.100.13")}
DASHBOARD = "response.status > 400 or error or icmp or tcp"


def apply(cluster, obj):
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def view_status(cluster, ns, name):
    return cluster.kubectl_json("-n", ns, "get", "errorview", name).get("status", {})


@contextlib.contextmanager
def running_system(cluster, operator_kubeconfig, logs, identity):
    """Pods a, b (namespace shop), c and d (other) on two nodes, one agent per node, an operator, a TapConfig
    and ErrorViews; yields the running parts. The ErrorViews go on exit, so that the next module's views
    start counting from zero."""
    for ns in ("shop", "other"):
        cluster.kubectl("create", "namespace", ns, check=False)
    with PodLab() as lab:
        veths = {}
        for key, (ns, name, node, ip) in PODS.items():
            veths[key] = lab.add_pod(key, ip)
            apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "example/app"}]}})
            cluster.kubectl("-n", ns, "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
                            json.dumps({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}))
        operator = Operator(operator_kubeconfig, logs / "operator.log", identity)
        operator.wait_ready()
        apply(cluster, {"apiVersion": "faultline.dev/v1alpha1", "kind": "TapConfig", "metadata": {"name": "default"},
                        # A node selector of its own: the other modules' TapConfigs must not overlap it.
                        "spec": {"packetLossThreshold": 0.5, "nodeSelector": {"faultline.dev/test": "system"}}})
        token = ingest_token(cluster, "default", logs / "agent.token")
        # The agents' ServiceAccount with an API token, for the least-privilege test to ask what it may do.
        cluster.service_account_kubeconfig(NAMESPACE, "faultline-agent-default", logs / "agent.kubeconfig")
        views = [("shop", "errors", DASHBOARD, {"publishEvents": True}),
                                       ("other", "errors", DASHBOARD, {}),
                                       ("shop", "bad", "response.status = 400", {}),
                                       (NAMESPACE, "all-tcp", "tcp", {})]
        for ns, name, query, extra in views:
            apply(cluster, {"apiVersion": "faultline.dev/v1alpha1", "kind": "ErrorView",
                            "metadata": {"name": name, "namespace": ns}, "spec": {"query": query, **extra}})
        # The agents run as local processes; the pods the DaemonSet would have made stand for them (bound to
        # their nodes, never started: there is no kubelet here), so that the operator knows these nodes run
        # an agent.
        for node in ("node-a", "node-b"):
            start_agent_pod(cluster, node)
        agents = [Agent("node-a", [veths["a"], veths["d"]], operator.port, token, logs / "agent-a.log"),
                  Agent("node-b", [veths["b"], veths["c"]], operator.port, token, logs / "agent-b.log")]
        # Give the agents time to open their captures and list the pods.
        eventually(lambda: all(a.metric("faultline_agent_batches_sent_total") for a in agents), what="agents report")
        time.sleep(1)
        state = {"lab": lab, "operator": operator, "agents": agents, "logs": logs,
                 "operator_kubeconfig": operator_kubeconfig}
        try:
            yield state
        finally:
            for a in state["agents"]:
                a.stop()
            state["operator"].stop()
            for ns, name, _, _ in views:
                cluster.kubectl("-n", ns, "delete", "errorview", name, "--wait=false", check=False)


def start_agent_pod(cluster, node):
    """The agent pod the DaemonSet would have made on `node`, Running as the kubelet would report it."""
    name = f"faultline-agent-default-{node}"
    apply(cluster, {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"faultline.dev/tapconfig": "default"}},
                    "spec": {"nodeName": node, "containers": [{"name": "agent", "image": "faultline-agent"}]}})
    cluster.kubectl("-n", NAMESPACE, "patch", "pod", name, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"phase": "Running"}}))


def grpc_calls(lab, client, server, port, *calls):
    """A grpcio server in pod `server` (see agent/tests/kernel/grpc_peers.py: Checkout fails UNAVAILABLE) and
    a grpcio client in pod `client` making `calls` ("Method:timeout"); returns what the client saw."""
    import subprocess
    import sys

    from processes import REPO
    peers = str(REPO / "agent" / "tests" / "kernel" / "grpc_peers.py")
    srv = subprocess.Popen(["ip", "netns", "exec", lab.pods[server][0], sys.executable, peers, "grpc-server", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "listening" in srv.stdout.readline()
        r = subprocess.run(["ip", "netns", "exec", lab.pods[client][0], sys.executable, peers, "grpc-client",
                            f"{PODS[server][3]}:{port}", *calls], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    finally:
        srv.terminate()
        srv.wait(timeout=10)


def dns_servfail(lab, client, server, tmp_path):
    """CoreDNS (built from its module) in pod `server` answers SERVFAIL for broken.test; pod `client` asks
    through glibc's resolver (getent), which asks twice: one exchange, one error."""
    import os
    import subprocess
    from pathlib import Path

    from processes import REPO, eventually
    coredns = Path(subprocess.run([str(REPO / "e2e" / "build-coredns.sh")], capture_output=True, text=True,
                                  check=True).stdout.strip().splitlines()[-1]) / "coredns"
    (tmp_path / "Corefile").write_text(".:53 {\n    template ANY ANY broken.test {\n        rcode SERVFAIL\n    }\n}\n")
    srv = subprocess.Popen(["ip", "netns", "exec", lab.pods[server][0], str(coredns), "-conf", str(tmp_path / "Corefile"),
                            "-dns.port", "53"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    conf = Path("/etc/netns") / lab.pods[client][0]
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "resolv.conf").write_text(f"nameserver {PODS[server][3]}\noptions timeout:1 attempts:2\n")

    def listening():
        out = subprocess.run(["ip", "netns", "exec", lab.pods[server][0], "ss", "-lun"], capture_output=True,
                             text=True, check=False).stdout
        return ":53 " in out
    try:
        # CoreDNS takes a moment to listen; until then the query is refused by the kernel (ICMP port
        # unreachable), which views would count too.
        eventually(listening, timeout=20, what="CoreDNS listening")
        r = subprocess.run(["ip", "netns", "exec", lab.pods[client][0], "getent", "ahostsv4", "broken.test."],
                           capture_output=True, check=False)
        assert r.returncode != 0, "broken.test must not resolve"
    finally:
        srv.terminate()
        srv.wait(timeout=10)
        os.unlink(conf / "resolv.conf")
        conf.rmdir()


def tls_without_server_hello(lab, client, server, port):
    """`openssl s_client` in pod `client` to a server in pod `server` that reads the ClientHello and closes:
    a handshake that failed with no ServerHello."""
    import subprocess
    import sys
    closer = ("import socket, sys\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
              "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(1); print('listening', flush=True)\n"
              "c, _ = s.accept(); c.recv(4096); c.shutdown(socket.SHUT_WR)\n"
              # Read until the client closes too: closing with its last bytes unread would be a reset.
              "while c.recv(4096): pass\n"
              "c.close()\n")
    srv = subprocess.Popen(["ip", "netns", "exec", lab.pods[server][0], sys.executable, "-c", closer, str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "listening" in srv.stdout.readline()
        r = subprocess.run(["ip", "netns", "exec", lab.pods[client][0], "openssl", "s_client", "-connect",
                            f"{PODS[server][3]}:{port}", "-servername", "shop.test"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=20)
        assert r.returncode != 0
    finally:
        srv.wait(timeout=10)


def make_errors(lab, sport_base):
    """From pod-a to pod-b: a refused connection, an HTTP 503, UDP to a closed port, a reset."""
    lab.traffic("a", "connect", PODS["b"][3], "81", "--sport", str(sport_base))
    srv = lab.server("b", "serve", "8080", "error")
    lab.traffic("a", "connect", PODS["b"][3], "8080", "--sport", str(sport_base + 1), "--send",
                "GET /checkout HTTP/1.1\\r\\nHost: shop\\r\\n\\r\\n", "--wait", "0.5")
    srv.wait(timeout=5)
    lab.traffic("a", "udp", PODS["b"][3], "9", "--sport", str(sport_base + 2))
    srv = lab.server("b", "serve", "8081", "read-then-hold", "--hold", "1")
    lab.traffic("a", "connect", PODS["b"][3], "8081", "--sport", str(sport_base + 3), "--send", "x", "--close", "rst")
    srv.wait(timeout=5)
