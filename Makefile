# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs first.

CARGO ?= cargo
PYTEST ?= python3 -m pytest

.PHONY: deps build demo test lint crds unit kernel-test e2e-test control-plane cluster-up cluster-down helm fuzz fuzz-short bench bench-live clean

deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build --workspace --locked

## The whole system on this machine: control plane, operator, agents, pods in network namespaces and
## every kind of error; prints the ErrorView, the Events and the path of a pcap for Wireshark.
demo: deps build control-plane
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

## Coverage-guided fuzzing of the decoder+engine, HTTP, pcap reader and KFL from the committed seeds,
## FUZZ_SECONDS per target (CI runs `make fuzz FUZZ_SECONDS=20`; a long run: FUZZ_SECONDS=3600).
FUZZ_SECONDS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

## The analyzer beside tcpdump and tshark on a generated 800k-packet capture (see bench/).
bench:
	bench/run.sh

## Live capture: the agent's backends beside tcpdump on a veth fed by tcpreplay at rising rates (root).
bench-live: deps
	$(CARGO) build --release --locked -p faultline-agent
	python3 bench/live.py

clean:
	$(CARGO) clean
