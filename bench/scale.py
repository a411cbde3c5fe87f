#!/usr/bin/env python3
"""Decision cost as the policy grows, in instructions (callgrind), which stay repeatable on a
busy machine where wall-clock figures do not. See docs/BENCHMARKS.md, "Cost as policies grow".

    python bench/scale.py [--binary target/names/release/examples/decision_cost] [--requests 200]

For each configuration it runs the native `decision_cost` example under
`valgrind --tool=callgrind`, counting only inside its `decide_loop` (warm-cache decisions),
and prints instructions per decision and the ratio to the smallest configuration.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

RULES = [10, 100, 1000, 10000]
PROVIDERS = [1, 10, 100]


def instructions(binary: str, env: dict[str, str], requests: int, function: str = "decide_loop") -> tuple[int, str]:
    """(instructions counted inside `function`, the example's own output line)."""
    with tempfile.TemporaryDirectory(prefix="brickgate-scale-") as tmp:
        out_file = Path(tmp) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--toggle-collect=*{function}*",
                   f"--callgrind-out-file={out_file}", binary]
        run_env = {**os.environ, **env, "REQUESTS": str(requests)}
        done = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        totals = re.search(r"^(?:totals|summary):\s*(\d+)", out_file.read_text(), re.MULTILINE)
        if not totals:
            raise RuntimeError(f"no totals in {out_file}")
        return int(totals.group(1)), done.stdout.strip()


def per_decision(binary: str, env: dict[str, str], requests: int) -> tuple[float, str]:
    total, line = instructions(binary, env, requests)
    return total / requests, line


def table(title: str, label: str, rows: list[tuple[str, float]]) -> list[str]:
    base = rows[0][1]
    lines = [f"### {title}", "", f"| {label} | instructions per decision | vs {rows[0][0]} |", "|---:|---:|---:|"]
    lines += [f"| {name} | {value:,.0f} | {value / base:.3f}× |" for name, value in rows]
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default="target/names/release/examples/decision_cost")
    parser.add_argument("--requests", type=int, default=200, help="decisions counted per configuration")
    args = parser.parse_args()
    report = []
    for request in ["clusters", "serving"]:
        rows = []
        for rules in RULES:
            value, line = per_decision(args.binary, {"RULES": str(rules), "REQUEST": request}, args.requests)
            print(f"{line}  →  {value:,.0f} instructions per decision", file=sys.stderr, flush=True)
            rows.append((f"{rules:,}", value))
        report += table(f"Rules (request: {request}; 1 provider)", "endpoint rules + catalogue", rows)
    rows = []
    for providers in PROVIDERS:
        value, line = per_decision(args.binary, {"RULES": "10", "PROVIDERS": str(providers)}, args.requests)
        print(f"{line}  →  {value:,.0f} instructions per decision", file=sys.stderr, flush=True)
        rows.append((f"{providers}", value))
    report += table("Providers (request: clusters; 10 endpoint rules + catalogue)", "providers", rows)
    # Start-up: compile the largest configuration once (the example prints time and heap).
    total, line = instructions(args.binary, {"RULES": "10000", "REQUESTS": "1"}, 1, function="build_engine")
    startup = re.search(r"startup_ms=([\d.]+) config_heap_bytes=(\d+)", line)
    native = subprocess.run([args.binary], env={**os.environ, "RULES": "10000", "REQUESTS": "1"},
                            capture_output=True, text=True, timeout=300).stdout
    native_startup = re.search(r"startup_ms=([\d.]+) config_heap_bytes=(\d+)", native)
    report += ["### Start-up with 10,000 endpoint rules + catalogue", "",
               f"- compile config + build engine: {total:,} instructions; "
               f"{native_startup.group(1) if native_startup else '?'} ms native (wall clock, noisy)",
               f"- heap held by the compiled configuration and engine: "
               f"{int(startup.group(2)) if startup else 0:,} bytes", ""]
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
