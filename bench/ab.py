"""A/B of brickgate builds or configurations in one Envoy: one workload (`--workload`, warm by
default) against each, in
interleaved rounds, reporting the Envoy worker's on-CPU µs per request (median of the rounds)
and its difference to the no-op floor. For finding where a few µs go; `make bench` remains the
benchmark of record.

    .venv/bin/python bench/ab.py --noop dist/bench-noop.wasm \\
        --variant now=dist/brickgate.wasm --variant before=/tmp/old.wasm \\
        --variant no-fs=dist/brickgate.wasm:'{"audit": {"filter_state": false}}'

A variant is NAME=MODULE[:JSON], JSON merged into the benchmark's brickgate configuration; a
MODULE ending in `.so` is the native form (a dynamic module, e.g. dist/libbrickgate.so), each
distinct file loaded under its own name. `--native-noop dist/native-probe/libbrickgate.so` adds the
native floor (`native_noop`), which native variants are also reported above.

    .venv/bin/python bench/ab.py --noop dist/bench-noop.wasm --native-noop dist/native-probe/libbrickgate.so \
        --variant native=dist/libbrickgate.so --variant native-no-fs=dist/libbrickgate.so:'{"audit": {"filter_state": false}}'
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envoy_bench  # noqa: E402
import workloads  # noqa: E402
import wrk_runner  # noqa: E402


def variant(text: str) -> tuple[str, str, dict]:
    name, _, rest = text.partition("=")
    wasm, _, extra = rest.partition(":")
    return name, str(Path(wasm).resolve()), json.loads(extra) if extra else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", default=".venv/bin/envoy")
    parser.add_argument("--wrk-bin", dest="wrk", default="wrk")
    parser.add_argument("--noop", required=True)
    parser.add_argument("--native-noop", help="the ABI-probe build of the native module: the native floor")
    parser.add_argument("--variant", action="append", type=variant, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--workload", default="warm", choices=sorted(workloads.WORKLOADS))
    parser.add_argument("--tokens", type=int, default=20000, help="distinct tokens for a cold workload")
    args = parser.parse_args()
    args.envoy = str(Path(args.envoy).resolve())

    jwks = workloads.public_jwks()
    listeners = {"noop": envoy_bench.wasm_filter("noop", str(Path(args.noop).resolve()), {}, root_id="noop")}
    modules: dict[str, str] = {}  # dynamic module name → file
    if args.native_noop:
        modules["brickgate_ab_noop"] = str(Path(args.native_noop).resolve())
        listeners["native_noop"] = envoy_bench.native_filter("brickgate_ab_noop", "unused", filter_name="noop")
    floors = {}
    for name, path, extra in args.variant:
        config = envoy_bench.brickgate_plugin_config(workloads.ISSUER, workloads.AUDIENCE, jwks, None)
        config.update(extra)
        if path.endswith(".so"):
            module = next((m for m, p in modules.items() if p == path), f"brickgate_ab{len(modules)}")
            modules[module] = path
            listeners[name] = envoy_bench.native_filter(module, json.dumps(config))
            floors[name] = "native_noop" if args.native_noop else "noop"
        else:
            listeners[name] = envoy_bench.wasm_filter(name, path, config)
    work_dir = Path(tempfile.mkdtemp(prefix="brickgate-ab-"))
    search_path = envoy_bench.native_search_path(work_dir, modules)
    envoy = envoy_bench.Envoy(args.envoy, envoy_bench.bootstrap(
        [envoy_bench.listener(name, filters) for name, filters in listeners.items()]), work_dir, "warning",
        env={"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(search_path)})
    pool, _ = workloads.token_pool(workloads.WORKLOADS[args.workload], args.tokens, work_dir, 3600)
    cpu: dict[str, list[float]] = {name: [] for name in listeners}
    try:
        envoy.start()
        ports = envoy.listener_ports()
        for round_ in range(1, args.rounds + 1):
            for name in listeners:
                before = envoy.worker_cpu_ns()
                result = wrk_runner.run(args.wrk, f"http://127.0.0.1:{ports[name]}", pool, envoy_bench.PATH,
                                        args.duration)
                if not result.requests:
                    raise RuntimeError(f"{name}: no requests\n{envoy.log_tail()}")
                cpu[name].append((envoy.worker_cpu_ns() - before) / 1000 / result.requests)
                print(f"round {round_} {name:<12} {cpu[name][-1]:6.1f} µs/req  {result.rps:>8,.0f} req/s"
                      f"  non-2xx {result.non_2xx:,}", flush=True)
                time.sleep(0.5)
    finally:
        envoy.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    print("\n| listener | worker CPU µs/req (median) | floor | above the floor (median of rounds) |\n|---|---:|---|---:|")
    for name, values in cpu.items():
        floor = floors.get(name, "noop")
        above = [v - n for v, n in zip(values, cpu[floor])]
        print(f"| {name} | {statistics.median(values):.1f} | {floor} | {statistics.median(above):+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
