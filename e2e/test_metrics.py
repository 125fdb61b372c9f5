"""Faultline's metrics where SREs alert: Prometheus (built from its Go module, like the control plane)
scrapes the operator while real errors happen between the pods — refused, 503, ICMP, reset, a gRPC
UNAVAILABLE, a DNS SERVFAIL, a TLS handshake without ServerHello — and
`faultline_errors_total` says exactly what was made, by workload and kind; every query of the Grafana
board returns series; every alert rule passes `promtool check rules` and fires in `promtool test rules`."""

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from processes import REPO, eventually, free_port
from system import dns_servfail, grpc_calls, make_errors, tls_without_server_hello, view_status

RULES = REPO / "charts" / "faultline" / "files" / "alerts.yaml"
BOARD = REPO / "charts" / "faultline" / "files" / "grafana-dashboard.json"


@pytest.fixture(scope="module")
def prometheus_bin():
    r = subprocess.run([str(REPO / "e2e" / "build-prometheus.sh")], capture_output=True, text=True, check=True)
    from pathlib import Path
    return Path(r.stdout.strip().splitlines()[-1])


def test_every_alert_rule_checks_and_fires(prometheus_bin):
    check = subprocess.run([str(prometheus_bin / "promtool"), "check", "rules", str(RULES)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    alerts = re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M)
    fixture = REPO / "e2e" / "prometheus" / "alerts_test.yaml"
    tested = set(re.findall(r"alertname: (\w+)", fixture.read_text()))
    assert alerts and set(alerts) <= tested, f"alerts without a test: {set(alerts) - tested}"
    test = subprocess.run([str(prometheus_bin / "promtool"), "test", "rules", str(fixture)], capture_output=True,
                          text=True)
    assert test.returncode == 0, test.stdout + test.stderr


@pytest.fixture(scope="module")
def prometheus(prometheus_bin, system, tmp_path_factory):
    """Prometheus scraping the operator every second, with Faultline's rules loaded."""
    d = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (d / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "faultline-operator",
                            "static_configs": [{"targets": [f"127.0.0.1:{system['operator'].port}"]}]}],
    }))
    log = open(d / "prometheus.log", "w")
    p = subprocess.Popen([str(prometheus_bin / "prometheus"), f"--config.file={d / 'prometheus.yml'}",
                          f"--storage.tsdb.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: query(url, "up")[0]["value"][1] == "1", timeout=60, what="Prometheus scraping the operator")
        yield url
    finally:
        p.terminate()
        p.wait(timeout=20)
        log.close()


def recent(system):
    """What the operator holds (for a failure's message)."""
    from cluster import ADMIN_TOKEN
    req = urllib.request.Request(f"http://127.0.0.1:{system['operator'].port}/api/entries?q=" + urllib.parse.quote(
        "error or response.status > 400"), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return [e["summary"] for e in json.load(r)["entries"]]


def query(url, expr):
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def errors(system, prometheus, tmp_path_factory):
    """One of each kind of error, pod-a → pod-b (namespace shop)."""
    lab = system["lab"]
    make_errors(lab, 44000)
    assert grpc_calls(lab, "a", "b", 50053, "Checkout:5") == [["Checkout", "UNAVAILABLE"]]
    dns_servfail(lab, "a", "b", tmp_path_factory.mktemp("dns"))
    tls_without_server_hello(lab, "a", "b", 8443)
    return {"tcp/SynSent": 1, "http/5xx": 1, "icmp/DestinationUnreachable": 1, "tcp/Reset": 1,
            "grpc/UNAVAILABLE": 1, "dns/SERVFAIL": 1, "tls/no-server-hello": 1}


def test_errors_reach_prometheus_by_workload_and_kind_exactly(cluster, system, prometheus, errors):
    def by_kind():
        rows = query(prometheus, 'sum by (kind) (faultline_errors_total{namespace="shop"})')
        return {r["metric"]["kind"]: float(r["value"][1]) for r in rows}
    try:
        eventually(lambda: by_kind() == errors, timeout=60, what=f"Prometheus has {errors}")
    except AssertionError as e:
        raise AssertionError(f"{e}\nPrometheus: {by_kind()}\nentries: {recent(system)}") from None
    # The ErrorView counted the same errors (counted apart, from the same entries).
    eventually(lambda: view_status(cluster, "shop", "errors").get("countsByKind") == errors, timeout=30,
               what="the ErrorView's counts equal")
    # About pod-b's workload (a bare pod here), from pod-a's; the client's ICMP error is about pod-a.
    rows = query(prometheus, 'faultline_errors_total{kind="grpc/UNAVAILABLE"}')
    assert [r["metric"]["workload"] for r in rows] == ["Pod/pod-b"], rows
    assert rows[0]["metric"]["peer_workload"] == "Pod/pod-a" and rows[0]["metric"]["node"] == "node-b", rows
    icmp = query(prometheus, 'faultline_errors_total{kind="icmp/DestinationUnreachable"}')
    assert icmp[0]["metric"]["workload"] == "Pod/pod-a", icmp
    # Exchanges, failed or not, as the denominator: the 503, the gRPC call, the DNS exchange.
    requests = {r["metric"]["protocol"]: float(r["value"][1])
                for r in query(prometheus, 'sum by (protocol) (faultline_requests_total{namespace="shop"})')}
    assert requests == {"http": 1, "grpc": 1, "dns": 1}, requests
    assert query(prometheus, "faultline_operator_metric_series_capped_total") == []


def test_every_query_of_the_grafana_board_returns_series(prometheus, errors):
    board = json.loads(BOARD.read_text())
    targets = [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]
    assert len(targets) >= 8
    time.sleep(2)  # a couple of scrapes after the last error, for rate()
    empty = []
    for title, expr in targets:
        if not query(prometheus, expr.replace("$__rate_interval", "5m")):
            empty.append(title)
    assert not empty, f"panels without data: {empty}"
