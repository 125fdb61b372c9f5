"""Faultline on a real node (e2e/node.py): kubelet, containerd, a CNI, kube-proxy and CoreDNS, the images
built without Docker, the chart installed by `helm install` with its defaults (TLS on). The operator and
the agents run as pods; workloads are real pods of the toolbox image making every kind of error, pod to
pod and through a Service; each must be counted exactly once, with Events on the right pods. Then a
changed timeout rolls the agents and takes effect, Pod Security refusing the agents shows as a condition,
and `helm uninstall` leaves nothing behind.

The tests of this module run in order and share the node."""

import json
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import datetime

import pytest

import causes
import healthy
from node import NAMESPACE, Node, helm_binary
from processes import REPO, eventually

TOOLBOX = "ghcr.io/faultline-dev/faultline-toolbox:0.1.0"
# Debian's redis-server and redis-cli (scripts/build-images.py).
REDIS = "ghcr.io/faultline-dev/faultline-test-redis:0.1.0"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    packet_sockets = Node.packet_sockets()
    n = Node(tmp_path_factory.mktemp("node")).up(chart=True)
    n.packet_sockets_before = packet_sockets
    yield n
    n.down()


# What the node looked like when each test failed; printed at the end of the run (conftest.py).
DIAGNOSES = {}


@pytest.fixture(autouse=True)
def keep_logs_of_a_failure(node, request):
    """When a test fails, what the operator and the agents logged, the Events and the lease go to
    target/e2e-artifacts (pod logs go with the node, and a flaky failure may not come back)."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed:
        return
    out = REPO / "target" / "e2e-artifacts" / f"node-{request.node.name}"
    out.mkdir(parents=True, exist_ok=True)
    DIAGNOSES.setdefault(request.node.name, node.diagnosis())
    pods = node.kubectl("-n", NAMESPACE, "get", "pods", "-o", "name", check=False).stdout.split()
    for pod in pods:
        for previous in ([], ["--previous"]):
            r = node.kubectl("-n", NAMESPACE, "logs", pod, "--all-containers", *previous, check=False)
            if r.stdout:
                (out / f"{pod.split('/')[-1]}{'-previous' if previous else ''}.log").write_text(r.stdout)
    for what in (["get", "events", "-A", "-o", "wide"], ["-n", NAMESPACE, "get", "lease", "-o", "yaml"],
                 ["get", "errorviews", "-A", "-o", "yaml"], ["get", "pods", "-A", "-o", "wide"]):
        (out / f"{'-'.join(w for w in what if not w.startswith('-'))}.txt").write_text(
            node.kubectl(*what, check=False).stdout)


def pod(name, ns, command, labels=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main", "image": TOOLBOX, "imagePullPolicy": "IfNotPresent", "command": command}]}}


def apply(node, *objs):
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def workloads(node, ns, service=True):
    """A server pod (HTTP on 8080; 5xx, resets on demand), a Service in front of it, a client pod, and an
    ErrorView publishing Events. Returns the server's pod IP."""
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            pod("web", ns, ["faultline-toolbox", "http-server", "8080"], {"app": "web"}),
            pod("client", ns, ["sleep", "3600"]),
            {"apiVersion": "faultline.dev/v1alpha1", "kind": "ErrorView", "metadata": {"name": "errors", "namespace": ns},
             "spec": {"query": "response.status > 400 or error or icmp or tcp", "publishEvents": True,
                      "samples": 20}}]
    if service:
        objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
                     "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    apply(node, *objs)
    node.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/web", "pod/client", "--timeout=120s")
    web = node.kubectl_json("-n", ns, "get", "pod", "web")["status"]["podIP"]
    if service:
        # Until kube-proxy has programmed the endpoint, the node REJECTs connections to the ClusterIP with a
        # real ICMP port unreachable — an error Faultline reports, and not the one the tests make.
        eventually(lambda: f"--to-destination {web}:8080" in subprocess.run(
            ["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout, timeout=60,
            what="kube-proxy's rules for the Service")
    return web


def client(node, ns, *args):
    return node.kubectl("-n", ns, "exec", "client", "--", "faultline-toolbox", *args, check=False).stdout.split()


def view(node, ns):
    return node.kubectl_json("-n", ns, "get", "errorview", "errors").get("status") or {}


def counts_settle(node, ns, want, timeout=60):
    """The ErrorView's counts reach `want`, and stay there (nothing counted twice a little later)."""
    eventually(lambda: view(node, ns).get("countsByKind") == want, timeout=timeout,
               what=f"counts {want} (have {view(node, ns).get('countsByKind')})")
    time.sleep(6)
    assert view(node, ns).get("countsByKind") == want


FAULTLINE_REASONS = {"TCPSynSent", "TCPReset", "TCPCloseWait", "TCPLastAck", "HalfConnection", "DissectionError",
                     "HTTPServerError", "HTTPClientError", "ICMPDestinationUnreachable", "RedisError"}


def events(node, ns):
    """Faultline's Events in `ns`: (kind, name, reason) -> the series count."""
    items = node.kubectl_json("-n", ns, "get", "events")["items"]
    return {(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"]):
            (e.get("series") or {}).get("count") or e.get("count") or 1
            for e in items if e["reason"] in FAULTLINE_REASONS}


def test_helm_install_runs_the_operator_leading_and_one_agent_per_node(node):
    # helm waits for the operator; the operator then makes the agents' DaemonSet.
    eventually(lambda: ready(agent_pod(node) or {}), timeout=120, what="the agent pod ready")
    pods = node.kubectl_json("-n", NAMESPACE, "get", "pods")["items"]
    operator = [p for p in pods if p["metadata"]["name"].startswith("faultline-operator-")]
    agents = [p for p in pods if p["metadata"]["name"].startswith("faultline-agent-default-")]
    assert len(operator) == 1 and len(agents) == 1, [p["metadata"]["name"] for p in pods]
    lease = node.kubectl_json("-n", NAMESPACE, "get", "lease", "faultline-operator")
    assert lease["spec"]["holderIdentity"] == operator[0]["metadata"]["name"]
    agent = agents[0]
    assert agent["spec"]["nodeName"] == "faultline-node" and agent["status"]["phase"] == "Running"
    args = agent["spec"]["containers"][0]["args"]
    assert "--syn-timeout-ms=3000" in args and "--capture-backend=afpacket" in args, args
    assert agent["spec"]["hostNetwork"] and agent["spec"]["priorityClassName"] == "faultline-agent"
    tap = eventually(lambda: (t := node.kubectl_json("get", "tapconfig", "default"))["status"].get("readyAgents") == 1
                     and t, timeout=60, what="the TapConfig ready")
    nodes = len(node.kubectl_json("get", "nodes")["items"])
    assert tap["status"]["desiredAgents"] == nodes == 1
    cond = [c for c in tap["status"]["conditions"] if c["type"] == "Ready"][0]
    assert (cond["status"], cond["reason"]) == ("True", "AgentsReady")


DASHBOARD = "response.status > 400 or error or icmp or tcp"


def store(node, query=DASHBOARD):
    """Every entry the operator holds that `query` selects, whatever its namespace."""
    listing = node.dashboard(f"/api/entries?limit=1000&q={urllib.parse.quote(query)}")
    assert listing["total"] <= 1000, "more entries than one page"
    return listing["entries"]


def when(e):
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()


def really_waited(ends, e, seconds):
    """Whether the capture of FINs and RSTs (`ends`) shows a CloseWait entry's waiting side answering the
    other's FIN only `seconds` or more later, or never: the entry is what happened."""
    r = subprocess.run(["tshark", "-r", str(ends), "-T", "fields", "-e", "frame.time_epoch", "-e", "ip.src", "-e",
                        "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport", "-e", "tcp.flags.fin"],
                       capture_output=True, text=True, check=True)
    client = (e["src"]["ip"], str(e["src"]["port"]))
    server = (e["dst"]["ip"], str(e["dst"]["port"]))
    waiting = server if e["tcp"].get("by") == "server" else client
    other = client if waiting == server else server
    first_fin, answer = None, None
    for line in r.stdout.splitlines():
        t, sip, sport, dip, dport, _fin = (line.split("\t") + [""] * 6)[:6]
        if {(sip, sport), (dip, dport)} != {client, server}:
            continue
        if (sip, sport) == other and first_fin is None:
            first_fin = float(t)
        elif (sip, sport) == waiting and first_fin is not None and answer is None:
            answer = float(t)
    return first_fin is not None and (answer is None or answer - first_fin >= seconds)


def really_retransmitted(dns, e):
    """Whether the capture of DNS (`dns`) shows what an `answered after retransmission` entry says: its
    question asked, then asked again about `elapsedTime` later with no answer to it in between. Behind the
    masquerade every host-network process is one client, and a server that slow on a 2-core machine running
    a whole cluster is the truth, not a false error."""
    d = e.get("dns") or {}
    name, qtype = d.get("question", {}).get("name"), d.get("question", {}).get("type")
    r = subprocess.run(["tshark", "-r", str(dns), "-Y", f'dns.qry.name == "{name}"', "-T", "fields", "-e",
                        "frame.time_epoch", "-e", "dns.flags.response", "-e", "dns.qry.type"],
                       capture_output=True, text=True, check=True)
    types = {"A": "1", "AAAA": "28", "TXT": "16", "SRV": "33", "PTR": "12", "CNAME": "5"}
    rows = [(line.split("\t") + ["", ""])[:3] for line in r.stdout.splitlines()]
    seen = sorted((float(t), flag in ("1", "True")) for t, flag, ty in rows if ty == types.get(qtype, qtype))
    gap = e["elapsedTime"] / 1000
    queries = [t for t, response in seen if not response]
    return any(abs((u - t) - gap) < 0.1 and not any(t < w < u for w, response in seen if response)
               for t in queries for u in queries if u > t)


def router_solicitations(pcap):
    """The Router Solicitations a capture of every interface holds, one per solicitation sent: a pod's is
    seen on its veth, looped back by the bridge's hairpin, and on every other port; copies are microseconds
    apart, Linux solicits again after 4 s at the soonest."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "icmpv6.type == 133", "-T", "fields",
                          "-e", "frame.time_epoch", "-e", "ipv6.src"], capture_output=True, text=True).stdout
    sent = []
    for line in sorted(out.splitlines()):
        t, src = line.split("\t")
        if not any(s == src and float(t) - u < 1 for u, s in sent):
            sent.append((float(t), src))
    return sent


def test_a_healthy_busy_node_makes_no_error(node, tmp_path):
    """Two minutes of what a healthy node does all day — HTTP and gRPC through Services by name, HTTPS
    probes, the kubelet's gRPC probes, host-network clients, DNS through the ClusterIP from pods and from the
    host network (masqueraded), the API server through `kubernetes.default` (a backend on the node itself),
    pods starting and stopping — and the operator's whole store, every namespace, holds no error: only each
    Router Solicitation the pods sent, once."""
    pcap, ends, dns = tmp_path / "rs.pcap", tmp_path / "ends.pcap", tmp_path / "dns.pcap"
    captures = [subprocess.Popen(["tcpdump", "-i", "any", "-w", str(out), "-U", flt],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for out, flt in [(pcap, "icmp6 and ip6[40] == 133"),
                                 (ends, "tcp[tcpflags] & (tcp-fin|tcp-rst) != 0"),
                                 (dns, "udp port 53")]]
    try:
        healthy.start(node)
        churned = healthy.churn(node, 120)
        # Long enough for what is decided late: DNS (5 s + 2 s), CloseWait (5 s), TLS (10 s), pairs (30 s).
        time.sleep(35)
    finally:
        for c in captures:
            c.terminate()
            c.wait()
    assert churned >= 7
    held = store(node)
    # A side that really sat in CLOSE_WAIT for the whole closeTimeoutMs (the wire shows its FIN or RST no
    # sooner, or never) is the truth on a 2-core machine running a whole cluster, not a false error.
    true_waits = [e for e in held if e["kind"] == "tcp/CloseWait" and really_waited(ends, e, 5.0)]
    # Likewise a DNS server that really left a query unanswered until the client asked again.
    true_retries = [e for e in held if e["kind"].startswith("dns/")
                    and "answered after retransmission" in (e.get("error") or {}).get("msg", "")
                    and really_retransmitted(dns, e)]
    errors = [f"{e['kind']}: {e['summary']}" for e in held
              if e["kind"] != "icmp/RouterSolicitation" and e not in true_waits + true_retries]
    assert errors == [], f"{len(errors)} false errors:\n" + "\n".join(errors[:40])
    assert len(true_waits) <= 1, [e["summary"] for e in true_waits]
    assert len(true_retries) <= 1, [e["summary"] for e in true_retries]
    # Each solicitation once (copies on the bridge's ports and the hairpin are one packet), and every one
    # the capture saw while the test ran is there.
    seen = sorted((when(e), e["src"]["ip"]) for e in held if e["kind"] == "icmp/RouterSolicitation")
    twice = [(t, s) for (t, s), (u, r) in zip(seen, seen[1:]) if s == r and u - t < 1]
    assert twice == [], f"solicitations reported twice: {twice}"
    sent = router_solicitations(pcap)
    assert len(sent) >= churned, "every new pod solicits a router"
    missing = [(t, s) for t, s in sent if not any(s == r and abs(t - u) < 0.5 for u, r in seen)]
    assert missing == [], f"solicitations not reported: {missing}"


def test_one_real_error_of_each_kind_through_the_same_paths_is_found_once(node):
    """Through the healthy node's own paths, one error each: a connection refused through a Service
    (kube-proxy's DNAT to a port nobody listens on), a SERVFAIL answered to a host-network client (through
    the DNS ClusterIP and the masquerade), and a TLS handshake refused by a backend on the node itself (the
    API server through `kubernetes.default`, to a client that offers only TLS 1.0)."""
    before = {e["id"] for e in store(node)}
    closed = healthy.service("closed", 80, 9999)
    closed["spec"]["selector"] = {"app": "web"}
    healthy.apply(node, [closed])
    eventually(lambda: "healthy/closed" in subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                                          text=True).stdout, timeout=60, what="the Service's rules")

    def run(pod, *cmd):
        return node.kubectl("-n", healthy.NS, "exec", pod, "--", *cmd, check=False).stdout.strip()

    assert run("client", "faultline-toolbox", "connect", "closed.healthy.svc.cluster.local:80") == "refused"
    assert run("hostclient", "faultline-toolbox", "dns", "servfail.faultline.test") == "SERVFAIL"
    refused = run("client", "peers", "tls-client", "kubernetes.default.svc:443", "--max-version", "1.0", "--insecure")
    assert "protocol version" in refused, refused
    time.sleep(20)
    new = [e for e in store(node) if e["id"] not in before and e["kind"] != "icmp/RouterSolicitation"]
    kinds = sorted(e["kind"] for e in new)
    assert kinds == ["dns/SERVFAIL", "tcp/SynSent", "tls/protocol_version"], [e["summary"] for e in new]
    by_kind = {e["kind"]: e for e in new}
    syn = by_kind["tcp/SynSent"]
    assert syn["tcp"]["reason"] == "refused" and syn["dst"]["port"] == 9999 and syn["dst"]["namespace"] == "healthy"
    assert (syn["service"]["name"], syn["service"]["namespace"]) == ("closed", "healthy"), syn
    dns = by_kind["dns/SERVFAIL"]
    assert dns["dns"]["question"]["name"] == "servfail.faultline.test"
    assert dns["dst"]["namespace"] == "kube-system", dns
    tls = by_kind["tls/protocol_version"]
    assert tls["tls"]["alert"] == "protocol_version" and tls["tls"]["by"] == "server", tls
    assert tls["src"]["name"] == "client" and tls["service"]["ip"] == "10.96.0.1", tls
    healthy.stop(node)


def test_errors_between_pods_on_the_node_are_counted_once_with_events(node):
    # Every pod here is created after the agent started (it captures every interface, present and future).
    web = workloads(node, "shop")
    assert client(node, "shop", "connect", f"{web}:9999") == ["refused"]
    assert client(node, "shop", "http-get", f"http://{web}:8080/status/503") == ["503"]
    # Through the Service (kube-proxy's DNAT): one connection, named by the pod and the Service.
    assert client(node, "shop", "http-get", "http://web.shop.svc.cluster.local/status/502") == ["502"]
    client(node, "shop", "http-get", f"http://{web}:8080/reset")
    assert client(node, "shop", "udp", f"{web}:5000") == ["sent"]
    counts_settle(node, "shop", {"tcp/SynSent": 1, "http/5xx": 2, "tcp/Reset": 1, "half-connection": 1,
                                 "icmp/DestinationUnreachable": 1})
    status = view(node, "shop")
    assert status["matched"] == 6
    summaries = [s["summary"] for s in status["samples"]]
    assert any("(via service shop/web)" in s and "502" in s for s in summaries), summaries
    # Events on the pod involved: the destination (the ICMP error's receiver is the client).
    # A repeat raises its Event's series count, written at most every 10 s per series.
    evs = eventually(lambda: (e := events(node, "shop")).get(("Pod", "web", "HTTPServerError")) == 2 and e,
                     timeout=40, what=f"Events (have {events(node, 'shop')})")
    assert evs.get(("Pod", "web", "TCPSynSent")) == 1, evs
    assert evs.get(("Pod", "web", "TCPReset")) == 1, evs
    assert evs.get(("Pod", "web", "HalfConnection")) == 1, evs
    assert evs.get(("Pod", "client", "ICMPDestinationUnreachable")) == 1, evs
    described = node.kubectl("-n", "shop", "describe", "pod", "web").stdout
    assert "TCPSynSent" in described and "HTTPServerError" in described


def test_errors_carry_the_cause_the_clusters_state_proves(node):
    """SPEC §3.7 on the real node: every reason made for real, each error naming the objects that explain it,
    and the same failures where the state explains nothing carrying no cause (see causes.py)."""
    pods = causes.setup(node)
    causes.make_failures(node, pods)
    causes.rollout_during_a_request(node)
    causes.oom_during_a_request(node, pods)
    ns, clients = causes.NS, causes.CLIENTS

    def caused(query, reason):
        """The error entries `query` selects, once one carries `reason`."""
        def found():
            es = [e for e in causes.entries(node, f"error and ({query})")]
            return es if any((e.get("cause") or {}).get("reason") == reason for e in es) else None
        return eventually(found, timeout=60, what=f"{reason} on {query}")

    def objects(e):
        return {(o["kind"], o.get("namespace"), o["name"]) for o in e["cause"]["objects"]}

    denied = caused(f'src.namespace == "{clients}" and dst.name == "web"', "NetworkPolicyDenied")
    c = next(e["cause"] for e in denied if e.get("cause"))
    assert ("NetworkPolicy", ns, "web-ingress") in objects({"cause": c}), c
    assert c["message"] == (f"NetworkPolicy {ns}/web-ingress selects {ns}/web for ingress and admits nothing from "
                            f"{clients}/cart on 8080/TCP"), c
    unready = caused(f'src.namespace == "{clients}" and dst.ip == "{causes.cluster_ip(node, "api")}"',
                     "NoReadyEndpoints")
    c = next(e["cause"] for e in unready if e.get("cause"))
    assert ("Service", ns, "api") in objects({"cause": c}) and ("Pod", ns, "api") in objects({"cause": c}), c
    assert "readiness failing" in c["message"], c
    undeclared = caused(f'dst.name == "hog" and dst.port == 9999', "PortNotServed")
    assert "does not declare port 9999/TCP" in next(e["cause"]["message"] for e in undeclared if e.get("cause"))
    wrong = caused(f'dst.ip == "{causes.cluster_ip(node, "wrong")}"', "PortNotServed")
    assert 'targetPort "htpp"' in next(e["cause"]["message"] for e in wrong if e.get("cause"))
    terminating = caused('dst.workload == "Deployment/slow"', "PodTerminating")
    c = next(e["cause"] for e in terminating if e.get("cause"))
    assert any(o["kind"] == "ReplicaSet" for o in c["objects"]), c
    oom = caused('dst.name == "hog" and dst.port == 8080', "ContainerRestarted")
    assert "OOMKilled (exit 137)" in next(e["cause"]["message"] for e in oom if e.get("cause"))
    typo = caused(f'dns.question.name == "web.{ns}p.svc.cluster.local"', "ServiceNotFound")
    c = next(e["cause"] for e in typo if e.get("cause"))
    assert c["message"].startswith(f"no namespace {ns}p, so no Service web in it;") and f" {ns}" in c["message"], c
    assert ("Service", ns, "web") in objects({"cause": c}), c

    # The negatives: errors the state does not explain carry no cause.
    time.sleep(causes.SETTLE_S)
    quiet = causes.entries(node, 'error and dst.name == "quiet"')
    assert quiet and all(e.get("cause") is None for e in quiet), quiet
    nosuch = causes.entries(node, 'error and dns.question.name == "nosuch.cluster.local"')
    assert nosuch and all(e.get("cause") is None for e in nosuch), nosuch

    # Where an SRE looks: the ErrorView's counts by cause, the pod's Events, the metrics.
    # (The client's namespace sees them all: some never reached a pod of the servers' namespace.)
    every = ("NetworkPolicyDenied", "NoReadyEndpoints", "PortNotServed", "PodTerminating", "ContainerRestarted",
             "ServiceNotFound")
    eventually(lambda: all(view(node, clients).get("countsByCause", {}).get(r) for r in every), timeout=60,
               what=f"countsByCause (have {view(node, clients).get('countsByCause')})")
    described = eventually(lambda: (d := node.kubectl("-n", ns, "describe", "pod", "web").stdout)
                           and "NetworkPolicyDenied: NetworkPolicy" in d and d, timeout=60, what="the Event's cause")
    assert f"admits nothing from {clients}/cart" in described


def test_a_redis_pods_errors_reach_the_view_the_events_and_the_metrics(node):
    """SPEC §3.5 on the real node: Debian's redis-server in a pod, behind a Service, refusing a client pod's
    commands (WRONGTYPE, as redis-cli prints it); the client's successful commands are no error."""
    ns = "cache"

    def redis_pod(name, command, labels=None):
        p = pod(name, ns, command, labels)
        p["spec"]["containers"][0]["image"] = REDIS
        return p

    apply(node, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
          redis_pod("redis", ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "",
                              "--dir", "/tmp"], {"app": "redis"}),
          redis_pod("client", ["sleep", "3600"]),
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis", "namespace": ns},
           "spec": {"selector": {"app": "redis"}, "ports": [{"port": 6379}]}},
          {"apiVersion": "faultline.dev/v1alpha1", "kind": "ErrorView", "metadata": {"name": "errors", "namespace": ns},
           "spec": {"query": "error", "publishEvents": True, "samples": 5}})
    node.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/redis", "pod/client", "--timeout=120s")
    ip = node.kubectl_json("-n", ns, "get", "pod", "redis")["status"]["podIP"]
    eventually(lambda: f"--to-destination {ip}:6379" in subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout, timeout=60,
        what="kube-proxy's rules for the Service")

    def cli(*args):
        return node.kubectl("-n", ns, "exec", "client", "--", "redis-cli", "-h", "redis.cache.svc.cluster.local",
                            *args).stdout.strip()

    assert cli("SET", "s", "x") == "OK"
    said = [cli("LPUSH", "s", "y"), cli("LPUSH", "s", "z")]
    assert all(s.startswith("WRONGTYPE") for s in said), said
    assert cli("GET", "s") == "x"
    counts_settle(node, ns, {"redis/WRONGTYPE": 2})
    samples = view(node, ns)["samples"]
    assert len(samples) == 2 and all("WRONGTYPE" in s["summary"] for s in samples), samples
    # The Event is on the pod that answered with the error.
    eventually(lambda: events(node, ns).get(("Pod", "redis", "RedisError")) == 2, timeout=40,
               what=f"RedisError Events (have {events(node, ns)})")
    leader = [p for p in operator_pods(node) if p["metadata"].get("labels", {}).get("faultline.dev/leader") == "true"]

    def counted():
        text = node.operator_pod_get(leader[0]["status"]["podIP"], "/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("faultline_errors_total{") and 'kind="redis/WRONGTYPE"' in line
                   and 'namespace="cache"' in line)

    eventually(lambda: counted() == 2, timeout=30, what="faultline_errors_total{kind=redis/WRONGTYPE} = 2")


def test_pods_on_routed_veths_are_observed_too(node):
    """The Debian `ptp` plugin: each pod on a veth routed by the host, no bridge."""
    node.use_cni("ptp")
    web = workloads(node, "routed", service=False)
    links = subprocess.run(["ip", "-o", "link", "show", "master", "cni0"], capture_output=True, text=True).stdout
    host_routes = subprocess.run(["ip", "route", "show", web], capture_output=True, text=True).stdout
    assert web in host_routes and "veth" in host_routes, f"{web} is not routed to a veth: {host_routes} {links}"
    assert client(node, "routed", "connect", f"{web}:9999") == ["refused"]
    assert client(node, "routed", "http-get", f"http://{web}:8080/status/500") == ["500"]
    counts_settle(node, "routed", {"tcp/SynSent": 1, "http/5xx": 1})
    node.use_cni("bridge")


def test_a_changed_timeout_rolls_the_agents_and_takes_effect(node):
    # Two engine threads too: the new agent captures with a fanout group of two sockets and two shards, in
    # a pod the kubelet started, and must still time the SYN out on its flow's shard.
    old = agent_pod(node)
    node.kubectl("patch", "tapconfig", "default", "--type=merge", "-p",
                 json.dumps({"spec": {"timeouts": {"synTimeoutMs": 1000}, "agent": {"engineThreads": 2}}}))
    new = eventually(lambda: (p := agent_pod(node)) and p["metadata"]["name"] != old["metadata"]["name"]
                     and ready(p) and p, timeout=120, what="a new, ready agent")
    assert "--syn-timeout-ms=1000" in new["spec"]["containers"][0]["args"]
    assert "--engine-threads=2" in new["spec"]["containers"][0]["args"]
    # The agent says so itself (it shares the node's network): two shards, two sockets in the fanout group.
    addr = next(a.split("=", 1)[1] for a in new["spec"]["containers"][0]["args"] if a.startswith("--http-addr="))
    port = addr.rsplit(":", 1)[1]
    metrics = eventually(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode(),
                         what="the new agent's metrics")
    assert "faultline_agent_engine_threads 2\n" in metrics and "faultline_agent_capture_sockets 2\n" in metrics
    web = node.kubectl_json("-n", "shop", "get", "pod", "web")["status"]["podIP"]
    # The node's firewall drops SYNs to one port: the attempt is seen, never answered.
    rule = ["FORWARD", "-d", web, "-p", "tcp", "--dport", "7777", "-j", "DROP"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        client(node, "shop", "connect", f"{web}:7777")
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)
    eventually(lambda: view(node, "shop")["countsByKind"].get("tcp/SynSent") == 2, timeout=60,
               what="the timed-out SYN counted")
    entries = node.dashboard("/api/entries?q=" + "tcp.state%20%3D%3D%20%22SynSent%22%20and%20dst.port%20%3D%3D%207777")
    assert [(e["tcp"]["reason"], e["elapsedTime"]) for e in entries["entries"]] == [("timeout", 1000.0)]


def test_agents_refused_by_pod_security_show_as_a_condition(node):
    node.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=baseline", "--overwrite")
    try:
        node.kubectl("patch", "tapconfig", "default", "--type=merge", "-p",
                     json.dumps({"spec": {"timeouts": {"closeTimeoutMs": 4000}}}))

        def failed_create():
            tap = node.kubectl_json("get", "tapconfig", "default")
            ready_ = [c for c in tap["status"]["conditions"] if c["type"] == "Ready"][0]
            return ready_["reason"] == "FailedCreate" and ready_
        cond = eventually(failed_create, timeout=90, what="Ready=False/FailedCreate")
        assert "hostNetwork" in cond["message"] or "baseline" in cond["message"], cond
    finally:
        node.kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce-")
    eventually(lambda: ready(agent_pod(node) or {}), timeout=120, what="the agent back")


def test_crds_then_helm_upgrade_as_the_readme_says(node):
    r = node.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "charts" / "faultline" / "crds"))
    assert "serverside-applied" in r.stdout
    old = node.kubectl_json("-n", NAMESPACE, "get", "deploy", "faultline-operator")["metadata"]["generation"]
    r = subprocess.run([helm_binary(), "upgrade", "faultline", str(REPO / "charts" / "faultline"), "--namespace",
                        NAMESPACE, "--set", "operator.logLevel=debug", "--wait", "--timeout", "3m"],
                       capture_output=True, text=True, env=node.env())
    assert r.returncode == 0, r.stderr
    assert node.kubectl_json("-n", NAMESPACE, "get", "deploy", "faultline-operator")["metadata"]["generation"] > old
    eventually(lambda: node.kubectl_json("get", "tapconfig", "default")["status"].get("readyAgents") == 1,
               timeout=120, what="agents ready after the upgrade")


def operator_pods(node):
    pods = node.kubectl_json("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=faultline-operator")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def leader_and_standby(node):
    """(leader pod, standby pod) once two replicas are ready and exactly one is labelled and holds the lease."""
    pods = operator_pods(node)
    lease = node.kubectl_json("-n", NAMESPACE, "get", "lease", "faultline-operator")["spec"].get("holderIdentity")
    leaders = [p for p in pods if p["metadata"].get("labels", {}).get("faultline.dev/leader") == "true"]
    if len(pods) != 2 or not all(ready(p) for p in pods) or len(leaders) != 1:
        return None
    if leaders[0]["metadata"]["name"] != lease:
        return None
    return leaders[0], [p for p in pods if p is not leaders[0]][0]


def service_endpoints(node):
    slices = node.kubectl_json("-n", NAMESPACE, "get", "endpointslices",
                               "-l", "kubernetes.io/service-name=faultline-operator")["items"]
    return sorted(a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]
                  if (e.get("conditions") or {}).get("ready"))


def ingested(node, p):
    from processes import metric
    return metric(node.operator_pod_get(p["status"]["podIP"], "/metrics"), "faultline_operator_entries_ingested_total")


def test_two_replicas_only_the_leader_serves_and_a_failover_loses_nothing(node):
    r = subprocess.run([helm_binary(), "upgrade", "faultline", str(REPO / "charts" / "faultline"), "--namespace",
                        NAMESPACE, "--reuse-values", "--set", "operator.replicas=2", "--wait", "--timeout", "3m"],
                       capture_output=True, text=True, env=node.env())
    assert r.returncode == 0, r.stderr
    leader, standby = eventually(lambda: leader_and_standby(node), timeout=120, what="a leader and a standby")
    # Both replicas are Ready (a rollout can proceed), but only the leader is behind the Service.
    eventually(lambda: service_endpoints(node) == [leader["status"]["podIP"]], timeout=30,
               what="the Service routes to the leader only")
    web = node.kubectl_json("-n", "shop", "get", "pod", "web")["status"]["podIP"]
    before = view(node, "shop")["countsByKind"]
    want = dict(before, **{"tcp/SynSent": before.get("tcp/SynSent", 0) + 1})
    assert client(node, "shop", "connect", f"{web}:9998") == ["refused"]
    counts_settle(node, "shop", want)
    assert ingested(node, standby) in (None, 0.0), "no batch reached the standby"
    assert ingested(node, leader) >= 1
    node.forget_dashboard()
    q = "dst.port%20%3D%3D%209998"
    assert len(node.dashboard(f"/api/entries?q={q}")["entries"]) == 1, "the dashboard is the leader's"

    # The leader goes away: the standby takes the lease, the label and the Service, and counts go on
    # from where they were — nothing lost, nothing counted twice.
    node.kubectl("-n", NAMESPACE, "delete", "pod", leader["metadata"]["name"], "--wait=false")
    new_leader = eventually(lambda: (ls := leader_and_standby(node)) and ls[0]["metadata"]["name"] != leader[
        "metadata"]["name"] and ls[0], timeout=120, what="a new leader")
    # The released lease goes to whichever replica asks first — the standby, or the Deployment's replacement
    # if it starts within the standby's 2 s retry; `leader_and_standby` has checked that exactly one pod holds
    # both the lease and the label. What matters is what follows: the Service and the counts go with it.
    eventually(lambda: service_endpoints(node) == [new_leader["status"]["podIP"]], timeout=30,
               what="the Service follows the leader")
    assert client(node, "shop", "connect", f"{web}:9997") == ["refused"]
    counts_settle(node, "shop", dict(want, **{"tcp/SynSent": want["tcp/SynSent"] + 1}), timeout=90)
    node.forget_dashboard()
    assert len(node.dashboard("/api/entries?q=dst.port%20%3D%3D%209997")["entries"]) == 1


def test_helm_uninstall_leaves_nothing_behind(node):
    r = subprocess.run([helm_binary(), "uninstall", "faultline", "--namespace", NAMESPACE, "--wait", "--timeout",
                        "5m"], capture_output=True, text=True, env=node.env())
    assert r.returncode == 0, r.stderr
    for kind in ("tapconfigs", "errorviews"):
        assert node.kubectl_json("get", kind, "-A")["items"] == [], kind
    eventually(lambda: node.kubectl_json("-n", NAMESPACE, "get", "pods")["items"] == [], timeout=120,
               what="no Faultline pod")
    assert node.kubectl_json("-n", NAMESPACE, "get", "daemonsets")["items"] == []
    left = [r["metadata"]["name"] for kind in ("clusterroles", "clusterrolebindings", "priorityclasses")
            for r in node.kubectl_json("get", kind)["items"] if r["metadata"]["name"].startswith("faultline")]
    assert left == [], left
    # No packet socket (capture) is left open on the host, and the agents changed no firewall rule.
    eventually(lambda: Node.packet_sockets() <= node.packet_sockets_before, timeout=30,
               what=f"packet sockets back to {node.packet_sockets_before}")
    assert "faultline" not in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


def agent_pod(node):
    pods = node.kubectl_json("-n", NAMESPACE, "get", "pods", "-l", "faultline.dev/tapconfig=default")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live[0] if len(live) == 1 else None


def ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))

