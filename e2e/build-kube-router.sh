#!/usr/bin/env bash
# Builds kube-router (its NetworkPolicy firewall is the real node's enforcer) from its Go module
# (e2e/kube-router), once (see go-cache.sh). Prints the directory that holds it. About a minute cold.
. "$(dirname "$0")/go-cache.sh"
v=$(required "$here/kube-router" github.com/cloudnativelabs/kube-router/v2)
cached "kube-router-$v" kube-router "$here/kube-router/go.mod" "$here/kube-router/go.sum" "$here/kube-router/tools.go"
echo "building kube-router $v (cached in $bin)" >&2
(cd "$here/kube-router" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/kube-router" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) >&2
publish
