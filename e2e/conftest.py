"""Fixtures for the end-to-end tests: one real control plane for the session, the CRDs and the operator's
RBAC installed, and the operator binary running with its own ServiceAccount's token — never as admin."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "faultline-system"


def operator_binary():
    path = os.environ.get("FAULTLINE_OPERATOR") or str(REPO / "target" / "debug" / "faultline-operator")
    if not Path(path).exists():
        raise RuntimeError(f"{path} not found: build it first (make build) or set FAULTLINE_OPERATOR")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Operator:
    """One replica of faultline-operator, started with a kubeconfig and stopped with SIGTERM."""

    def __init__(self, kubeconfig, log_path, identity, port=None):
        self.port = port or free_port()
        self.identity = identity
        self.log_path = log_path
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), FAULTLINE_HTTP_ADDR=f"127.0.0.1:{self.port}",
                   FAULTLINE_NAMESPACE=NAMESPACE, POD_NAME=identity, FAULTLINE_LOG="info")
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([operator_binary()], env=env, stdout=self.log, stderr=self.log)

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited: {Path(self.log_path).read_text()[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError("operator not ready")

    def stop(self, timeout=20):
        if self.log.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster")
    c = Cluster(state).up()
    c.kubectl("apply", "-f", str(REPO / "crds" / "faultline.dev.yaml"))
    c.kubectl("wait", "--for=condition=Established", "crd/tapconfigs.faultline.dev", "crd/errorviews.faultline.dev",
              "--timeout=60s")
    c.kubectl("apply", "-f", str(REPO / "deploy" / "operator-rbac.yaml"))
    yield c
    c.down()


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster, tmp_path_factory):
    return cluster.service_account_kubeconfig(NAMESPACE, "faultline-operator",
                                              tmp_path_factory.mktemp("sa") / "operator.kubeconfig")


@pytest.fixture(scope="session")
def operator(cluster, operator_kubeconfig, tmp_path_factory):
    op = Operator(operator_kubeconfig, tmp_path_factory.mktemp("logs") / "operator.log", "replica-a")
    op.wait_ready()
    yield op
    op.stop()
