#!/usr/bin/env bash
# Builds a small OpenTelemetry Collector (OTLP receiver, file exporter, bearer-token auth) from the
# collector's Go modules (e2e/otelcol), once (see go-cache.sh). Prints the directory that holds it.
. "$(dirname "$0")/go-cache.sh"
v=$(required "$here/otelcol" go.opentelemetry.io/collector/otelcol)
cached "otelcol-$v" "otelcol" "$here/otelcol/go.mod" "$here/otelcol/go.sum" "$here/otelcol/main.go"
echo "building the OpenTelemetry Collector $v (cached in $bin)" >&2
(cd "$here/otelcol" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/otelcol" .) >&2
publish
