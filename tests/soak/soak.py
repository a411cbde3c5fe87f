#!/usr/bin/env python3
"""The soak: Envoy with brickgate at `--concurrency 2`, driven at half its measured maximum for
`--seconds`, with a mix of warm, cold, forged and refused tokens and an exchange listener with
thousands of distinct subjects; the IdP's key set changes every minute and the IdP goes down for
a while (shorter than the grace period) every 45 s. Envoy's memory is sampled every 10 s.

    python tests/soak/soak.py --envoy .venv/bin/envoy --wasm dist/brickgate.wasm [--seconds 300]
        [--output .run/soak.json]

Fails on any unexpected status (or socket error), any wasm VM failure (Envoy's wasm stats or
log), or memory still growing after warm-up. Writes everything measured to the JSON file and
prints a summary.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "e2e"), str(ROOT / "bench")]

from databricks_support import bootstrap_with, workspace_control, workspace_stats  # noqa: E402
from devstack.httpbase import running  # noqa: E402
from devstack.idp import make_idp  # noqa: E402
from devstack.keys import TEST_KEYS, b64url  # noqa: E402
from devstack.workspace import dev_policy, make_workspace  # noqa: E402
from envoy_bench import route_config  # noqa: E402
from envoy_harness import EnvoyProcess, brickgate_listener  # noqa: E402
from jwks_support import idp_control  # noqa: E402

AUDIENCE = "brickgate-soak"
PATH = "/api/2.0/clusters/list"
LUA = Path(__file__).resolve().parent / "soak.lua"
SAMPLE_S = 10
ROTATE_S = 60
OUTAGE_EVERY_S, OUTAGE_S = 45, 8
LIFETIME_S = 6 * 3600
# Key sets the IdP publishes in turn: the signing keys (rsa-1, ec-1) stay, a third key comes and goes.
KEY_SETS = [["rsa-1", "ec-1", "rsa-2"], ["rsa-1", "ec-1", "ed-1"]]


@dataclass
class Mix:
    name: str
    listener: str
    share: float  # of the target rate
    expect: int  # the one status every request of this kind must get
    connections: int


MIXES = [
    Mix("warm", "gateway", 0.40, 200, 4),
    Mix("cold", "gateway", 0.20, 200, 4),
    Mix("forged", "gateway", 0.10, 401, 2),
    Mix("refused", "gateway", 0.10, 403, 2),
    Mix("exchange", "exchange", 0.20, 200, 4),
]


def segment(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def mint(issuer: str, key: str, count: int, *, scope: str = "clusters:read", forged: bool = False,
         subjects: bool = False, label: str) -> list[str]:
    test_key = TEST_KEYS[key]
    header = segment({"alg": test_key.alg, "typ": "at+jwt", "kid": test_key.kid})
    now = int(time.time())
    tokens = []
    for index in range(count):
        subject = f"soak-{index:05d}@example.com" if subjects else "soak-client"
        claims = {"iss": issuer, "sub": subject, "aud": AUDIENCE, "client_id": subject, "scope": scope,
                  "iat": now, "nbf": now, "exp": now + LIFETIME_S, "jti": f"{label}-{now}-{index}"}
        signing_input = f"{header}.{segment(claims)}"
        if forged:
            modulus = test_key.private_key.public_key().public_numbers().n
            signature = (modulus - 12345 - index).to_bytes(256, "big")
        elif test_key.alg == "RS256":
            signature = test_key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(test_key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        tokens.append(f"{signing_input}.{b64url(signature)}")
    return tokens


def pools(issuer: str, work: Path, subjects: int) -> dict[str, Path]:
    cold = mint(issuer, "rsa-1", 3000, label="cold-rs") + mint(issuer, "ec-1", 1000, label="cold-es")
    made = {
        "warm": mint(issuer, "rsa-1", 1, label="warm"),
        "cold": [token for pair in zip(cold[:1000], cold[3000:]) for token in pair] + cold[1000:3000],
        "forged": mint(issuer, "rsa-1", 1000, forged=True, label="forged"),
        "refused": mint(issuer, "rsa-1", 1000, scope="jobs", label="refused"),
        "exchange": mint(issuer, "rsa-1", subjects, subjects=True, label="exchange"),
    }
    paths = {}
    for name, tokens in made.items():
        paths[name] = work / f"{name}.tokens"
        paths[name].write_text("\n".join(tokens) + "\n")
    return paths


def plugin_config(idp, workspace=None) -> dict:
    provider = {"issuer": idp.issuer, "audiences": [AUDIENCE], "algorithms": ["RS256", "ES256"],
                "jwks": {"remote": {"cluster": "idp", "uri": f"http://127.0.0.1:{idp.port}/jwks.json",
                                    "refresh_interval_s": 10, "max_stale_s": 3600, "timeout_ms": 1000}}}
    if workspace is not None:
        provider["upstream"] = {"mode": "exchange", "cluster": "workspace", "scopes": ["all-apis"],
                                "workspace_url": f"http://127.0.0.1:{workspace.port}"}
    return {"realm": "soak", "providers": {"idp": provider},
            "rules": [{"name": "clusters-read", "match": {"prefix": "/api/2.0/clusters/", "methods": ["GET"]},
                       "providers": ["idp"], "require": {"scopes_any": ["clusters:read"]}}],
            "performance": {"token_cache_entries": 2048}}


def listener(name: str, wasm: Path, config: dict) -> dict:
    built = brickgate_listener(name, str(wasm), config, root_id=name)
    hcm = built["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["route_config"] = route_config()  # a direct response: Envoy and brickgate are what is measured
    hcm.pop("access_log", None)
    return built


def run_wrk(port: int, mix: Mix, tokens: Path, seconds: int, delay_ms: float) -> dict:
    command = ["wrk", "-t1", f"-c{mix.connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA),
               f"http://127.0.0.1:{port}", "--", str(tokens), PATH, f"{delay_ms:.3f}"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90).stdout
    statuses = {int(code): int(n) for code, n in re.findall(r"^STATUS (\d+) (\d+)$", out, re.MULTILINE)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = re.search(r"^\s*(\d+) requests in", out, re.MULTILINE)
    return {"kind": mix.name, "requests": int(requests.group(1)) if requests else 0, "statuses": statuses,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0, "expect": mix.expect}


def run_mix(ports: dict, paths: dict, seconds: int, rate: float | None) -> list[dict]:
    """Every kind at once; `rate` None: unpaced (the maximum), else the total requests/s."""
    results: list[dict] = []
    lock = threading.Lock()

    def one(mix: Mix):
        delay = 0.0 if rate is None else mix.connections * 1000.0 / (rate * mix.share)
        result = run_wrk(ports[mix.listener], mix, paths[mix.name], seconds, delay)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(mix,)) for mix in MIXES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results, key=lambda r: r["kind"])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def envoy_heap_kib(envoy: EnvoyProcess) -> int:
    """Envoy's own allocations (tcmalloc), from the admin API: a leak in Envoy shows here, while
    the wasm VMs' linear memory (mapped by V8 directly) shows only in the RSS."""
    import urllib.request

    with urllib.request.urlopen(f"{envoy.admin_url}/memory", timeout=5) as response:
        return int(json.loads(response.read())["allocated"]) // 1024


def memory_verdict(samples: list[tuple[float, int]], seconds: int) -> dict:
    """After warm-up (the first 30 %), the last third of the samples must not sit above the first
    third by more than 5 % and 4 MiB: a leak grows steadily, a cache that filled does not."""
    after = [kib for t, kib in samples if t >= 0.3 * seconds]
    if len(after) < 3:
        return {"growing": False, "note": "too few samples after warm-up to judge"}
    third = max(1, len(after) // 3)
    early, late = max(after[:third]), max(after[-third:])
    times = [t for t, _ in samples if t >= 0.3 * seconds]
    mean_t, mean_k = sum(times) / len(times), sum(after) / len(after)
    slope = sum((t - mean_t) * (k - mean_k) for t, k in zip(times, after)) / max(1e-9, sum((t - mean_t) ** 2 for t in times))
    # Growing: the late samples clearly above the early ones, and still climbing steadily.
    growing = late - early > 4096 and slope * 60 > 1024
    return {"growing": growing, "early_max_kib": early, "late_max_kib": late, "slope_kib_per_min": round(slope * 60, 1)}


def wasm_failures(envoy: EnvoyProcess, created_before: int) -> dict:
    stats = envoy.stats(r"^wasm\.")
    reloads = {k: v for k, v in stats.items() if "vm_reload" in k and v}
    created = stats.get("wasm.envoy.wasm.runtime.v8.created", 0)
    log = envoy.log_text()
    # A VM's own failure (a trap, a panic, a failed load), not brickgate reporting an IdP outage.
    failure = re.compile(r"Function: \S+ failed|RuntimeError|panicked|fail(ed)? to (load|start)|VM failed", re.IGNORECASE)
    lines = [line for line in log.splitlines() if "wasm" in line and failure.search(line)]
    return {"vm_reloads": reloads, "vms_created_during_soak": created - created_before, "error_lines": lines[:10],
            "failed": bool(reloads) or created != created_before or bool(lines)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envoy", default=str(ROOT / ".venv/bin/envoy"))
    parser.add_argument("--wasm", default=str(ROOT / "dist/brickgate.wasm"))
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--subjects", type=int, default=3000, help="distinct subjects in exchange mode")
    parser.add_argument("--output", type=Path, default=ROOT / ".run" / "soak.json")
    args = parser.parse_args()
    args.envoy, args.wasm = str(Path(args.envoy).resolve()), str(Path(args.wasm).resolve())
    work = Path(tempfile.mkdtemp(prefix="brickgate-soak-"))
    subjects = {f"soak-{i:05d}@example.com": ["all-apis"] for i in range(args.subjects)}
    with (running(make_idp(0, audience=AUDIENCE)) as idp,
          running(make_workspace(0, policies=[dev_policy(idp.issuer, AUDIENCE)], users=subjects)) as workspace):
        idp_control(idp, jwks_keys=KEY_SETS[0])
        print(f"minting token pools in {work} …", flush=True)
        paths = pools(idp.issuer, work, args.subjects)
        listeners = [listener("gateway", Path(args.wasm), plugin_config(idp)),
                     listener("exchange", Path(args.wasm), plugin_config(idp, workspace))]
        envoy = EnvoyProcess(args.envoy, bootstrap_with(listeners, {"idp": idp.port, "workspace": workspace.port}),
                             work, concurrency=2)
        # Warnings only: an audit line per request would measure the log, not brickgate.
        envoy.command = [part for part in envoy.command if part not in ("--component-log-level", "wasm:debug")]
        envoy.command[envoy.command.index("--log-level") + 1] = "warning"
        envoy.start()
        try:
            envoy.wait_ready()
            ports = envoy.listener_ports()
            print("measuring the maximum (5 s, unpaced) …", flush=True)
            maximum = run_mix(ports, paths, 5, None)
            max_rps = sum(r["requests"] for r in maximum) / 5
            target = max_rps / 2
            print(f"maximum {max_rps:.0f} req/s; soaking at {target:.0f} req/s for {args.seconds} s", flush=True)
            workspace_control(workspace, reset_stats=True)
            created_before = envoy.stats(r"^wasm\.").get("wasm.envoy.wasm.runtime.v8.created", 0)
            samples: list[tuple[float, int]] = []
            heap: list[tuple[float, int]] = []
            events: list[dict] = []
            results: list[dict] = []
            soak = threading.Thread(target=lambda: results.extend(run_mix(ports, paths, args.seconds, target)))
            start = time.monotonic()
            soak.start()
            next_sample, next_rotation, next_outage, outage_ends, key_set = 0.0, ROTATE_S, 20.0, None, 0
            while soak.is_alive():
                elapsed = time.monotonic() - start
                if elapsed >= next_sample:
                    samples.append((round(elapsed, 1), rss_kib(envoy.process.pid)))
                    heap.append((round(elapsed, 1), envoy_heap_kib(envoy)))
                    next_sample += SAMPLE_S
                if elapsed >= next_rotation and elapsed < args.seconds:
                    key_set = (key_set + 1) % len(KEY_SETS)
                    idp_control(idp, jwks_keys=KEY_SETS[key_set])
                    events.append({"t": round(elapsed, 1), "event": "rotation", "keys": KEY_SETS[key_set]})
                    next_rotation += ROTATE_S
                if outage_ends is None and elapsed >= next_outage and elapsed + OUTAGE_S < args.seconds:
                    idp_control(idp, down=True)
                    outage_ends = elapsed + OUTAGE_S
                    events.append({"t": round(elapsed, 1), "event": "idp_down", "seconds": OUTAGE_S})
                    next_outage += OUTAGE_EVERY_S
                if outage_ends is not None and elapsed >= outage_ends:
                    idp_control(idp, down=False)
                    outage_ends = None
                    events.append({"t": round(elapsed, 1), "event": "idp_up"})
                time.sleep(0.2)
            soak.join()
            idp_control(idp, down=False)
            samples.append((round(time.monotonic() - start, 1), rss_kib(envoy.process.pid)))
            failures = wasm_failures(envoy, created_before)
            counters = envoy.stats(r"^wasmcustom\.brickgate\.")
            token_calls = workspace_stats(workspace)
        finally:
            envoy.stop()
    unexpected = {r["kind"]: {s: n for s, n in r["statuses"].items() if s != r["expect"]} for r in results}
    unexpected = {kind: found for kind, found in unexpected.items() if found}
    socket_errors = sum(r["socket_errors"] for r in results)
    memory = memory_verdict(samples, args.seconds)
    report = {
        "seconds": args.seconds, "max_rps": round(max_rps), "target_rps": round(target),
        "requests": sum(r["requests"] for r in results), "by_kind": results, "unexpected_statuses": unexpected,
        "socket_errors": socket_errors, "rss_kib": samples, "envoy_heap_kib": heap, "memory": memory,
        "envoy_heap": memory_verdict(heap, args.seconds), "wasm": failures, "events": events,
        "exchange_subjects": args.subjects, "brickgate_counters": counters,
        "workspace_token_endpoint": token_calls,
        "passed": not unexpected and socket_errors == 0 and not failures["failed"] and not memory["growing"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nsoak: {report['requests']} requests in {args.seconds} s at {report['target_rps']} req/s "
          f"(max {report['max_rps']}); {len(events)} events")
    for r in results:
        print(f"  {r['kind']:9} {r['requests']:8} requests, statuses {r['statuses']}, socket errors {r['socket_errors']}")
    print(f"  memory (RSS KiB every {SAMPLE_S} s): {[kib for _, kib in samples]}")
    print(f"  memory verdict: {memory}")
    print(f"  Envoy heap (allocated KiB): {[kib for _, kib in heap]}")
    print(f"  wasm: {failures}")
    print(f"  unexpected statuses: {unexpected or 'none'}; socket errors: {socket_errors}")
    print(f"  {'PASSED' if report['passed'] else 'FAILED'}; written to {args.output}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
