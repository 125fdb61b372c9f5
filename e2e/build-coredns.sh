#!/usr/bin/env bash
# Builds CoreDNS from its Go module (e2e/coredns), once: the binary is cached outside the repository, keyed
# by the go.sum it was built from. Prints the directory that holds it. About 5 minutes cold on two cores.
set -euo pipefail
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=readonly
here=$(cd "$(dirname "$0")" && pwd)
cache=${FAULTLINE_CACHE:-$HOME/.cache/faultline}
key=$(cat "$0" "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go" | sha256sum | cut -c1-16)
v=$(sed -n 's/.*github.com\/coredns\/coredns \(v[0-9.]*\).*/\1/p' "$here/coredns/go.mod" | head -n1)
bin="$cache/coredns-$v-$key"
if [ -x "$bin/coredns" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$bin.tmp"
echo "building CoreDNS $v (cached in $bin)" >&2
(cd "$here/coredns" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/coredns" .) >&2
rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "$bin"
