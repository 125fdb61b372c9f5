#!/usr/bin/env bash
# Builds the Kubernetes binaries (kube-apiserver, kubectl, and for the real node kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy) and etcd from the Go modules in e2e/tools and e2e/etcd,
# once (see go-cache.sh). Prints the directory that holds them. A cold build takes several minutes on two
# cores.
. "$(dirname "$0")/go-cache.sh"
k8s=$(required "$here/tools" k8s.io/kubernetes)
cmds="kube-apiserver kubectl kube-controller-manager kube-scheduler kube-proxy kubelet"
cached "control-plane-$k8s" "$cmds etcd" "$here/tools/go.sum" "$here/etcd/go.sum" "$here/tools/go.mod" \
    "$here/etcd/go.mod"
(
    cd "$here/tools"
    echo "building $cmds $k8s (cached in $bin)" >&2
    # The version must be stamped (valid semver) or clients that check the server version refuse it.
    minor=${k8s#v1.}
    minor=${minor%%.*}
    v=k8s.io/component-base/version
    go build -trimpath -ldflags "-s -w -X $v.gitVersion=$k8s -X $v.gitMajor=1 -X $v.gitMinor=$minor" \
        -o "$bin.tmp/" $(for c in $cmds; do echo "k8s.io/kubernetes/cmd/$c"; done)
    cd "$here/etcd"
    echo "building etcd" >&2
    go build -trimpath -ldflags "-s -w" -o "$bin.tmp/etcd" .
) >&2
publish
