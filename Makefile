# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs first.

CARGO ?= cargo
PYTEST ?= python3 -m pytest

.PHONY: deps build demo test lint crds unit kernel-test e2e-test control-plane cluster-up cluster-down helm fuzz bench clean

deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build --workspace --locked

## The whole system on this machine: control plane, operator, agents, pods in network namespaces and
## every kind of error; prints the ErrorView, the Events and the path of a pcap for Wireshark.
demo: deps build control-plane
	python3 scripts/demo.py

## Everything CI runs: formatting, lints, unit and integration tests, real kernel traffic (needs root),
## and the operator against a real kube-apiserver.
test: deps lint unit kernel-test e2e-test

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

## Coverage-guided fuzzing of the decoder+engine, HTTP, pcap reader and KFL (needs nightly and cargo-fuzz).
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in engine http pcap kfl; do \
		$(CARGO) +nightly fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; done

## The analyzer beside tcpdump and tshark on a generated 800k-packet capture (see bench/).
bench:
	bench/run.sh

clean:
	$(CARGO) clean
