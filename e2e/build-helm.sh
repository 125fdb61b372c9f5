#!/usr/bin/env bash
# Builds helm from the Go module proxy, once (see go-cache.sh). Prints the directory that holds it.
. "$(dirname "$0")/go-cache.sh"
version=v3.22.0
cached "helm-$version" helm
echo "building helm $version (cached in $bin)" >&2
# `go install pkg@version` resolves the module itself: there is no go.mod of ours to hold it read-only.
(cd /tmp && GOFLAGS= GOBIN="$bin.tmp" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$version") >&2
publish
