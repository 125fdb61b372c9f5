"""Agent-to-operator traffic over TLS: the operator serves HTTPS with a certificate signed by a CA the agents
are given; an agent that trusts that CA reports, one that trusts another CA refuses to talk (its token is
never sent), plain HTTP gets nowhere, and the agents' DaemonSet carries the CA (never the key) and the
https URL. The certificates come from openssl, as the control plane's do."""

import json
import socket
import ssl
import subprocess
import urllib.request

import pytest

from cluster import make_certs
from processes import NAMESPACE, Agent, Operator, eventually, ingest_token


@pytest.fixture(scope="module")
def dummy_interface():
    """An interface with no traffic (one end of an unused veth pair): the agents report only statistics."""
    name = "fltls0"
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "fltls1"], check=True)
    for dev in (name, "fltls1"):
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_agents_report_over_tls_and_only_to_the_operator_they_trust(cluster, operator_kubeconfig, tmp_path,
                                                                   dummy_interface):
    good, other = tmp_path / "tls", tmp_path / "other-ca"
    make_certs(good)
    make_certs(other)
    op = Operator(operator_kubeconfig, tmp_path / "operator.log", "tls-1", ca_file=good / "ca.crt",
                  env={"FAULTLINE_TLS_CERT_FILE": str(good / "server.crt"),
                       "FAULTLINE_TLS_KEY_FILE": str(good / "server.key"),
                       "FAULTLINE_AGENT_CA_SECRET": "faultline-operator-tls"})
    agents = []
    try:
        op.wait_ready()
        # Plain HTTP on the TLS port is not served.
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{op.port}/healthz", timeout=3)
        # A client that does not trust the operator's CA cannot complete a handshake.
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx = ssl.create_default_context(cafile=str(other / "ca.crt"))
            with socket.create_connection(("127.0.0.1", op.port), timeout=3) as s, ctx.wrap_socket(s, server_hostname="127.0.0.1"):
                pass

        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "faultline.dev/v1alpha1", "kind": "TapConfig", "metadata": {"name": "tls"},
            "spec": {"nodeSelector": {"faultline.dev/test": "tls"}}}))
        ds = eventually(lambda: cluster.kubectl_json("-n", NAMESPACE, "get", "daemonset", "faultline-agent-tls"),
                        what="the agents' DaemonSet")
        pod = ds["spec"]["template"]["spec"]
        ctr = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in ctr["env"]}
        assert env["FAULTLINE_OPERATOR_URL"].startswith("https://faultline-operator.")
        assert env["FAULTLINE_OPERATOR_CA_FILE"] == "/etc/faultline-operator-ca/ca.crt"
        volume = next(v for v in pod["volumes"] if v["name"] == "operator-ca")
        assert volume["secret"]["secretName"] == "faultline-operator-tls"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the CA, never the key"

        token = ingest_token(cluster, "tls", tmp_path / "agent.token")
        url = f"https://127.0.0.1:{op.port}"
        trusting = Agent("node-tls", [dummy_interface], op.port, token, tmp_path / "agent-good.log",
                         operator_url=url, extra=["--operator-ca-file", str(good / "ca.crt")])
        agents.append(trusting)
        wrong = Agent("node-wrong", [dummy_interface], op.port, token, tmp_path / "agent-wrong.log",
                      operator_url=url, extra=["--operator-ca-file", str(other / "ca.crt")])
        agents.append(wrong)
        eventually(lambda: (trusting.metric("faultline_agent_batches_sent_total") or 0) >= 2, what="TLS reports")
        eventually(lambda: (wrong.metric("faultline_agent_batches_failed_total") or 0) >= 2, what="refusals")
        assert not wrong.metric("faultline_agent_batches_sent_total")
        # The operator heard from the trusted agent's node only.
        nodes = eventually(lambda: {n["node"] for n in cluster.kubectl_json("get", "tapconfig", "tls")
                                    .get("status", {}).get("nodes", [])}, what="node statistics")
        assert nodes == {"node-tls"}, nodes
    finally:
        for a in agents:
            a.stop()
        op.stop()
        cluster.kubectl("delete", "tapconfig", "tls", "--wait=false", check=False)


def test_renewed_certificates_are_used_without_a_restart(cluster, operator_kubeconfig, tmp_path, dummy_interface):
    """cert-manager renews the operator's certificate — here under a new CA, the hardest case — and the
    agents' CA file changes with it: within seconds both sides use the new files, with no restart."""
    import shutil
    first, second, live = tmp_path / "first", tmp_path / "second", tmp_path / "live"
    make_certs(first)
    make_certs(second)
    live.mkdir()

    def install(src):
        # As the kubelet updates a Secret volume: whole files swapped in.
        for name in ("server.crt", "server.key", "ca.crt"):
            shutil.copy(src / name, live / f".{name}.new")
            (live / f".{name}.new").rename(live / name)
    install(first)
    op = Operator(operator_kubeconfig, tmp_path / "operator.log", "tls-renew", ca_file=first / "ca.crt",
                  env={"FAULTLINE_TLS_CERT_FILE": str(live / "server.crt"),
                       "FAULTLINE_TLS_KEY_FILE": str(live / "server.key")})
    agent = None
    try:
        op.wait_ready()
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "faultline.dev/v1alpha1", "kind": "TapConfig", "metadata": {"name": "renew"},
            "spec": {"nodeSelector": {"faultline.dev/test": "renew"}}}))
        token = ingest_token(cluster, "renew", tmp_path / "agent.token")
        agent = Agent("node-renew", [dummy_interface], op.port, token, tmp_path / "agent.log",
                      operator_url=f"https://127.0.0.1:{op.port}", extra=["--operator-ca-file", str(live / "ca.crt")])
        eventually(lambda: (agent.metric("faultline_agent_batches_sent_total") or 0) >= 2, what="reports")

        def handshake(ca):
            ctx = ssl.create_default_context(cafile=str(ca))
            with socket.create_connection(("127.0.0.1", op.port), timeout=3) as s, \
                    ctx.wrap_socket(s, server_hostname="127.0.0.1"):
                return True
        assert handshake(first / "ca.crt")
        install(second)
        eventually(lambda: handshake(second / "ca.crt"), timeout=30, what="the operator serving the renewed certificate")
        sent = agent.metric("faultline_agent_batches_sent_total")
        eventually(lambda: agent.metric("faultline_agent_batches_sent_total") >= sent + 3, timeout=30,
                   what="the agent trusting the renewed CA")
        assert op.proc.poll() is None and agent.proc.poll() is None, "no restart"
    finally:
        if agent:
            agent.stop()
        op.stop()
        cluster.kubectl("delete", "tapconfig", "renew", "--wait=false", check=False)
