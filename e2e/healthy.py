"""A healthy cluster, busy: what a node does all day when nothing is wrong, for the real-node test that
counts every error the operator holds (it must hold none) and for `make demo`.

- `web`: two HTTP servers (toolbox) behind a Service, also a NodePort, with HTTP readiness and liveness
  probes;
- `hostweb`: an HTTP server in the host network behind a Service (a backend on the node itself);
- `grpc`: a grpc-go server behind a Service, probed by the kubelet's own gRPC health checks;
- `secure`: an HTTPS server (Go) behind a Service, probed over HTTPS (Go/TLS closes, every probe);
- `client`: a pod calling each by name every second (search-list DNS through the ClusterIP, HTTP, gRPC,
  a TLS handshake), the NodePort on the node's address, and the API server through `kubernetes.default`
  with its ServiceAccount's CA;
- `hostclient`: a host-network pod doing the same through the node's masquerade;
- churn: pods that start, call the Service, and are deleted while the rest goes on.

Every workload waits for its Service's endpoints before it starts calling: a Service with no endpoint
answers with an ICMP port unreachable (kube-proxy's REJECT), a real error and not this module's."""

import json
import subprocess
import time

from processes import eventually

TOOLBOX = "ghcr.io/faultline-dev/faultline-toolbox:0.1.0"
NS = "healthy"
SA_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

# One round of calls; each program exits when its call is done (a new socket and a new lookup every time).
CALLS = " ; ".join([
    "faultline-toolbox http-get http://web/status/200",
    "faultline-toolbox http-get http://web.healthy.svc.cluster.local/status/204",
    "peers grpc-client grpc.healthy.svc.cluster.local:9090 echo --count 2",
    "peers grpc-client grpc.healthy.svc.cluster.local:9090 health",
    "peers tls-client secure.healthy.svc.cluster.local:443 --insecure",
    "faultline-toolbox http-get http://hostweb.healthy.svc.cluster.local/status/200",
    "faultline-toolbox http-get http://$HOST_IP:30080/status/200",
])
POD_CALLS = CALLS + f" ; peers tls-client kubernetes.default.svc:443 --ca {SA_CA} --sni kubernetes.default.svc"


def container(name, command, **extra):
    return dict({"name": name, "image": TOOLBOX, "imagePullPolicy": "IfNotPresent", "command": command}, **extra)


def deployment(name, replicas, c):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 2, "containers": [c]}}}}


def service(name, port, target):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": target}]}}


# The node's address, for the NodePort.
HOST_IP = [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]


def loop_pod(name, calls, host_network=False):
    spec = {"terminationGracePeriodSeconds": 1,
            "containers": [container("main", ["sh", "-c", f"while true; do {calls} ; sleep 1; done"], env=HOST_IP)]}
    if host_network:
        spec.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def servers():
    probe = {"periodSeconds": 2, "timeoutSeconds": 2}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        deployment("web", 2, container("main", ["faultline-toolbox", "http-server", "8080"],
                                       readinessProbe=dict(probe, httpGet={"path": "/status/200", "port": 8080}),
                                       livenessProbe=dict(probe, httpGet={"path": "/status/204", "port": 8080}))),
        service("web", 80, 8080) | {"spec": {"type": "NodePort", "selector": {"app": "web"},
                                             "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}},
        host_network(deployment("hostweb", 1, container("main", ["faultline-toolbox", "http-server", "18080"],
                                                        readinessProbe=dict(probe, tcpSocket={"port": 18080})))),
        service("hostweb", 80, 18080),
        deployment("grpc", 1, container("main", ["peers", "grpc-server", "9090"],
                                        readinessProbe=dict(probe, grpc={"port": 9090}))),
        service("grpc", 9090, 9090),
        deployment("secure", 1, container("main", ["peers", "https-server", "8443"],
                                          readinessProbe=dict(probe, httpGet={"path": "/healthz", "port": 8443,
                                                                              "scheme": "HTTPS"}))),
        service("secure", 443, 8443),
    ]


def host_network(d):
    d["spec"]["template"]["spec"].update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    return d


def apply(node, objs):
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def wait_for_endpoints(node, names):
    """Every Service's endpoints ready and programmed by kube-proxy (its DNAT rules in place)."""
    for name in names:
        node.kubectl("-n", NS, "rollout", "status", f"deployment/{name}", "--timeout=120s")
    for name in names:
        ips = [p["status"]["podIP"] for p in node.kubectl_json("-n", NS, "get", "pods", "-l", f"app={name}")["items"]]
        for ip in ips:
            eventually(lambda: f"--to-destination {ip}:" in subprocess.run(
                ["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout, timeout=60,
                what=f"kube-proxy's rules for {name} ({ip})")


def start(node):
    """The servers, then (once their Services answer) the callers. Returns when all are running."""
    apply(node, servers())
    wait_for_endpoints(node, ["web", "hostweb", "grpc", "secure"])
    apply(node, [loop_pod("client", POD_CALLS), loop_pod("hostclient", CALLS, host_network=True)])
    node.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/client", "pod/hostclient", "--timeout=120s")


def churn(node, seconds, every=15):
    """Pods that start, make one round of calls, and are deleted, for `seconds`: new veths, their router
    solicitations, their lookups and connections, and the kubelet tearing them down."""
    deadline, n = time.time() + seconds, 0
    while time.time() < deadline:
        name = f"churn-{n}"
        apply(node, [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                      "spec": {"terminationGracePeriodSeconds": 1,
                               "containers": [container("main", ["sh", "-c", f"{CALLS} ; sleep 3600"],
                                                        env=HOST_IP)]}}])
        time.sleep(every)
        node.kubectl("-n", NS, "delete", "pod", name, "--wait=false")
        n += 1
    return n


def stop(node):
    node.kubectl("delete", "namespace", NS, "--wait=true", "--timeout=120s", check=False)
