"""Writes the profiling harness's input (bench/profile/run.mjs reads it): the plugin configurations,
a token and the request headers, made by the same helpers as `make bench` (bench/run.py,
bench/envoy_bench.py, bench/workloads.py), so the keys, token and configuration are the benchmark's.

Usage: python bench/profile/prepare.py OUTPUT.json
"""

import json
import sys
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
import envoy_bench  # noqa: E402
import workloads  # noqa: E402


COLD_TOKENS = 5000


def request_headers(token: str) -> list[list[str]]:
    """What Envoy hands a filter for one wrk request (HTTP/1.1, Host + Authorization), in the
    order Envoy keeps them: pseudo-headers first, then the request's, then what Envoy adds."""
    return [
        [":authority", "127.0.0.1:10000"],
        [":path", envoy_bench.PATH],
        [":method", "GET"],
        [":scheme", "http"],
        ["authorization", f"Bearer {token}"],
        ["user-agent", "wrk"],
        ["x-forwarded-proto", "http"],
        ["x-request-id", str(uuid.UUID(int=0x5EED))],
    ]


def main() -> None:
    output = Path(sys.argv[1])
    warm = workloads.WORKLOADS["warm"]
    token = workloads.mint(warm, 1, "profile", int(time.time()))[0]
    plugin = envoy_bench.brickgate_plugin_config(
        workloads.ISSUER, workloads.AUDIENCE, workloads.public_jwks(), None)  # the `brickgate` listener's: the default
    data = {
        "path": envoy_bench.PATH,
        "prefix": envoy_bench.PREFIX,
        "token_workload": warm.description,
        "modes": {
            # brickgate as the benchmark's `brickgate` listener, one token reused: a cache hit.
            "warm": {"root_id": "brickgate", "config": plugin, "headers": request_headers(token)},
            # brickgate with an anonymous rule: no token work at all (the same headers).
            "anonymous": {"root_id": "brickgate", "config": envoy_bench.brickgate_anonymous_config(),
                          "headers": request_headers(token)},
            # the floor: bench/noop reads `authorization` and continues.
            "noop": {"root_id": "noop", "config": {}, "headers": request_headers(token)},
        },
    }
    # Cold modes: more distinct tokens than the cache holds (1024 by default), cycled, so every request
    # verifies its token (the cache evicts the oldest first).
    now = int(time.time())
    for name in ["cold_rs256", "forged", "denied"]:
        tokens = workloads.mint(workloads.WORKLOADS[name], COLD_TOKENS, "profile", now)
        data["modes"][name] = {"root_id": "brickgate", "config": plugin,
                               "headers": request_headers(tokens[0]),
                               "header_sets": [request_headers(token) for token in tokens]}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
