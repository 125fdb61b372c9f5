"""The real node's failures whose cause the cluster's state proves (SPEC §3.7), each made for real, and the
same failures where the state explains nothing. `test_node.py` runs them on its node:

- NetworkPolicyDenied: a policy admits only `app=frontend` into `web`; `cart` in another namespace is
  rejected by kube-router (the node's enforcer). A policy created after another failure is not its cause.
- NoReadyEndpoints: the Service `api` whose only pod never passes its readiness probe (kube-proxy REJECTs).
- PortNotServed: a connection to a port `web` does not declare; the Service `wrong` whose `targetPort` names a
  port no pod declares. Negative: a refusal on a declared port where nothing listens.
- PodTerminating: a request in flight while `kubectl rollout restart` replaces the Deployment's pod.
- ContainerRestarted: a request that makes the server allocate past its memory limit (OOMKilled).
- ServiceNotFound: `web.causes-npp.svc.cluster.local` (the namespace mistyped). Negative: an NXDOMAIN for a
  name in the cluster domain that names no Service."""

import json
import subprocess
import time

from processes import eventually

TOOLBOX = "ghcr.io/faultline-dev/faultline-toolbox:0.1.0"
NS = "causes"
CLIENTS = "causes-client"
VIEW_QUERY = "error"


def container(command, ports=(), **extra):
    c = {"name": "main", "image": TOOLBOX, "imagePullPolicy": "IfNotPresent", "command": command}
    if ports:
        c["ports"] = [{"name": name, "containerPort": port} for name, port in ports]
    c.update(extra)
    return c


def pod(name, ns, labels, *containers):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": list(containers)}}


def service(name, ns, selector, target):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": target}]}}


def policy(name, ns, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def view(ns):
    return {"apiVersion": "faultline.dev/v1alpha1", "kind": "ErrorView", "metadata": {"name": "errors", "namespace": ns},
            "spec": {"query": VIEW_QUERY, "publishEvents": True, "samples": 30}}


def apply(node, *objs):
    node.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def setup(node):
    """The workloads, policies and views; returns the pods' addresses by name."""
    server = ["faultline-toolbox", "http-server", "8080"]
    apply(node,
          {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
          {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CLIENTS}},
          view(NS), view(CLIENTS),
          pod("web", NS, {"app": "web"}, container(server, [("http", 8080)])),
          pod("quiet", NS, {"app": "quiet"}, container(["sleep", "3600"], [("http", 8080)])),
          pod("api", NS, {"app": "api"}, container(server, [("http", 8080)], readinessProbe={
              "exec": {"command": ["false"]}, "periodSeconds": 2})),
          pod("hog", NS, {"app": "hog"}, container(server, [("http", 8080)], resources={
              "limits": {"memory": "48Mi"}, "requests": {"memory": "48Mi"}})),
          pod("cart", CLIENTS, {"app": "cart"}, container(["sleep", "3600"])),
          service("web", NS, {"app": "web"}, 8080),
          service("api", NS, {"app": "api"}, 8080),
          service("wrong", NS, {"app": "web"}, "htpp"),
          {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "slow", "namespace": NS},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "slow"}},
                    "template": {"metadata": {"labels": {"app": "slow"}},
                                 "spec": {"terminationGracePeriodSeconds": 2,
                                          "containers": [container(server, [("http", 8080)])]}}}},
          # Only a frontend may reach web; cart is not one.
          policy("web-ingress", NS, {"podSelector": {"matchLabels": {"app": "web"}},
                                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}]}]}))
    for ns, p in ((NS, "web"), (NS, "quiet"), (NS, "hog"), (CLIENTS, "cart")):
        node.kubectl("-n", ns, "wait", "--for=condition=Ready", f"pod/{p}", "--timeout=120s")
    node.kubectl("-n", NS, "rollout", "status", "deployment/slow", "--timeout=120s")
    pods = {p["metadata"]["name"]: p["status"].get("podIP") for p in
            node.kubectl_json("-n", NS, "get", "pods")["items"]}
    # kube-router has programmed the policy when a connection from cart to web no longer gets through.
    eventually(lambda: cart(node, "connect", f"{pods['web']}:8080", "--wait", "1") != ["connected"], timeout=60,
               what="kube-router enforcing web-ingress")
    return pods


def cart(node, *args):
    return node.kubectl("-n", CLIENTS, "exec", "cart", "--", "faultline-toolbox", *args, check=False).stdout.split()


def make_failures(node, pods):
    """Each failure once, in order; returns when each happened (for the policy-after-the-error check)."""
    at = {}
    # Denied by web-ingress.
    cart(node, "connect", f"{pods['web']}:8080", "--wait", "1")
    # A refusal on a port quiet declares but nothing listens on; then, at once, a policy that isolates quiet:
    # created after the failure, it is not its cause.
    assert cart(node, "connect", f"{pods['quiet']}:8080") == ["refused"]
    at["quiet"] = time.time()
    apply(node, policy("quiet-late", NS, {"podSelector": {"matchLabels": {"app": "quiet"}}}))
    # The Service whose only pod is never Ready.
    cart(node, "connect", f"{cluster_ip(node, 'api')}:80", "--wait", "1")
    # A port hog does not declare (no policy isolates hog).
    assert cart(node, "connect", f"{pods['hog']}:9999") == ["refused"]
    # The Service whose targetPort names no declared port.
    cart(node, "connect", f"{cluster_ip(node, 'wrong')}:80", "--wait", "1")
    # The names.
    cart(node, "dns", f"web.{NS}p.svc.cluster.local")
    cart(node, "dns", "nosuch.cluster.local")
    return at


def rollout_during_a_request(node):
    """A request to the Deployment's pod that never gets its answer, while `rollout restart` replaces it."""
    ip = [p for p in node.kubectl_json("-n", NS, "get", "pods", "-l", "app=slow")["items"]
          if not p["metadata"].get("deletionTimestamp")][0]["status"]["podIP"]
    req = subprocess.Popen([str(node.bin / "kubectl"), "-n", CLIENTS, "exec", "cart", "--", "timeout", "20",
                            "faultline-toolbox", "http-get", f"http://{ip}:8080/hang"],
                           env=node.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    node.kubectl("-n", NS, "rollout", "restart", "deployment/slow")
    node.kubectl("-n", NS, "rollout", "status", "deployment/slow", "--timeout=120s")
    req.wait(timeout=30)


def oom_during_a_request(node, pods):
    cart(node, "http-get", f"http://{pods['hog']}:8080/alloc")
    eventually(lambda: any((c.get("lastState") or {}).get("terminated", {}).get("reason") == "OOMKilled"
                           for c in node.kubectl_json("-n", NS, "get", "pod", "hog")["status"]["containerStatuses"]),
               timeout=60, what="hog OOMKilled")


def cluster_ip(node, svc):
    return node.kubectl_json("-n", NS, "get", "service", svc)["spec"]["clusterIP"]


def entries(node, query):
    """The dashboard's entries for `query` (the operator's API, as admin)."""
    import urllib.parse
    return node.dashboard("/api/entries?q=" + urllib.parse.quote(query))["entries"]
SETTLE_S = 3
