"""The Helm chart: lint-clean, rendered with `helm template`, and every object accepted by the real API
server; applying it twice changes nothing (GitOps tools apply the same manifests over and over); and the
operator's RBAC in the chart is exactly the RBAC the e2e tests run the operator with."""

import subprocess
from pathlib import Path

import pytest
import yaml

from processes import NAMESPACE, REPO

CHART = REPO / "charts" / "faultline"
# helm built from source does not know a Kubernetes version of its own; the control plane's is the one.
KUBE = ["--kube-version", "v1.36.3"]


@pytest.fixture(scope="module")
def helm():
    out = subprocess.run([str(REPO / "e2e" / "build-helm.sh")], check=True, capture_output=True, text=True)
    return str(Path(out.stdout.strip().splitlines()[-1]) / "helm")


def render(helm, *args, namespace="faultline-chart"):
    r = subprocess.run([helm, "template", "faultline", str(CHART), "--namespace", namespace, *KUBE, *args],
                       check=True, capture_output=True, text=True)
    return r.stdout


def test_chart_lints_clean(helm):
    r = subprocess.run([helm, "lint", "--strict", *KUBE, str(CHART)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 chart(s) failed" in r.stdout


def test_rendered_chart_is_accepted_and_applies_idempotently(cluster, helm, tmp_path):
    # Into the namespace the other tests' operator uses, whose cluster-scoped RBAC then has the same
    # subjects; the TapConfig is renamed so as not to touch theirs.
    manifests = render(helm, "--include-crds", "--set", "tapConfig.name=from-chart", namespace=NAMESPACE)
    path = tmp_path / "rendered.yaml"
    path.write_text(manifests)
    first = cluster.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", str(path))
    kinds = {line.split("/")[0] for line in first.stdout.split()}
    for kind in ["deployment.apps", "service", "serviceaccount", "clusterrole.rbac.authorization.k8s.io",
                 "tapconfig.faultline.dev", "customresourcedefinition.apiextensions.k8s.io"]:
        assert kind in kinds, first.stdout
    second = cluster.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", str(path))
    assert "configured" not in second.stdout.replace("serverside-applied", ""), second.stdout
    diff = cluster.kubectl("diff", "--server-side", "--field-manager=gitops", "-f", str(path), check=False)
    assert diff.returncode == 0, f"drift after a second apply:\n{diff.stdout}"
    # Its TapConfig selects every node: it would overlap the other modules' TapConfigs.
    cluster.kubectl("delete", "tapconfig", "from-chart", "--wait=true")


def test_chart_rbac_is_the_rbac_the_tests_use(helm):
    def rbac(docs):
        return {(d["kind"], d["metadata"]["name"]): d.get("rules") or d.get("roleRef")
                for d in docs if d and d.get("kind", "").endswith(("Role", "RoleBinding"))}
    chart = rbac(yaml.safe_load_all(render(helm)))
    plain = rbac(yaml.safe_load_all((REPO / "deploy" / "operator-rbac.yaml").read_text()))
    assert chart == plain
    assert not [k for k in chart if "agent" in k[1]], "agents get no RBAC: they never call the API server"
    operator = chart[("ClusterRole", "faultline-operator")]
    assert not [r for r in operator if "rbac.authorization.k8s.io" in r["apiGroups"]], \
        "the operator may not write RBAC"


def test_values_reach_the_operator(helm):
    docs = list(yaml.safe_load_all(render(helm, "--set", "agent.image.tag=9.9.9", "--set", "tapConfig.enabled=false")))
    dep = [d for d in docs if d and d["kind"] == "Deployment"][0]
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FAULTLINE_AGENT_IMAGE"] == "ghcr.io/faultline-dev/faultline-agent:9.9.9"
    assert env["FAULTLINE_OPERATOR_URL"] == "https://faultline-operator.faultline-chart.svc:8080"
    assert env["FAULTLINE_AGENT_CA_SECRET"] == "faultline-operator-tls"
    assert not [d for d in docs if d and d["kind"] == "TapConfig"]


def test_tls_is_on_by_default_with_a_certificate_for_the_service(helm, tmp_path):
    import base64
    docs = [d for d in yaml.safe_load_all(render(helm)) if d]
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "faultline-operator-tls")
    for key in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls.crt")],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:faultline-operator.faultline-chart.svc" in text, text
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    assert ctr["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert {"name": "tls", "mountPath": "/etc/faultline/tls", "readOnly": True} in ctr["volumeMounts"]

    # Bring your own Secret (cert-manager): nothing generated, that Secret mounted and given to the agents.
    docs = [d for d in yaml.safe_load_all(render(helm, "--set", "tls.existingSecret=from-cert-manager")) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "tls", "secret": {"secretName": "from-cert-manager"}}]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["FAULTLINE_AGENT_CA_SECRET"] == "from-cert-manager"

    # Off: plain HTTP, no Secret, no mount.
    docs = [d for d in yaml.safe_load_all(render(helm, "--set", "tls.enabled=false")) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]
    ctr = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in ctr["env"]}
    assert env["FAULTLINE_OPERATOR_URL"].startswith("http://") and "FAULTLINE_TLS_CERT_FILE" not in env


def test_helm_template_renders_with_its_own_defaults(helm):
    """GitOps tools run `helm template` without a --kube-version (helm then assumes 1.20)."""
    r = subprocess.run([helm, "template", "faultline", str(CHART)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "kind: Deployment" in r.stdout


def test_tilt_can_rewrite_the_agent_image_where_the_agents_take_it_from(helm):
    """Tilt rewrites images in the objects it deploys, and the agents' DaemonSet is the operator's: the
    chart's TapConfig names the agent image, and the Tiltfile tells Tilt to rewrite that field."""
    docs = [d for d in yaml.safe_load_all(render(helm, "--set", "agent.image.repository=faultline-agent",
                                                 "--set", "agent.image.tag=dev")) if d]
    tap = next(d for d in docs if d["kind"] == "TapConfig")
    assert tap["spec"]["agent"]["image"] == "faultline-agent:dev"
    tiltfile = (REPO / "Tiltfile").read_text()
    assert "k8s_kind('TapConfig', image_json_path='{.spec.agent.image}')" in tiltfile
    assert "agent.image.repository=faultline-agent" in tiltfile and "docker_build('faultline-agent'" in tiltfile


def test_pull_secrets_priority_class_cleanup_hook_and_port_names(helm):
    docs = [d for d in yaml.safe_load_all(render(helm, "--set", "imagePullSecrets[0].name=regcred")) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["FAULTLINE_AGENT_IMAGE_PULL_SECRETS"] == "regcred"
    assert env["FAULTLINE_AGENT_PRIORITY_CLASS"] == "faultline-agent"
    tap = next(d for d in docs if d["kind"] == "TapConfig")
    assert tap["spec"]["agent"]["imagePullSecrets"] == [{"name": "regcred"}]
    pc = next(d for d in docs if d["kind"] == "PriorityClass")
    assert pc["metadata"]["name"] == "faultline-agent" and pc["value"] > 0
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "cleanup"
    svc = next(d for d in docs if d["kind"] == "Service")
    assert svc["spec"]["ports"][0]["name"] == "https" and svc["spec"]["ports"][0]["appProtocol"] == "https"


def test_monitoring_objects_carry_the_tested_rules_and_board(helm):
    """Off by default; on, the PrometheusRule holds exactly the rules promtool tests (test_metrics.py), the
    dashboard ConfigMap exactly the board whose queries are run there, and the PodMonitor scrapes pods."""
    import json
    assert not [d for d in yaml.safe_load_all(render(helm)) if d and d["kind"] in ("PodMonitor", "PrometheusRule")]
    docs = {d["kind"]: d for d in yaml.safe_load_all(render(
        helm, "--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.prometheusRule.enabled=true",
        "--set", "monitoring.grafanaDashboard.enabled=true", "--set", "monitoring.labels.release=kps")) if d}
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert docs["PrometheusRule"]["spec"] == rules
    assert docs["PrometheusRule"]["metadata"]["labels"]["release"] == "kps"
    board = [d for d in yaml.safe_load_all(render(helm, "--set", "monitoring.grafanaDashboard.enabled=true"))
             if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "faultline-grafana-dashboard"][0]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["faultline.json"]) == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    endpoint = docs["PodMonitor"]["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == ("https", "https", "/metrics")
