"""The operator against a real kube-apiserver: CRDs and their validation, the TapConfig controller
(DaemonSet, RBAC, configuration, status, rolls, clean-up), its own least-privilege RBAC, health and metrics,
and leader election between two replicas."""

import json
import time

import pytest

from conftest import NAMESPACE, Operator
from processes import eventually, metric

SPEC_EXAMPLE = """
apiVersion: faultline.dev/v1alpha1
kind: TapConfig
metadata: {name: %(name)s}
spec:
  # Each test's TapConfig selects nodes of its own: TapConfigs that could select one node are refused.
  nodeSelector: {faultline.dev/test: %(name)s}
  captureBackend: %(backend)s
  timeouts:
    synTimeoutMs: 3000
    closeTimeoutMs: 5000
    pairTimeoutMs: 30000
    tcpStreamChannelTimeoutMs: 10000
  packetLossThreshold: 0.01
"""


def tap_yaml(name, backend="afpacket"):
    return SPEC_EXAMPLE % {"name": name, "backend": backend}


def daemonset(cluster, tap):
    return cluster.kubectl_json("-n", NAMESPACE, "get", "daemonset", f"faultline-agent-{tap}")


def args(ds):
    return ds["spec"]["template"]["spec"]["containers"][0]["args"]


def conditions(cluster, tap):
    st = cluster.kubectl_json("get", "tapconfig", tap).get("status", {})
    return {c["type"]: c for c in st.get("conditions", [])}


# ---- CRDs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,message", [
    ("captureBackend: ebpf", 'Unsupported value: "ebpf"'),
    ("timeouts: {synTimeoutMs: -5}", "synTimeoutMs in body should be greater than or equal to 1"),
    ("timeouts: {pairTimeoutMs: 0}", "pairTimeoutMs in body should be greater than or equal to 1"),
    ("timeouts: {closeTimeoutMs: 99999999}", "closeTimeoutMs in body should be less than or equal to 3600000"),
    ("timeouts: {closeTimeoutMs: 9000, idleTimeoutMs: 1000}", "closeTimeoutMs must not exceed idleTimeoutMs"),
    ("packetLossThreshold: 1.5", "packetLossThreshold in body should be less than or equal to 1"),
    ("interfaces: ['eth0; rm -rf /']", "should match"),
    ("dissectors: [smtp]", 'Unsupported value: "smtp"'),
    ("recorder: {mode: off}", "mode in body must be of type string"),
    ("agent: {engineThreads: 0}", "engineThreads in body should be greater than or equal to 1"),
])
def test_api_server_rejects_invalid_tapconfigs(cluster, spec, message):
    r = cluster.kubectl("apply", "-f", "-", check=False,
                        input=f"apiVersion: faultline.dev/v1alpha1\nkind: TapConfig\nmetadata: {{name: bad}}\nspec:\n  {spec}\n")
    assert r.returncode != 0
    assert message in r.stderr, r.stderr


@pytest.mark.parametrize("query", ['""', '"   "'])
def test_api_server_rejects_an_empty_errorview_query(cluster, query):
    r = cluster.kubectl("apply", "-f", "-", check=False, input=(
        "apiVersion: faultline.dev/v1alpha1\nkind: ErrorView\nmetadata: {name: e, namespace: default}\n"
        f"spec:\n  query: {query}\n"))
    assert r.returncode != 0
    assert "query" in r.stderr, r.stderr


def test_defaults_are_applied_and_printer_columns_work(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input="apiVersion: faultline.dev/v1alpha1\nkind: TapConfig\n"
                                                "metadata: {name: defaults}\n"
                                                "spec: {nodeSelector: {faultline.dev/test: defaults}}\n")
    spec = cluster.kubectl_json("get", "tap", "defaults")["spec"]
    assert spec["captureBackend"] == "afpacket"
    assert spec["timeouts"] == {"synTimeoutMs": 3000, "closeTimeoutMs": 5000, "pairTimeoutMs": 30000,
                                "tcpStreamChannelTimeoutMs": 10000, "idleTimeoutMs": 300000, "dnsTimeoutMs": 5000,
                                "tlsHandshakeTimeoutMs": 10000}
    assert spec["dissectors"] == ["http", "dns", "tls", "http2", "redis", "postgresql", "mysql", "amqp", "kafka"]
    table = cluster.kubectl("get", "tap", "defaults").stdout
    assert table.split("\n")[0].split() == ["NAME", "BACKEND", "DESIRED", "READY", "STATUS", "AGE"]
    cluster.kubectl("delete", "tap", "defaults", "--wait=true")


# ---- TapConfig controller -----------------------------------------------------------------------------

def test_tapconfig_becomes_an_agent_daemonset(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("example"))
    ds = eventually(lambda: daemonset(cluster, "example"), what="DaemonSet")
    a = args(ds)
    for flag in ["--capture-backend=afpacket", "--syn-timeout-ms=3000", "--close-timeout-ms=5000",
                 "--pair-timeout-ms=30000", "--tcp-stream-channel-timeout-ms=10000", "--idle-timeout-ms=300000",
                 "--dns-timeout-ms=5000", "--tls-handshake-timeout-ms=10000", "--dissector=http", "--dissector=dns",
                 "--dissector=tls", "--packet-loss-threshold=0.01"]:
        assert flag in a, a
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    sc = pod["containers"][0]["securityContext"]
    assert sc["privileged"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"add": ["NET_RAW", "NET_ADMIN"], "drop": ["ALL"]}
    assert ds["metadata"]["ownerReferences"][0]["kind"] == "TapConfig"
    full = cluster.kubectl_json("-n", NAMESPACE, "get", "daemonset", "faultline-agent-example", "--show-managed-fields")
    managers = {(m["manager"], m["operation"]) for m in full["metadata"]["managedFields"]}
    assert ("faultline-operator", "Apply") in managers, "server-side apply with its own field manager"
    config = json.loads(cluster.kubectl_json("-n", NAMESPACE, "get", "configmap", "faultline-agent-example")
                        ["data"]["config.json"])
    assert config["timeouts"]["pairTimeoutMs"] == 30000 and config["captureBackend"] == "afpacket"
    cluster.kubectl("-n", NAMESPACE, "get", "serviceaccount", "faultline-agent-example")
    # Agents get no API access: the operator names pods, the agents only capture and report.
    agent_sa = f"system:serviceaccount:{NAMESPACE}:faultline-agent-example"
    for verb, what in [("list", "pods"), ("watch", "services"), ("get", "secrets"), ("create", "pods")]:
        r = cluster.kubectl("auth", "can-i", verb, what, "--all-namespaces", f"--as={agent_sa}", check=False)
        assert r.stdout.strip() == "no", f"an agent may {verb} {what}: {r.stdout}"
    assert ds["spec"]["template"]["spec"]["automountServiceAccountToken"] is False

    # Status: observed generation; not ready while no agent is scheduled.
    tap = eventually(lambda: (t := cluster.kubectl_json("get", "tap", "example")).get("status") and t)
    assert tap["status"]["observedGeneration"] == tap["metadata"]["generation"]
    c = conditions(cluster, "example")
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "NoAgentsScheduled")
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("False", "Reconciled")

    # There is no DaemonSet controller here: report two ready agents the way it would.
    cluster.kubectl("-n", NAMESPACE, "patch", "daemonset", "faultline-agent-example", "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": {"desiredNumberScheduled": 2, "numberReady": 2,
                                                                  "currentNumberScheduled": 2,
                                                                  "numberMisscheduled": 0}}))
    eventually(lambda: conditions(cluster, "example")["Ready"]["status"] == "True", what="Ready=True")
    st = cluster.kubectl_json("get", "tap", "example")["status"]
    assert (st["desiredAgents"], st["readyAgents"]) == (2, 2)
    assert conditions(cluster, "example")["Ready"]["reason"] == "AgentsReady"


def test_a_spec_change_rolls_the_daemonset(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("rolling"))
    before = eventually(lambda: daemonset(cluster, "rolling"))
    cluster.kubectl("patch", "tap", "rolling", "--type=merge", "-p",
                    json.dumps({"spec": {"captureBackend": "libpcap", "timeouts": {"synTimeoutMs": 4500},
                                         "agent": {"engineThreads": 3}}}))
    after = eventually(lambda: (d := daemonset(cluster, "rolling"))["metadata"]["generation"] >
                       before["metadata"]["generation"] and d, what="DaemonSet updated")
    assert "--capture-backend=libpcap" in args(after) and "--syn-timeout-ms=4500" in args(after)
    assert "--engine-threads=3" in args(after) and not any(a.startswith("--engine-threads") for a in args(before))
    # A field that only reaches the ConfigMap still changes the pod template (config hash).
    hash_of = lambda d: d["spec"]["template"]["metadata"]["annotations"]["faultline.dev/config-hash"]  # noqa: E731
    cluster.kubectl("patch", "tap", "rolling", "--type=merge", "-p", json.dumps({"spec": {"recorder": {"mode": "errors"}}}))
    eventually(lambda: hash_of(daemonset(cluster, "rolling")) != hash_of(after), what="config hash changed")


def test_a_child_changed_or_deleted_by_hand_is_put_back_at_once(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("drift"))
    eventually(lambda: daemonset(cluster, "drift"), what="DaemonSet")
    child = "faultline-agent-drift"
    config = lambda: cluster.kubectl_json("-n", NAMESPACE, "get", "configmap", child)["data"]["config.json"]  # noqa: E731
    want = eventually(config, what="ConfigMap")
    # The periodic requeue is 300 s away: only a watch on each owned kind brings these back in seconds.
    cluster.kubectl("-n", NAMESPACE, "patch", "configmap", child, "--type=merge",
                    "-p", json.dumps({"data": {"config.json": "{}"}}))
    eventually(lambda: config() == want, timeout=20, what="ConfigMap put back")
    cluster.kubectl("-n", NAMESPACE, "delete", "serviceaccount", child)
    eventually(lambda: cluster.kubectl("-n", NAMESPACE, "get", "serviceaccount", child, check=False).returncode == 0,
               timeout=20, what="ServiceAccount put back")
    cluster.kubectl("-n", NAMESPACE, "delete", "daemonset", child)
    eventually(lambda: daemonset(cluster, "drift"), timeout=20, what="DaemonSet put back")
    cluster.kubectl("delete", "tap", "drift", "--wait=true", "--timeout=30s")


def test_invalid_spec_gets_a_condition_and_the_operator_keeps_running(cluster, operator):
    # Passes the schema, fails the operator's own checks: an interface listed twice.
    cluster.kubectl("apply", "-f", "-", input="apiVersion: faultline.dev/v1alpha1\nkind: TapConfig\n"
                                                "metadata: {name: twice}\nspec: {interfaces: [eth0, eth0], "
                                                "nodeSelector: {faultline.dev/test: twice}}\n")
    c = eventually(lambda: (c := conditions(cluster, "twice")).get("Degraded") and c, what="Degraded")
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("True", "InvalidSpec")
    assert '"eth0" is listed twice' in c["Degraded"]["message"]
    assert cluster.kubectl("-n", NAMESPACE, "get", "daemonset", "faultline-agent-twice", check=False).returncode != 0

    # Refused by the API server when applied: requests above limits.
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("greedy"))
    eventually(lambda: daemonset(cluster, "greedy"))
    cluster.kubectl("patch", "tap", "greedy", "--type=merge", "-p", json.dumps(
        {"spec": {"agent": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}}}))
    c = eventually(lambda: (c := conditions(cluster, "greedy"))["Degraded"]["status"] == "True" and c)
    assert c["Degraded"]["reason"] == "ApplyFailed"
    assert "must be less than or equal to memory limit" in c["Degraded"]["message"]
    # Fixing the spec clears it.
    cluster.kubectl("patch", "tap", "greedy", "--type=merge", "-p", json.dumps(
        {"spec": {"agent": {"resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "1Gi"}}}}}))
    eventually(lambda: conditions(cluster, "greedy")["Degraded"]["status"] == "False", what="recovered")
    assert operator.proc.poll() is None
    assert operator.get("/healthz") == (200, "ok")


def test_a_tapconfig_overlapping_an_older_one_is_refused_until_its_selector_is_disjoint(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("pool-a"))
    eventually(lambda: daemonset(cluster, "pool-a"))
    time.sleep(1.1)  # a younger creation timestamp, to the second
    # No nodeSelector: it could select every node, pool a's included.
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("everywhere").replace(
        "  nodeSelector: {faultline.dev/test: everywhere}\n", ""))
    c = eventually(lambda: (c := conditions(cluster, "everywhere")).get("Ready", {}).get("reason") == "Overlaps" and c,
                   what="Ready=False/Overlaps")
    assert "overlaps TapConfig" in c["Ready"]["message"], c["Ready"]
    assert cluster.kubectl("-n", NAMESPACE, "get", "daemonset", "faultline-agent-everywhere", check=False).returncode != 0
    cluster.kubectl("patch", "tap", "everywhere", "--type=merge", "-p",
                    json.dumps({"spec": {"nodeSelector": {"faultline.dev/test": "pool-b"}}}))
    eventually(lambda: daemonset(cluster, "everywhere"), what="agents once disjoint")
    assert conditions(cluster, "pool-a")["Ready"]["reason"] != "Overlaps", "the older one keeps its agents"
    for name in ("pool-a", "everywhere"):
        cluster.kubectl("delete", "tap", name, "--wait=true")


def test_deleting_the_tapconfig_removes_what_it_created(cluster, operator):
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("doomed"))
    eventually(lambda: daemonset(cluster, "doomed"))
    cluster.kubectl("delete", "tap", "doomed", "--wait=true", "--timeout=30s")
    for kind, ns in [("daemonset", NAMESPACE), ("configmap", NAMESPACE), ("serviceaccount", NAMESPACE)]:
        args_ = ["-n", ns, "get", kind, "faultline-agent-doomed"]
        # The garbage collector removes the children after the owner is gone.
        eventually(lambda: cluster.kubectl(*args_, check=False).returncode != 0, what=f"{kind} removed")


# ---- The operator itself ------------------------------------------------------------------------------

def test_operator_runs_with_least_privilege(cluster, operator, operator_kubeconfig):
    # Everything above was done by an operator holding only its ServiceAccount's token. It may not do more:
    # Secrets: read and watched in its own namespace only (an export's token and CA).
    for verb, what in [("delete", "nodes"), ("get", "secrets"), ("watch", "secrets --all-namespaces"),
                       ("list", "secrets --namespace=default"), ("create", "daemonsets --namespace=default"),
                       ("create", "pods"), ("create", "clusterrolebindings"), ("patch", "clusterroles"),
                       ("patch", "pods --namespace=default")]:
        r = cluster.kubectl("auth", "can-i", verb, *what.split(), kubeconfig=operator_kubeconfig, check=False)
        assert r.stdout.strip() == "no", f"the operator may {verb} {what}"
    r = cluster.kubectl("-n", "default", "create", "configmap", "x", kubeconfig=operator_kubeconfig, check=False)
    assert "forbidden" in r.stderr


def test_status_writes_do_not_make_reconciles(cluster, operator):
    """Capture statistics are written into TapConfig status by the operator itself: that must not make the
    controller reconcile (three API writes each); a spec change must."""
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("quiet"))
    eventually(lambda: daemonset(cluster, "quiet"))
    ok = 'faultline_operator_reconciliations_total{controller="tapconfig",result="ok"}'
    reconciles = lambda: metric(operator.get("/metrics")[1], ok) or 0  # noqa: E731
    time.sleep(3)
    before = reconciles()
    for i in range(5):
        node = {"node": f"n{i}", "received": i, "dropped": 0, "dropRatio": 0, "streamsTimedOut": 0}
        cluster.kubectl("patch", "tapconfig", "quiet", "--subresource=status", "--type=merge", "-p",
                        json.dumps({"status": {"nodes": [node]}}))
    time.sleep(3)
    assert reconciles() == before, "status writes made reconciles"
    cluster.kubectl("patch", "tapconfig", "quiet", "--type=merge", "-p",
                    json.dumps({"spec": {"timeouts": {"synTimeoutMs": 4000}}}))
    eventually(lambda: reconciles() > before, what="a spec change reconciles")
    cluster.kubectl("delete", "tap", "quiet", "--wait=true")


def test_health_and_metrics(cluster, operator):
    assert operator.get("/healthz") == (200, "ok")
    assert operator.get("/readyz")[0] == 200
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("counted"))
    ok = 'faultline_operator_reconciliations_total{controller="tapconfig",result="ok"}'
    eventually(lambda: (metric(operator.get("/metrics")[1], ok) or 0) >= 1, what="a reconciliation counted")
    status, text = operator.get("/metrics")
    assert status == 200
    assert metric(text, "faultline_operator_leader") == 1.0


def test_operator_survives_an_api_server_outage(cluster, operator):
    """The API server goes away for longer than the lease: the operator steps down, keeps running, and
    leads and reconciles again once the API server is back — no restart."""
    assert metric(operator.get("/metrics")[1], "faultline_operator_leader") == 1.0
    cluster.stop_apiserver()
    try:
        eventually(lambda: metric(operator.get("/metrics")[1], "faultline_operator_leader") == 0.0, timeout=40,
                   what="stepped down while the API server is gone")
        assert operator.proc.poll() is None, "still running"
    finally:
        cluster.start_apiserver()
    eventually(lambda: metric(operator.get("/metrics")[1], "faultline_operator_leader") == 1.0, timeout=60,
               what="leads again")
    cluster.kubectl("apply", "-f", "-", input=tap_yaml("after-outage"))
    eventually(lambda: daemonset(cluster, "after-outage"), timeout=60, what="reconciles again")
    assert operator.proc.poll() is None


def test_a_leader_whose_renewals_hang_steps_down_before_its_lease_ends(cluster, operator):
    """Requests to the API server hang rather than fail: the leader must stop acting before its 15 s lease
    could be taken by another replica (client-go's renew deadline), not whenever the request returns."""
    eventually(lambda: metric(operator.get("/metrics")[1], "faultline_operator_leader") == 1.0, timeout=60,
               what="leading")
    cluster.pause_apiserver()
    frozen = time.monotonic()
    try:
        eventually(lambda: metric(operator.get("/metrics")[1], "faultline_operator_leader") == 0.0, timeout=20,
                   what="stepped down")
        stepped_down = time.monotonic() - frozen
    finally:
        cluster.pause_apiserver(False)
    assert stepped_down < 14.0, f"stepped down {stepped_down:.1f} s after the API server froze (lease: 15 s)"
    eventually(lambda: metric(operator.get("/metrics")[1], "faultline_operator_leader") == 1.0, timeout=60,
               what="leads again")


def test_leader_election_and_graceful_handover(cluster, operator, operator_kubeconfig, tmp_path):
    """Runs last: it stops the session's operator (replica-a) to hand the lease over."""
    lease = lambda: cluster.kubectl_json("-n", NAMESPACE, "get", "lease", "faultline-operator")["spec"]  # noqa
    is_leader = lambda o: metric(o.get("/metrics")[1], "faultline_operator_leader") == 1.0  # noqa: E731
    assert lease()["holderIdentity"] == "replica-a"
    standby = Operator(operator_kubeconfig, tmp_path / "b.log", "replica-b")
    try:
        standby.wait_ready()
        time.sleep(3)
        assert not is_leader(standby), "a second replica waits while the lease is held"
        assert lease()["holderIdentity"] == "replica-a"
        cluster.kubectl("apply", "-f", "-", input=tap_yaml("before-handover"))
        eventually(lambda: daemonset(cluster, "before-handover"))

        assert operator.stop() == 0, "SIGTERM is a graceful shutdown"
        # The lease was released on the way out, so the standby need not wait for it to expire (15 s).
        eventually(lambda: lease().get("holderIdentity") == "replica-b", timeout=8, what="replica-b leads")
        eventually(lambda: is_leader(standby), timeout=5, what="replica-b reports leadership")
        cluster.kubectl("apply", "-f", "-", input=tap_yaml("after-handover"))
        eventually(lambda: daemonset(cluster, "after-handover"), what="the new leader reconciles")
    finally:
        assert standby.stop() == 0
