#!/usr/bin/env bash
# Coverage-guided fuzzing of every target in fuzz/ (or only TARGETS, e.g. `scripts/fuzz.sh 60 http`) for
# SECONDS each (default 60), starting from the
# committed seeds (fuzz/seeds/<target>) and growing fuzz/corpus/<target> (not committed). A crash stops the
# run, leaves the input in fuzz/artifacts/<target>/, and fails. To keep it as a regression test, copy the
# input into fuzz/seeds/<target>/ (cargo test replays every seed) and fix the bug.
#
# cargo-fuzz needs nightly's -Z flags: nightly is used when installed, otherwise stable with
# RUSTC_BOOTSTRAP=1 (this machine kind has no route to download toolchains).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
targets=${2:-engine shards http dns tls http2 pcap kfl}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=+nightly
else
    toolchain=+stable
    export RUSTC_BOOTSTRAP=1
fi
# `shards` runs the engine's inputs through one engine and three shards and fails where they differ: it
# starts from the engine's seeds.
for t in $targets; do
    mkdir -p "corpus/$t"
    seeds="seeds/$t"
    [ "$t" = shards ] && seeds=seeds/engine
    echo "fuzzing $t for ${seconds}s ($toolchain)"
    log="artifacts/$t.log"
    mkdir -p artifacts
    if ! cargo "$toolchain" fuzz run -O "$t" "corpus/$t" "$seeds" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $t failed: the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^(Done|stat::peak_rss_mb)' "$log" || true
done
