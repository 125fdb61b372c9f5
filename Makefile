# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs first.

CARGO ?= cargo
PYTEST ?= python3 -m pytest

.PHONY: deps build demo test lint crds unit kernel-test e2e-test control-plane cluster-up cluster-down node-up node-down images helm fuzz fuzz-short bench bench-live bench-operator clean

deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build --workspace --locked

## The whole system on this machine, for real: a one-node cluster (kubelet, containerd, CNI, CoreDNS), the
## chart installed by helm, the operator and agents as pods, workloads making every kind of error; prints
## the pods, the TapConfig, the ErrorView, the Events, the dashboard's URL and the path of a pcap.
demo: deps control-plane helm
	python3 scripts/demo.py

## Everything CI runs: formatting, lints, unit and integration tests (every fuzz seed replayed), real
## kernel traffic (needs root), the operator against a real kube-apiserver, and a short fuzzing run.
test: deps lint unit kernel-test e2e-test fuzz-short

fuzz-short:
	$(MAKE) fuzz FUZZ_SECONDS=20

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@for f in crds/faultline.dev.yaml charts/faultline/crds/faultline.dev.yaml; do \
		$(CARGO) run -q --locked -p faultline-crds --bin crdgen | diff -u $$f - \
		|| { echo "$$f is stale: run 'make crds' and commit it" >&2; exit 1; }; done

## Regenerate the CRD YAML from the Rust types (for kubectl and for the chart).
crds:
	$(CARGO) run -q --locked -p faultline-crds --bin crdgen > crds/faultline.dev.yaml
	cp crds/faultline.dev.yaml charts/faultline/crds/faultline.dev.yaml

unit:
	$(CARGO) test --workspace --locked
	# The engine's suite again on four shards behind one front: they must find what one engine finds.
	FAULTLINE_TEST_SHARDS=4 $(CARGO) test --locked -p faultline-core --tests

kernel-test: build
	$(PYTEST) -q agent/tests/kernel

## kube-apiserver, kubectl and etcd from Go modules (minutes the first time, cached after).
control-plane:
	e2e/build-control-plane.sh

## helm from the Go module proxy (cached), to lint and render the chart.
helm:
	e2e/build-helm.sh

e2e-test: build control-plane helm
	$(PYTEST) -q e2e

## A control plane on loopback to use by hand: `make cluster-up` prints the KUBECONFIG to export.
cluster-up: control-plane
	python3 e2e/cluster.py up

cluster-down:
	python3 e2e/cluster.py down

## A real one-node cluster with Faultline installed by `helm install` (needs root); its last line is the
## `export KUBECONFIG=…` to run. Cold: ~15 min (Go and Rust builds); warm: ~1 min.
node-up: deps control-plane helm
	python3 e2e/node.py up

node-down:
	python3 e2e/node.py down

## The container images, built without Docker from the release binaries (docker-archive tarballs in
## target/images/, for `ctr images import` or `docker load`).
images: deps
	python3 scripts/build-images.py --all

## Coverage-guided fuzzing of the decoder+engine, HTTP, pcap reader and KFL from the committed seeds,
## FUZZ_SECONDS per target (CI runs `make fuzz FUZZ_SECONDS=20`; a long run: FUZZ_SECONDS=3600; one
## target: FUZZ_TARGETS=http).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= engine shards http dns tls http2 redis postgresql mysql amqp kafka pcap kfl
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS) "$(FUZZ_TARGETS)"

## The analyzer beside tcpdump and tshark on a generated 800k-packet capture (see bench/).
bench:
	bench/run.sh

## Live capture: the agent's backends beside tcpdump on a veth fed by tcpreplay at rising rates (root).
## With the agent's own OTLP export to a collector beside it: make bench-live BENCH_ARGS="--export grpc".
bench-live: deps
	$(CARGO) build --release --locked -p faultline-agent
	python3 bench/live.py $(BENCH_ARGS)

## The operator under a cluster's load: N simulated agents (50, 200, 500 nodes; 10 pods each) posting to
## the release operator against a real kube-apiserver; entries/s, latency, CPU, memory, API writes/s.
## With OTLP export to a collector on this machine: make bench-operator BENCH_ARGS="--export grpc".
bench-operator: deps control-plane
	$(CARGO) build --release --locked -p faultline-operator -p faultline-ingest-load
	python3 bench/operator_scale.py $(BENCH_ARGS)

clean:
	$(CARGO) clean
