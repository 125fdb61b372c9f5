#!/usr/bin/env bash
# Builds the Prometheus server and promtool from their Go module (e2e/prometheus), once: the binaries are
# cached outside the repository, keyed by the go.sum they were built from. Prints the directory that holds
# them. About 10 minutes cold on two cores.
set -euo pipefail
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=readonly
here=$(cd "$(dirname "$0")" && pwd)
cache=${FAULTLINE_CACHE:-$HOME/.cache/faultline}
key=$(cat "$0" "$here/prometheus/go.mod" "$here/prometheus/go.sum" | sha256sum | cut -c1-16)
v=$(sed -n 's/.*github.com\/prometheus\/prometheus \(v[0-9.]*\).*/\1/p' "$here/prometheus/go.mod" | head -n1)
bin="$cache/prometheus-$v-$key"
if [ -x "$bin/prometheus" ] && [ -x "$bin/promtool" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$bin.tmp"
echo "building Prometheus $v and promtool (cached in $bin)" >&2
(cd "$here/prometheus" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/" \
    github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool) >&2
rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "$bin"
