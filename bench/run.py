#!/usr/bin/env python3
"""brickgate vs Envoy's native jwt_authn, in one Envoy, under wrk. See bench/README.md.

    python bench/run.py --envoy .venv/bin/envoy --wasm dist/brickgate.wasm --noop dist/bench-noop.wasm
        --native dist/libbrickgate.so [--native-noop dist/native-probe/libbrickgate.so] [--duration 10] [--rounds 3] [--workloads warm,cold_rs256] [--output docs/BENCHMARKS.md]
"""

import argparse
import atexit
import datetime
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import envoy_bench
import workloads
import wrk_runner
from envoy_bench import Envoy, EnvoyError

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache" / "tokens"
BASELINE = "jwt_authn"
# The proxy-wasm floor: a filter that reads one header (bench/noop). Costs are reported above it.
FLOOR = "wasm_noop"
# The native floor: the ABI-probe build of the module (native/src/probe.rs), which without an
# `x-probe` header reads that one header, counts the request and continues.
NATIVE_FLOOR = "native_noop"
# The native form's listeners: the same plugin configurations as `brickgate` and `brickgate_anonymous`.
NATIVE_LISTENERS = ("native", "native_anonymous")
# `brickgate` and `brickgate_anonymous` run the DEFAULT configuration (no `performance` object:
# host signatures, 1024 cache entries, audit record in the filter state, every identity header);
# this variant only moves signatures into wasm.
PERFORMANCE_WASM = {"host_signatures": False}
# The issue's targets (issue 19): (listener, workload, measure, comparison, bound). Measures are
# medians of per-round ratios to jwt_authn+RBAC: `rps` (req/s) and `p99` (p99 latency).
TARGETS = [
    ("native", "warm", "rps", ">=", 1.10),
    ("native", "cold_rs256", "rps", ">=", 1.0),
    ("native", "*", "p99", "<=", 1.0),
    ("brickgate", "warm", "rps", ">=", 0.90),
    ("brickgate_anonymous", "warm", "rps", ">=", 0.97),
]

_running: dict = {"envoy": None}  # stopped by cleanup() on any exit


class BenchError(RuntimeError):
    pass


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", default="envoy", help="Envoy binary")
    parser.add_argument("--wasm", default="dist/brickgate.wasm", help="the built filter")
    parser.add_argument("--noop", default="dist/bench-noop.wasm",
                        help="the no-op proxy-wasm filter (bench/noop, built by `make bench`): the floor")
    parser.add_argument("--native", default="dist/libbrickgate.so",
                        help="the native form (`make native`); empty: no native listeners")
    parser.add_argument("--native-noop", default="dist/native-probe/libbrickgate.so",
                        help="the ABI-probe build of the native module (`make native-probe`): the native floor; "
                             "empty or missing: no native floor")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds: every (workload, listener) once per round (default 3)")
    parser.add_argument("--wrk", default="wrk", help="wrk binary")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--workloads", default=",".join(workloads.WORKLOADS),
                        help=f"comma-separated subset of {','.join(workloads.WORKLOADS)}")
    parser.add_argument("--tokens", type=int, default=20_000,
                        help="distinct tokens per cold/forged/denied pool (default 20000)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per listener (0: none)")
    parser.add_argument("--performance", choices=["auto", "on", "off"], default="auto",
                        help="run brickgate_wasm_crypto (its `performance` config; auto: leave it out if the "
                             "plugin refuses the field)")
    parser.add_argument("--log-level", default="warning", help="Envoy -l (default warning: no audit lines)")
    parser.add_argument("--output", type=Path, help="also write the markdown report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the Envoy work directory")
    args = parser.parse_args()
    args.workloads = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in args.workloads if name not in workloads.WORKLOADS]
    if unknown or not args.workloads:
        parser.error(f"unknown workloads {unknown}; choose from {','.join(workloads.WORKLOADS)}")
    if args.duration < 1 or args.tokens < 100 or args.rounds < 1:
        parser.error("--duration and --rounds must be >= 1 and --tokens >= 100")
    # Envoy runs in its own work directory: paths given relative to here must still work.
    if os.sep in args.envoy:
        args.envoy = os.path.abspath(args.envoy)
    return args


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Envoy ---------------------------------------------------------------------------------


def listeners_config(args, performance: bool) -> dict[str, list[dict]]:
    """Listener name → its auth filters (in front of the router)."""
    jwks = workloads.public_jwks()
    issuer, audience = workloads.ISSUER, workloads.AUDIENCE
    config = lambda perf: envoy_bench.brickgate_plugin_config(issuer, audience, jwks, perf)  # noqa: E731
    listeners = {
        "noauth": [],
        FLOOR: envoy_bench.wasm_filter(FLOOR, args.noop, {}, root_id="noop"),
    }
    if args.native_noop:  # the probe's filter config names a callout cluster; this one calls nothing
        listeners[NATIVE_FLOOR] = envoy_bench.native_filter("brickgate_noop", "unused", filter_name="noop")
    listeners["jwt_authn"] = envoy_bench.jwt_authn_filters(issuer, audience, jwks)
    listeners["brickgate"] = envoy_bench.wasm_filter("brickgate", args.wasm, config(None))
    if performance:
        listeners["brickgate_wasm_crypto"] = envoy_bench.wasm_filter(
            "brickgate_wasm_crypto", args.wasm, config(PERFORMANCE_WASM))
    # brickgate with an anonymous rule: the floor of the wasm filter itself (VM calls, headers,
    # path normalisation, rule match), without any token work. Warm workload only.
    listeners["brickgate_anonymous"] = envoy_bench.wasm_filter(
        "brickgate_anonymous", args.wasm, envoy_bench.brickgate_anonymous_config())
    if args.native:  # the same plugin JSON as the two Wasm listeners above
        listeners["native"] = envoy_bench.native_filter("brickgate", json.dumps(config(None)))
        listeners["native_anonymous"] = envoy_bench.native_filter(
            "brickgate", json.dumps(envoy_bench.brickgate_anonymous_config()))
    return listeners


def start_envoy(args, work_dir: Path, performance: bool) -> tuple[Envoy, dict[str, list[dict]]]:
    listeners = listeners_config(args, performance)
    config = envoy_bench.bootstrap([envoy_bench.listener(name, f) for name, f in listeners.items()])
    modules = {"brickgate": args.native, "brickgate_noop": args.native_noop}
    search_path = envoy_bench.native_search_path(work_dir, {k: v for k, v in modules.items() if v})
    envoy = Envoy(args.envoy, config, work_dir, args.log_level,
                  env={"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(search_path)})
    _running["envoy"] = envoy
    envoy.start()
    return envoy, listeners


def start_with_performance_fallback(args, work_dir: Path) -> tuple[Envoy, dict, str]:
    """Returns (envoy, listeners, note on the `performance` config)."""
    if args.performance == "off":
        envoy, listeners = start_envoy(args, work_dir, False)
        return envoy, listeners, "none (`--performance off`: brickgate_wasm_crypto left out)"
    try:
        envoy, listeners = start_envoy(args, work_dir, True)
        return envoy, listeners, f"`{json.dumps(PERFORMANCE_WASM)}` (brickgate_wasm_crypto only)"
    except EnvoyError as err:
        envoy = _running["envoy"]
        refusal = [line for line in envoy.log_tail(200).splitlines() if "invalid configuration" in line]
        envoy.stop()
        if args.performance == "on" or not any("performance" in line for line in refusal):
            raise BenchError(f"{err}\n--- Envoy log tail ---\n{envoy.log_tail()}") from err
        progress(f"! the plugin refused the `performance` field, running without it:\n  {refusal[0].strip()}")
    retry_dir = work_dir / "without-performance"
    retry_dir.mkdir()
    envoy, listeners = start_envoy(args, retry_dir, False)
    return envoy, listeners, ("**refused by this build** (unknown field), so brickgate_wasm_crypto is left out")


# Listeners that verify nothing: measured with the warm workload only, as references.
BASELINES = ("noauth", FLOOR, NATIVE_FLOOR, "brickgate_anonymous", "native_anonymous")


def is_brickgate(listener: str) -> bool:
    """brickgate itself, in either form (its refusal reasons and counters are checked)."""
    return listener.startswith("brickgate") or listener in NATIVE_LISTENERS


def floor_of(listener: str) -> str:
    """The floor a listener's cost is reported above: the native one for the native form."""
    return NATIVE_FLOOR if listener in NATIVE_LISTENERS else FLOOR


def workloads_of(listener: str, selected: list[str]) -> list[str]:
    return [w for w in selected if listener not in BASELINES or w == "warm"]


# --- sanity checks -------------------------------------------------------------------------


def one_request(port: int, token: str) -> tuple[int, str, str]:
    """(status, x-brickgate-reason, body head) of one GET with the token."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", envoy_bench.PATH, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = response.read(200).decode(errors="replace").strip()
        return response.status, response.getheader("x-brickgate-reason") or "", body
    finally:
        connection.close()


def sanity_check(envoy: Envoy, ports: dict[str, int], listeners, selected, pools) -> None:
    """One request per workload and listener, with the last token of each pool."""
    problems = []
    for listener in listeners:
        for name in workloads_of(listener, selected):
            workload = workloads.WORKLOADS[name]
            _, token = workloads.first_and_last(pools[name])
            try:
                status, reason, body = one_request(ports[listener], token)
            except OSError as err:
                problems.append(f"{listener} / {name}: request failed: {err}")
                continue
            wrong_reason = is_brickgate(listener) and workload.reason and reason and reason != workload.reason
            if status != workload.expect or wrong_reason:
                problems.append(f"{listener} / {name}: got {status} (reason {reason or '-'}: {body[:120]!r}), "
                                f"expected {workload.expect}" + (f" ({workload.reason})" if workload.reason else ""))
    if problems:
        raise BenchError("sanity check failed:\n  " + "\n  ".join(problems)
                         + f"\n--- Envoy log tail ---\n{envoy.log_tail()}")


# --- measurement ---------------------------------------------------------------------------


def status_classes(envoy: Envoy, listener: str) -> dict[str, int]:
    counters = envoy.counters(rf"^http\.bench_{listener}\.downstream_rq_[1-5]xx$")
    return {name.rsplit("_", 1)[-1]: value for name, value in counters.items()}


# brickgate's counters by form: Envoy prefixes a Wasm module's metrics with `wasmcustom.` and a
# dynamic module's with `dynamicmodulescustom.` (the prefix tests/e2e/envoy_harness.py reads).
COUNTER_PREFIX = {"wasm": "wasmcustom.brickgate.", "native": "dynamicmodulescustom.brickgate."}


def form_of(listener: str) -> str:
    return "native" if listener in NATIVE_LISTENERS else "wasm"


def brickgate_counters(envoy: Envoy, listener: str) -> dict[str, int]:
    prefix = COUNTER_PREFIX[form_of(listener)]
    return {name.removeprefix(prefix): value
            for name, value in envoy.counters("^" + prefix.replace(".", "\\.")).items()}


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: value - before.get(name, 0) for name, value in after.items() if value != before.get(name, 0)}


def measure(args, envoy: Envoy, ports, listeners, pools) -> tuple[dict, dict, list[str]]:
    """Runs every (workload, listener) once per round, rounds one after the other, so a slow
    spell of the machine hits every listener alike. Returns the results (a list, one per round)
    and summed cache counters by (workload, listener), and notes."""
    results, caches, notes = {}, {}, []
    one_round = [(name, listener) for name in args.workloads for listener in listeners
                 if name in workloads_of(listener, args.workloads)]
    plan = [(round_, name, listener) for round_ in range(1, args.rounds + 1) for name, listener in one_round]
    for index, (round_, name, listener) in enumerate(plan, 1):
        workload = workloads.WORKLOADS[name]
        before_classes = status_classes(envoy, listener)
        before_bg = brickgate_counters(envoy, listener) if is_brickgate(listener) else {}
        url = f"http://127.0.0.1:{ports[listener]}"
        cpu_before = envoy.worker_cpu_ns()
        result = wrk_runner.run(args.wrk, url, pools[name], envoy_bench.PATH, args.duration)
        if result.requests:
            result.cpu_us = (envoy.worker_cpu_ns() - cpu_before) / 1000 / result.requests
        if not envoy.alive():
            raise BenchError(f"Envoy died during {name} / {listener}\n--- Envoy log tail ---\n{envoy.log_tail()}")
        results.setdefault((name, listener), []).append(result)
        progress(f"[{index}/{len(plan)}] round {round_} {name:<10} {listener:<22} {result.rps:>9,.0f} req/s  "
                 f"p50 {fmt_ms(result.p50_ms)}  p99 {fmt_ms(result.p99_ms)}  non-2xx {result.non_2xx:,}  "
                 f"worker {result.cpu_us:.1f} µs/req")
        classes = diff(status_classes(envoy, listener), before_classes)
        expected_class = f"{workload.expect // 100}xx"
        unexpected = {c: n for c, n in classes.items() if c != expected_class}
        if unexpected or result.socket_errors:
            notes.append(f"{name} / {listener}: responses by class {classes}, wrk socket errors "
                         f"{result.socket_errors} (every response should be {expected_class})")
        if is_brickgate(listener):
            time.sleep(0.3)  # let the last requests' counters land
            suffixes = diff(brickgate_counters(envoy, listener), before_bg)
            reasons = {k.removeprefix("denied."): v for k, v in suffixes.items() if k.startswith("denied.")}
            if set(reasons) - {workload.reason}:
                notes.append(f"{name} / {listener}: brickgate refusal reasons {reasons}, "
                             f"expected {workload.reason or 'none'}")
            cache = {k.removeprefix("token_cache."): v for k, v in suffixes.items() if k.startswith("token_cache.")}
            total = caches.setdefault((name, listener), {})
            for key, value in cache.items():
                total[key] = total.get(key, 0) + value
            hits = cache.get("hit", 0)
            if workload.distinct and hits > result.requests // 100:
                notes.append(f"{name} / {listener}: {hits:,} token cache hits in a cold workload "
                             f"(the pool of {args.tokens:,} tokens is too small for this run: raise --tokens)")
        time.sleep(1)
    return results, caches, notes


def warm_up(args, ports, listeners, warmup_pool: Path) -> None:
    for listener in listeners:
        if listener != "noauth":
            wrk_runner.run(args.wrk, f"http://127.0.0.1:{ports[listener]}", warmup_pool, envoy_bench.PATH,
                           args.warmup)


# --- report --------------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    return f"{value * 1000:.0f} µs" if value < 1 else f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float]) -> str:
    """Min–max around the median, in percent: how far apart the rounds were."""
    mid = median(values)
    if len(values) < 2 or not mid:
        return "—"
    return f"{(min(values) - mid) / mid:+.0%}/{(max(values) - mid) / mid:+.0%}"


def per_round_ratios(mine: list, base: list | None, value) -> list[float]:
    """value(mine)/value(base) for each round where both ran."""
    if not base:
        return []
    return [value(a) / value(b) for a, b in zip(mine, base) if value(b)]


def cpu_above_floor_us(mine: list, floor: list | None) -> list[float]:
    """Per round: the worker's on-CPU µs per request above the floor listener's."""
    if not floor:
        return []
    return [a.cpu_us - b.cpu_us for a, b in zip(mine, floor) if a.cpu_us and b.cpu_us]


def cost_above_floor_us(mine: list, floor: list | None) -> list[float]:
    """Per round: the worker's time per request above the floor listener's, in µs. One Envoy
    worker saturated by wrk spends about 1/rps seconds of CPU per request."""
    if not floor:
        return []
    return [1e6 / a.rps - 1e6 / b.rps for a, b in zip(mine, floor) if a.rps and b.rps]


def render(args, results, caches, notes, meta) -> str:
    lines = [
        "# brickgate benchmark",
        "",
        f"- date: {meta['date']}",
        f"- machine: `{platform.machine()}`, {cpu_model()}, nproc {len(os.sched_getaffinity(0))}, "
        f"load average before the run {meta['load']:.2f} (wrk and Envoy share these CPUs)",
        f"- Envoy: {meta['envoy_version']}, one process, `--concurrency 1`, `-l {args.log_level}` "
        "(brickgate's per-request audit line is at info, so it is dropped)",
        f"- brickgate: `{args.wasm_display}`, {meta['wasm_size']:,} bytes, sha256 `{meta['wasm_sha']}`",
        f"- brickgate (native form): {meta['native']}",
        "- brickgate configuration: the default for `brickgate`, `brickgate_anonymous`, `native` and "
        "`native_anonymous` (no `performance` object: host signatures in the Wasm form, a 1,024-entry token cache, "
        "audit record in the filter state, every identity header); `native*` get the same plugin JSON as "
        "their Wasm twins",
        f"- brickgate `performance` config: {meta['performance']}",
        f"- load: `{wrk_runner.params(args.duration)}` on loopback, GET {envoy_bench.PATH} → "
        "`direct_response` 200; warm-up "
        + (f"{args.warmup} s per auth listener (separate tokens)" if args.warmup else "none"),
        f"- token pools: {args.tokens:,} distinct tokens per cold/forged/denied workload, cycled in order; "
        "RS256 = RSA 2048 (test-rsa-1), ES256 = P-256 (test-ec-1)",
        f"- rounds: {args.rounds}, interleaved (every workload and listener once per round); each figure is the "
        "median of the rounds, *spread* is the lowest and highest round against the median, ratios are "
        "medians of the per-round ratios",
        f"- floor: `{FLOOR}`, a proxy-wasm filter that reads `authorization` and continues "
        f"(`{meta['noop_display']}`, bench/noop); *µs above floor* is, per round, 1/req/s of the listener "
        f"minus 1/req/s of `{FLOOR}` on the warm workload (the worker's time per request beyond the wasm floor); "
        f"for `native*` listeners the floor is `{NATIVE_FLOOR}` when it runs: {meta['native_noop']}",
        "- *worker CPU*: the Envoy worker thread's on-CPU time (`/proc/<pid>/task/<tid>/schedstat`) during "
        "the run divided by the requests wrk completed; *req per CPU-s vs jwt_authn* is jwt_authn's worker CPU "
        "per request over the listener's (higher is cheaper, as the req/s ratio); *CPU above floor* is its per-round difference to "
        f"`{FLOOR}` on the warm workload. Unlike req/s it does not drop when the worker waits for a CPU "
        "(wrk, other processes), so it is the steadier measure of what a filter costs on a shared machine",
        f"- command: `bench/run.py {' '.join(meta['argv'])}`",
        "",
        "Workloads:",
        "",
        *(f"- **{w}**: {workloads.WORKLOADS[w].description} (expect {workloads.WORKLOADS[w].expect})"
          for w in args.workloads),
        "",
        "| workload | listener | req/s | spread | p50 | p99 | non-2xx | req/s vs jwt_authn | p99 vs jwt_authn "
        "| µs above floor | worker CPU µs/req | req per CPU-s vs jwt_authn | CPU above floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, listener), rounds in results.items():
        floor = results.get(("warm", floor_of(listener))) or results.get(("warm", FLOOR))
        base = results.get((name, BASELINE))
        rps = [r.rps for r in rounds]
        rps_ratios = per_round_ratios(rounds, base, lambda r: r.rps)
        p99_ratios = per_round_ratios(rounds, base, lambda r: r.p99_ms)
        above = cost_above_floor_us(rounds, floor)
        cpu_above = cpu_above_floor_us(rounds, floor)
        # Requests per worker-CPU-second against jwt_authn's: the same sense as the req/s ratio.
        cpu_ratios = [b.cpu_us / a.cpu_us for a, b in zip(rounds, base or []) if a.cpu_us and b.cpu_us]
        non_2xx, requests = sum(r.non_2xx for r in rounds), sum(r.requests for r in rounds)
        share = f" ({non_2xx / requests:.0%})" if non_2xx and requests else ""
        lines.append(f"| {name} | {listener} | {median(rps):,.0f} | {spread(rps)} | "
                     f"{fmt_ms(median([r.p50_ms for r in rounds]))} | {fmt_ms(median([r.p99_ms for r in rounds]))} | "
                     f"{non_2xx:,}{share} | {fmt_ratio(median(rps_ratios) if rps_ratios else None)} | "
                     f"{fmt_ratio(median(p99_ratios) if p99_ratios else None)} | "
                     f"{f'{median(above):+.1f}' if above else '—'} | "
                     f"{median([r.cpu_us for r in rounds]):.1f} | "
                     f"{fmt_ratio(median(cpu_ratios) if cpu_ratios else None)} | "
                     f"{f'{median(cpu_above):+.1f}' if cpu_above else '—'} |")
    lines += render_targets(results)
    columns = sorted({column for counters in caches.values() for column in counters})
    if columns:
        lines += ["", "brickgate `token_cache` counters, summed over the rounds (`wasmcustom.brickgate.token_cache.*`, "
                  "native: `dynamicmodulescustom.brickgate.token_cache.*`):", "",
                  "| workload | listener | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
        lines += [f"| {name} | {listener} | " + " | ".join(f"{counters.get(c, 0):,}" for c in columns) + " |"
                  for (name, listener), counters in caches.items()]
    if notes:
        lines += ["", "Anomalies:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_targets(results) -> list[str]:
    """The issue's targets, each with its per-round ratios, median and verdict."""
    lines = ["", "Targets (issue 19; medians of per-round ratios to jwt_authn+RBAC, same Envoy, same run):", "",
             "| listener | workload | measure | target | per round | median | verdict | req per worker CPU-s, "
             "median ratio (steadier on a shared machine) |",
             "|---|---|---|---|---|---:|---|---:|"]
    for listener, workload, measure, op, bound in TARGETS:
        names = [w for (w, l) in results if l == listener and (workload in ("*", w))]
        if not names:
            lines.append(f"| {listener} | {workload} | {measure} | {op} {bound:.2f}× | — | — | not run | — |")
        for name in names:
            value = (lambda r: r.rps) if measure == "rps" else (lambda r: r.p99_ms)
            mine, base = results[(name, listener)], results.get((name, BASELINE))
            ratios = per_round_ratios(mine, base, value)
            if not ratios:
                continue
            mid = median(ratios)
            met = mid >= bound if op == ">=" else mid <= bound
            label = "req/s" if measure == "rps" else "p99 latency"
            cpu = [b.cpu_us / a.cpu_us for a, b in zip(mine, base or []) if a.cpu_us and b.cpu_us]
            cpu_text = f"{median(cpu):.2f}×" if cpu and measure == "rps" else "—"
            lines.append(f"| {listener} | {name} | {label} | {op} {bound:.2f}× | "
                         f"{', '.join(f'{r:.2f}' for r in ratios)} | {mid:.2f}× | {'**pass**' if met else '**FAIL**'} "
                         f"| {cpu_text} |")
    return lines


# --- main ----------------------------------------------------------------------------------


def cleanup() -> None:
    envoy = _running.get("envoy")
    if envoy is not None:
        envoy.stop()


def on_signal(signum, _frame) -> None:
    progress(f"bench: {signal.Signals(signum).name}, stopping")
    raise SystemExit(128 + signum)


def prepare_pools(args) -> tuple[dict[str, Path], Path | None]:
    listeners = ["noauth", FLOOR, NATIVE_FLOOR, "jwt_authn", "brickgate", "brickgate_wasm_crypto",
                 "brickgate_anonymous", *NATIVE_LISTENERS]
    runs = args.rounds * sum(len(workloads_of(listener, args.workloads)) for listener in listeners)
    min_remaining_s = runs * (args.duration + 2) + 3 * args.warmup + 900
    workloads.prune_expired(CACHE_DIR)
    pools = {}
    for name in args.workloads:
        started = time.monotonic()
        pools[name], reused = workloads.token_pool(workloads.WORKLOADS[name], args.tokens, CACHE_DIR, min_remaining_s)
        progress(f"tokens {name}: {'cached' if reused else 'minted'} {pools[name].name} "
                 f"({time.monotonic() - started:.1f}s)")
    warmup_pool = None
    if args.warmup:
        parts = [workloads.token_pool(workloads.WORKLOADS[name], 300, CACHE_DIR, min_remaining_s, seed="warmup")[0]
                 for name in ["cold_rs256", "cold_es256", "forged", "denied"]]
        warmup_pool = CACHE_DIR / "warmup-mixed.tokens"
        warmup_pool.write_text("".join(part.read_text() for part in parts))
    return pools, warmup_pool


def describe_file(path: str) -> str:
    data = Path(path).read_bytes()
    return f"{len(data):,} bytes, sha256 `{hashlib.sha256(data).hexdigest()[:12]}`"


def main() -> int:
    args = parse_args()
    for tool, hint in [(args.envoy, "--envoy"), (args.wrk, "apt-get install -y wrk")]:
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found ({hint})")
    wasm = Path(args.wasm)
    if not wasm.is_file():
        raise BenchError(f"{wasm} not found (make build)")
    if not Path(args.noop).is_file():
        raise BenchError(f"{args.noop} not found (make bench builds it from bench/noop)")
    args.wasm_display, args.wasm = args.wasm, str(wasm.resolve())
    noop_display, args.noop = args.noop, str(Path(args.noop).resolve())
    if args.native and not Path(args.native).is_file():
        raise BenchError(f"{args.native} not found (make native)")
    native_display, native_noop_display = args.native, args.native_noop
    args.native = str(Path(args.native).resolve()) if args.native else ""
    if args.native_noop and not Path(args.native_noop).is_file():
        progress(f"! {args.native_noop} not found (make native-probe): no native floor")
        args.native_noop = ""
    args.native_noop = str(Path(args.native_noop).resolve()) if args.native_noop and args.native else ""
    args.envoy = shutil.which(args.envoy)
    wasm_bytes = wasm.read_bytes()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "envoy_version": envoy_bench.version(args.envoy), "wasm_size": len(wasm_bytes),
            "wasm_sha": hashlib.sha256(wasm_bytes).hexdigest()[:12], "load": os.getloadavg()[0],
            "argv": sys.argv[1:], "noop_display": noop_display,
            "native": (f"`{native_display}`, {describe_file(args.native)}, `envoy.filters.http.dynamic_modules` "
                       "from ENVOY_DYNAMIC_MODULES_SEARCH_PATH" if args.native else "not run (`--native ''`)"),
            "native_noop": (f"`{NATIVE_FLOOR}`, the ABI-probe build `{native_noop_display}` (native/src/probe.rs: "
                            f"reads `x-probe`, counts the request, continues), {describe_file(args.native_noop)}"
                            if args.native_noop else f"no `{NATIVE_FLOOR}` in this run, so `{FLOOR}`")}
    if meta["load"] > 0.5:
        progress(f"! load average {meta['load']:.2f}: something else is using the CPUs, numbers will be noisy")

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    pools, warmup_pool = prepare_pools(args)

    work_dir = Path(tempfile.mkdtemp(prefix="brickgate-bench-"))
    failed = False
    try:
        envoy, listeners, meta["performance"] = start_with_performance_fallback(args, work_dir)
        ports = envoy.listener_ports()
        progress(f"Envoy ready, listeners {ports}")
        sanity_check(envoy, ports, listeners, args.workloads, pools)
        progress("sanity checks passed")
        if warmup_pool:
            warm_up(args, ports, listeners, warmup_pool)
        results, caches, notes = measure(args, envoy, ports, listeners, pools)
    except EnvoyError as err:
        failed = True
        envoy = _running["envoy"]
        raise BenchError(f"{err}\n--- Envoy log tail ---\n{envoy.log_tail() if envoy else ''}") from err
    except RuntimeError:
        failed = True
        raise
    finally:
        cleanup()
        if failed or args.keep:
            progress(f"Envoy work directory kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)

    report = render(args, results, caches, notes, meta)
    print(report)
    if args.output:
        args.output.write_text(report)
        progress(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, subprocess.SubprocessError) as err:
        print(f"bench: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
