"""Entries exported over OTLP to a real OpenTelemetry Collector (built from its Go modules: the OTLP
receiver, the file exporter, bearer-token authentication): over gRPC with a token from a Secret, over
HTTP/protobuf with TLS and a CA from a Secret; the collector's file holds exactly the entries the
operator accepted, attribute for attribute; a collector that is down and comes back loses exactly what the
queue bound says, and the loss is counted."""

import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from cluster import ADMIN_TOKEN
from processes import NAMESPACE, REPO, eventually, free_port, metric
from system import PODS, make_errors

TOKEN = "s3cret-collector-token"


@pytest.fixture(scope="module")
def otelcol():
    out = subprocess.run([str(REPO / "e2e" / "build-otelcol.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1]) / "otelcol"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and a certificate for `collector.test` it signed (openssl)."""
    d = tmp_path_factory.mktemp("certs")

    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=collector.test",
        "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=DNS:collector.test\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "server.crt")
    return d


class Collector:
    """The collector as a process: gRPC (plain) and HTTP (TLS) receivers, both asking for the token."""

    def __init__(self, binary, workdir, certs):
        self.binary, self.dir, self.certs = binary, workdir, certs
        self.grpc, self.http = free_port(), free_port()
        self.proc, self.files = None, []

    def start(self):
        out = self.dir / f"logs-{len(self.files)}.json"
        self.files.append(out)
        config = {
            "extensions": {"bearertokenauth": {"token": TOKEN}},
            "receivers": {"otlp": {"protocols": {
                "grpc": {"endpoint": f"127.0.0.1:{self.grpc}", "auth": {"authenticator": "bearertokenauth"}},
                "http": {"endpoint": f"127.0.0.1:{self.http}", "auth": {"authenticator": "bearertokenauth"},
                         "tls": {"cert_file": str(self.certs / "server.crt"),
                                 "key_file": str(self.certs / "server.key")}}}}},
            "exporters": {"file": {"path": str(out), "flush_interval": "100ms"}},
            "service": {"extensions": ["bearertokenauth"],
                        "telemetry": {"metrics": {"level": "none"}},
                        "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["file"]}}},
        }
        path = self.dir / "config.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.log = open(self.dir / f"collector-{len(self.files)}.log", "w")
        self.proc = subprocess.Popen([str(self.binary), "--config", str(path)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        eventually(lambda: "Everything is ready" in (self.dir / f"collector-{len(self.files)}.log").read_text(),
                   timeout=30, what="the collector ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.log.close()

    def records(self):
        """Every log record written, with its resource's attributes, in order."""
        out = []
        for f in self.files:
            if not f.exists():
                continue
            for line in f.read_text().splitlines():
                for rl in json.loads(line).get("resourceLogs", []):
                    resource = attributes(rl.get("resource", {}).get("attributes", []))
                    for sl in rl.get("scopeLogs", []):
                        for r in sl.get("logRecords", []):
                            out.append(dict(r, resource=resource, attrs=attributes(r.get("attributes", []))))
        return out


def attributes(kvs):
    def value(v):
        if "stringValue" in v:
            return v["stringValue"]
        if "intValue" in v:
            return int(v["intValue"])
        if "doubleValue" in v:
            return float(v["doubleValue"])
        if "boolValue" in v:
            return v["boolValue"]
        return v
    return {kv["key"]: value(kv.get("value", {})) for kv in kvs}


@pytest.fixture(scope="module")
def collector(otelcol, certs, tmp_path_factory, cluster):
    c = Collector(otelcol, tmp_path_factory.mktemp("otelcol"), certs)
    c.start()
    cluster.kubectl("-n", NAMESPACE, "create", "secret", "generic", "otlp-headers",
                    f"--from-literal=authorization=Bearer {TOKEN}")
    cluster.kubectl("-n", NAMESPACE, "create", "secret", "generic", "otlp-ca", f"--from-file=ca.crt={certs / 'ca.crt'}")
    yield c
    c.stop()
    # The TapConfig outlives this module's system: the next module must not export.
    export(cluster, None)
    cluster.kubectl("-n", NAMESPACE, "delete", "secret", "otlp-headers", "otlp-ca", check=False)


def export(cluster, otlp):
    """Sets the TapConfig's export to exactly `otlp` (none: removes it)."""
    patch = [{"op": "add", "path": "/spec/export", "value": {"otlp": otlp}}] if otlp else \
        [{"op": "remove", "path": "/spec/export"}]
    cluster.kubectl("patch", "tapconfig", "default", "--type=json", "-p", json.dumps(patch), check=bool(otlp))


def exporting(system, what):
    """Waits for the operator to say it exports with this configuration (`queue_size=N`)."""
    log = Path(system["logs"]) / "operator.log"
    plain = lambda: re.sub(r"\x1b\[[0-9;]*m", "", log.read_text())  # noqa: E731
    eventually(lambda: f"exporting entries over OTLP tapconfig=default queue_size={what}\n" in plain(),
               timeout=30, what=f"the exporter configured (queue_size={what})")


def store(system):
    """Every entry the operator holds, by id, as the dashboard shows it (with `kind` and `summary`)."""
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{system['operator'].port}/api/entries?limit=1000&q=",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return {e["id"]: e for e in json.loads(r.read())["entries"]}


def expected(e, error=True):
    """The attributes an entry's record must carry, written from the entry as the dashboard shows it: an
    independent statement of the mapping README's "OpenTelemetry" section gives (`error`: the kind is an
    error)."""
    a = {"faultline.entry.id": e["id"], "faultline.kind": e["kind"], "faultline.protocol": e["protocol"],
         "faultline.elapsed_ms": float(e["elapsedTime"])}
    if error:
        a["error.type"] = e["kind"]
    if e.get("error"):
        a["faultline.error.message"] = e["error"]["msg"]
    if e.get("node"):
        a["k8s.node.name"] = e["node"]
    src, dst = e["src"], e["dst"]
    pod = next((p for p in (src, dst) if p.get("namespace") and p.get("name")), None)
    if pod:
        a["k8s.namespace.name"], a["k8s.pod.name"] = pod["namespace"], pod["name"]
    for side, ep in (("client", src), ("server", dst)):
        a[f"{side}.address"] = ep["ip"]
        if ep.get("port") is not None:
            a[f"{side}.port"] = ep["port"]
        if ep.get("namespace") and ep.get("name"):
            a[f"faultline.{side}.pod"] = f"{ep['namespace']}/{ep['name']}"
        if ep.get("workload"):
            a[f"faultline.{side}.workload"] = ep["workload"]
    a["network.peer.address"] = dst["ip"]
    if dst.get("port") is not None:
        a["network.peer.port"] = dst["port"]
    a["network.type"] = "ipv6" if ":" in dst["ip"] else "ipv4"
    if e["protocol"] not in ("dns", "icmp"):
        a["network.transport"] = "tcp"
    if e.get("tcp"):
        a["faultline.tcp.state"] = e["tcp"]["state"]
        for k in ("reason", "by"):
            if e["tcp"].get(k):
                a[f"faultline.tcp.{k}"] = e["tcp"][k]
    if e.get("icmp"):
        i = e["icmp"]
        a.update({"faultline.icmp.type": i["type"], "faultline.icmp.code": i["code"],
                  "faultline.icmp.type_name": i["typeName"], "faultline.icmp.code_name": i["codeName"]})
    if e.get("request"):
        a["http.request.method"], a["url.path"] = e["request"]["method"], e["request"]["path"]
    if e.get("response") and e["protocol"] in ("http", "http2", "grpc"):
        a["http.response.status_code"] = e["response"]["status"]
    if e.get("cause"):
        a["faultline.cause.reason"], a["faultline.cause.message"] = e["cause"]["reason"], e["cause"]["message"]
    if e.get("pcap"):
        a["faultline.pcap"] = e["pcap"]
    return a


def nanos(ts):
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def operator_metric(system, name):
    status, body = system["operator"].get("/metrics")
    assert status == 200
    return metric(body, name) or 0


def test_entries_reach_a_collector_over_grpc_attribute_for_attribute(cluster, system, collector):
    export(cluster, {"endpoint": f"http://127.0.0.1:{collector.grpc}", "protocol": "grpc",
                     "headers": {"secretName": "otlp-headers"}, "queueSize": 1000})
    exporting(system, 1000)
    make_errors(system["lab"], 45000)
    # The four errors made, each once: a refused connection, a 503, an ICMP port unreachable, a reset.
    records = eventually(lambda: len(r := collector.records()) >= 4 and r, timeout=40, what="4 records")
    time.sleep(2)
    records = collector.records()
    assert sorted(r["attrs"]["faultline.kind"] for r in records) == sorted(
        ["tcp/SynSent", "http/5xx", "icmp/DestinationUnreachable", "tcp/Reset"])
    held = store(system)
    assert sorted(held) == sorted(r["attrs"]["faultline.entry.id"] for r in records), "one record per entry held"
    for r in records:
        e = held[r["attrs"]["faultline.entry.id"]]
        assert r["attrs"] == expected(e), e["kind"]
        assert r["body"] == {"stringValue": e["summary"]}
        assert (r["severityNumber"], r["severityText"]) == (17, "ERROR")
        assert abs(int(r["timeUnixNano"]) - nanos(e["timestamp"])) < 1000
        assert r["eventName"] == "faultline.entry"
        assert r["resource"] == {"service.name": "faultline", "service.version": r["resource"]["service.version"],
                                 "faultline.tapconfig": "default"}
    # The pods are named: pod-a made the three connections, pod-b sent the ICMP message.
    assert sorted((r["attrs"]["faultline.kind"], r["attrs"]["k8s.pod.name"], r["attrs"]["faultline.server.pod"])
                  for r in records) == [("http/5xx", "pod-a", "shop/pod-b"),
                                        ("icmp/DestinationUnreachable", "pod-b", "shop/pod-a"),
                                        ("tcp/Reset", "pod-a", "shop/pod-b"), ("tcp/SynSent", "pod-a", "shop/pod-b")]
    assert operator_metric(system, 'faultline_export_records_total{tapconfig="default"}') == 4


def test_a_collector_down_then_back_loses_exactly_what_the_queue_bound_says(cluster, system, collector):
    export(cluster, {"endpoint": f"http://127.0.0.1:{collector.grpc}", "protocol": "grpc",
                     "headers": {"secretName": "otlp-headers"}, "queueSize": 3})
    exporting(system, 3)
    sent_before = collector.records()
    collector.stop()
    before = set(store(system))
    make_errors(system["lab"], 45100)
    make_errors(system["lab"], 45200)
    made = eventually(lambda: len(new := set(store(system)) - before) >= 8 and new, timeout=40, what="8 entries held")
    time.sleep(2)
    assert len(set(store(system)) - before) == 8
    dropped = 'faultline_export_dropped_total{tapconfig="default",reason="queue_full"}'
    assert operator_metric(system, dropped) == 5, "8 entries, 3 held for the collector: 5 dropped and counted"
    collector.start()
    got = eventually(lambda: len(r := collector.records()) >= len(sent_before) + 3 and r, timeout=40,
                     what="the 3 held entries delivered")
    time.sleep(3)
    got = collector.records()[len(sent_before):]
    assert len(got) == 3, [r["attrs"]["faultline.kind"] for r in got]
    assert {r["attrs"]["faultline.entry.id"] for r in got} <= made
    assert operator_metric(system, dropped) == 5


def test_http_protobuf_over_tls_with_the_ca_from_a_secret(cluster, system, collector):
    export(cluster, {"endpoint": f"https://127.0.0.1:{collector.http}", "protocol": "http/protobuf",
                     "headers": {"secretName": "otlp-headers"}, "queueSize": 100,
                     "tls": {"caSecret": {"secretName": "otlp-ca"}, "serverName": "collector.test"}})
    exporting(system, 100)
    before, already = set(store(system)), len(collector.records())
    system["lab"].traffic("a", "connect", PODS["b"][3], "81", "--sport", "45300")
    [made] = eventually(lambda: list(set(store(system)) - before), timeout=40, what="the refused connection held")
    [r] = eventually(lambda: collector.records()[already:], timeout=40, what="its record over HTTPS")
    assert r["attrs"] == expected(store(system)[made])
    assert r["attrs"]["faultline.tcp.reason"] == "refused"


def test_an_export_that_cannot_be_used_says_so_and_counts_what_it_loses(cluster, system, collector):
    export(cluster, {"endpoint": f"http://127.0.0.1:{collector.grpc}", "headers": {"secretName": "no-such-secret"}})
    cond = eventually(lambda: next((c for c in cluster.kubectl_json("get", "tapconfig", "default")["status"]
                                    .get("conditions", []) if c["type"] == "Degraded" and c["status"] == "True"),
                                   None), timeout=30, what="Degraded: ExportUnusable")
    assert cond["reason"] == "ExportUnusable" and "no-such-secret" in cond["message"], cond
    system["lab"].traffic("a", "connect", PODS["b"][3], "81", "--sport", "45400")
    eventually(lambda: operator_metric(
        system, 'faultline_export_dropped_total{tapconfig="default",reason="unconfigured"}') == 1,
        timeout=40, what="the entry counted as not exported")


def test_a_rotated_token_takes_effect_at_once_and_the_queue_is_kept(cluster, system, collector):
    """The operator watches the Secrets an export names: a rotated token is used within seconds (not at
    the 5-minute requeue), by the running exporter, so what it held while the collector was away is
    delivered with the new token and nothing is counted lost."""
    cluster.kubectl("-n", NAMESPACE, "create", "secret", "generic", "otlp-rotating",
                    "--from-literal=authorization=Bearer not-the-token")
    export(cluster, {"endpoint": f"http://127.0.0.1:{collector.grpc}", "protocol": "grpc",
                     "headers": {"secretName": "otlp-rotating"}, "queueSize": 50})
    exporting(system, 50)
    refused = 'faultline_export_dropped_total{tapconfig="default",reason="refused"}'
    refused_before, already = operator_metric(system, refused), len(collector.records())
    system["lab"].traffic("a", "connect", PODS["b"][3], "81", "--sport", "45700")
    eventually(lambda: operator_metric(system, refused) == refused_before + 1, timeout=40,
               what="the record refused for the old token")
    # The collector goes away; an error made now is held (the sender retries the unreachable collector).
    lost = lambda: {reason: operator_metric(  # noqa: E731
        system, f'faultline_export_dropped_total{{tapconfig="default",reason="{reason}"}}')
        for reason in ("reconfigured", "queue_full", "retries_exhausted", "refused", "rejected")}
    lost_before = lost()
    collector.stop()
    before = set(store(system))
    system["lab"].traffic("a", "connect", PODS["b"][3], "81", "--sport", "45701")
    [held] = eventually(lambda: list(set(store(system)) - before), timeout=40, what="the second error held")
    rotated = cluster.kubectl("-n", NAMESPACE, "create", "secret", "generic", "otlp-rotating",
                              f"--from-literal=authorization=Bearer {TOKEN}", "--dry-run=client", "-o", "yaml").stdout
    cluster.kubectl("apply", "-f", "-", input=rotated)
    rotated_at = time.time()
    log = Path(system["logs"]) / "operator.log"
    eventually(lambda: "OTLP export reconfigured; the queue is kept" in log.read_text(), timeout=20,
               what="the exporter taking the rotated token")
    assert time.time() - rotated_at < 20
    collector.start()
    [r] = eventually(lambda: collector.records()[already:], timeout=40, what="the held record delivered")
    time.sleep(2)
    assert [x["attrs"]["faultline.entry.id"] for x in collector.records()[already:]] == [held]
    assert lost() == lost_before, "nothing lost to the rotation"
    cluster.kubectl("-n", NAMESPACE, "delete", "secret", "otlp-rotating", check=False)


def test_agents_that_send_export_what_they_find_and_the_operator_stops(cluster, system, collector, tmp_path):
    """`sender: agents`: the operator puts the export on the agents' command line and mounts the Secret, and
    stops exporting itself. The agents here are local processes: node-a's is restarted with the DaemonSet's
    own arguments (the Secret's mount replaced by a directory holding what the kubelet would write)."""
    export(cluster, {"endpoint": f"http://127.0.0.1:{collector.grpc}", "protocol": "grpc", "sender": "agents",
                     "headers": {"secretName": "otlp-headers"}, "queueSize": 500})

    def agent_container():
        ds = cluster.kubectl_json("-n", NAMESPACE, "get", "daemonset", "faultline-agent-default")
        return ds["spec"]["template"]["spec"]["containers"][0], ds["spec"]["template"]["spec"]["volumes"]
    container, volumes = eventually(lambda: (c := agent_container()) and any(
        a.startswith("--otlp-endpoint=") for a in c[0]["args"]) and c, timeout=30, what="the DaemonSet's export")
    otlp = [a for a in container["args"] if a.startswith("--otlp-")]
    assert otlp == [f"--otlp-endpoint=http://127.0.0.1:{collector.grpc}", "--otlp-protocol=grpc",
                    "--otlp-queue-size=500", "--otlp-headers-dir=/etc/faultline/otlp-headers"], otlp
    assert {"name": "FAULTLINE_TAPCONFIG", "value": "default"} in container["env"]
    assert any(v["name"] == "otlp-headers" and v["secret"]["secretName"] == "otlp-headers" for v in volumes)
    assert any(m["mountPath"] == "/etc/faultline/otlp-headers" for m in container["volumeMounts"])
    # What the kubelet would mount: each key of the Secret a file.
    # First a token the collector refuses (a Secret not yet rotated): the agent counts what it cannot send.
    mounted = tmp_path / "otlp-headers"
    mounted.mkdir()
    (mounted / "authorization").write_text("Bearer not-the-token")
    args = [a.replace("/etc/faultline/otlp-headers", str(mounted)) for a in otlp] + ["--tapconfig", "default"]
    old = system["agents"][0]
    interfaces = [old.proc.args[i + 1] for i, a in enumerate(old.proc.args) if a == "--interface"]
    old.stop()
    from processes import Agent
    token = Path(system["logs"]) / "agent.token"
    system["agents"][0] = agent = Agent("node-a", interfaces, system["operator"].port, token,
                                        Path(system["logs"]) / "agent-a-export.log", extra=args)
    eventually(lambda: agent.metric("faultline_agent_batches_sent_total"), timeout=30, what="the agent reports")
    already = len(collector.records())
    make_errors(system["lab"], 45600)
    refused = 'faultline_export_dropped_total{tapconfig="default",reason="refused"}'
    eventually(lambda: agent.metric(refused) == 4, timeout=40, what="the 4 records refused for the token")
    assert len(collector.records()) == already
    # The Secret rotated: the kubelet rewrites the mounted file, and the agent, which reads it again every
    # 20 s, sends with the new token — no rollout.
    (mounted / "authorization").write_text(f"Bearer {TOKEN}")
    log = Path(system["logs"]) / "agent-a-export.log"
    eventually(lambda: "Secrets changed" in log.read_text(), timeout=40, what="the agent reading the new token")
    make_errors(system["lab"], 45500)
    records = eventually(lambda: len(r := collector.records()[already:]) >= 4 and r, timeout=40,
                         what="the agent's records")
    time.sleep(3)
    records = collector.records()[already:]
    # Every record is node-a's agent's (the operator no longer sends): the four errors, found there, with
    # the node and no names — the agent knows no pods.
    assert sorted(r["attrs"]["faultline.kind"] for r in records) == sorted(
        ["tcp/SynSent", "http/5xx", "icmp/DestinationUnreachable", "tcp/Reset"])
    assert {r["attrs"]["k8s.node.name"] for r in records} == {"node-a"}
    assert not any("k8s.pod.name" in r["attrs"] for r in records)
    assert {r["resource"]["faultline.tapconfig"] for r in records} == {"default"}
    assert agent.metric('faultline_export_records_total{tapconfig="default"}') == 4
    assert agent.metric(refused) == 4
    # The operator holds the same errors, named.
    held = eventually(lambda: len(h := [e for e in store(system).values()
                                        if e["src"].get("port") in (45500, 45501, 45503) or e["kind"].startswith("icmp")
                                        ]) >= 4 and h, timeout=30, what="the operator's entries")
    assert {e["kind"] for e in held} >= {"tcp/SynSent", "http/5xx", "tcp/Reset"}

