"""The exchange cache and the upstream_token counters (docs/CONFIG.md "Provider upstream"), behind a
real Envoy in front of the fake workspace: one exchange per subject and scope, shared by a concurrent
burst, never across workspaces, done before the API call, and surviving its first caller leaving.
Setup: databricks_upstream_support.py.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from databricks_support import (
    CACHE_HIT,
    FAILED,
    FETCH,
    bootstrap_with,
    counters,
    delta,
    record,
    routed_listener,
    token_calls,
    wait_until_decided,
    workspace_control,
    workspace_stats,
)
# `gateway` and `fresh_workspaces` (autouse) are fixtures: imported for pytest to use them.
from databricks_upstream_support import (
    PATH,
    add_users,
    claims_of,
    exchange_upstream,
    fresh_workspaces,
    gateway,
    new_subject,
    plugin_config,
    received_bearer,
    workspace_echo,
)
from gateway_client import send
from plugin_configs import idp_provider


# --- exchange cache ---------------------------------------------------------------------------------


def test_exchange_once_per_subject_and_scope(gateway):
    first, second = new_subject("cache-1"), new_subject("cache-2")
    add_users(gateway.workspace, first, second)
    before = counters(gateway.envoy)
    same_token = gateway.idp_token(first)
    tokens_for_first = [same_token] * 5 + [gateway.idp_token(first) for _ in range(5)]  # refreshed IdP tokens too
    for token in tokens_for_first:
        assert workspace_echo(send(gateway.ports["exchange"], "GET", PATH, token))["principal"] == first
    after_first = workspace_stats(gateway.workspace)
    for _ in range(5):
        assert workspace_echo(send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(second)))["principal"] == second
    stats = workspace_stats(gateway.workspace)
    after = counters(gateway.envoy)
    measured = {"first_subject_requests": len(tokens_for_first), "first_subject_exchanges": token_calls(after_first, first),
                "second_subject_requests": 5, "second_subject_exchanges": token_calls(stats, second),
                "total_exchanges": token_calls(stats), "fetch": delta(before, after, FETCH),
                "cache_hit": delta(before, after, CACHE_HIT), "failed": delta(before, after, FAILED)}
    record("exchange_once_per_subject_and_scope", **measured)
    assert measured["first_subject_exchanges"] == 1, measured
    assert measured["second_subject_exchanges"] == 1 and measured["total_exchanges"] == 2, measured
    assert (measured["fetch"], measured["cache_hit"], measured["failed"]) == (2, 13, 0), measured


def test_concurrent_burst_for_a_new_subject_shares_one_exchange(gateway):
    """While the first exchange is in flight (the token endpoint takes 1 s), every other request for
    the same subject waits for it: one exchange for the whole burst, across Envoy's workers."""
    subject = new_subject("burst")
    add_users(gateway.workspace, subject)
    workspace_control(gateway.workspace, token_endpoint_fault="slow", delay_s=1.0)
    burst = 24
    tokens = [gateway.idp_token(subject) for _ in range(burst)]
    barrier = threading.Barrier(burst)

    def one(token):
        barrier.wait(timeout=10)
        return send(gateway.ports["exchange"], "GET", PATH, token, timeout_s=15)

    before = counters(gateway.envoy)
    started = time.monotonic()
    with ThreadPoolExecutor(burst) as pool:
        replies = list(pool.map(one, tokens))
    elapsed = time.monotonic() - started
    after = counters(gateway.envoy)
    stats = workspace_stats(gateway.workspace)
    measured = {"requests": burst, "exchanges": token_calls(stats, subject), "statuses": sorted({r.status for r in replies}),
                "fetch": delta(before, after, FETCH), "cache_hit": delta(before, after, CACHE_HIT),
                "elapsed_s": round(elapsed, 2), "envoy_workers": 2}
    record("concurrent_burst_one_subject", **measured)
    assert all(r.status == 200 and r.json()["principal"] == subject for r in replies), measured
    assert measured["exchanges"] <= measured["envoy_workers"], f"requests did not even coalesce within a worker: {measured}"
    # Requests coalesce within a worker; across workers the token is shared once obtained
    # (docs/CONFIG.md), so a burst that hits every worker at once may cost one call per worker.


def test_exchange_cache_does_not_cross_workspaces(gateway):
    """Two listeners whose providers share a name front two workspaces: each workspace must get a
    token it issued itself, never the other's (a Databricks token is a credential for its workspace)."""
    subject = new_subject("two-ws")
    for workspace in (gateway.workspace, gateway.workspace_b):
        add_users(workspace, subject)
    assert workspace_echo(send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(subject)))["principal"] == subject
    reply = send(gateway.ports["exchange_b"], "GET", PATH, gateway.idp_token(subject))
    stats_b = workspace_stats(gateway.workspace_b)
    record("exchange_cache_across_workspaces", status_b=reply.status, exchanges_a=token_calls(workspace_stats(gateway.workspace), subject),
           exchanges_b=token_calls(stats_b, subject))
    assert reply.status == 200, (f"workspace B answered {reply.status} {reply.body[:300]!r}; it got "
                                 f"{token_calls(stats_b, subject)} exchange(s) for the subject: brickgate sent it workspace A's token")
    echo = reply.json()
    assert echo["principal"] == subject and claims_of(received_bearer(echo))["iss"] == gateway.workspace_b.issuer
    assert token_calls(stats_b, subject) == 1


def test_exchange_happens_once_before_the_api_call(gateway):
    """A cold request: one RFC 8693 exchange at /oidc/v1/token, then the API call with its result."""
    subject = new_subject("ua-token")
    add_users(gateway.workspace, subject)
    offset = len(gateway.workspace.snapshot_log())
    workspace_echo(send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(subject)))
    paths = [entry["path"] for entry in gateway.workspace.snapshot_log()[offset:]]
    assert paths == ["/oidc/v1/token", PATH], paths
    stats = workspace_stats(gateway.workspace)
    assert stats["by_grant_type"] == {"urn:ietf:params:oauth:grant-type:token-exchange": 1}
    assert stats["issued_by_grant_type"] == {"urn:ietf:params:oauth:grant-type:token-exchange": 1}


# --- counters ---------------------------------------------------------------------------------------


def test_upstream_token_counters(gateway):
    subject = new_subject("counters")
    add_users(gateway.workspace, subject)
    steps = []
    before = counters(gateway.envoy)
    for label in ("miss", "hit", "hit"):
        assert send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(subject)).status == 200
        now = counters(gateway.envoy)
        steps.append((label, delta(before, now, FETCH), delta(before, now, CACHE_HIT), delta(before, now, FAILED)))
    assert steps == [("miss", 1, 0, 0), ("hit", 1, 1, 0), ("hit", 1, 2, 0)], steps
    stranger = new_subject("counters-stranger")  # not a user: refused by Databricks
    assert send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(stranger)).status == 401
    after = counters(gateway.envoy)
    assert (delta(before, after, FETCH), delta(before, after, CACHE_HIT), delta(before, after, FAILED)) == (2, 2, 1)


@pytest.fixture(scope="module")
def single_worker(gateway, start_envoy, wasm_path):
    """An Envoy of its own with one worker (so every request shares one VM and its in-flight calls):
    exchange mode in front of the module's workspace."""
    provider = idp_provider(gateway.tokens.idp_issuer, gateway.idp_port, upstream=exchange_upstream("workspace", gateway.workspace))
    listener = routed_listener("one_worker", wasm_path, plugin_config({"x1": provider}), "workspace")
    envoy = start_envoy(bootstrap_with([listener], {"workspace": gateway.workspace.port, "idp": gateway.idp_port}),
                        "databricks-one-worker", concurrency=1)
    try:
        envoy.wait_ready()
        port = envoy.listener_ports()["one_worker"]
        probe = gateway.idp_token("probe")
        wait_until_decided(port, lambda p: send(p, "GET", PATH, probe))
        yield port
    finally:
        envoy.stop()


def test_callers_waiting_on_an_exchange_survive_the_first_caller_leaving(gateway, single_worker):
    """The request that started an exchange gives up (client timeout) while the exchange is in
    flight. The requests parked behind the same exchange, and later ones for the same subject, must
    still be answered (one impatient client must not wedge a user's access)."""
    subject = new_subject("abandoned")
    add_users(gateway.workspace, subject)
    workspace_control(gateway.workspace, token_endpoint_fault="slow", delay_s=1.5)
    try:
        send(single_worker, "GET", PATH, gateway.idp_token(subject), timeout_s=0.3)
        raise AssertionError("the first request should still be waiting for the slow exchange")
    except TimeoutError:
        pass  # the client hangs up while the exchange is in flight

    def attempt():
        try:
            return send(single_worker, "GET", PATH, gateway.idp_token(subject), timeout_s=5).status
        except TimeoutError:
            return "no answer in 5 s"

    parked = attempt()  # arrives while the abandoned exchange would still be in flight
    workspace_control(gateway.workspace, token_endpoint_fault="none")
    later = attempt()  # the token endpoint is fast again
    stats = workspace_stats(gateway.workspace)
    measured = {"parked": parked, "later": later, "exchanges": token_calls(stats, subject)}
    record("abandoned_first_caller_one_worker", **measured)
    assert parked == 200 and later == 200, f"requests for the subject were never answered: {measured}"
