"""Run wrk with the token-cycling Lua script and parse its report."""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "wrk_cycle.lua"
THREADS = 1
CONNECTIONS = 8

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    raw: str
    # The Envoy worker's on-CPU µs per request (filled in by the caller, which reads the worker).
    cpu_us: float = 0.0


def params(duration_s: int) -> str:
    return f"wrk -t{THREADS} -c{CONNECTIONS} -d{duration_s}s --latency -s {LUA.name}"


def run(wrk_bin: str, url: str, token_file: Path, path: str, duration_s: int,
        threads: int = THREADS) -> WrkResult:
    command = [wrk_bin, f"-t{threads}", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--latency",
               "-s", str(LUA), url, "--", str(token_file), path]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = process.communicate(timeout=duration_s + 60)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish within {duration_s + 60}s") from None
    finally:  # also on a signal or Ctrl-C: never leave wrk running
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{out}")
    return parse(out)


def _latency_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if not match:
        raise ValueError(f"cannot parse latency {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse(out: str) -> WrkResult:
    def find(pattern: str, default=None):
        match = re.search(pattern, out, re.MULTILINE)
        if match:
            return match.group(1)
        if default is None:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{out}")
        return default

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=int(find(r"^\s*(\d+) requests in")),
        rps=float(find(r"^Requests/sec:\s*([\d.]+)")),
        p50_ms=_latency_ms(find(r"^\s*50%\s+(\S+)")),
        p99_ms=_latency_ms(find(r"^\s*99%\s+(\S+)")),
        non_2xx=int(find(r"Non-2xx or 3xx responses:\s*(\d+)", "0")),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        raw=out,
    )
