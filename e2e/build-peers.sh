#!/usr/bin/env bash
# Builds the Go test peers (e2e/peers: grpc-go server and client, an HTTPS server, a TLS client) from their
# Go modules, once (see go-cache.sh). Prints the directory that holds them. The toolbox image carries them
# beside faultline-toolbox.
. "$(dirname "$0")/go-cache.sh"
cached peers peers "$here/peers/go.mod" "$here/peers/go.sum" "$here/peers/main.go"
echo "building the Go test peers (cached in $bin)" >&2
(cd "$here/peers" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/peers" .) >&2
publish
