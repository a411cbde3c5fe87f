"""Shared pieces of the Databricks e2e tests (test_databricks_*.py): Envoys whose listeners route to
chosen clusters (the fake workspace, an echo that reports the body it received, a closed port),
requests with bodies, the fake workspace's switches and counts, Envoy counters, and leak checks.

Every wait is bounded; every request has a timeout. Each test module starts its own fake IdP, so
the session IdP's counters (which other tests measure) are never disturbed.
"""

import hashlib
import http.client
import json
import re
import socket
import time
import tomllib
import urllib.request
from pathlib import Path

from devstack.httpbase import DevServer, JsonHandler
from devstack.workspace import GRANT_TOKEN_EXCHANGE, WorkspaceServer
from envoy_harness import EnvoyProcess, brickgate_listener, loopback, static_cluster
from gateway_client import Reply

REPO_ROOT = Path(__file__).resolve().parents[2]
STAT = "wasmcustom.brickgate."
FETCH, CACHE_HIT, FAILED = (f"{STAT}upstream_token.{name}" for name in ("fetch", "cache_hit", "failed"))
VERSION = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
GRANT_CLIENT_CREDENTIALS = "client_credentials"
# Anything shaped like a JWS compact serialisation: header.payload.signature, base64url.
JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
REQUEST_TIMEOUT_S = 8.0
READY_TIMEOUT_S = 20.0


# --- Envoy --------------------------------------------------------------------------------------


def routed_listener(name: str, wasm_path, plugin_config: dict, cluster: str) -> dict:
    """brickgate_listener, whose router sends allowed requests to `cluster` instead of `upstream`."""
    listener = brickgate_listener(name, str(wasm_path), plugin_config, root_id=f"bg-{name}")
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for virtual_host in hcm["route_config"]["virtual_hosts"]:
        for route in virtual_host["routes"]:
            route["route"]["cluster"] = cluster
    return listener


def bootstrap_with(listeners: list[dict], clusters: dict[str, int]) -> dict:
    """Loopback admin, the listeners, and one static cluster per name → port."""
    return {
        "admin": {"address": loopback(0)},
        "static_resources": {"listeners": listeners, "clusters": [static_cluster(n, p) for n, p in clusters.items()]},
    }


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def counters(envoy: EnvoyProcess) -> dict[str, int]:
    return envoy.stats(r"^wasmcustom\.brickgate\.")


def delta(before: dict[str, int], after: dict[str, int], name: str) -> int:
    return after.get(name, 0) - before.get(name, 0)


def wait_until_decided(port: int, attempt, timeout_s: float = READY_TIMEOUT_S, in_a_row: int = 4) -> Reply:
    """Repeats `attempt(port) -> Reply` until brickgate answers without waiting on keys, `in_a_row`
    times running (keys are per worker until shared data is read). Returns the last reply."""
    deadline = time.monotonic() + timeout_s
    good, last = 0, None
    while good < in_a_row:
        try:
            last = attempt(port)
            ok = last.header("x-brickgate-reason") not in ("keys_unavailable", "unknown_kid")
        except OSError as err:
            last, ok = err, False
        good = good + 1 if ok else 0
        if good < in_a_row:
            if time.monotonic() > deadline:
                raise RuntimeError(f"listener on port {port} never decided without waiting for keys (last: {last!r})")
            time.sleep(0.1)
    return last


# --- requests -----------------------------------------------------------------------------------


def send_body(port: int, method: str, path: str, token: str | None = None, body: bytes | list[bytes] = b"",
              headers: list[tuple[str, str]] = (), timeout_s: float = REQUEST_TIMEOUT_S,
              chunk_delay_s: float = 0.0) -> Reply:
    """One request with a body on a fresh connection. A list of parts is sent chunked
    (Transfer-Encoding: chunked), `chunk_delay_s` apart; bytes are sent with Content-Length."""
    all_headers = list(headers)
    if token is not None:
        all_headers.append(("Authorization", f"Bearer {token}"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in all_headers:
            connection.putheader(name, value)
        if isinstance(body, list):
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for part in body:
                if chunk_delay_s:
                    time.sleep(chunk_delay_s)
                connection.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            connection.send(b"0\r\n\r\n")
        else:
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def send_json(port: int, path: str, token: str | None, document, **kwargs) -> Reply:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    headers = [("Content-Type", "application/json"), *kwargs.pop("headers", ())]
    return send_body(port, "POST", path, token, body, headers=headers, **kwargs)


def allowed_by_brickgate(reply: Reply) -> bool:
    """brickgate let it through (whatever the upstream then answered): no refusal reason."""
    return reply.header("x-brickgate-reason") is None


# --- echo that reports the body -----------------------------------------------------------------


MAX_ECHO_BODY = 32 * 1024 * 1024


class BodyEchoHandler(JsonHandler):
    """Like devstack/upstream.py's echo, plus the body's length and SHA-256 (chunked bodies decoded)."""

    def read_any_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                total += size
                if total > MAX_ECHO_BODY:
                    raise ValueError("body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_ECHO_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def echo(self) -> None:
        self.server.count(self.path.split("?", 1)[0], self.command)
        try:
            body = self.read_any_body()
        except ValueError as err:
            self.close_connection = True
            self.send_json(413, {"error": str(err)})
            return
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.send_json(200, {"method": self.command, "path": self.path, "headers": headers,
                             "body_length": len(body), "body_sha256": hashlib.sha256(body).hexdigest()})


for _method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
    setattr(BodyEchoHandler, f"do_{_method}", BodyEchoHandler.echo)


def make_body_echo(port: int = 0) -> DevServer:
    return DevServer(("127.0.0.1", port), BodyEchoHandler)


# --- the fake workspace -------------------------------------------------------------------------


def _workspace_call(workspace: WorkspaceServer, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{workspace.port}{path}", data=data,
                                     headers={"Content-Type": "application/json"}, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        return json.loads(response.read())


def workspace_control(workspace: WorkspaceServer, **changes) -> dict:
    """POST /_control (policy, policies, users, token_endpoint_fault, delay_s, reset_stats)."""
    return _workspace_call(workspace, "/_control", changes)


def workspace_stats(workspace: WorkspaceServer) -> dict:
    return _workspace_call(workspace, "/_stats")


def token_calls(stats: dict, subject: str | None = None, grant_type: str = GRANT_TOKEN_EXCHANGE,
                scope: str | None = None) -> int:
    """Token-endpoint requests the workspace counted for (grant type, subject, scope)."""
    return sum(entry["requests"] for entry in stats["by_subject_scope"]
               if entry["grant_type"] == grant_type
               and (subject is None or entry["subject"] == subject)
               and (scope is None or entry["scope"] == scope))


# --- leaks --------------------------------------------------------------------------------------


def exposed_text(reply: Reply) -> str:
    return reply.body.decode(errors="replace") + "\n" + "\n".join(f"{name}: {value}" for name, value in reply.headers)


LEAK_WINDOW = 24  # a run of this many characters of a token segment counts as a leak


def leaked_fragment(text: str, token: str) -> str | None:
    """A piece of the token's payload or signature segment (or of the whole token) found in `text`:
    windows of LEAK_WINDOW characters every 4, so a truncated or partial copy is caught too."""
    for segment in token.split(".")[1:]:
        for start in range(0, max(len(segment) - LEAK_WINDOW, 0) + 1, 4):
            window = segment[start:start + LEAK_WINDOW]
            if len(window) >= 16 and window in text:
                return window
    return None


def assert_no_token_leaked(reply: Reply, *tokens: str) -> None:
    """Neither these tokens (nor any run of their payload or signature segments), nor anything
    JWT-shaped (a Databricks token brickgate obtained), appears in the client's response."""
    text = exposed_text(reply)
    for token in tokens:
        fragment = leaked_fragment(text, token)
        assert fragment is None, f"the response to the client contains part of a token ({fragment!r}…): {text[:600]}"
    found = JWT_LIKE.findall(text)
    assert not found, f"the response to the client contains a JWT-shaped string: {found[0][:40]}…"


# --- measurements -------------------------------------------------------------------------------

MEASUREMENTS = Path("/tmp/brickgate-databricks-measurements.jsonl")


def record(case: str, **measured) -> None:
    """Appends what a test measured (exchange counts, timings), for the run's report."""
    with MEASUREMENTS.open("a") as out:
        out.write(json.dumps({"case": case, "t": round(time.time(), 3), **measured}) + "\n")
