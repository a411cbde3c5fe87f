"""`--concurrency 4`: all VMs of one Envoy (4 workers + the main thread) share one JWKS fetch per
provider, at start-up and at every refresh, and every worker serves the keys another one fetched.

What shares a fetch: every plugin of the harness runs in the VM `brickgate`, and proxy-wasm shared
data is one space per VM id, so the key is brickgate's shared-data prefix, which it derives from
the provider's name, issuer, cluster and JWKS location. Here listeners `a` and `b` are different
plugin configurations (different rules) with the same provider: they share one fetch. Listener `c`
has a provider fetching another URL: it gets its own.
"""

import re
import time

from jwks_support import (
    fresh_idp, gaps, idp_control, idp_requests, in_parallel, record, remote_provider, scenario,
    single_provider_config, timed_send, token, wait_for_idp_request, wait_until_accepted,
)

WORKERS = 4
TTL_S = 2
SHARED_PATH, OWN_PATH = "/jwks.json", "/oauth2/v1/keys"


def listeners(idp) -> dict[str, dict]:
    remote = {"refresh_interval_s": TTL_S, "refetch_min_interval_s": 60, "wait_for_keys_ms": 3000}
    return {
        "a": single_provider_config(remote_provider(idp, **remote), "idp", rule="everything-a"),
        "b": single_provider_config(remote_provider(idp, **remote), "idp", rule="everything-b"),
        "c": single_provider_config(remote_provider(idp, jwks_path=OWN_PATH, **remote), "idp_alt", rule="everything-c"),
    }


def startup_fetches(idp) -> dict[str, list[float]]:
    """The JWKS requests of the start-up: before the first refresh (≥ 75 % of the TTL later)."""
    result = {}
    for path in (SHARED_PATH, OWN_PATH):
        times = idp_requests(idp, path)
        result[path] = [t for t in times if times and t < times[0] + 0.7 * TTL_S]
    return result


WORKER_CX = re.compile(r"^listener\.[^ ]+\.worker_([0-9]+)\.downstream_cx_total$")


def worker_connections(gw) -> dict[int, int]:
    """Downstream connections accepted per worker thread, over all of this Envoy's listeners (the
    stat is named after the configured address, 127.0.0.1_0, which they all share)."""
    totals = {worker: 0 for worker in range(WORKERS)}
    for name, value in gw.envoy.stats(WORKER_CX.pattern).items():
        totals[int(WORKER_CX.match(name).group(1))] += value
    return totals


def test_startup_fetches_once_per_provider_whatever_the_workers(start_envoy, wasm_path, upstream):
    """Several cold starts: each makes exactly one fetch per shared provider."""
    counts = []
    for launch in range(4):
        with fresh_idp() as idp:
            with scenario(start_envoy, wasm_path, upstream, idp, f"startup-c4-{launch}", listeners(idp), concurrency=WORKERS) as gw:
                for port in gw.ports.values():
                    wait_until_accepted(port, idp)
                first = idp_requests(idp, SHARED_PATH)[0]
                while time.time() < first + 0.7 * TTL_S + 0.1:
                    time.sleep(0.05)
                fetched = startup_fetches(idp)
                counts.append({path: [round(t - times[0], 3) for t in times] for path, times in fetched.items()})
    record("concurrency4_startup", launches=counts, fetches_per_launch=[{p: len(t) for p, t in c.items()} for c in counts])
    for launch, fetched in enumerate(counts):
        assert {path: len(times) for path, times in fetched.items()} == {SHARED_PATH: 1, OWN_PATH: 1}, (
            f"launch {launch}: JWKS requests at start-up (s after the first): {fetched}")


def test_one_fetch_per_refresh_and_every_worker_adopts_rotated_keys(start_envoy, wasm_path, upstream):
    with fresh_idp() as idp:
        with scenario(start_envoy, wasm_path, upstream, idp, "concurrency4", listeners(idp), concurrency=WORKERS) as gw:
            for port in gw.ports.values():
                wait_until_accepted(port, idp)
            startup = startup_fetches(idp)

            # Three refresh intervals and a bit: the gaps between fetches show one fetch per refresh.
            observe_from = time.time()
            time.sleep(3 * TTL_S + 0.6)
            refreshes = {path: idp_requests(idp, path, since=observe_from) for path in (SHARED_PATH, OWN_PATH)}

            # Rotation: the IdP publishes rsa-2; after the next refresh every worker must accept it.
            log_offset = gw.envoy.log_size()
            switched = time.time()
            idp_control(idp, jwks_keys=["rsa-1", "rsa-2", "ec-1"], signing_key="rsa-2")
            for path in (SHARED_PATH, OWN_PATH):
                wait_for_idp_request(idp, path, switched, timeout_s=TTL_S + 1)
            for provider in ("idp", "idp_alt"):
                gw.wait_for_log("info", f"provider {provider} key set changed: added [test-rsa-2]", timeout_s=2, since=log_offset)
            time.sleep(0.4)  # adoption takes at most one tick (100 ms) per VM
            before = gw.counters()
            connections_before = worker_connections(gw)
            rotation_started = time.time()
            ports = list(gw.ports.values())
            calls = [lambda port=ports[i % len(ports)]: timed_send(port, token(idp, "rsa-2")) for i in range(240)]
            results = in_parallel(calls, workers=16)
            after = gw.counters()
            connections = {w: n - connections_before[w] for w, n in worker_connections(gw).items()}
            rotation_fetches = {path: len(idp_requests(idp, path, since=switched)) for path in (SHARED_PATH, OWN_PATH)}
            info_lines = {provider: gw.log_lines("info", f"provider {provider} key set changed: added [test-rsa-2]", since=log_offset)
                          for provider in ("idp", "idp_alt")}
            adoptions = {provider: len(gw.log_lines("debug", f"provider {provider} key set changed: added [test-rsa-2]", since=log_offset))
                         for provider in ("idp", "idp_alt")}
            refused = [(r.reply.status, r.reason) for r in results if r.reply.status != 200]
            kid_miss = after.get("jwks.kid_miss_refetch", 0) - before.get("jwks.kid_miss_refetch", 0)

            record("concurrency4", startup_fetches={p: len(t) for p, t in startup.items()},
                   refresh_fetches={p: len(t) for p, t in refreshes.items()},
                   refresh_gaps_s={p: gaps(t) for p, t in refreshes.items()},
                   observed_s=round(3 * TTL_S + 0.6, 1),
                   rotation_fetches_until_burst_end=rotation_fetches,
                   rotation_burst_s=round(time.time() - rotation_started, 2),
                   rotation_requests=len(results), rotation_refused=len(refused),
                   kid_miss_refetch=kid_miss, connections_per_worker=connections,
                   info_lines={p: len(v) for p, v in info_lines.items()}, debug_adoptions=adoptions)

            assert {p: len(t) for p, t in startup.items()} == {SHARED_PATH: 1, OWN_PATH: 1}, startup
            for path, times in refreshes.items():
                assert len(times) >= 3, f"{path}: only {len(times)} refreshes in {3 * TTL_S + 0.6:.1f}s"
                # 75–90 % of the TTL apart (plus a tick and the fetch): never two fetches for one refresh,
                # never later than the TTL.
                assert all(0.7 * TTL_S <= gap <= TTL_S + 0.3 for gap in gaps(times)), f"{path}: gaps {gaps(times)}"
            assert not refused, f"{len(refused)} of {len(results)} rsa-2 requests refused after the rotation: {refused[:10]}"
            assert kid_miss == 0, f"{kid_miss} requests hit a worker that had not adopted the rotated keys"
            assert all(n > 0 for n in connections.values()), f"not every worker got connections: {connections}"
            for provider, lines in info_lines.items():
                assert len(lines) == 1, f"provider {provider}: {len(lines)} Info lines for one key-set change: {lines}"
