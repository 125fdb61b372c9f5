#!/usr/bin/env bash
# make bench: generate (once) a capture of ~800k packets of HTTP/1.1 with a few percent of errors, build the
# analyzer in release mode, and compare it with tcpdump and tshark on that capture.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked -p faultline-agent
cap=${BENCH_CAPTURE:-target/bench/http-errors.pcap}
mkdir -p "$(dirname "$cap")"
if [ ! -s "$cap" ] || [ bench/gen_capture.py -nt "$cap" ]; then
    python3 bench/gen_capture.py "$cap" > "$cap.expected.json"
fi
python3 bench/compare.py "$cap" "$@"
python3 bench/backends.py
