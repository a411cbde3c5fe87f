"""Credentials before bodies, and the body deadline (issue 16, point 5; docs/LIFECYCLE.md), through a
real Envoy over HTTP/1.1 and HTTP/2.

A request whose serving endpoint is named in its body is held for that body only when some rule the
body could select might admit its credential. Streams without a usable credential (none, not a JWT,
a forged signature) are refused at their headers while their body is still open, and hold nothing:
however many of them are open, an authenticated serving request still gets through. The VM's body
budget is set to one small body (`databricks.max_held_body_bytes` = `max_body_bytes` = 4 KiB), so a
single held attacker body would make it answer 503 `overloaded`.

A body that is held must arrive whole within `databricks.body_deadline_ms` of the headers (here 1 s):
a client that stalls gets 408 `body_timeout`, and its bytes go back to the budget.
"""

import json
import socket
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import pytest

from databricks_support import bootstrap_with, make_body_echo, routed_listener, send_body, wait_until_decided
from devstack.httpbase import running
from devstack.idp import make_idp
from h2_client import h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

BUDGET = 4096
CHAT = "/serving-endpoints/chat/completions"
ATTACKERS_PER_KIND = 8
# A partial body each attacker sends and never finishes: most of the budget.
OPEN_BODY = b'{"model": "churn", "pad": "' + b"x" * 3000


def held_config(idp) -> dict:
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [{"name": "endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
                   "require": {"scopes_any": ["serving:{name}"]}}],
        "databricks": {"route_catalogue": False, "max_body_bytes": BUDGET, "max_held_body_bytes": BUDGET,
                       "serving_body_limits": [], "first_body_wait_ms": 1000, "body_deadline_ms": 1000},
    }


@dataclass
class Gateway:
    port: int
    member: str
    attackers: list[tuple[str, str | None, str]]
    echo: object

    def received(self) -> int:
        return self.echo.snapshot_counts().get(CHAT, 0)


def forged(token: str) -> str:
    """The token with another signature of the same length."""
    signed, signature = token.rsplit(".", 1)
    return f"{signed}.{'A' * len(signature)}"


@pytest.fixture(scope="module")
def gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        factory = TokenFactory(idp.issuer)
        listener = routed_listener("held", wasm_path, held_config(idp), "echo")
        envoy = start_envoy(bootstrap_with([listener], {"echo": echo.port, "idp": idp.port}), "held-bodies")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["held"]
            member = factory.idp(subject="member", scope="serving:churn")
            wait_until_decided(port, lambda p: chat_request("http1", p, member))
            attackers = [
                ("no token", None, "missing_token"),
                ("not a JWT", "not-a-jwt", "malformed_token"),
                ("forged signature", forged(factory.idp(subject="mallory", scope="serving:churn")), "bad_signature"),
            ]
            yield Gateway(port, member, attackers, echo)
        finally:
            envoy.stop()


def chat_request(protocol: str, port: int, token: str):
    body = json.dumps({"model": "churn", "messages": [{"role": "user", "content": "hi"}]}).encode()
    if protocol == "http1":
        return send_body(port, "POST", CHAT, token, [body], headers=[("Content-Type", "application/json")],
                         timeout_s=5)
    headers = [("authorization", f"Bearer {token}"), ("content-type", "application/json")]
    return h2_request(port, "POST", CHAT, headers, [body])


def open_h1(port: int, token: str | None, body: bytes) -> socket.socket:
    """Headers (chunked, no Content-Length) and one chunk of the body; the body is never finished."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    lines = [f"POST {CHAT} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
             "Transfer-Encoding: chunked"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + f"{len(body):x}\r\n".encode() + body + b"\r\n")
    return sock


def h1_status(sock: socket.socket) -> tuple[int, bytes]:
    """The status and what arrived of a response on an HTTP/1.1 connection whose request is unfinished."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a response: {received!r}"
        received += chunk
    status = int(received.split(b" ", 2)[1])
    return status, received


class OpenH2:
    """One h2c connection with many request streams whose bodies are left open."""

    def __init__(self, port: int):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                                 header_encoding="utf-8"))
        self.connection.initiate_connection()
        self.status: dict[int, int] = {}
        self.reasons: dict[int, str] = {}
        self.flush()

    def flush(self) -> None:
        data = self.connection.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, token: str | None, body: bytes) -> int:
        stream_id = self.connection.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", f"127.0.0.1:{self.port}"),
                   (":path", CHAT), ("content-type", "application/json")]
        if token is not None:
            headers.append(("authorization", f"Bearer {token}"))
        self.connection.send_headers(stream_id, headers, end_stream=False)
        self.connection.send_data(stream_id, body, end_stream=False)
        self.flush()
        return stream_id

    def wait_for_responses(self, stream_ids: list[int]) -> None:
        while any(stream_id not in self.status for stream_id in stream_ids):
            data = self.sock.recv(65536)
            assert data, "the connection closed before every stream was answered"
            for event in self.connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = dict(event.headers)
                    self.status[event.stream_id] = int(headers[":status"])
                    self.reasons[event.stream_id] = headers.get("x-brickgate-reason", "")
            self.flush()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("protocol", ["http1", "http2"])
def test_unauthenticated_streams_cannot_make_an_authenticated_request_overloaded(gateway, protocol):
    before = gateway.received()
    sockets: list[socket.socket] = []
    # HTTP/2: one connection per kind of attacker, its streams within the connection's flow-control
    # window (64 KiB) so that every partial body is sent.
    connections: list[OpenH2] = []
    try:
        expected: list = []
        for what, token, reason in gateway.attackers:
            connection = OpenH2(gateway.port) if protocol == "http2" else None
            if connection is not None:
                connections.append(connection)
            for _ in range(ATTACKERS_PER_KIND):
                if connection is None:
                    sockets.append(open_h1(gateway.port, token, OPEN_BODY))
                    expected.append((sockets[-1], what, reason))
                else:
                    expected.append((connection, connection.open(token, OPEN_BODY), what, reason))
        # Every attacker is answered while its body is still open: refused at its headers.
        for entry in expected:
            if protocol == "http1":
                sock, what, reason = entry
                status, head = h1_status(sock)
                assert status == 401, f"{what}: {head!r}"
                assert f"x-brickgate-reason: {reason}".encode() in head.lower(), f"{what}: {head!r}"
            else:
                connection, stream_id, what, reason = entry
                connection.wait_for_responses([stream_id])
                assert connection.status[stream_id] == 401, what
                assert connection.reasons[stream_id] == reason, what
        # With every attacker connection still open, a member's serving request gets through.
        reply = chat_request(protocol, gateway.port, gateway.member)
        assert reply.status == 200, reply.body[:400]
        assert gateway.received() == before + 1, "only the member's request reached the upstream"
    finally:
        for sock in sockets:
            sock.close()
        for connection in connections:
            connection.close()


@pytest.mark.parametrize("protocol", ["http1", "http2"])
def test_a_stalled_body_is_refused_at_its_deadline_and_gives_its_bytes_back(gateway, protocol):
    before = gateway.received()
    if protocol == "http1":
        sock = open_h1(gateway.port, gateway.member, OPEN_BODY)
        try:
            status, head = h1_status(sock)
        finally:
            sock.close()
        assert status == 408, head
        assert b"x-brickgate-reason: body_timeout" in head.lower(), head
    else:
        connection = OpenH2(gateway.port)
        try:
            stream_id = connection.open(gateway.member, OPEN_BODY)
            connection.wait_for_responses([stream_id])
            assert connection.status[stream_id] == 408
            assert connection.reasons[stream_id] == "body_timeout"
        finally:
            connection.close()
    assert gateway.received() == before, "the upstream received a stalled body"
    # Its bytes went back to the budget: a member's request fits again.
    reply = chat_request(protocol, gateway.port, gateway.member)
    assert reply.status == 200, reply.body[:400]
