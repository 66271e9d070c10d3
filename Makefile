# marginstream: `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/release/marginstream
DEMO_DIR := target/demo
# The end-to-end scripts' interpreter: the test virtualenv (prometheus-client, pinned and
# hash-checked), installed by scripts/test-venv.sh when missing.
E2E_PYTHON = $$(scripts/test-venv.sh)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

build: deps ## Build the release binary (target/release/marginstream)
	$(CARGO) build --release -p marginstream

fmt: ## Format the code
	$(CARGO) fmt --all

lint: ## Check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps ## Run every test: unit, property, golden, CLI, live Kafka (Tansu), faults, promtool, reference parsers, backfill, dashboard, live alert, live budget, demo, TLS and basic auth, deploy files, independent check
	scripts/broker.sh install >/dev/null
	scripts/test-venv.sh >/dev/null
	$(CARGO) build --workspace
	$(CARGO) test --workspace
	scripts/promtool-check.sh
	$(E2E_PYTHON) tests/e2e/parsers.py --binary target/debug/marginstream
	$(E2E_PYTHON) tests/e2e/backfill.py --binary target/debug/marginstream
	$(E2E_PYTHON) tests/e2e/dashboard.py --binary target/debug/marginstream
	$(E2E_PYTHON) tests/e2e/live_alert.py --binary target/debug/marginstream
	$(E2E_PYTHON) tests/e2e/live_budget.py --binary target/debug/marginstream
	$(E2E_PYTHON) tests/e2e/demo_smoke.py --binary target/debug/marginstream
	$(E2E_PYTHON) tests/e2e/web_auth.py --binary target/debug/marginstream
	scripts/check-deploy.sh
	python3 tests/independent/check.py --binary target/debug/marginstream

check-config: ## Validate every configuration file in config/
	$(CARGO) build -p marginstream
	@for f in config/*.toml; do echo "== $$f"; target/debug/marginstream check-config --config $$f > /dev/null || exit 1; done; echo "all configuration files are valid"

demo: deps build ## Live: Tansu, a ledger streaming on, marginstream run (/metrics, API on 127.0.0.1:9898), Prometheus (9090) with the rules
	scripts/demo.sh

replay-demo: build ## Generate a ledger and replay it, no Kafka needed: a table of the 30-day margins
	@mkdir -p $(DEMO_DIR)
	$(BIN) generate --customers 20 --days 45 --seed 7 --bad-share 0.01 --duplicate-share 0.01 --output $(DEMO_DIR)/ledger.jsonl
	$(BIN) replay --input $(DEMO_DIR)/ledger.jsonl --rejected-out $(DEMO_DIR)/rejected.jsonl --format table --window 30d

broker: ## Start the local Tansu broker on 127.0.0.1:9092 and create the ledger topics (scripts/broker.sh stop 9092 stops it)
	scripts/broker.sh start 9092
	$(CARGO) build -p marginstream
	target/debug/marginstream create-topics --config config/demo.toml --partitions 4

deps: ## Install what the build needs and the machine lacks (OpenSSL headers for librdkafka)
	@scripts/deps.sh

check-deploy: ## Check the Dockerfile, compose stack and Kubernetes manifests offline (no Docker engine needed)
	$(CARGO) build -p marginstream
	scripts/check-deploy.sh --build

bench: deps build ## Run the criterion benches, the replay, Kafka, restore, failover and history benches (BEFORE=BINARY also times an older history writer, BASELINE_BIN=BINARY an older build in the Kafka rounds); writes target/bench/report.md
	$(CARGO) bench --bench engine
	scripts/bench-e2e.sh
	$(CARGO) build --release --example bare_consumer
	scripts/bench-kafka.sh
	scripts/bench-restore.sh
	scripts/bench-failover.sh
	python3 scripts/bench-web.py --binary $(BIN)
	scripts/promtool-check.sh >/dev/null
	scripts/bench-history.sh
	python3 scripts/bench-scrape.py

fuzz: ## Fuzz the event parser for FUZZ_SECONDS (default 60); installs cargo-fuzz if missing
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@mkdir -p fuzz/corpus/parse_event
	@# Nightly gives the AddressSanitizer build; without it, stable fuzzes without a sanitizer.
	cd fuzz && if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then \
	  cargo fuzz run parse_event corpus/parse_event seeds/parse_event -- \
	    -dict=parse_event.dict -max_total_time=$${FUZZ_SECONDS:-60}; \
	else \
	  cargo +stable fuzz run --sanitizer none parse_event corpus/parse_event seeds/parse_event -- \
	    -dict=parse_event.dict -max_total_time=$${FUZZ_SECONDS:-60}; \
	fi

clean: ## Remove build outputs
	$(CARGO) clean

.PHONY: help build fmt lint test check-config check-deploy demo replay-demo broker deps bench fuzz clean
