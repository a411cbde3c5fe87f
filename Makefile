# brickgate: every command a developer or CI needs. Targets install what they use, so they
# work on a fresh clone: the wasm32 target, a virtualenv with Envoy, and Debian packages.

PORT ?= 10000
VENV := .venv
PYTHON := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
WASM := dist/brickgate.wasm
TARGET := wasm32-wasip1
STAMPS := .stamps

.PHONY: build test unit e2e lint run token bench bench-scale clean deps

build: $(WASM)

$(STAMPS)/rust-target:
	@mkdir -p $(STAMPS)
	rustup target add $(TARGET)
	@touch $@

# ring compiles C and assembly for wasm32 with clang; the benchmark drives load with wrk.
$(STAMPS)/apt-%:
	@mkdir -p $(STAMPS)
	@if ! command -v $* >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $* >/dev/null; \
	fi
	@touch $@

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

deps: $(STAMPS)/rust-target $(STAMPS)/apt-clang $(VENV)/.installed

$(WASM): $(STAMPS)/rust-target $(STAMPS)/apt-clang Cargo.toml Cargo.lock $(shell find src core/src -name "*.rs") core/Cargo.toml
	cargo build --release --locked --target $(TARGET) -p brickgate
	@mkdir -p dist
	cp target/$(TARGET)/release/brickgate.wasm $@
	@echo "built $@: $$(wc -c < $@) bytes"

unit:
	cargo test --locked --workspace

e2e: $(WASM) $(VENV)/.installed
	ENVOY_BIN=$(ENVOY) BRICKGATE_WASM=$(WASM) $(PYTHON) -m pytest tests/e2e -q

test: unit e2e

lint: $(STAMPS)/rust-target $(STAMPS)/apt-clang
	cargo fmt --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	cargo clippy --locked --release --target $(TARGET) -p brickgate -- -D warnings

run: $(WASM) $(VENV)/.installed
	$(PYTHON) -m devstack.run --port $(PORT) --wasm $(WASM) --envoy $(ENVOY)

# The benchmark's floor: a proxy-wasm filter that reads one header (its own workspace).
NOOP_WASM := dist/bench-noop.wasm
$(NOOP_WASM): $(STAMPS)/rust-target bench/noop/Cargo.toml bench/noop/Cargo.lock bench/noop/src/lib.rs
	cargo build --release --locked --target $(TARGET) --manifest-path bench/noop/Cargo.toml --target-dir target/bench-noop
	@mkdir -p dist
	cp target/bench-noop/$(TARGET)/release/brickgate_bench_noop.wasm $@

# Throughput and latency against native jwt_authn and the no-op wasm floor on the same Envoy,
# in interleaved rounds. DURATION=10 (seconds per measurement), ROUNDS=3,
# WORKLOADS=warm,cold_rs256,... (default: all). Needs a quiet machine.
DURATION ?= 10
ROUNDS ?= 3
bench: $(WASM) $(NOOP_WASM) $(VENV)/.installed $(STAMPS)/apt-wrk
	$(PYTHON) bench/run.py --envoy $(ENVOY) --wasm $(WASM) --noop $(NOOP_WASM) --duration $(DURATION) --rounds $(ROUNDS) $(if $(WORKLOADS),--workloads $(WORKLOADS)) $(if $(OUTPUT),--output $(OUTPUT))

# Decision cost as policies grow (rules, providers), in instructions under callgrind: repeatable
# on a busy machine. Native build of core/examples/decision_cost.rs.
bench-scale: $(STAMPS)/apt-valgrind
	cargo build --release --locked -p brickgate-core --example decision_cost
	python3 bench/scale.py --binary target/release/examples/decision_cost

# Prints one valid demo access token and nothing else (needs `make run` in another shell).
token:
	@$(PYTHON) -m devstack.token

clean:
	cargo clean
	rm -rf dist $(STAMPS) .run
