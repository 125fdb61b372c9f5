#!/usr/bin/env bash
# Builds the Prometheus server and promtool from their Go module (e2e/prometheus), once (see go-cache.sh).
# Prints the directory that holds them. About 10 minutes cold on two cores.
. "$(dirname "$0")/go-cache.sh"
v=$(required "$here/prometheus" github.com/prometheus/prometheus)
cached "prometheus-$v" "prometheus promtool" "$here/prometheus/go.mod" "$here/prometheus/go.sum"
echo "building Prometheus $v and promtool (cached in $bin)" >&2
(cd "$here/prometheus" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/" \
    github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool) >&2
publish
