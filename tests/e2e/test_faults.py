"""Fault injection with the real Envoy: the IdP and the workspace token endpoint slow, resetting,
answering garbage or oversized bodies, flapping; keys rotating under load; a worker's VM killed
mid-stream under FAIL_CLOSED and FAIL_RELOAD. Every scenario counts what each client got and
checks three things: no request is admitted that should not be (0 wrong admits), no gateway-side
fault is answered with a 401 that blames the client, and each refusal is exactly the one named.

Each scenario is bounded (a few seconds); they share one echo upstream.
"""

import contextlib
import time
from collections import Counter

import pytest

from databricks_support import bootstrap_with, routed_listener, workspace_control
from devstack import tokens as raw
from devstack.httpbase import running
from devstack.idp import make_idp
from devstack.workspace import dev_policy, make_workspace
from envoy_harness import NATIVE, brickgate_listener, edit_plugin_config
from gateway_client import NO_CHALLENGE, Refusal, Reply, assert_refused, invalid_token, send
from jwks_support import Background, idp_control, in_parallel, remote_provider, single_provider_config
from plugin_configs import AUDIENCE, REALM
from wasm_crash import CRASH_AT_HEADERS, crashing_copy

PATH = "/api/2.1/clusters/list"
KEYS_UNAVAILABLE = Refusal(503, "keys_unavailable", "TEMPORARILY_UNAVAILABLE", NO_CHALLENGE)
EXCHANGE_FAILED = Refusal(502, "exchange_failed", "INTERNAL_ERROR", NO_CHALLENGE)
BAD_SIGNATURE = invalid_token("bad_signature")
IDP_FAULTS = ("status_500", "garbage", "oversized", "slow", "reset", "down")
TOKEN_ENDPOINT_FAULTS = ("500", "404", "slow", "reset", "garbage", "oversized")


def valid(idp, key: str = "rsa-1", subject: str = "e2e-client") -> str:
    return raw.mint(raw.claims(idp.issuer, AUDIENCE, subject=subject, scope="clusters:read"), key)


def forged(idp) -> str:
    """Claims the IdP's key (its kid) but is signed by a key it never published."""
    return raw.mint(raw.claims(idp.issuer, AUDIENCE, scope="clusters:read"), "attacker-rsa", header={"kid": "test-rsa-1"})


class Outcomes:
    """What each kind of client got: (kind, status, reason) → count, and the properties."""

    def __init__(self):
        self.counts = Counter()

    def add(self, kind: str, reply: Reply) -> Reply:
        self.counts[(kind, reply.status, reply.header("x-brickgate-reason"))] += 1
        return reply

    def wrong_admits(self) -> int:
        """Answers that let a request through that should not pass (0: no answer at all)."""
        return sum(n for (kind, status, _), n in self.counts.items() if kind != "valid" and 0 < status < 400)

    def client_blamed(self) -> int:
        """Valid clients answered 401 (or any 4xx) while the gateway's dependency failed."""
        return sum(n for (kind, status, _), n in self.counts.items() if kind == "valid" and 400 <= status < 500)

    def check(self, allowed: dict[str, set]) -> None:
        """`allowed`: kind → the (status, reason) pairs that kind may get."""
        assert self.wrong_admits() == 0, self.counts
        assert self.client_blamed() == 0, self.counts
        for (kind, status, reason), n in self.counts.items():
            assert (status, reason) in allowed[kind], f"{n}× {kind} got {status} {reason}: {self.counts}"


@contextlib.contextmanager
def envoy_with(start_envoy, name: str, listeners: list[dict], clusters: dict[str, int], concurrency: int = 2):
    envoy = start_envoy(bootstrap_with(listeners, clusters), name, concurrency=concurrency)
    try:
        envoy.wait_ready()
        yield envoy
    finally:
        envoy.stop()


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout_s}s"
        time.sleep(0.1)


# --- the IdP failing ---------------------------------------------------------------------------


def test_an_idp_failing_at_cold_start_gets_503_for_everyone_and_admits_nobody(start_envoy, wasm_path, upstream):
    """One IdP per fault, each behind its own listener: before any key arrives every client gets
    503 keys_unavailable (retry), valid or forged; once the IdP recovers valid tokens pass and
    forged ones get 401 bad_signature."""
    with contextlib.ExitStack() as stack:
        idps = {fault: stack.enter_context(running(make_idp(0, audience=AUDIENCE))) for fault in IDP_FAULTS}
        for fault, idp in idps.items():
            idp_control(idp, **({"down": True} if fault == "down" else {"jwks_fault": fault, "delay_s": 2.0}))
        listeners = [routed_listener(fault, wasm_path, single_provider_config(remote_provider(
            idp, timeout_ms=500, wait_for_keys_ms=300, refresh_interval_s=1)), "upstream")
            for fault, idp in idps.items()]
        # Every provider reads its keys through cluster "idp": one Envoy per fault would cost more
        # than it shows, so each listener's provider gets a cluster of its own.
        for listener, idp in zip(listeners, idps.values()):
            rename_cluster(listener, f"idp_{idp.port}")
        clusters = {"upstream": upstream.port, **{f"idp_{idp.port}": idp.port for idp in idps.values()}}
        with envoy_with(start_envoy, "faults-idp-cold", listeners, clusters) as envoy:
            ports = envoy.listener_ports()
            outcomes = Outcomes()
            for fault, idp in idps.items():
                port = ports[fault]
                for kind, token in [("valid", valid(idp)), ("forged", forged(idp)), ("valid", valid(idp))]:
                    reply = outcomes.add(kind, send(port, "GET", PATH, token, timeout_s=10))
                    assert_refused(reply, KEYS_UNAVAILABLE, token)
            outcomes.check({"valid": {(503, "keys_unavailable")}, "forged": {(503, "keys_unavailable")}})
            for idp in idps.values():
                idp_control(idp, down=False, jwks_fault="none")
            for fault, idp in idps.items():
                port = ports[fault]
                wait_for(lambda: send(port, "GET", PATH, valid(idp)).status == 200, 15, f"{fault}: keys after recovery")
                assert_refused(outcomes.add("forged", send(port, "GET", PATH, forged(idp))), BAD_SIGNATURE)
            print(f"\n[faults] idp cold start: {dict(outcomes.counts)}")


def rename_cluster(listener: dict, cluster: str) -> None:
    """Points the listener's provider at `cluster` for its keys (instead of "idp")."""

    def point_at(config: dict) -> None:
        for provider in config["providers"].values():
            provider["jwks"]["remote"]["cluster"] = cluster

    edit_plugin_config(listener, point_at)


def test_an_idp_flapping_under_load_never_blames_or_admits(start_envoy, wasm_path, upstream):
    """Keys refresh every second while the IdP flaps through every fault every 0.4 s, under
    steady traffic: valid clients are served from the last good keys (grace), forged ones are
    refused with 401 bad_signature, nothing else happens."""
    with running(make_idp(0, audience=AUDIENCE)) as idp:
        listener = brickgate_listener("flap", str(wasm_path), single_provider_config(remote_provider(
            idp, timeout_ms=300, refresh_interval_s=1, max_stale_s=60)))
        clusters = {"upstream": upstream.port, "idp": idp.port}
        with envoy_with(start_envoy, "faults-idp-flap", [listener], clusters) as envoy:
            port = envoy.listener_ports()["flap"]
            wait_for(lambda: all(send(port, "GET", PATH, valid(idp)).status == 200 for _ in range(4)), 15, "keys")
            outcomes, stop = Outcomes(), time.monotonic() + 5.0

            def traffic():
                while time.monotonic() < stop:
                    outcomes.add("valid", send(port, "GET", PATH, valid(idp), timeout_s=10))
                    outcomes.add("forged", send(port, "GET", PATH, forged(idp), timeout_s=10))

            workers = [Background(traffic) for _ in range(4)]
            faults = [{"down": True}, {"down": False, "jwks_fault": "reset"}, {"jwks_fault": "garbage"},
                      {"jwks_fault": "slow", "delay_s": 1.0}, {"jwks_fault": "oversized"}, {"jwks_fault": "none"}]
            step = 0
            while time.monotonic() < stop:
                idp_control(idp, **faults[step % len(faults)])
                step += 1
                time.sleep(0.4)
            for worker in workers:
                worker.result(20)
            idp_control(idp, down=False, jwks_fault="none")
            outcomes.check({"valid": {(200, None)}, "forged": {(401, "bad_signature")}})
            fetches = envoy.stats(r"^wasmcustom\.brickgate\.jwks\.fetch")
            print(f"\n[faults] idp flapping: {dict(outcomes.counts)} fetches {fetches}")
            assert sum(outcomes.counts.values()) > 40


def test_keys_rotating_under_load_lose_no_valid_client(start_envoy, wasm_path, upstream):
    """The IdP publishes a second key, signs with it, then retires the first, while four clients
    send steady traffic with tokens of the current key: every valid request passes, forged ones
    never do."""
    with running(make_idp(0, audience=AUDIENCE)) as idp:
        listener = brickgate_listener("rotate", str(wasm_path), single_provider_config(remote_provider(
            idp, refresh_interval_s=1, refetch_min_interval_s=1, wait_for_keys_ms=3000)))
        clusters = {"upstream": upstream.port, "idp": idp.port}
        with envoy_with(start_envoy, "faults-rotation", [listener], clusters) as envoy:
            port = envoy.listener_ports()["rotate"]
            wait_for(lambda: all(send(port, "GET", PATH, valid(idp)).status == 200 for _ in range(4)), 15, "keys")
            outcomes, current, stop = Outcomes(), ["rsa-1"], time.monotonic() + 5.0

            def traffic():
                while time.monotonic() < stop:
                    outcomes.add("valid", send(port, "GET", PATH, valid(idp, current[0]), timeout_s=10))
                    outcomes.add("forged", send(port, "GET", PATH, forged(idp), timeout_s=10))

            workers = [Background(traffic) for _ in range(4)]
            time.sleep(1.0)
            idp_control(idp, jwks_keys=["rsa-1", "rsa-2", "ec-1"])  # publish first …
            time.sleep(0.5)
            current[0] = "rsa-2"  # … then sign with it (tokens in flight may name either)
            idp_control(idp, signing_key="rsa-2")
            time.sleep(1.5)
            idp_control(idp, jwks_keys=["rsa-2", "ec-1"])  # retire the old key
            for worker in workers:
                worker.result(20)
            outcomes.check({"valid": {(200, None)}, "forged": {(401, "bad_signature"), (401, "unknown_kid")}})
            print(f"\n[faults] rotation under load: {dict(outcomes.counts)}")


# --- the workspace token endpoint failing ------------------------------------------------------


@pytest.fixture(scope="module")
def exchange_gateway(start_envoy, wasm_path):
    with (running(make_idp(0, audience=AUDIENCE)) as idp,
          running(make_workspace(0, policies=[dev_policy(idp.issuer, AUDIENCE)], users={"probe": ["all-apis"]})) as workspace):
        provider = remote_provider(idp)
        provider["upstream"] = {"mode": "exchange", "cluster": "workspace", "workspace_url": f"http://127.0.0.1:{workspace.port}",
                                "scopes": ["all-apis"], "timeout_ms": 500}
        config = {"realm": REALM, "providers": {"xch": provider}, "rules": [], "databricks": {"route_catalogue": True}}
        listener = routed_listener("exchange", wasm_path, config, "workspace")
        with envoy_with(start_envoy, "faults-exchange", [listener], {"workspace": workspace.port, "idp": idp.port}) as envoy:
            port = envoy.listener_ports()["exchange"]
            wait_for(lambda: send(port, "GET", PATH, valid(idp, subject="probe")).status == 200, 20, "exchange ready")
            yield idp, workspace, port


@pytest.mark.parametrize("fault", TOKEN_ENDPOINT_FAULTS)
def test_a_failing_token_endpoint_is_a_502_never_a_401(exchange_gateway, fault):
    """Each fault of the workspace's token endpoint: the caller (a new subject each time, so no
    cached Databricks token helps) gets 502 exchange_failed, never 401; forged callers get 401
    bad_signature before any token call; nothing reaches the workspace's API."""
    idp, workspace, port = exchange_gateway
    subjects = [f"fault-{fault}-{i}-{time.monotonic_ns()}" for i in range(3)]
    workspace_control(workspace, users={"probe": ["all-apis"], **{s: ["all-apis"] for s in subjects}},
                      token_endpoint_fault=fault, delay_s=1.5, reset_stats=True)
    try:
        outcomes = Outcomes()
        for subject in subjects:
            token = valid(idp, subject=subject)
            assert_refused(outcomes.add("valid", send(port, "GET", PATH, token, timeout_s=10)), EXCHANGE_FAILED, token)
        assert_refused(outcomes.add("forged", send(port, "GET", PATH, forged(idp))), BAD_SIGNATURE)
        outcomes.check({"valid": {(502, "exchange_failed")}, "forged": {(401, "bad_signature")}})
    finally:
        workspace_control(workspace, token_endpoint_fault="none")


def test_a_flapping_token_endpoint_serves_or_502s_and_nothing_else(exchange_gateway):
    idp, workspace, port = exchange_gateway
    subjects = [f"flap-{i}-{time.monotonic_ns()}" for i in range(40)]
    workspace_control(workspace, users={"probe": ["all-apis"], **{s: ["all-apis"] for s in subjects}}, delay_s=1.0)
    outcomes, stop = Outcomes(), time.monotonic() + 4.0
    background = Background(lambda: [outcomes.add("valid", send(port, "GET", PATH, valid(idp, subject=s), timeout_s=10))
                                     for s in subjects if time.monotonic() < stop])
    try:
        step = 0
        while time.monotonic() < stop:
            workspace_control(workspace, token_endpoint_fault=["500", "none", "reset", "slow", "garbage", "none"][step % 6])
            step += 1
            time.sleep(0.3)
        background.result(30)
    finally:
        workspace_control(workspace, token_endpoint_fault="none")
    outcomes.check({"valid": {(200, None), (502, "exchange_failed")}})
    print(f"\n[faults] token endpoint flapping: {dict(outcomes.counts)}")
    assert outcomes.counts[("valid", 200, None)] > 0


# --- a worker VM killed mid-stream -------------------------------------------------------------


HELD_TIMEOUT_S = 6.0


def crash_headers() -> list[tuple[str, str]]:
    return [(f"x-crash-{i}", "1") for i in range(CRASH_AT_HEADERS)]


def send_headers(port: int, token: str, headers, timeout_s: float = 10) -> Reply:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.putrequest("GET", PATH)
        connection.putheader("Authorization", f"Bearer {token}")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    except (OSError, http.client.HTTPException) as err:  # reset, or no answer in time
        return Reply(0, [], str(err).encode())
    finally:
        connection.close()


@pytest.mark.skipif(NATIVE, reason="a native module has no VM to trap: it runs in Envoy's process, where "
                    "a panic is caught at the ABI and the stream refused (test_native_abi.py)")
@pytest.mark.parametrize("policy", ["FAIL_CLOSED", "FAIL_RELOAD"])
def test_a_worker_vm_killed_mid_stream_admits_nothing(start_envoy, wasm_path, upstream, tmp_path, policy):
    """The only worker's VM traps (a real wasm trap, tests/e2e/wasm_crash.py) while requests are
    held in it waiting for keys. Held requests never reach the upstream; under FAIL_CLOSED every
    later request is refused by Envoy (503), under FAIL_RELOAD the VM comes back and decides
    again: valid tokens pass, forged ones get 401."""
    crashing = crashing_copy(wasm_path, tmp_path / "brickgate-crashing.wasm")
    with running(make_idp(0, audience=AUDIENCE)) as idp:
        idp_control(idp, jwks_fault="slow", delay_s=2.0)
        listener = brickgate_listener("crash", str(crashing), single_provider_config(remote_provider(
            idp, wait_for_keys_ms=4000, timeout_ms=3000)))
        listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"]["failure_policy"] = policy
        with envoy_with(start_envoy, f"faults-crash-{policy.lower()}", [listener],
                        {"upstream": upstream.port, "idp": idp.port}, concurrency=1) as envoy:
            port = envoy.listener_ports()["crash"]
            outcomes, held_outcomes = Outcomes(), Outcomes()
            upstream_requests = lambda: envoy.stats(r"^cluster\.upstream\.upstream_rq_total$").get("cluster.upstream.upstream_rq_total", 0)  # noqa: E731
            sent_upstream = upstream_requests()
            # Held in the VM: the keys are on their way (the IdP answers in 2 s).
            held = [Background(lambda kind=kind, token=token: held_outcomes.add(kind, send_headers(port, token, [], timeout_s=HELD_TIMEOUT_S)))
                    for kind, token in [("valid", valid(idp)), ("forged", forged(idp))] * 2]
            time.sleep(0.5)
            crash = send_headers(port, forged(idp), crash_headers())
            for call in held:
                call.result(HELD_TIMEOUT_S + 5)
            assert upstream_requests() == sent_upstream, "a request held in the dead VM reached the upstream"
            idp_control(idp, jwks_fault="none")
            after = [("valid", valid(idp)), ("forged", forged(idp))] * 3
            if policy == "FAIL_RELOAD":
                wait_for(lambda: send(port, "GET", PATH, valid(idp)).status == 200, 20, "the reloaded VM serving")
            replies = in_parallel([lambda kind=kind, token=token: outcomes.add(kind, send(port, "GET", PATH, token))
                                   for kind, token in after], workers=2)
            stats = {k: v for k, v in envoy.stats(r"^wasm\.").items() if v and "remote_load" not in k}
            print(f"\n[faults] VM crash {policy}: crasher {crash.status}, held {dict(held_outcomes.counts)}, "
                  f"after {dict(outcomes.counts)}, stats {stats}")
            assert crash.status == 503, crash
            assert "proxy_on_request_headers failed: Uncaught RuntimeError: unreachable" in envoy.log_since(0, limit_bytes=50_000_000)
            # Requests held in the VM when it died are never admitted, and never answered by it:
            # Envoy's own stream timeouts end them (docs/LIFECYCLE.md, "A VM that dies").
            assert {status for (_, status, _) in held_outcomes.counts} <= {0, 503}, held_outcomes.counts
            assert held_outcomes.wrong_admits() == 0
            if policy == "FAIL_CLOSED":
                outcomes.check({"valid": {(503, None)}, "forged": {(503, None)}})
                assert stats.get("wasm.brickgate-crash.vm_reload_success", 0) == 0
            else:
                outcomes.check({"valid": {(200, None)}, "forged": {(401, "bad_signature")}})
                for (kind, _), reply in zip(after, replies):
                    if kind == "forged":
                        assert_refused(reply, BAD_SIGNATURE)
                assert stats["wasm.brickgate-crash.vm_reload_success"] >= 1
