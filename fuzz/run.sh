#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each and prints, per target, the executions, the coverage
# (libFuzzer's edge and feature counts) and whether it found anything. Usage:
#   fuzz/run.sh SECONDS [TARGET...]     (FUZZ_SEED=N fixes libFuzzer's seed, as CI's smoke does)
# New inputs go to fuzz/.work/corpus/<target> (the committed corpus is read, never written);
# a finding is saved under fuzz/artifacts/<target>/ and makes the run fail: minimise it with
# `cargo +nightly fuzz tmin <target> <file>`, fix it, and commit it as
# fuzz/corpus/<target>/regression-<what> so `make test` replays it.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(credential jws jwks discovery path serving_body token_response config lifecycle header_map)
fi
# Safe Rust with `unsafe_code = "deny"`: AddressSanitizer would slow every target for nothing
# the compiler does not already rule out; a violated property is a panic, which libFuzzer reports.
cargo +nightly fuzz build --release --sanitizer none >/dev/null 2>.work-build.log || { cat .work-build.log; exit 1; }
rm -f .work-build.log
mkdir -p .work
summary=.work/summary.json
echo "[" > "$summary"
failed=0
printf '%-15s %12s %8s %8s %s\n' target executions cov ft finding
for target in "${targets[@]}"; do
    mkdir -p ".work/corpus/$target" "artifacts/$target"
    log=".work/$target.log"
    cargo +nightly fuzz run --release --sanitizer none "$target" ".work/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" ${FUZZ_SEED:+-seed="$FUZZ_SEED"} -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1
    status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    finding=none
    if [ $status -ne 0 ]; then
        finding=$(grep -o 'artifacts/[^ ]*' "$log" | tail -1)
        finding=${finding:-"exit $status (see fuzz/$log)"}
        failed=1
    fi
    printf '%-15s %12s %8s %8s %s\n' "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$finding"
    [ "$target" != "${targets[0]}" ] && sed -i '$ s/$/,/' "$summary"
    printf '  {"target": "%s", "seconds": %s, "executions": %s, "cov": %s, "ft": %s, "finding": "%s"}\n' \
        "$target" "$seconds" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$finding" >> "$summary"
done
echo "]" >> "$summary"
echo "summary: fuzz/$summary"
exit $failed
