#!/usr/bin/env python3
"""A real control plane on loopback: etcd and kube-apiserver built from Go modules (build-control-plane.sh),
started the way envtest starts them, with a separate CA, a server certificate for 127.0.0.1, a token file
and RBAC, plus kube-controller-manager running only the garbage collector (owner references are how
Faultline's children go with their TapConfig). No kubelet: objects are stored and validated, no pod runs.

    python3 e2e/cluster.py up      # prints `export KUBECONFIG=…`
    python3 e2e/cluster.py down

Tests use `Cluster` directly. State lives in $FAULTLINE_CLUSTER_DIR (default /tmp/faultline-cluster)."""

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADMIN_TOKEN = "faultline-e2e-admin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binaries():
    out = subprocess.run([str(HERE / "build-control-plane.sh")], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, cwd=cwd, capture_output=True)


def make_certs(d):
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
            "-subj", "/CN=faultline-e2e-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=kube-apiserver", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "30", "-extfile", "server.ext", cwd=d)
    openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    (d / "tokens.csv").write_text(f"{ADMIN_TOKEN},admin,admin-uid,system:masters\n")


def kubeconfig(server, ca_file, token, user="admin"):
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "faultline-e2e",
        "clusters": [{"name": "faultline-e2e", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "faultline-e2e", "context": {"cluster": "faultline-e2e", "user": user}}],
    }, indent=2)


class Cluster:
    def __init__(self, state_dir=None):
        self.dir = Path(state_dir or os.environ.get("FAULTLINE_CLUSTER_DIR", "/tmp/faultline-cluster"))
        self.kubeconfig = self.dir / "kubeconfig"
        self.bin = None

    # ---- lifecycle -------------------------------------------------------------------------------------

    def up(self, timeout=120):
        self.down()
        self.bin = binaries()
        certs = self.dir / "certs"
        make_certs(certs)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        (self.dir / "server").write_text(f"https://127.0.0.1:{api_port}")
        self._start("etcd", [
            str(self.bin / "etcd"), "--data-dir", str(self.dir / "etcd"), "--name", "default",
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync=true", "--log-level=warn"])
        self._start("kube-apiserver", [
            str(self.bin / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={api_port}", "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={certs / 'server.crt'}", f"--tls-private-key-file={certs / 'server.key'}",
            f"--client-ca-file={certs / 'ca.crt'}", f"--token-auth-file={certs / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={certs / 'sa.pub'}",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24", "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true", f"--cert-dir={self.dir / 'apiserver-certs'}"])
        self.kubeconfig.write_text(kubeconfig(self.server, certs / "ca.crt", ADMIN_TOKEN))
        self._wait_ready(timeout)
        self._start("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}",
            "--controllers=garbagecollector", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", "--authentication-skip-lookup=true"])
        return self

    @property
    def server(self):
        return (self.dir / "server").read_text().strip()

    def down(self):
        """SIGTERM to every process group started here; SIGKILL to whatever still runs 10 s later (a
        kube-apiserver whose etcd went first can sit in its shutdown sequence for much longer)."""
        pids = self.dir / "pids"
        if pids.exists():
            groups = [int(line) for line in pids.read_text().split() if line.isdigit()]
            for g in groups:
                try:
                    os.killpg(g, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.time() + 10
            for g in groups:
                while time.time() < deadline:
                    try:
                        os.kill(g, 0)
                        time.sleep(0.1)
                    except ProcessLookupError:
                        break
                try:
                    os.killpg(g, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self.dir.exists():
            subprocess.run(["rm", "-rf", str(self.dir)], check=False)

    def _start(self, name, argv):
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        with open(self.dir / "pids", "a") as f:
            f.write(f"{p.pid}\n")
        (self.dir / f"{name}.pid").write_text(str(p.pid))
        (self.dir / f"{name}.argv").write_text(json.dumps(argv))

    def stop_apiserver(self):
        """Takes the API server away (etcd keeps the data), as an outage or an upgrade would."""
        pid = int((self.dir / "kube-apiserver.pid").read_text())
        os.killpg(pid, signal.SIGTERM)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
                time.sleep(0.2)
            except ProcessLookupError:
                return
        os.killpg(pid, signal.SIGKILL)

    def pause_apiserver(self, paused=True):
        """Freezes the API server (SIGSTOP): connections are accepted and requests hang, as with an
        overloaded or partitioned control plane."""
        pid = int((self.dir / "kube-apiserver.pid").read_text())
        os.killpg(pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def start_apiserver(self, timeout=120):
        """Brings it back where it was."""
        self._start("kube-apiserver", json.loads((self.dir / "kube-apiserver.argv").read_text()))
        self._wait_ready(timeout)

    def _wait_ready(self, timeout):
        ctx = ssl.create_default_context(cafile=str(self.dir / "certs" / "ca.crt"))
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                req = urllib.request.Request(f"{self.server}/readyz",
                                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                with urllib.request.urlopen(req, context=ctx, timeout=2) as r:
                    if r.status == 200 and self.kubectl("get", "namespace", "default", check=False).returncode == 0:
                        return
            except Exception as e:  # not up yet
                last = e
            time.sleep(0.5)
        log = (self.dir / "kube-apiserver.log").read_text()[-3000:]
        raise RuntimeError(f"kube-apiserver not ready after {timeout}s ({last}); log tail:\n{log}")

    # ---- use -------------------------------------------------------------------------------------------

    def env(self, kubeconfig=None):
        return dict(os.environ, KUBECONFIG=str(kubeconfig or self.kubeconfig))

    def kubectl(self, *args, check=True, input=None, kubeconfig=None):
        kubectl = str((self.bin or binaries()) / "kubectl")
        r = subprocess.run([kubectl, *args], capture_output=True, text=True, input=input,
                           env=self.env(kubeconfig))
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {r.stderr}")
        return r

    def kubectl_json(self, *args, kubeconfig=None):
        return json.loads(self.kubectl(*args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def service_account_kubeconfig(self, namespace, name, path):
        """A kubeconfig holding a token of that ServiceAccount (TokenRequest), to act with its rights only."""
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
        path = Path(path)
        path.write_text(kubeconfig(self.server, self.dir / "certs" / "ca.crt", token, user=f"{namespace}-{name}"))
        return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["up", "down"])
    a = p.parse_args()
    c = Cluster()
    if a.command == "up":
        c.up()
        print(f"export KUBECONFIG={c.kubeconfig}")
    else:
        c.down()


if __name__ == "__main__":
    sys.exit(main())
