# Sourced by the build-*.sh scripts: a Go build done once and cached outside the repository, in a
# directory keyed by everything the build reads (the script, this file, the module's files). A script
# calls `cached NAME "BINARIES" FILES…` (which prints the directory and exits when it is already built),
# builds into "$bin.tmp", then calls `publish`.
set -euo pipefail
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=readonly
here=$(cd "$(dirname "$0")" && pwd)
cache=${FAULTLINE_CACHE:-$HOME/.cache/faultline}

cached() {
    local name=$1 wants=$2 key b have=1
    shift 2
    key=$(cat "$0" "${BASH_SOURCE[0]}" "$@" | sha256sum | cut -c1-16)
    bin="$cache/$name-$key"
    for b in $wants; do [ -x "$bin/$b" ] || have=0; done
    if [ $have = 1 ]; then
        echo "$bin"
        exit 0
    fi
    rm -rf "$bin.tmp"
    mkdir -p "$bin.tmp"
}

# Moves the finished build into place (a half-finished one is never used) and prints its directory.
publish() {
    rm -rf "$bin"
    mv "$bin.tmp" "$bin"
    echo "$bin"
}

# The version of module $2 that $1/go.mod requires.
required() {
    sed -n "s|.*$2 \(v[0-9.]*\).*|\1|p" "$1/go.mod" | head -n1
}
