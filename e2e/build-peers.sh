#!/usr/bin/env bash
# Builds the Go test peers (e2e/peers: grpc-go server and client, an HTTPS server, a TLS client) from their
# Go modules, once: the binary is cached outside the repository, keyed by its sources. Prints the directory
# that holds it. The toolbox image carries it beside faultline-toolbox.
set -euo pipefail
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=readonly
here=$(cd "$(dirname "$0")" && pwd)
cache=${FAULTLINE_CACHE:-$HOME/.cache/faultline}
key=$(cat "$0" "$here/peers/go.mod" "$here/peers/go.sum" "$here/peers/main.go" | sha256sum | cut -c1-16)
bin="$cache/peers-$key"
if [ -x "$bin/peers" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$bin.tmp"
echo "building the Go test peers (cached in $bin)" >&2
(cd "$here/peers" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/peers" .) >&2
rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "$bin"
