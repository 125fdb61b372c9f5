#!/usr/bin/env python3
"""A real one-node Kubernetes cluster on this machine: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kube-proxy and kubelet (built from Go modules by build-control-plane.sh), containerd and runc
and the CNI plugins (Debian packages), CoreDNS (built from its Go module), kube-router's firewall enforcing
NetworkPolicies with iptables and ipset (built from its Go module), and Faultline's images imported
into containerd (scripts/build-images.py). No registry is involved: every image is imported and every pod
spec says IfNotPresent.

    python3 e2e/node.py up      # prints `export KUBECONFIG=…` as its last line
    python3 e2e/node.py down    # stops everything by PID and leaves the host as it found it

State lives in $FAULTLINE_NODE_DIR (default /var/tmp/faultline-node). The CNI is a bridge (`cni0`) by
default, or routed veths (the `ptp` plugin) with FAULTLINE_NODE_CNI=ptp. `up` also installs the chart
(`helm install` with its defaults, TLS on) unless FAULTLINE_NODE_CHART=0."""

import argparse
import base64
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from cluster import ADMIN_TOKEN, binaries, free_port, kubeconfig, openssl  # noqa: E402

NODE_NAME = "faultline-node"
POD_CIDR = "10.88.0.0/16"
NODE_POD_CIDR = "10.88.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SVC_IP = "10.96.0.1"
DNS_SVC_IP = "10.96.0.10"
API_PORT = 6443
BRIDGE = "cni0"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.15.0"
NAMESPACE = "faultline-system"
# Host settings the node changes, restored by `down`.
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1",
           "net.bridge.bridge-nf-call-ip6tables": "1"}


def node_ip():
    """The machine's own address (the node's InternalIP): what `ip route get` says it sends from."""
    out = subprocess.run(["ip", "-4", "route", "get", "1"], capture_output=True, text=True).stdout.split()
    if "src" in out:
        return out[out.index("src") + 1]
    # No default route (a sandbox): the first global address.
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        return line.split()[3].split("/")[0]
    raise RuntimeError("no IPv4 address for the node")


def run(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def make_certs(d, ip):
    """A CA; the API server's serving certificate; the kubelet's serving and client certificates; the API
    server's client certificate for kubelets; ServiceAccount keys; tokens for admin and the components."""
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
            "-subj", "/CN=faultline-node-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)

    def leaf(name, subject, usage, sans=None):
        ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
               f"extendedKeyUsage={usage}"]
        if sans:
            ext.append("subjectAltName=" + ",".join(sans))
        (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subject, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "30", "-extfile", f"{name}.ext", cwd=d)

    leaf("apiserver", "/CN=kube-apiserver", "serverAuth",
         [f"IP:{ip}", "IP:127.0.0.1", f"IP:{KUBERNETES_SVC_IP}", "DNS:localhost", "DNS:kubernetes",
          "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"])
    leaf("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth")
    leaf("kubelet", f"/CN={NODE_NAME}", "serverAuth", [f"IP:{ip}", f"DNS:{NODE_NAME}"])
    leaf("kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth")
    openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    # Token users named as the default RBAC bindings expect them.
    (d / "tokens.csv").write_text("\n".join([
        f"{ADMIN_TOKEN},admin,admin-uid,system:masters",
        "faultline-kcm-token,system:kube-controller-manager,kcm-uid",
        "faultline-scheduler-token,system:kube-scheduler,scheduler-uid",
        "faultline-proxy-token,system:kube-proxy,proxy-uid",
    ]) + "\n")


class Node:
    def __init__(self, state_dir=None):
        self.dir = Path(state_dir or os.environ.get("FAULTLINE_NODE_DIR", "/var/tmp/faultline-node"))
        self.kubeconfig = self.dir / "kubeconfig"
        self.bin = None
        self.cni = os.environ.get("FAULTLINE_NODE_CNI", "bridge")

    # ---- lifecycle -------------------------------------------------------------------------------------

    def up(self, chart=True, timeout=300):
        self.down()
        started = time.time()
        self.bin = binaries()
        self.dir.mkdir(parents=True)
        ip = node_ip()
        (self.dir / "node-ip").write_text(ip)
        certs = self.dir / "certs"
        make_certs(certs, ip)
        self._sysctls()
        self._start_control_plane(ip, certs)
        self.kubeconfig.write_text(kubeconfig(f"https://{ip}:{API_PORT}", certs / "ca.crt", ADMIN_TOKEN))
        self._wait_api(timeout)
        # After the API server's RBAC bootstrap: they read their delegated-auth ConfigMap at start.
        self._start_controllers(ip, certs)
        self._start_containerd()
        images = self._import_images()
        self._start_kubelet(ip, certs)
        self._start_kube_proxy(ip, certs)
        self._wait_node_ready(timeout)
        # Once the Node exists: kube-router finds its own node by name at start.
        self._start_network_policies()
        self._start_coredns()
        self.log(f"node Ready, CoreDNS Ready after {time.time() - started:.0f} s ({len(images)} images)")
        if chart:
            self.install_chart()
        return self

    def down(self):
        forward = getattr(self, "_forward", None)
        if forward is not None:
            forward[0].kill()
        """Stops every process started here (by PID, SIGTERM then SIGKILL), removes the pods' sandboxes
        and network namespaces, the CNI bridge, every iptables rule of kube-proxy and the CNI plugins, the
        mounts under the state directory, and restores the sysctls it changed."""
        pids = self.dir / "pids"
        if pids.exists():
            # containerd last: the kubelet and its shims stop their containers through it.
            groups = [int(x) for x in pids.read_text().split() if x.isdigit()]
            containerd = self._pid("containerd")
            order = [g for g in groups if g != containerd] + ([containerd] if containerd in groups else [])
            self._remove_sandboxes()
            for g in order:
                stop_group(g)
        # Shims outlive containerd (they hold the containers); kill every one rooted in our state dir.
        for pid in pids_with_arg(str(self.dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # And the containers' processes, which outlive their killed shims (reparented to init, and a
        # container's first process ignores SIGTERM): every process in the pods' cgroups.
        for procs in Path("/sys/fs/cgroup/pids/kubepods").rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        self._unmount_all()
        self._cleanup_network()
        self._restore_sysctls()
        if self.dir.exists():
            subprocess.run(["rm", "-rf", str(self.dir)], check=False)

    # ---- parts -----------------------------------------------------------------------------------------

    def _start_control_plane(self, ip, certs):
        etcd_port, peer_port = free_port(), free_port()
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
            "--bind-address=0.0.0.0", f"--secure-port={API_PORT}", f"--advertise-address={ip}",
            f"--tls-cert-file={certs / 'apiserver.crt'}", f"--tls-private-key-file={certs / 'apiserver.key'}",
            f"--client-ca-file={certs / 'ca.crt'}", f"--token-auth-file={certs / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={certs / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={certs / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={certs / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={certs / 'sa.pub'}",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            f"--cert-dir={self.dir / 'apiserver-certs'}"])

    def _start_controllers(self, ip, certs):
        server = f"https://{ip}:{API_PORT}"
        for name, token in (("kube-controller-manager", "faultline-kcm-token"),
                            ("kube-scheduler", "faultline-scheduler-token"),
                            ("kube-proxy", "faultline-proxy-token")):
            (self.dir / f"{name}.kubeconfig").write_text(kubeconfig(server, certs / "ca.crt", token, user=name))
        self._start("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"),
            f"--kubeconfig={self.dir / 'kube-controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={self.dir / 'kube-controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={self.dir / 'kube-controller-manager.kubeconfig'}",
            "--leader-elect=false", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={certs / 'sa.key'}", f"--root-ca-file={certs / 'ca.crt'}",
            f"--cluster-signing-cert-file={certs / 'ca.crt'}", f"--cluster-signing-key-file={certs / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}"])
        self._start("kube-scheduler", [
            str(self.bin / "kube-scheduler"), f"--kubeconfig={self.dir / 'kube-scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={self.dir / 'kube-scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={self.dir / 'kube-scheduler.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}"])

    def _start_containerd(self):
        c = self.dir / "containerd"
        cni_conf = self.dir / "cni" / "net.d"
        cni_conf.mkdir(parents=True)
        (cni_conf / "10-faultline.conflist").write_text(json.dumps(self._cni_conflist(), indent=2))
        (c / "opt").mkdir(parents=True)
        config = f"""version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
oom_score = 0
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{c / 'containerd.sock.ttrpc'}"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This machine's bounding set lacks CAP_SYS_RESOURCE: runc must not try to lower oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
"""
        (c / "config.toml").write_text(config)
        self._start("containerd", ["containerd", "--config", str(c / "config.toml")])
        deadline = time.time() + 60
        while time.time() < deadline:
            if run("ctr", "-a", str(self.socket), "version", check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError("containerd did not start: " + (self.dir / "containerd.log").read_text()[-2000:])

    def _cni_conflist(self):
        ipam = {"type": "host-local", "ranges": [[{"subnet": NODE_POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(self.dir / "cni" / "ipam")}
        if self.cni == "ptp":
            main = {"type": "ptp", "ipMasq": False, "ipam": ipam}
        else:
            main = {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                    "ipam": ipam}
        return {"cniVersion": "1.0.0", "name": "faultline",
                "plugins": [main, {"type": "portmap", "capabilities": {"portMappings": True}}]}

    @property
    def socket(self):
        return self.dir / "containerd" / "containerd.sock"

    def _import_images(self):
        """Builds (cached) and imports every image the node runs: Faultline's, the toolbox, CoreDNS and the
        sandbox image."""
        out = run(sys.executable, str(REPO / "scripts" / "build-images.py"), "--all").stdout.split()
        tars = [t for t in out if t.endswith(".tar")]
        for t in tars:
            r = run("ctr", "-a", str(self.socket), "-n", "k8s.io", "images", "import", "--no-unpack", t,
                    check=False)
            if r.returncode != 0:
                raise RuntimeError(f"importing {t}: {r.stderr}")
        return tars

    def _start_kubelet(self, ip, certs):
        k = self.dir / "kubelet"
        k.mkdir()
        (self.dir / "resolv.conf").write_text("# no upstream resolvers: pods resolve cluster names only\n")
        (self.dir / "kubelet.kubeconfig").write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "node",
            "clusters": [{"name": "node", "cluster": {"server": f"https://{ip}:{API_PORT}",
                                                      "certificate-authority": str(certs / "ca.crt")}}],
            "users": [{"name": "kubelet", "user": {"client-certificate": str(certs / "kubelet-client.crt"),
                                                    "client-key": str(certs / "kubelet-client.key")}}],
            "contexts": [{"name": "node", "context": {"cluster": "node", "user": "kubelet"}}]}, indent=2))
        sock = f"unix://{self.socket}"
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            # This machine mounts cgroup v1; kubelet 1.35+ refuses it unless told otherwise.
            "failCgroupV1": False, "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": sock, "imageServiceEndpoint": sock,
            "oomScoreAdj": 0, "failSwapOn": False,
            "clusterDNS": [DNS_SVC_IP], "clusterDomain": "cluster.local",
            "resolvConf": str(self.dir / "resolv.conf"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(certs / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(certs / "kubelet.crt"), "tlsPrivateKeyFile": str(certs / "kubelet.key"),
            "port": 10250, "healthzPort": 0, "readOnlyPort": 0,
            # The disk is shared with everything else on this machine (builds, caches, other checkouts): evict
            # only when it is truly full. In bytes, not percent: 1% of a 252 GB disk is 2.5 GB, and a machine with
            # less than that free would put the node under DiskPressure (its taint leaves new pods Pending).
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "300Mi", "imagefs.available": "300Mi",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "registerNode": True, "maxPods": 110,
            "localStorageCapacityIsolation": True,
        }
        (self.dir / "kubelet-config.json").write_text(json.dumps(config, indent=2))
        self._start("kubelet", [
            str(self.bin / "kubelet"), f"--config={self.dir / 'kubelet-config.json'}",
            f"--kubeconfig={self.dir / 'kubelet.kubeconfig'}", f"--root-dir={k}", f"--node-ip={ip}",
            f"--hostname-override={NODE_NAME}", f"--cert-dir={self.dir / 'kubelet-certs'}", "--v=1"])

    def _start_kube_proxy(self, ip, certs):
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "iptables", "clusterCIDR": POD_CIDR, "hostnameOverride": NODE_NAME,
            "clientConnection": {"kubeconfig": str(self.dir / "kube-proxy.kubeconfig")},
            "conntrack": {"maxPerCore": 0}, "oomScoreAdj": 0,
            "healthzBindAddress": f"127.0.0.1:{free_port()}", "metricsBindAddress": f"127.0.0.1:{free_port()}",
        }
        (self.dir / "kube-proxy-config.json").write_text(json.dumps(config, indent=2))
        self._start("kube-proxy", [str(self.bin / "kube-proxy"), f"--config={self.dir / 'kube-proxy-config.json'}"])

    def _start_network_policies(self):
        """kube-router's firewall alone (no routing, no service proxy, no CNI): it enforces NetworkPolicies
        with iptables and ipset, as real clusters do, so a denied SYN is dropped by the kernel. Pinned to
        v2.1.0 (the only version served here; security flaws are reported against it): test node only."""
        out = run(str(HERE / "build-kube-router.sh")).stdout.strip().splitlines()[-1]
        self._start("kube-router", [
            str(Path(out) / "kube-router"), f"--kubeconfig={self.kubeconfig}", f"--hostname-override={NODE_NAME}",
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--enable-cni=false",
            f"--service-cluster-ip-range={SERVICE_CIDR}", f"--health-port={free_port()}", "--metrics-port=0",
            "--v=1"])

    def _start_coredns(self):
        corefile = ".:53 {\n    errors\n    health :8080\n    ready :8181\n"
        corefile += "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n        pods insecure\n"
        corefile += "        fallthrough in-addr.arpa ip6.arpa\n    }\n    cache 30\n    loop\n    reload\n}\n"
        # A name that fails on purpose, for tests that make a DNS error through the cluster's own resolver.
        corefile += "faultline.test:53 {\n    errors\n    template ANY ANY {\n"
        corefile += '        match "^servfail[.]faultline[.]test[.]$"\n        rcode SERVFAIL\n    }\n}\n'
        manifest = [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
             "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                        "verbs": ["list", "watch"]},
                       {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                        "verbs": ["list", "watch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "system:coredns"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
             "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
             "data": {"Corefile": corefile}},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                      "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                                   "spec": {"serviceAccountName": "coredns", "priorityClassName": "system-cluster-critical",
                                            "containers": [{
                                                "name": "coredns", "image": COREDNS_IMAGE,
                                                "imagePullPolicy": "IfNotPresent",
                                                "args": ["-conf", "/etc/coredns/Corefile"],
                                                "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                                                          {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}],
                                                "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
                                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                                                   "periodSeconds": 2},
                                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}]}],
                                            "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
             "spec": {"clusterIP": DNS_SVC_IP, "selector": {"k8s-app": "kube-dns"},
                      "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
        ]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest}))
        self.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=180s")

    def install_chart(self):
        """`helm install` of the chart with its defaults (TLS on), the images it names already imported."""
        helm = helm_binary()
        started = time.time()
        r = subprocess.run([helm, "install", "faultline", str(REPO / "charts" / "faultline"), "--namespace",
                            NAMESPACE, "--create-namespace", "--wait", "--timeout", "5m"],
                           capture_output=True, text=True, env=self.env())
        if r.returncode != 0:
            raise RuntimeError(f"helm install failed: {r.stderr}\n{self.kubectl('get', 'pods', '-A', check=False).stdout}")
        self.log(f"helm install took {time.time() - started:.0f} s")

    # ---- waiting ---------------------------------------------------------------------------------------

    def _wait_api(self, timeout):
        ctx = ssl.create_default_context(cafile=str(self.dir / "certs" / "ca.crt"))
        server = f"https://{(self.dir / 'node-ip').read_text()}:{API_PORT}"
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                req = urllib.request.Request(f"{server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                with urllib.request.urlopen(req, context=ctx, timeout=2) as r:
                    if r.status == 200 and self.kubectl("get", "ns", "default", check=False).returncode == 0:
                        return
            except Exception as e:  # not up yet
                last = e
            time.sleep(0.5)
        raise RuntimeError(f"kube-apiserver not ready ({last}): {(self.dir / 'kube-apiserver.log').read_text()[-3000:]}")

    def _wait_node_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if r.returncode == 0:
                conds = {c["type"]: c["status"] for c in json.loads(r.stdout)["status"].get("conditions", [])}
                if conds.get("Ready") == "True":
                    return
            time.sleep(1)
        raise RuntimeError("the node did not become Ready: " + (self.dir / "kubelet.log").read_text()[-4000:])

    # ---- teardown helpers ------------------------------------------------------------------------------

    def _pid(self, name):
        p = self.dir / f"{name}.pid"
        return int(p.read_text()) if p.exists() else None

    def _remove_sandboxes(self):
        """Stops and removes every pod sandbox through the CRI, so that the CNI plugins release their
        addresses and remove their veths and rules (the runtime is still up)."""
        if not self.socket.exists():
            return
        crictl = ["ctr", "-a", str(self.socket), "-n", "k8s.io"]
        r = run(*crictl, "tasks", "ls", "-q", check=False)
        for task in r.stdout.split():
            run(*crictl, "tasks", "kill", "-s", "SIGKILL", task, check=False)

    def _unmount_all(self):
        mounts = Path("/proc/mounts").read_text().splitlines()
        ours = sorted({m.split()[1] for m in mounts if m.split()[1].startswith(str(self.dir))}, key=len,
                      reverse=True)
        for m in ours:
            subprocess.run(["umount", "-l", m], capture_output=True)
        # Network namespaces the CNI made for pods live under /var/run/netns (cni-…) and are bind mounts.
        for m in mounts:
            point = m.split()[1]
            if point.startswith("/run/netns/cni-") or point.startswith("/var/run/netns/cni-"):
                subprocess.run(["umount", "-l", point], capture_output=True)
                try:
                    os.unlink(point)
                except OSError:
                    pass

    def _cleanup_network(self):
        # The bridge (and with it the host ends of bridge veths); routed veths of the ptp plugin.
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        links = run("ip", "-o", "link", "show", check=False).stdout.splitlines()
        for line in links:
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith("veth"):
                subprocess.run(["ip", "link", "del", name], capture_output=True)
        # kube-proxy's chains and the CNI plugins' chains, in every table, both families.
        for tool in ("iptables", "ip6tables"):
            for table in ("filter", "nat", "mangle"):
                rules = run(tool, "-t", table, "-S", check=False).stdout.splitlines()
                ours = [r for r in rules if r.startswith("-A ") and any(
                    k in r for k in ("KUBE-", "CNI-", "cni0", "faultline"))]
                for r in ours:
                    subprocess.run([tool, "-t", table, *shlex.split("-D" + r[2:])], capture_output=True)
                chains = [r.split()[1] for r in rules if r.startswith("-N ") and
                          (r.split()[1].startswith(("KUBE-", "CNI-")))]
                for c in chains:
                    subprocess.run([tool, "-t", table, "-F", c], capture_output=True)
                for c in chains:
                    subprocess.run([tool, "-t", table, "-X", c], capture_output=True)
        # kube-router's address sets (after the rules that used them are gone).
        for name in run("ipset", "list", "-n", check=False).stdout.split() if shutil.which("ipset") else []:
            if name.startswith(("KUBE-", "kube-router")):
                subprocess.run(["ipset", "destroy", name], capture_output=True)
        # Addresses kube-proxy bound for Services (iptables mode binds none; ipvs would) and conntrack.
        subprocess.run(["ip", "route", "flush", "10.88.0.0/16"], capture_output=True)

    def _sysctls(self):
        saved = {}
        for key, value in SYSCTLS.items():
            path = Path("/proc/sys") / key.replace(".", "/")
            if path.exists():
                saved[key] = path.read_text().strip()
                path.write_text(value)
        # Kept outside the state dir: `down` must find it even after a failed `up`, and a second `up` must
        # not take the values the first one set for the host's own.
        if not SAVED_SYSCTLS.exists():
            SAVED_SYSCTLS.write_text(json.dumps(saved))

    def _restore_sysctls(self):
        if not SAVED_SYSCTLS.exists():
            return
        for key, value in json.loads(SAVED_SYSCTLS.read_text()).items():
            path = Path("/proc/sys") / key.replace(".", "/")
            if path.exists():
                path.write_text(value)
        SAVED_SYSCTLS.unlink()

    # ---- use -------------------------------------------------------------------------------------------

    def use_cni(self, kind):
        """Switches the CNI for pods created from now on (containerd reloads its CNI configuration)."""
        self.cni = kind
        conf = self.dir / "cni" / "net.d" / "10-faultline.conflist"
        conf.write_text(json.dumps(self._cni_conflist(), indent=2))
        time.sleep(2)

    @staticmethod
    def packet_sockets():
        """AF_PACKET sockets open on the host (captures)."""
        return len(Path("/proc/net/packet").read_text().splitlines()) - 1

    def dashboard(self, path):
        """GET `path` of the operator's dashboard API through `kubectl port-forward`, over TLS verified with
        the chart's CA, as admin: the JSON."""
        return json.loads(self.dashboard_bytes(path))

    def forget_dashboard(self):
        """Ends the port-forward, so that the next call resolves the Service (the leader) again."""
        if getattr(self, "_forward", None) is not None:
            self._forward[0].kill()
            self._forward[0].wait()
            self._forward = None

    def operator_pod_get(self, pod_ip, path):
        """GET `path` of one operator replica, by pod IP (the host reaches pods over the CNI bridge)."""
        req = urllib.request.Request(f"https://{pod_ip}:8080{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(req, context=self._operator_tls(), timeout=10) as r:
            return r.read().decode()

    def _operator_tls(self):
        secret = self.kubectl_json("-n", NAMESPACE, "get", "secret", "faultline-operator-tls")
        ca = self.dir / "operator-ca.crt"
        ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
        ctx = ssl.create_default_context(cafile=str(ca))
        # The certificate names the Service; a forward or a pod IP is what is dialled.
        ctx.check_hostname = False
        return ctx

    def dashboard_bytes(self, path):
        """GET `path` of the operator's HTTPS API through `kubectl port-forward`: the body."""
        if getattr(self, "_forward", None) is None or self._forward[0].poll() is not None:
            port = free_port()
            p = subprocess.Popen([str(self.bin / "kubectl"), "-n", NAMESPACE, "port-forward", "svc/faultline-operator",
                                  f"{port}:8080"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 env=self.env())
            p.stdout.readline()
            self._forward = (p, port)
        req = urllib.request.Request(f"https://127.0.0.1:{self._forward[1]}{path}",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(req, context=self._operator_tls(), timeout=10) as r:
            return r.read()

    def _start(self, name, argv, env=None):
        log = open(self.dir / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=env)
        with open(self.dir / "pids", "a") as f:
            f.write(f"{p.pid}\n")
        (self.dir / f"{name}.pid").write_text(str(p.pid))

    def env(self):
        path = f"{(self.bin or binaries())}:{os.environ.get('PATH', '')}"
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig), PATH=path)

    def kubectl(self, *args, check=True, input=None):
        r = subprocess.run([str((self.bin or binaries()) / "kubectl"), *args], capture_output=True, text=True,
                           input=input, env=self.env())
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {r.stderr}")
        return r

    def diagnosis(self):
        """A few lines on why pods may not run: the node's conditions that are not as they should be, the
        disk, and each pod that is not ready with the reason its kubelet gives. For CI's output, which is
        all one sees of a failure on another machine."""
        lines = []
        r = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if r.returncode != 0:
            return [f"the API server does not answer: {r.stderr.strip()[:200]}"]
        conds = json.loads(r.stdout)["status"].get("conditions", [])
        lines += [f"node {c['type']}={c['status']} {c.get('reason', '')}: {c.get('message', '')[:160]}"
                  for c in conds if (c["type"] == "Ready") != (c["status"] == "True")]
        disk = shutil.disk_usage(self.dir)
        lines.append(f"disk: {disk.free / 2**30:.1f} GiB free of {disk.total / 2**30:.0f}")
        pods = json.loads(self.kubectl("get", "pods", "-A", "-o", "json", check=False).stdout or "{}")
        for pod in pods.get("items", []):
            st = pod.get("status", {})
            if any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])) \
                    or st.get("phase") == "Succeeded":
                continue
            why = [c.get("message") or c.get("reason") for c in st.get("conditions", []) if c["status"] != "True"]
            why += [f"{k}: {v.get('reason')} {v.get('message', '')[:120]}" for cs in st.get("containerStatuses", [])
                    for k, v in cs.get("state", {}).items() if k != "running"]
            lines.append(f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']} {st.get('phase')}: "
                         f"{'; '.join(w for w in why if w)[:300]}")
        return lines[:20]

    def kubectl_json(self, *args):
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    @staticmethod
    def log(msg):
        print(f"node: {msg}", file=sys.stderr, flush=True)


SAVED_SYSCTLS = Path("/var/tmp/faultline-node.sysctls.json")


def helm_binary():
    return str(Path(run(str(HERE / "build-helm.sh")).stdout.strip().splitlines()[-1]) / "helm")


def stop_group(pgid, grace=10):
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.time() + grace
    while time.time() < deadline:
        try:
            os.kill(pgid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def pids_with_arg(needle):
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and int(p.name) != os.getpid():
            out.append(int(p.name))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["up", "down"])
    a = p.parse_args()
    n = Node()
    if a.command == "up":
        n.up(chart=os.environ.get("FAULTLINE_NODE_CHART", "1") != "0")
        print(f"export KUBECONFIG={n.kubeconfig}")
    else:
        n.down()


if __name__ == "__main__":
    sys.exit(main())
