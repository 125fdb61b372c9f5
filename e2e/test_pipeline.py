"""The whole system: real errors counted in ErrorViews and published as Events on the pods; restarts,
outages, ingest authentication, recordings and an error storm (the system itself is in system.py)."""

import collections
import json
import signal
import subprocess
import time

from processes import INGEST_AUDIENCE, NAMESPACE, Agent, Operator, eventually, metric
from system import DASHBOARD, PODS, dns_servfail, grpc_calls, make_errors, start_agent_pod, view_status

def test_errors_reach_the_errorview_of_their_namespace(cluster, system):
    make_errors(system["lab"], 42000)
    st = eventually(lambda: (s := view_status(cluster, "shop", "errors")).get("matched", 0) >= 4 and s,
                    timeout=40, what="4 matched in shop/errors")
    assert st["matched"] == 4, st
    assert st["countsByKind"] == {"tcp/SynSent": 1, "http/5xx": 1, "icmp/DestinationUnreachable": 1,
                                  "tcp/Reset": 1}
    assert st["conditions"][0]["type"] == "Ready" and st["conditions"][0]["status"] == "True"
    assert any(p["source"] == "shop/pod-a" and p["destination"] == "shop/pod-b" for p in st["topPairs"])
    assert len(st["samples"]) == 4 and st["lastSeen"]
    # A view in another namespace learns nothing about shop.
    time.sleep(3)
    assert view_status(cluster, "other", "errors").get("matched", 0) == 0
    # A view in the operator's namespace is cluster-wide.
    eventually(lambda: view_status(cluster, NAMESPACE, "all-tcp").get("matched", 0) == 2, what="cluster-wide view")
    table = cluster.kubectl("-n", "shop", "get", "errorviews").stdout
    assert "errors" in table and DASHBOARD in table


def pod_events(cluster, pod, reason=None):
    """The Events on a pod of namespace shop (with that reason, if given)."""
    evs = cluster.kubectl_json("-n", "shop", "get", "events", "--field-selector", f"involvedObject.name={pod}")
    return [e for e in evs["items"] if reason is None or e["reason"] == reason]


def counted_once_more(cluster, kind, before):
    """Waits until shop/errors counts one more `kind` than `before` (its countsByKind) and nothing else."""
    want = dict(before, **{kind: before.get(kind, 0) + 1})
    eventually(lambda: view_status(cluster, "shop", "errors").get("countsByKind") == want, timeout=40,
               what=f"one {kind} counted (had {before})")


def test_events_on_the_involved_pods(cluster, system):
    def reasons(pod):
        return {e["reason"]: e for e in pod_events(cluster, pod)}
    got = eventually(lambda: (r := reasons("pod-b")) and {"TCPSynSent", "HTTPServerError", "TCPReset"} <= set(r) and r,
                     timeout=40, what="Events on pod-b")
    assert got["TCPSynSent"]["type"] == "Warning"
    assert "pod-a" in got["HTTPServerError"]["message"] or "pod-a" in got["HTTPServerError"].get("note", "")
    assert "ICMPDestinationUnreachable" in eventually(lambda: reasons("pod-a"), what="Events on pod-a")
    described = cluster.kubectl("-n", "shop", "describe", "pod", "pod-b").stdout
    assert "TCPSynSent" in described and "HTTPServerError" in described
    # Only the view with publishEvents writes Events: nothing in the other namespace.
    assert cluster.kubectl_json("-n", "other", "get", "events")["items"] == []


def test_invalid_query_gets_query_invalid(cluster, system):
    def cond():
        return {c["type"]: c for c in view_status(cluster, "shop", "bad").get("conditions", [])}
    c = eventually(lambda: cond().get("QueryInvalid"), what="QueryInvalid")
    assert c["status"] == "True"
    assert c["message"] == "column 17: unknown operator '=': expected one of == != < <= > >= && || !"
    assert cond()["Ready"]["status"] == "False"


def test_tapconfig_status_has_per_node_capture_statistics(cluster, system):
    def nodes():
        st = cluster.kubectl_json("get", "tapconfig", "default").get("status", {})
        return {n["node"]: n for n in st.get("nodes", [])}, {c["type"]: c for c in st.get("conditions", [])}
    n, c = eventually(lambda: (x := nodes())[0].keys() >= {"node-a", "node-b"} and x, what="node statistics")
    assert n["node-a"]["received"] > 0 and n["node-b"]["received"] > 0
    assert n["node-a"]["dropRatio"] == 0 and n["node-a"]["lastReport"]
    assert c["PacketLoss"]["status"] == "False"
    assert c["Ready"]["type"] == "Ready", "the controller's conditions are still there beside PacketLoss"


def test_a_killed_agent_shows_in_its_nodes_statistics(cluster, system):
    """SIGKILL node-b's agent: after SILENT_AFTER (30 s) the TapConfig says which node went silent, its last
    statistics kept while an agent pod is on the node; once the node (and its pod) is gone, it is forgotten;
    a new agent on the node (what the DaemonSet's restart does) reports again."""
    def reporting():
        st = cluster.kubectl_json("get", "tapconfig", "default").get("status", {})
        return {c["type"]: c for c in st.get("conditions", [])}.get("AgentsReporting", {})

    def nodes():
        st = cluster.kubectl_json("get", "tapconfig", "default").get("status", {})
        return {n["node"] for n in st.get("nodes", [])}
    assert eventually(reporting, what="AgentsReporting")["status"] == "True"
    killed = system["agents"][1]
    killed.proc.kill()
    killed.proc.wait()
    c = eventually(lambda: (r := reporting()).get("status") == "False" and r, timeout=60, what="silent node-b")
    assert c["reason"] == "AgentSilent" and "node-b" in c["message"] and "node-a" not in c["message"], c
    assert "node-b" in nodes(), "the silent node's statistics stay while its agent pod does"
    # The node is deleted (its pods with it): it is forgotten, and no longer silent.
    cluster.kubectl("-n", NAMESPACE, "delete", "pod", "faultline-agent-default-node-b", "--grace-period=0", "--force")
    eventually(lambda: "node-b" not in nodes() and reporting().get("status") == "True", timeout=30,
               what="node-b forgotten")
    start_agent_pod(cluster, "node-b")
    killed.stop()
    lab, logs = system["lab"], system["logs"]
    system["agents"][1] = Agent("node-b", [lab.pods["b"][1], lab.pods["c"][1]], system["operator"].port,
                                logs / "agent.token", logs / "agent-b-2.log")
    eventually(lambda: reporting().get("status") == "True", timeout=30, what="node-b reporting again")


def test_agents_run_with_least_privilege(cluster, system):
    """The agents' ServiceAccount may do nothing with the API server (the DaemonSet does not even mount
    its token; the operator names the pods): no reads, no secrets, no writes anywhere."""
    kc = system["logs"] / "agent.kubeconfig"
    for verb, what in [("watch", "pods --all-namespaces"), ("list", "services --all-namespaces"),
                       ("get", "secrets --all-namespaces"), ("list", "configmaps --namespace=faultline-system"),
                       ("delete", "pods --namespace=shop"), ("create", "pods --namespace=shop"),
                       ("patch", "errorviews.faultline.dev --namespace=shop"), ("create", "events --namespace=shop"),
                       ("update", "tapconfigs.faultline.dev"), ("create", "tokenreviews.authentication.k8s.io")]:
        r = cluster.kubectl("auth", "can-i", verb, *what.split(), kubeconfig=kc, check=False)
        assert r.stdout.strip() == "no", f"an agent may {verb} {what}"
    r = cluster.kubectl("-n", "shop", "delete", "pod", "pod-a", kubeconfig=kc, check=False)
    assert r.returncode != 0 and "forbidden" in r.stderr, r.stderr


def test_restart_and_outage_lose_nothing(cluster, system):
    before = eventually(lambda: (s := view_status(cluster, "shop", "errors")).get("matched") and s)["matched"]
    system["operator"].proc.kill()
    system["operator"].proc.wait()
    # While the operator is down, more errors happen: the agents keep them.
    lab = system["lab"]
    lab.traffic("a", "connect", PODS["b"][3], "82", "--sport", "42100")
    lab.traffic("a", "connect", PODS["b"][3], "83", "--sport", "42101")
    a, b = system["agents"]
    for agent in (a, b):
        eventually(lambda: agent.metric("faultline_agent_batches_failed_total"), what="agent buffering")
    # Node b's agent is slow to come back (frozen): the new process hears from node a first, and must
    # still leave these pod-a → pod-b entries to node b's agent, whose pod runs there.
    b.proc.send_signal(signal.SIGSTOP)
    sent = {"a": a.metric("faultline_agent_batches_sent_total")}
    try:
        # The replacement listens where the agents send (as a Service would route to it).
        system["operator"] = Operator(system["operator_kubeconfig"], system["logs"] / "operator-2.log", "pipeline-2",
                                      port=system["operator"].port)
        system["operator"].wait_ready()
        # Batches go in order: node a's first success since the restart carries the outage's entries.
        eventually(lambda: a.metric("faultline_agent_batches_sent_total") > sent["a"], timeout=60,
                   what="node a delivered")
        time.sleep(3)  # two status rounds: a copy counted from node a would show now
        assert view_status(cluster, "shop", "errors").get("matched", 0) == before, "node a's copies left to node b"
    finally:
        b.proc.send_signal(signal.SIGCONT)
    sent["b"] = b.metric("faultline_agent_batches_sent_total")
    eventually(lambda: view_status(cluster, "shop", "errors").get("matched", 0) >= before + 2, timeout=60,
               what="counts resumed plus the outage's entries")
    eventually(lambda: b.metric("faultline_agent_batches_sent_total") > sent["b"], timeout=60, what="node b delivered")
    time.sleep(3)
    after = view_status(cluster, "shop", "errors").get("matched", 0)
    assert after == before + 2, "no count was reset and nothing counted twice"
    assert a.metric("faultline_agent_buffer_dropped_total") == 0


def test_only_agents_may_send_entries(cluster, system):
    """The ingest endpoint refuses a request without a token, and a valid token that is not an agent's."""
    import urllib.request
    url = f"http://127.0.0.1:{system['operator'].port}/api/v1/ingest"
    body = json.dumps({"node": "evil", "agentRun": "x", "seq": 1, "stats": {}, "entries": []}).encode()

    def post(headers):
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert post({}) == 401
    assert post({"Authorization": "Bearer not-a-token"}) == 403
    operator_token = cluster.kubectl("create", "token", "faultline-operator", "-n", NAMESPACE,
                                     f"--audience={INGEST_AUDIENCE}").stdout.strip()
    assert post({"Authorization": f"Bearer {operator_token}"}) == 403, "a ServiceAccount that is not an agent"
    api_token = cluster.kubectl("create", "token", "faultline-agent-default", "-n", NAMESPACE).stdout.strip()
    assert post({"Authorization": f"Bearer {api_token}"}) == 403, "an agent's token for the API server"
    agent_token = (system["logs"] / "agent.token").read_text().strip()
    assert post({"Authorization": f"Bearer {agent_token}"}) == 200


def test_strangers_cost_the_operator_nothing(cluster, system):
    """A caller without an agent's token is answered before its body is read, and unknown tokens cannot
    make the operator flood the API server with TokenReviews."""
    import socket
    port = system["operator"].port

    def first_line(token, declared=30 << 20):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = (f"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {declared}\r\n" + (f"Authorization: Bearer {token}\r\n" if token else "") + "\r\n")
        s.sendall(head.encode() + b"{" * 1024)  # 1 KiB of the 30 MiB declared
        try:
            return s.recv(256).split(b"\r\n")[0].decode()
        finally:
            s.close()

    assert first_line(None).endswith("401 Unauthorized"), "answered without waiting for 30 MiB"
    assert first_line("a-stranger").endswith("403 Forbidden")
    # Distinct random tokens: after a burst the operator stops asking the API server and says 429.
    answers = [first_line(f"random-{i}-{time.time()}", declared=2) for i in range(400)]
    throttled = sum(a.endswith("429 Too Many Requests") for a in answers)
    assert throttled >= 100 and all(a.endswith(("403 Forbidden", "429 Too Many Requests")) for a in answers), \
        collections.Counter(answers)
    text = system["operator"].get("/metrics")[1]
    assert metric(text, 'faultline_operator_ingest_refused_total{reason="throttled"}') >= throttled
    time.sleep(2)  # let the bucket refill a little for the agents' next new token


def test_an_error_entry_pcap_is_served_to_those_who_may_see_it(cluster, system, tmp_path):
    import urllib.request
    samples = eventually(lambda: view_status(cluster, "shop", "errors").get("samples"), what="samples")
    ids = [s["id"] for s in samples]
    port = system["operator"].port

    def get(entry_id, token):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/entries/{entry_id}/pcap",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    admin = "faultline-e2e-admin"
    got = [(i, *get(i, admin)) for i in ids]
    served = [(i, body) for i, status, body in got if status == 200]
    assert served, f"no recording among {[(i, s) for i, s, _ in got]}"
    entry_id, body = served[0]
    path = tmp_path / f"{entry_id}.pcap"
    path.write_bytes(body)
    frames = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert len(frames) >= 2, "the flow's packets up to the error open in tshark"
    # Nobody else: no token, and a valid token of a ServiceAccount that may not read ErrorViews in shop.
    assert get(entry_id, None)[0] == 401
    api_token = cluster.kubectl("create", "token", "faultline-agent-default", "-n", NAMESPACE).stdout.strip()
    assert get(entry_id, api_token)[0] == 403
    # The agents' ingest token is for the operator's ingest audience only: not an identity anywhere else.
    ingest_token = (system["logs"] / "agent.token").read_text().strip()
    assert get(entry_id, ingest_token)[0] == 401
    # kubectl get shows where to fetch it.
    assert any(s["id"] == entry_id for s in samples)


def test_an_error_storm_is_counted_in_full_with_bounded_api_writes(cluster, system):
    """10,000 resets in a second: every one is counted, but the API server sees a few dozen writes — Events
    aggregate into one series per (pod, reason) and share a write budget; status is written per round."""
    import datetime
    import urllib.request
    from test_operator import metric

    op = system["operator"]
    writes = lambda: sum(metric(op.get("/metrics")[1], f'faultline_operator_api_writes_total{{kind="{k}"}}') or 0  # noqa
                         for k in ("event", "errorview_status", "tapconfig_stats"))
    before_matched = view_status(cluster, "shop", "errors").get("matched", 0)
    before_writes = writes()
    token = (system["logs"] / "agent.token").read_text().strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    a, b = PODS["a"], PODS["b"]

    def reset(i):
        return {"id": f"storm-{i}", "timestamp": now, "node": "node-b", "protocol": "tcp",
                "src": {"ip": a[3], "port": 10000 + i % 50000, "name": a[1], "namespace": a[0]},
                "dst": {"ip": b[3], "port": 5432, "name": b[1], "namespace": b[0]},
                "error": {"type": "connection", "msg": "Reset"}, "tcp": {"state": "Reset", "by": "server"},
                "elapsedTime": 1.0}

    started = time.time()
    for seq in range(1, 11):
        batch = {"node": "node-b", "agentRun": "storm", "seq": seq, "stats": {},
                 "entries": [reset(seq * 1000 + i) for i in range(1000)]}
        req = urllib.request.Request(f"http://127.0.0.1:{op.port}/api/v1/ingest", data=json.dumps(batch).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200
    eventually(lambda: view_status(cluster, "shop", "errors").get("matched", 0) >= before_matched + 10_000,
               timeout=30, what="all 10,000 counted")

    def resets_on_b():
        return [e for e in cluster.kubectl_json("-n", "shop", "get", "events.events.k8s.io")["items"]
                if e["reason"] == "TCPReset" and e["regarding"]["name"] == "pod-b"]
    eventually(lambda: (r := resets_on_b()) and r[0].get("series", {}).get("count", 0) >= 10_000, timeout=40,
               what=f"the Event series counts the storm ({resets_on_b()})")
    assert len(resets_on_b()) == 1, "one Event series per pod and reason"
    elapsed = time.time() - started
    spent = writes() - before_writes
    # Events: a burst of 20 then 2/s; status: one write per view per 2 s round; statistics: one per 5 s.
    budget = 20 + 2 * elapsed + 4 * (elapsed / 2 + 1) + (elapsed / 5 + 1)
    assert spent <= budget, f"{spent} API writes for 10,000 entries in {elapsed:.0f} s (budget {budget:.0f})"


def test_a_dns_servfail_reaches_the_errorview_and_an_event(cluster, system, tmp_path):
    """CoreDNS in pod-b answers SERVFAIL; pod-a asks through glibc's resolver: the view counts one DNS error
    (glibc's retry from a new socket is the same exchange) and pod-b gets a DNSError Event."""
    before = view_status(cluster, "shop", "errors").get("countsByKind", {})
    dns_servfail(system["lab"], "a", "b", tmp_path)
    counted_once_more(cluster, "dns/SERVFAIL", before)
    [event] = eventually(lambda: pod_events(cluster, "pod-b", "DNSError"), timeout=40,
                         what="a DNSError Event on pod-b")
    assert "broken.test" in event["message"] and "SERVFAIL" in event["message"], event["message"]


def test_a_grpc_unavailable_reaches_the_errorview_and_an_event(cluster, system):
    """A grpcio server in pod-b fails a call with UNAVAILABLE; pod-a's grpcio client made it: the view counts
    one grpc/UNAVAILABLE and pod-b gets a GRPCError Event naming the method."""
    before = view_status(cluster, "shop", "errors").get("countsByKind", {})
    assert grpc_calls(system["lab"], "a", "b", 50051, "Checkout:5") == [["Checkout", "UNAVAILABLE"]]
    counted_once_more(cluster, "grpc/UNAVAILABLE", before)
    [event] = eventually(lambda: pod_events(cluster, "pod-b", "GRPCError"), timeout=40,
                         what="a GRPCError Event on pod-b")
    assert "UNAVAILABLE" in event["message"] and "Checkout" in event["message"], event["message"]
