"""The Faultline processes the e2e tests and the demo run: the operator and the agents, as local processes
talking to the local control plane."""

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "faultline-system"
# The audience of the token agents show the operator (what the DaemonSet projects).
INGEST_AUDIENCE = "faultline.dev/ingest"


def metric(text, name):
    """The value of one sample in Prometheus text (comments skipped)."""
    for line in text.splitlines():
        if not line.startswith("#") and line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


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

    def __init__(self, kubeconfig, log_path, identity, port=None, env=None, ca_file=None):
        """`env` adds settings (FAULTLINE_TLS_CERT_FILE, …); with `ca_file` it is reached over HTTPS."""
        self.port = port or free_port()
        self.identity = identity
        self.log_path = log_path
        self.ssl = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self.base = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), FAULTLINE_HTTP_ADDR=f"127.0.0.1:{self.port}",
                   FAULTLINE_NAMESPACE=NAMESPACE, POD_NAME=identity, FAULTLINE_LOG="info", **(env or {}))
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([operator_binary()], env=env, stdout=self.log, stderr=self.log)

    def get(self, path):
        try:
            with urllib.request.urlopen(f"{self.base}{path}", timeout=2, context=self.ssl) as r:
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


def agent_binary():
    path = os.environ.get("FAULTLINE_AGENT") or str(REPO / "target" / "debug" / "faultline-agent")
    assert Path(path).exists(), f"{path}: build it first"
    return path


class Agent:
    def __init__(self, node, interfaces, operator_port, token_file, log, operator_url=None, extra=()):
        """An agent on `node`: no Kubernetes API access, as in its pod; `token_file` is its ingest token."""
        self.port = free_port()
        url = operator_url or f"http://127.0.0.1:{operator_port}"
        args = [agent_binary(), "run", "--node-name", node, "--operator-url", url, *extra,
                "--token-file", str(token_file), "--http-addr", f"127.0.0.1:{self.port}",
                "--syn-timeout-ms", "1000", "--close-timeout-ms", "1000", "--pair-timeout-ms", "3000",
                "--report-interval-ms", "500", "--recorder", "errors"]
        for i in interfaces:
            args += ["--interface", i]
        self.log = open(log, "ab")
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=self.log)

    def metric(self, name):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def ingest_token(cluster, tap, path):
    """What the DaemonSet projects for TapConfig `tap`'s agents — a token for the operator's audience only —
    written to `path` once the operator has made their ServiceAccount."""
    sa = f"faultline-agent-{tap}"
    eventually(lambda: cluster.kubectl("-n", NAMESPACE, "get", "sa", sa, check=False).returncode == 0,
               what=f"the ServiceAccount {sa}")
    path.write_text(cluster.kubectl("create", "token", sa, "-n", NAMESPACE, "--duration=2h",
                                    f"--audience={INGEST_AUDIENCE}").stdout.strip())
    return path


def eventually(fn, timeout=30, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # not there yet
            last = e
        time.sleep(0.3)
    raise AssertionError(f"{what} not met within {timeout}s; last: {last}")
