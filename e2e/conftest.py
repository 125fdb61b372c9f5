"""Fixtures for the end-to-end tests: one real control plane for the session, the CRDs and the operator's
RBAC installed, and the operator binary running with its own ServiceAccount's token — never as admin."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Cluster  # noqa: E402
from processes import NAMESPACE, REPO, Agent, Operator, free_port  # noqa: E402,F401
from system import running_system  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so that fixtures can tell whether their test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def pytest_terminal_summary(terminalreporter):
    """The node's state at each failure of test_node.py, last, where CI's truncated output still shows it."""
    module = sys.modules.get("test_node")
    for test, lines in (getattr(module, "DIAGNOSES", None) or {}).items():
        terminalreporter.write_line(f"the node when {test} failed:")
        for line in lines:
            terminalreporter.write_line(f"  {line}")


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


@pytest.fixture(scope="module")
def system(cluster, operator_kubeconfig, tmp_path_factory, request):
    """The running system, one per test module that asks for it."""
    name = request.module.__name__.removeprefix("test_")
    with running_system(cluster, operator_kubeconfig, tmp_path_factory.mktemp(name), f"{name}-1") as s:
        yield s
