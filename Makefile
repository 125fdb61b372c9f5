# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs first.

CARGO ?= cargo
PYTEST ?= python3 -m pytest

.PHONY: deps build demo test lint crds unit kernel-test fuzz clean

deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build --workspace --locked

## Real faulty traffic in network namespaces, captured and analysed; prints the table and the pcap path.
demo: deps build
	python3 scripts/demo.py

## Everything CI runs: formatting, lints, unit and integration tests, real kernel traffic (needs root).
test: deps lint unit kernel-test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@$(CARGO) run -q --locked -p faultline-crds --bin crdgen | diff -u crds/faultline.dev.yaml - \
		|| { echo "crds/faultline.dev.yaml is stale: run 'make crds' and commit it" >&2; exit 1; }

## Regenerate the CRD YAML from the Rust types.
crds:
	$(CARGO) run -q --locked -p faultline-crds --bin crdgen > crds/faultline.dev.yaml

unit:
	$(CARGO) test --workspace --locked

kernel-test: build
	$(PYTEST) -q agent/tests/kernel

## Coverage-guided fuzzing of the decoder+engine, HTTP, pcap reader and KFL (needs nightly and cargo-fuzz).
FUZZ_SECONDS ?= 60
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in engine http pcap kfl; do \
		$(CARGO) +nightly fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; done

clean:
	$(CARGO) clean
