"""Shared pieces of the JWKS lifecycle tests: a fresh fake IdP and Envoy per scenario, the IdP's
switches and request timeline, Envoy counters and log lines, and a record of what was measured.

Every wait here is bounded; a scenario's Envoy is stopped before its IdP goes away.
"""

import contextlib
import json
import os
import re
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack import tokens as raw
from devstack.httpbase import running
from devstack.idp import IdpServer, make_idp
from envoy_harness import EnvoyProcess, bootstrap, brickgate_listener
from gateway_client import NO_CHALLENGE, Refusal, Reply, send
from plugin_configs import AUDIENCE, REALM

STAT = "wasmcustom.brickgate."
KEYS_UNAVAILABLE = Refusal(503, "keys_unavailable", "TEMPORARILY_UNAVAILABLE", NO_CHALLENGE)
PATH = "/api/2.0/clusters/list"  # any path: the lifecycle configs have one catch-all rule
MEASUREMENTS = Path(os.environ.get("BRICKGATE_JWKS_MEASUREMENTS", "/tmp/brickgate-jwks-measurements.jsonl"))


# --- the fake IdP ------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_idp(**control):
    """A fake IdP of its own (its switches and counters start clean); `control`: initial switches."""
    with running(make_idp(0, audience=AUDIENCE, **control)) as idp:
        yield idp


def _idp_call(idp: IdpServer, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{idp.issuer}{path}", data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        return json.loads(response.read())


def idp_control(idp: IdpServer, **changes) -> dict:
    """POST /_control, through HTTP like any client would."""
    return _idp_call(idp, "/_control", changes)


def idp_counts(idp: IdpServer) -> dict[str, int]:
    return _idp_call(idp, "/_stats")


def idp_requests(idp: IdpServer, path: str | None = None, since: float = 0.0) -> list[float]:
    """Arrival times (Unix seconds) of the requests the IdP received, optionally for one path."""
    return [entry["t"] for entry in _idp_call(idp, "/_log")["requests"]
            if (path is None or entry["path"] == path) and entry["t"] >= since]


def wait_for_idp_request(idp: IdpServer, path: str, since: float, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        times = idp_requests(idp, path, since)
        if times:
            return times[0]
        assert time.monotonic() < deadline, f"no request for {path} reached the IdP within {timeout_s}s"
        time.sleep(0.05)


def gaps(times: list[float]) -> list[float]:
    return [round(later - earlier, 3) for earlier, later in zip(times, times[1:])]


# --- plugin configurations ---------------------------------------------------------------------


def remote_provider(idp: IdpServer, *, jwks_path: str | None = "/jwks.json", **remote) -> dict:
    """A provider fetching the IdP's JWKS through cluster `idp`; `jwks_path=None` leaves `uri`
    out (discovery). `remote`: the other `jwks.remote` fields."""
    source = {"cluster": "idp", **remote}
    if jwks_path is not None:
        source["uri"] = f"http://127.0.0.1:{idp.port}{jwks_path}"
    return {"issuer": idp.issuer, "audiences": [AUDIENCE], "jwks": {"remote": source}, "algorithms": ["RS256", "ES256"]}


def single_provider_config(provider: dict, name: str = "idp", rule: str = "everything", **top_level) -> dict:
    """One provider, and one catch-all rule that needs its token (plus an anonymous /healthz)."""
    return {
        "realm": REALM,
        "providers": {name: provider},
        "rules": [
            {"name": "health", "match": {"path": "/healthz", "methods": ["GET"]}, "allow_anonymous": True},
            {"name": rule, "match": {"template": "/**"}, "providers": [name]},
        ],
        **top_level,
    }


# --- Envoy -------------------------------------------------------------------------------------


@dataclass
class Scenario:
    envoy: EnvoyProcess
    ports: dict[str, int]
    idp: IdpServer

    @property
    def port(self) -> int:
        """The port of the only (or first) listener."""
        return next(iter(self.ports.values()))

    def counter(self, name: str) -> int:
        full = STAT + name
        return self.envoy.stats(f"^{re.escape(full)}$").get(full, 0)

    def counters(self) -> dict[str, int]:
        return {name[len(STAT):]: value for name, value in self.envoy.stats(f"^{re.escape(STAT)}").items()}

    def log_lines(self, level: str, text: str, since: int = 0) -> list[str]:
        """Envoy log lines at `level` (info, debug, warning, …) that contain `text`."""
        return [line for line in self.envoy.log_since(since, limit_bytes=50_000_000).splitlines()
                if f"][{level}][" in line and text in line]

    def wait_for_counter(self, name: str, at_least: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.counter(name)
            if value >= at_least:
                return value
            assert time.monotonic() < deadline, f"counter {name} stayed at {value} < {at_least} for {timeout_s}s"
            time.sleep(0.05)

    def wait_for_log(self, level: str, text: str, timeout_s: float, since: int = 0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.log_lines(level, text, since)
            if lines:
                return lines[0]
            assert time.monotonic() < deadline, f"no [{level}] log line with {text!r} within {timeout_s}s"
            time.sleep(0.05)


@contextlib.contextmanager
def scenario(start_envoy, wasm_path, upstream, idp: IdpServer, name: str, listeners: dict[str, dict],
             concurrency: int = 2, root_ids: dict[str, str] | None = None):
    """An Envoy of its own serving `listeners` (listener name → plugin config); stopped on exit."""
    built = [brickgate_listener(listener, str(wasm_path), config, **({"root_id": root_ids[listener]} if root_ids else {}))
             for listener, config in listeners.items()]
    envoy = start_envoy(bootstrap(built, upstream.port, idp.port), name, concurrency=concurrency)
    try:
        envoy.wait_ready()
        ports = envoy.listener_ports()
        yield Scenario(envoy, {listener: ports[listener] for listener in listeners}, idp)
    finally:
        envoy.stop()  # before the IdP goes away


# --- tokens and traffic ------------------------------------------------------------------------


def token(idp: IdpServer, key: str = "rsa-1", **header) -> str:
    """A fresh token (new jti, so never a cache hit) for the IdP's issuer, signed with `key`."""
    return raw.mint(raw.claims(idp.issuer, AUDIENCE, scope="clusters:read"), key, header=header or None)


def unknown_kid_token(idp: IdpServer) -> str:
    return token(idp, "rsa-1", kid=f"unknown-{uuid.uuid4().hex[:12]}")


@dataclass
class Timed:
    reply: Reply
    sent: float  # Unix seconds
    seconds: float  # until the answer

    @property
    def reason(self) -> str | None:
        return self.reply.header("x-brickgate-reason")


def timed_send(port: int, bearer: str, timeout_s: float = 15.0) -> Timed:
    sent, start = time.time(), time.monotonic()
    reply = send(port, "GET", PATH, bearer, timeout_s=timeout_s)
    return Timed(reply, sent, time.monotonic() - start)


def wait_until_accepted(port: int, idp: IdpServer, key: str = "rsa-1", timeout_s: float = 15.0) -> None:
    """Until a fresh token signed with `key` is accepted on `port` (keys loaded)."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        last = send(port, "GET", PATH, token(idp, key), timeout_s=10)
        if last.status == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"a {key} token was never accepted within {timeout_s}s; last answer {last.status} "
                         f"{last.header('x-brickgate-reason')}: {last.body[:300]!r}")


def in_parallel(calls, workers: int = 16) -> list:
    """Runs the zero-argument callables on `workers` threads; results in the callables' order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda call: call(), calls))


class Background:
    """Runs `function` on a thread; `result()` waits (bounded) and re-raises its exception."""

    def __init__(self, function, *args):
        self._result, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(function, *args), daemon=True)
        self._thread.start()

    def _run(self, function, *args):
        try:
            self._result = function(*args)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            self._error = err

    def result(self, timeout_s: float):
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"background call still running after {timeout_s}s"
        if self._error is not None:
            raise self._error
        return self._result


# --- what was measured -------------------------------------------------------------------------


def record(case: str, **measured) -> None:
    """Prints a measurement (visible with -s) and appends it to MEASUREMENTS as one JSON line."""
    entry = {"case": case, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **measured}
    line = json.dumps(entry, sort_keys=True)
    print(f"\n[measured] {line}")
    with MEASUREMENTS.open("a") as out:
        out.write(line + "\n")
