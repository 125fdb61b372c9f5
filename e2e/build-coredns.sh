#!/usr/bin/env bash
# Builds CoreDNS from its Go module (e2e/coredns), once (see go-cache.sh). Prints the directory that holds
# it. About 5 minutes cold on two cores.
. "$(dirname "$0")/go-cache.sh"
v=$(required "$here/coredns" github.com/coredns/coredns)
cached "coredns-$v" coredns "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go"
echo "building CoreDNS $v (cached in $bin)" >&2
(cd "$here/coredns" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp/coredns" .) >&2
publish
