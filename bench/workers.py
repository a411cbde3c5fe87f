"""Envoy workers (issue 11 point 4): does brickgate scale with `--concurrency`, and what does an
extra worker cost in memory? Prints one markdown section (and writes it to `--output FILE`).

1. Scaling: the warm workload (one valid token, reused) against the `brickgate`, `jwt_authn` and
   no-op wasm listeners of one Envoy started with `--concurrency 1`, then of one started with
   `--concurrency 2`, in interleaved rounds (a fresh Envoy per round and concurrency). Per run:
   wrk's req/s and the worker threads' on-CPU µs per request (sum over the `wrk:worker*`
   threads, /proc/<pid>/task/*/schedstat).
2. Memory: Envoy with only the no-op listener, and with only the brickgate listener, each at
   concurrency 1 and 2, VmRSS (and RssAnon) from /proc/<pid>/status after warm traffic sent to
   every worker; the difference between concurrency 2 and 1 is the memory of one more worker.

    .venv/bin/python bench/workers.py --envoy .venv/bin/envoy --wasm dist/brickgate.wasm \\
        --noop dist/bench-noop.wasm [--rounds 3 --duration 5 --output FILE]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envoy_bench  # noqa: E402
import workloads  # noqa: E402
import wrk_runner  # noqa: E402

CONCURRENCIES = (1, 2)
LISTENERS = ("brickgate", "jwt_authn", "noop")
MEMORY_LISTENERS = ("brickgate", "noop")
# A worker that got less than this share of the workers' CPU in a run did not really serve it.
MIN_WORKER_SHARE = 0.05
MIN_MEMORY_WARM_REQUESTS = 2000


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class ThroughputRun:
    rps: float
    cpu_us_per_request: float
    busiest_worker_share: float  # of the workers' on-CPU time in this run: 1.0 at concurrency 1


@dataclass
class MemorySample:
    vm_rss_kib: int
    rss_anon_kib: int
    wasm_memories: int  # wasm linear memories found in the address space (one per VM)
    wasm_memory_rss_kib: int  # their resident pages, summed


def listeners_config(wasm: str, noop: str) -> dict[str, list[dict]]:
    """As bench/ab.py: brickgate's benchmark configuration (no `performance` object), the native
    pair, and the no-op wasm floor, each wasm listener in its own VM."""
    jwks = workloads.public_jwks()
    brickgate = envoy_bench.brickgate_plugin_config(workloads.ISSUER, workloads.AUDIENCE, jwks, None)
    return {
        "brickgate": envoy_bench.wasm_filter("brickgate", wasm, brickgate),
        "jwt_authn": envoy_bench.jwt_authn_filters(workloads.ISSUER, workloads.AUDIENCE, jwks),
        "noop": envoy_bench.wasm_filter("noop", noop, {}, root_id="noop"),
    }


def worker_cpu_ns_by_thread(pid: int) -> dict[str, int]:
    """On-CPU ns of each `wrk:worker*` thread (by tid); their sum is Envoy.worker_cpu_ns()."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith("wrk:worker"):
                threads[task.name] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return threads


def wasm_linear_memories(pid: int) -> list[int]:
    """Resident KiB of each wasm linear memory, from /proc/<pid>/smaps. V8 reserves every linear
    memory with guard pages (several GiB, PROT_NONE) and makes its first pages read-write, so a
    linear memory is a rw-p mapping directly followed by a PROT_NONE mapping of at least 4 GiB.
    Nothing else in Envoy reserves that much; a V8 that laid memories out otherwise finds none."""
    mappings: list[list] = []  # [start, end, permissions, rss_kib]
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0].endswith(":"):
            if fields[0] == "Rss:" and mappings:
                mappings[-1][3] = int(fields[1])
            continue
        start, _, end = fields[0].partition("-")
        mappings.append([int(start, 16), int(end, 16), fields[1], 0])
    return [memory[3] for memory, guard in zip(mappings, mappings[1:])
            if memory[2].startswith("rw") and guard[2].startswith("---") and memory[1] == guard[0]
            and guard[1] - guard[0] >= 1 << 32]


def memory_kib(pid: int) -> MemorySample:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(value.split()[0])  # "  123456 kB"
    memories = wasm_linear_memories(pid)
    return MemorySample(fields["VmRSS"], fields["RssAnon"], len(memories), sum(memories))


@contextmanager
def running_envoy(args, listeners: dict[str, list[dict]], concurrency: int):
    work_dir = Path(tempfile.mkdtemp(prefix=f"brickgate-workers-c{concurrency}-"))
    config = envoy_bench.bootstrap([envoy_bench.listener(name, filters) for name, filters in listeners.items()])
    envoy = envoy_bench.Envoy(args.envoy, config, work_dir, "warning", concurrency=concurrency)
    try:
        try:
            envoy.start()
        except envoy_bench.EnvoyError as err:
            raise RuntimeError(f"{err}\n{envoy.log_tail()}") from None
        workers = worker_cpu_ns_by_thread(envoy.process.pid)
        if len(workers) != concurrency:
            raise RuntimeError(f"expected {concurrency} worker threads, found {len(workers)}")
        yield envoy
    finally:
        envoy.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def drive(args, envoy, port: int, pool: Path, duration_s: int, name: str):
    """One wrk run; returns (result, per-worker on-CPU ns spent during it)."""
    before = worker_cpu_ns_by_thread(envoy.process.pid)
    result = wrk_runner.run(args.wrk, f"http://127.0.0.1:{port}", pool, envoy_bench.PATH, duration_s,
                            threads=args.wrk_threads)
    after = worker_cpu_ns_by_thread(envoy.process.pid)
    if not result.requests or result.non_2xx or result.socket_errors:
        raise RuntimeError(f"{name}: {result.non_2xx} non-2xx and {result.socket_errors} socket errors "
                           f"in {result.requests} requests\n{envoy.log_tail()}")
    return result, {tid: after[tid] - before.get(tid, 0) for tid in after}


def scaling(args, listeners, pool: Path) -> tuple[dict, list[str]]:
    runs: dict[tuple[str, int], list[ThroughputRun]] = {(n, c): [] for n in LISTENERS for c in CONCURRENCIES}
    notes = []
    for round_ in range(1, args.rounds + 1):
        # Alternate which concurrency goes first, so neither always gets the quieter half of a round.
        order = CONCURRENCIES if round_ % 2 else tuple(reversed(CONCURRENCIES))
        for concurrency in order:
            with running_envoy(args, listeners, concurrency) as envoy:
                ports = envoy.listener_ports()
                for name in LISTENERS:
                    if args.warmup:  # every worker's VM verifies the token once and fills its caches
                        drive(args, envoy, ports[name], pool, args.warmup, name)
                    result, by_worker = drive(args, envoy, ports[name], pool, args.duration, name)
                    total = sum(by_worker.values())
                    share = max(by_worker.values()) / total if total else 1.0
                    if concurrency > 1 and min(by_worker.values()) < MIN_WORKER_SHARE * total:
                        notes.append(f"round {round_}, {name}, concurrency {concurrency}: a worker got "
                                     f"{min(by_worker.values()) / total:.0%} of the CPU (connections not spread)")
                    run = ThroughputRun(result.rps, total / 1000 / result.requests, share)
                    runs[(name, concurrency)].append(run)
                    progress(f"round {round_} c={concurrency} {name:<10} {run.rps:>8,.0f} req/s "
                             f"{run.cpu_us_per_request:6.1f} µs/req  busiest worker {share:.0%}")
                    time.sleep(0.5)
    return runs, notes


def memory(args, listeners, pool: Path) -> tuple[dict, list[str]]:
    samples: dict[tuple[str, int], list[MemorySample]] = {(n, c): [] for n in MEMORY_LISTENERS for c in CONCURRENCIES}
    notes = []
    for round_ in range(1, args.memory_rounds + 1):
        order = CONCURRENCIES if round_ % 2 else tuple(reversed(CONCURRENCIES))
        for concurrency in order:
            for name in MEMORY_LISTENERS:
                with running_envoy(args, {name: listeners[name]}, concurrency) as envoy:
                    result, by_worker = drive(args, envoy, envoy.listener_ports()[name], pool,
                                              args.memory_warm, name)
                    total = sum(by_worker.values())
                    if result.requests < MIN_MEMORY_WARM_REQUESTS or min(by_worker.values()) < MIN_WORKER_SHARE * total:
                        notes.append(f"memory round {round_}, {name}, concurrency {concurrency}: "
                                     f"{result.requests} warm requests, least busy worker "
                                     f"{min(by_worker.values()) / max(total, 1):.0%} of the CPU")
                    time.sleep(0.5)  # let the last connections close
                    sample = memory_kib(envoy.process.pid)
                    samples[(name, concurrency)].append(sample)
                    progress(f"memory round {round_} c={concurrency} {name:<10} VmRSS {sample.vm_rss_kib:>7} KiB "
                             f"RssAnon {sample.rss_anon_kib:>7} KiB, {sample.wasm_memories} wasm memories "
                             f"{sample.wasm_memory_rss_kib:>5} KiB, after {result.requests} requests")
    return samples, notes


def mib(kib: float) -> str:
    return f"{kib / 1024:.2f}"


def signed_mib(kib: float) -> str:
    return f"{kib / 1024:+.2f}"


def report(args, command: str, meta: dict, runs: dict, samples: dict, notes: list[str]) -> str:
    low, high = CONCURRENCIES
    wrk = f"`wrk -t{args.wrk_threads} -c{wrk_runner.CONNECTIONS} -d{args.duration}s --latency -s wrk_cycle.lua`"
    lines = [
        "## Envoy workers: scaling and memory per worker (issue 11 point 4)",
        "",
        f"- command: `{command}`",
        f"- date: {meta['date']}, commit {meta['commit']}, Envoy {meta['envoy']}",
        f"- machine: nproc {os.cpu_count()}, load average {meta['load_before']} before, {meta['load_after']} after",
        f"- {args.rounds} interleaved rounds, a fresh Envoy per round and concurrency; medians of the rounds",
        f"- wrk: {wrk} for every run, at both concurrencies (the same client, {args.wrk_threads} wrk "
        f"thread(s), 8 connections, which the kernel spreads over the workers), after "
        f"{args.warmup} s of warm-up per listener",
        "",
        "### Scaling with workers (warm workload: one valid RS256 token, reused)",
        "",
        f"On this {os.cpu_count()}-core machine wrk and two Envoy workers cannot each have a core, so "
        f"wall-clock req/s cannot show a near-{high}× gain at concurrency {high}. The honest figure is the "
        "workers' on-CPU time per request: if it stays the same at concurrency 2 (ratio of CPU µs/req "
        "at c=2 over c=1 ≈ 1.0), the work per request does not grow with workers (no contention, no "
        "shared state), so throughput scales with the cores given to Envoy. req/s is shown as measured.",
        "",
        "| listener | concurrency | req/s | worker CPU µs/req (sum over worker threads) | busiest worker's share of CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in LISTENERS:
        for concurrency in CONCURRENCIES:
            values = runs[(name, concurrency)]
            lines.append(f"| {name} | {concurrency} | {statistics.median(r.rps for r in values):,.0f} "
                         f"| {statistics.median(r.cpu_us_per_request for r in values):.1f} "
                         f"| {statistics.median(r.busiest_worker_share for r in values):.0%} |")
    lines += ["", f"| listener | CPU µs/req c={high} / c={low} | req/s c={high} / c={low} |", "|---|---:|---:|"]
    for name in LISTENERS:
        pairs = list(zip(runs[(name, low)], runs[(name, high)]))
        cpu_ratio = statistics.median(h.cpu_us_per_request / lo.cpu_us_per_request for lo, h in pairs)
        rps_ratio = statistics.median(h.rps / lo.rps for lo, h in pairs)
        lines.append(f"| {name} | {cpu_ratio:.2f} | {rps_ratio:.2f} |")
    lines += ["", "Ratios are medians of the per-round ratios (the two concurrencies of one round are paired).", ""]

    lines += [
        "### Resident memory per worker",
        "",
        f"Envoy with only that listener, after {args.memory_warm} s of warm traffic "
        f"({wrk.replace(f'-d{args.duration}s', f'-d{args.memory_warm}s')}) "
        "reaching every worker (each worker's VM created, token verified, caches filled); "
        f"/proc/<pid>/status 0.5 s later. MiB, medians of {args.memory_rounds} interleaved rounds "
        "(fresh processes). VmRSS varies by about ±1 MiB between processes of the same configuration, "
        "as much as a worker adds, so the range of the rounds is shown. *wasm linear memory* is the "
        "resident part of the VMs' wasm linear memories (/proc/<pid>/smaps: a read-write mapping "
        "followed by V8's guard reservation of several GiB; one memory per VM: Envoy's main-thread VMs "
        "and one per worker); it does not include V8's per-VM heap and code, which VmRSS does.",
        "",
        f"| listener | VmRSS c={low} | VmRSS c={high} | VmRSS added per extra worker | (rounds: min … max) "
        f"| RssAnon added per extra worker | wasm memories c={low} / c={high} | wasm linear memory added per extra worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    added: dict[str, list[float]] = {}
    added_wasm: dict[str, list[float]] = {}
    for name in MEMORY_LISTENERS:
        lo_s, hi_s = samples[(name, low)], samples[(name, high)]
        per_worker = [(h.vm_rss_kib - lo.vm_rss_kib) / (high - low) for lo, h in zip(lo_s, hi_s)]
        per_worker_anon = [(h.rss_anon_kib - lo.rss_anon_kib) / (high - low) for lo, h in zip(lo_s, hi_s)]
        per_worker_wasm = [(h.wasm_memory_rss_kib - lo.wasm_memory_rss_kib) / (high - low)
                           for lo, h in zip(lo_s, hi_s)]
        added[name] = per_worker
        added_wasm[name] = per_worker_wasm
        counts = " / ".join(f"{statistics.median(s.wasm_memories for s in side):.0f}" for side in (lo_s, hi_s))
        lines.append(f"| {name} | {mib(statistics.median(s.vm_rss_kib for s in lo_s))} "
                     f"| {mib(statistics.median(s.vm_rss_kib for s in hi_s))} "
                     f"| {signed_mib(statistics.median(per_worker))} "
                     f"| {signed_mib(min(per_worker))} … {signed_mib(max(per_worker))} "
                     f"| {signed_mib(statistics.median(per_worker_anon))} | {counts} "
                     f"| {statistics.median(per_worker_wasm):+.0f} KiB |")
    own_by_round = [b - n for b, n in zip(added["brickgate"], added["noop"])]
    own = statistics.median(own_by_round)
    wasm_size = Path(args.wasm).stat().st_size
    noop_size = Path(args.noop).stat().st_size
    own_wasm = statistics.median(b - n for b, n in zip(added_wasm["brickgate"], added_wasm["noop"]))
    lines += [
        "",
        f"- brickgate's own memory per extra worker, VmRSS (brickgate's added VmRSS minus the no-op "
        f"module's, median of the per-round differences): **{signed_mib(own)} MiB** (rounds: "
        f"{signed_mib(min(own_by_round))} … {signed_mib(max(own_by_round))})",
        f"- brickgate's own memory per extra worker, wasm linear memory (the same difference, exact "
        f"page counts): **{own_wasm:+.0f} KiB**",
        f"- module size: `{args.wasm_label}` {wasm_size:,} bytes ({wasm_size / 1024:.0f} KiB); "
        f"no-op module {noop_size:,} bytes",
    ]
    if notes:
        lines += ["", "Anomalies:", "", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", default=".venv/bin/envoy")
    parser.add_argument("--wasm", default="dist/brickgate.wasm")
    parser.add_argument("--noop", default="dist/bench-noop.wasm")
    parser.add_argument("--wrk-bin", dest="wrk", default="wrk")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t, the same at both concurrencies (default 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured wrk per listener and Envoy (default 1)")
    parser.add_argument("--memory-rounds", type=int, default=5,
                        help="interleaved rounds of the memory part, 4 short Envoy runs each (default 5)")
    parser.add_argument("--memory-warm", type=int, default=2, help="seconds of warm traffic before reading RSS (default 2)")
    parser.add_argument("--output", help="also write the report to this file")
    args = parser.parse_args()
    if min(args.rounds, args.memory_rounds, args.duration, args.memory_warm, args.wrk_threads) < 1 or args.warmup < 0:
        parser.error("--rounds, --memory-rounds, --duration, --memory-warm and --wrk-threads must be >= 1, "
                     "--warmup >= 0")
    command = " ".join(["bench/workers.py", *sys.argv[1:]])
    args.wasm_label = args.wasm
    args.envoy, args.wasm, args.noop = (str(Path(p).resolve()) for p in (args.envoy, args.wasm, args.noop))
    # SIGTERM unwinds like Ctrl-C: every Envoy is stopped by its context manager.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": git_commit(),
            "envoy": envoy_bench.version(args.envoy), "load_before": load_average()}
    listeners = listeners_config(args.wasm, args.noop)
    token_dir = Path(tempfile.mkdtemp(prefix="brickgate-workers-tokens-"))
    try:
        pool, _ = workloads.token_pool(workloads.WORKLOADS["warm"], 1, token_dir, 3600)
        runs, notes = scaling(args, listeners, pool)
        samples, memory_notes = memory(args, listeners, pool)
    finally:
        shutil.rmtree(token_dir, ignore_errors=True)
    meta["load_after"] = load_average()
    text = report(args, command, meta, runs, samples, notes + memory_notes)
    print(text, end="")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
