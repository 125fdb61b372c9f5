#!/usr/bin/env bash
# Builds the Kubernetes binaries (kube-apiserver, kubectl, and for the real node kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy) and etcd from the Go modules in e2e/tools and e2e/etcd,
# once: the binaries are cached outside the repository, keyed by the go.sum they were built from, and reused.
# Prints the directory that holds them. A cold build takes several minutes on two cores.
set -euo pipefail
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=readonly
here=$(cd "$(dirname "$0")" && pwd)
cache=${FAULTLINE_CACHE:-$HOME/.cache/faultline}
key=$(cat "$0" "$here/tools/go.sum" "$here/etcd/go.sum" "$here/tools/go.mod" "$here/etcd/go.mod" | sha256sum | cut -c1-16)
k8s=$(sed -n 's/.*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$here/tools/go.mod" | head -n1)
bin="$cache/control-plane-$k8s-$key"
cmds="kube-apiserver kubectl kube-controller-manager kube-scheduler kube-proxy kubelet"
have=1
for c in $cmds etcd; do [ -x "$bin/$c" ] || have=0; done
if [ $have = 1 ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$bin.tmp"
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
rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "$bin"
