"""make bench-operator: the operator under a cluster's load, measured.

A real kube-apiserver and etcd (e2e/cluster.py), the release operator with its own ServiceAccount, pods on N
simulated nodes (10 per node, in 50 namespaces), a TapConfig, a cluster-wide ErrorView publishing Events and
one per namespace; then N simulated agents (bench/ingest-load) post a batch a second each, with a burst every
10 s, for `--seconds`. For N in `--nodes` it prints, per run: entries/s accepted, post latency p50/p99/max,
failures by status, the operator's CPU and peak RSS, the API server's mutating requests per second by
resource (from its own /metrics), the watches the operator holds on pods, the largest ErrorView status, and
whether the cluster-wide view counted exactly the entries accepted (ground truth: what the load sent).

With `--export grpc` (or `http/protobuf`) the TapConfig also exports every entry over OTLP to a real
OpenTelemetry Collector (e2e/build-otelcol.sh, its file exporter writing to /dev/null) on this machine: each
run then adds the records the collector took, the entries dropped (by reason) and the collector's CPU."""

import argparse
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

from cluster import ADMIN_TOKEN, Cluster  # noqa: E402
from processes import NAMESPACE, Operator, eventually, ingest_token  # noqa: E402

PODS_PER_NODE = 10
NAMESPACES = 50
MUTATING = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


class Api:
    """Plain HTTPS to the API server as admin: creating thousands of objects with kubectl is too slow."""

    def __init__(self, cluster):
        self.base = cluster.server
        self.ctx = ssl.create_default_context(cafile=str(cluster.dir / "certs" / "ca.crt"))

    def call(self, method, path, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ctx) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def pod_ip(node, k):
    return f"10.{64 + node // 256}.{node % 256}.{k + 2}"


def make_pods(api, first, last):
    """Pods p-<node>-<k> on nodes first..last-1, Running with their IPs (there is no kubelet)."""

    def one(args):
        node, k = args
        ns, name, ip = f"ns-{node % NAMESPACES}", f"p-{node}-{k}", pod_ip(node, k)
        api.call("POST", f"/api/v1/namespaces/{ns}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": f"node-{node}", "containers": [{"name": "app", "image": "example/app"}]}})
        status, body = api.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status",
                                {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
                                "application/merge-patch+json")
        if status != 200:
            raise RuntimeError(f"pod {ns}/{name}: {status} {body[:200]}")

    def agent(node):
        api.call("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"faultline-agent-default-node-{node}", "namespace": NAMESPACE,
                         "labels": {"faultline.dev/tapconfig": "default"}},
            "spec": {"nodeName": f"node-{node}", "containers": [{"name": "agent", "image": "faultline-agent"}]}})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, [(n, k) for n in range(first, last) for k in range(PODS_PER_NODE)]))
        list(pool.map(agent, range(first, last)))


def apiserver_counts(api):
    """Requests so far by (verb, resource/subresource), and the long-running watches on pods."""
    _, text = api.call("GET", "/metrics")
    counts, pod_watches = {}, 0
    for line in text.decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.index("}")].split(",") if "=" in kv)
            labels = {k: v.strip('"') for k, v in labels.items()}
            key = (labels.get("verb"), labels.get("resource", "") + ("/" + labels["subresource"]
                                                                     if labels.get("subresource") else ""))
            counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("apiserver_longrunning_requests{") and 'verb="WATCH"' in line \
                and 'resource="pods"' in line:
            pod_watches += int(float(line.rsplit(" ", 1)[1]))
    return counts, pod_watches


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem_mib(pid):
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def start_collector(work, protocol):
    """The collector (built from its Go modules, cached) with an OTLP receiver and a file exporter writing
    to /dev/null: the bench measures the operator's sending, not a disk."""
    out = subprocess.run([str(REPO / "e2e" / "build-otelcol.sh")], capture_output=True, text=True, check=True)
    binary = Path(out.stdout.strip().splitlines()[-1]) / "otelcol"
    port = 14317 if protocol == "grpc" else 14318
    receiver = "grpc" if protocol == "grpc" else "http"
    config = {"receivers": {"otlp": {"protocols": {receiver: {"endpoint": f"127.0.0.1:{port}"}}}},
              "exporters": {"file": {"path": "/dev/null"}},
              "service": {"telemetry": {"metrics": {"level": "none"}},
                          "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}}}}
    (work / "otelcol.yaml").write_text(json.dumps(config))
    log = open(work / "otelcol.log", "w")
    proc = subprocess.Popen([str(binary), "--config", str(work / "otelcol.yaml")], stdout=log, stderr=log)
    eventually(lambda: "Everything is ready" in (work / "otelcol.log").read_text(), timeout=30, what="collector")
    return proc, f"http://127.0.0.1:{port}"


def export_counts(operator):
    """faultline_export_records_total and _dropped_total (by reason) from the operator's /metrics."""
    _, text = operator.get("/metrics")
    counts = {}
    for line in text.splitlines():
        if line.startswith("faultline_export_records_total"):
            counts["records"] = counts.get("records", 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("faultline_export_dropped_total"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            counts[reason] = counts.get(reason, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", default="50,200,500", help="comma-separated node counts, ascending")
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--entries", type=int, default=100, help="entries per agent per second outside bursts")
    p.add_argument("--out", default=str(REPO / "target" / "bench" / "operator-scale.json"))
    p.add_argument("--export", choices=["grpc", "http/protobuf"], help="also export over OTLP to a collector")
    p.add_argument("--export-queue", type=int, default=300_000, help="the export's queueSize")
    a = p.parse_args()
    sizes = sorted(int(n) for n in a.nodes.split(","))
    work = REPO / "target" / "bench" / "operator-scale"
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FAULTLINE_OPERATOR", str(REPO / "target" / "release" / "faultline-operator"))
    load = REPO / "target" / "release" / "faultline-ingest-load"

    cluster = Cluster(work / "cluster").up()
    results = []
    operator = collector = None
    try:
        cluster.kubectl("apply", "-f", str(REPO / "crds" / "faultline.dev.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/tapconfigs.faultline.dev",
                        "crd/errorviews.faultline.dev", "--timeout=60s")
        cluster.kubectl("apply", "-f", str(REPO / "deploy" / "operator-rbac.yaml"))
        for i in range(NAMESPACES):
            cluster.kubectl("create", "namespace", f"ns-{i}", check=False)
        api = Api(cluster)
        kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, "faultline-operator", work / "operator.kubeconfig")
        operator = Operator(kubeconfig, work / "operator.log", "bench")
        operator.wait_ready(timeout=60)
        spec = {}
        if a.export:
            collector, endpoint = start_collector(work, a.export)
            # Room for a burst (500 agents × 5 × 100 entries in one second) while the senders catch up.
            spec = {"export": {"otlp": {"endpoint": endpoint, "protocol": a.export, "queueSize": a.export_queue}}}
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "faultline.dev/v1alpha1", "kind": "TapConfig", "metadata": {"name": "default"},
            "spec": spec}))
        token = ingest_token(cluster, "default", work / "agent.token")
        for i in range(NAMESPACES):
            cluster.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "faultline.dev/v1alpha1", "kind": "ErrorView",
                "metadata": {"name": "errors", "namespace": f"ns-{i}"}, "spec": {"query": "error or response"}}))
        made = 0
        for n in sizes:
            t0 = time.time()
            make_pods(api, made, n)
            made = n
            print(f"{n} nodes: {n * PODS_PER_NODE} pods made in {time.time() - t0:.0f} s", file=sys.stderr)
            view = f"all-{n}"
            cluster.kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "faultline.dev/v1alpha1", "kind": "ErrorView",
                "metadata": {"name": view, "namespace": NAMESPACE},
                "spec": {"query": "error or response", "publishEvents": True, "windowSeconds": 3600}}))
            eventually(lambda: any(c.get("type") == "Ready" and c.get("status") == "True" for c in
                                   cluster.kubectl_json("-n", NAMESPACE, "get", "errorview", view)
                                   .get("status", {}).get("conditions", [])), timeout=60, what="view ready")
            # The operator's naming must have seen every pod before the load starts.
            time.sleep(3)

            def matched():
                return cluster.kubectl_json("-n", NAMESPACE, "get", "errorview", view).get("status", {}).get("matched")

            # A new view starts with what the operator's store holds; what the load adds is counted on top.
            time.sleep(3)
            matched_before = matched()
            before, _ = apiserver_counts(api)
            cpu0 = proc_cpu_seconds(operator.proc.pid)
            exported0 = export_counts(operator)
            collector_cpu0 = proc_cpu_seconds(collector.pid) if collector else 0
            r = subprocess.run([str(load), "--url", operator.base, "--token-file", str(token), "--agents", str(n),
                                "--entries", str(a.entries), "--seconds", str(a.seconds),
                                "--pods-per-node", str(PODS_PER_NODE)], capture_output=True, text=True, check=True)
            run = json.loads(r.stdout)
            cpu = proc_cpu_seconds(operator.proc.pid) - cpu0
            after, pod_watches = apiserver_counts(api)
            mutating = {f"{verb} {res}": round((after.get((verb, res), 0) - before.get((verb, res), 0)) / run["seconds"], 2)
                        for (verb, res) in after if verb in MUTATING
                        and after.get((verb, res), 0) - before.get((verb, res), 0) > 0}

            # The view's status is written at most every few seconds: wait for it to catch up.
            try:
                eventually(lambda: matched() - matched_before == run["entries_accepted"], timeout=30,
                           what="view counted every entry")
            except Exception:  # noqa: BLE001 - reported below, as a figure
                pass
            sizes_by_view = [len(json.dumps(v.get("status", {}))) for v in
                             cluster.kubectl_json("get", "errorviews", "-A")["items"]]
            export = {}
            if collector:
                # What is still queued when the load stops is sent within a few seconds.
                time.sleep(5)
                got = {k: v - exported0.get(k, 0) for k, v in export_counts(operator).items()}
                export = {"export": a.export, "exported_records": got.pop("records", 0), "export_dropped": got,
                          "collector_cpu_cores": round((proc_cpu_seconds(collector.pid) - collector_cpu0)
                                                       / run["seconds"], 3)}
            res = {"nodes": n, "pods": n * PODS_PER_NODE, **run, **export,
                   "operator_cpu_cores": round(cpu / run["seconds"], 3), "operator_mem_mib": proc_mem_mib(operator.proc.pid),
                   "apiserver_mutating_per_second": dict(sorted(mutating.items())),
                   "operator_pod_watches": pod_watches, "largest_view_status_bytes": max(sizes_by_view),
                   "view_counted": matched() - matched_before,
                   "view_counted_equals_accepted": matched() - matched_before == run["entries_accepted"]}
            results.append(res)
            print(json.dumps(res), flush=True)
    finally:
        if operator:
            operator.stop()
        if collector:
            collector.terminate()
            collector.wait()
        cluster.down()
    Path(a.out).write_text(json.dumps(results, indent=2))
    return 0 if all(r["view_counted_equals_accepted"] and not r["failed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
