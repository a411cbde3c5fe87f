"""Nothing reaches the upstream before the verdict that covers it (docs/LIFECYCLE.md), through a real
Envoy with HTTP/2 (h2c, DATA frames and trailers) and HTTP/1.1 (chunked, trailers enabled).

Issue 8, findings 1-4: a serving request whose body ends with trailers is still decided by its body;
headers never go upstream before the body's verdict, and carry the verdict's identity; a stream held
for keys is not released by its body callbacks (`allow_on_headers_stop_iteration: true`); a request
held for keys is decided again with its body after a rotation and always answered. Each test checks
what the upstream received (or that it received nothing) and which rule decided.
"""

import json
import socket
import time
import uuid
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import pytest

from databricks_support import bootstrap_with, make_body_echo, routed_listener, wait_until_decided
from devstack import tokens as raw
from devstack.httpbase import running
from devstack.idp import make_idp
from gateway_client import send
from envoy_harness import NATIVE, without_held_bodies
from h2_client import h2_request
from jwks_support import idp_control, in_parallel
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

CHAT = "/serving-endpoints/chat/completions"
FRAUD_TEAM = "fraud-team"
FIRST_BODY_WAIT_MS = 1000


def lifecycle_config(idp, **databricks) -> dict:
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp.issuer, idp.port, jwks={"remote": {
            "cluster": "idp", "uri": f"http://127.0.0.1:{idp.port}/jwks.json", "wait_for_keys_ms": 3000,
            "refetch_min_interval_s": 1}})},
        "rules": [
            # An anonymous candidate must not make other endpoints' requests anonymous (finding 2).
            {"name": "public-demo", "match": {"serving_endpoint": "public-demo"}, "allow_anonymous": True},
            {"name": "fraud", "match": {"serving_endpoint": "fraud"}, "providers": ["idp"],
             "require": {"groups_any": [FRAUD_TEAM]}},
            {"name": "endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
             "require": {"scopes_any": ["serving:{name}"]}},
            {"name": "jobs", "match": {"prefix": "/api/2.1/jobs/"}, "providers": ["idp"]},
        ],
        "databricks": {"route_catalogue": False, "max_body_bytes": 4096, **databricks},
    }


def with_http1_trailers(listener: dict) -> dict:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_protocol_options"] = {"enable_trailers": True}
    return listener


@dataclass
class Lifecycle:
    port: int
    unheld_port: int
    bounded_port: int  # databricks.max_held_body_bytes: BOUNDED_HELD_BYTES
    tokens: TokenFactory
    echo: object
    idp: object


@pytest.fixture(scope="module")
def lifecycle(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        factory = TokenFactory(idp.issuer)
        held = with_http1_trailers(routed_listener("lifecycle", wasm_path, lifecycle_config(idp), "echo"))
        # The same policy in a filter without allow_on_headers_stop_iteration: a host that never
        # delivers the body of a held request must be detected, and the request refused.
        unheld = without_held_bodies(routed_listener("unheld", wasm_path,
                                     lifecycle_config(idp, first_body_wait_ms=FIRST_BODY_WAIT_MS), "echo"))
        bounded = routed_listener("bounded", wasm_path,
                                  lifecycle_config(idp, max_held_body_bytes=BOUNDED_HELD_BYTES), "echo")
        envoy = start_envoy(bootstrap_with([held, unheld, bounded], {"echo": echo.port, "idp": idp.port}),
                            "lifecycle")
        try:
            envoy.wait_ready()
            ports = envoy.listener_ports()
            probe = factory.idp(scope="serving:probe")
            wait_until_decided(ports["lifecycle"], lambda p: send(p, "GET", "/api/2.1/jobs/list", probe))
            yield Lifecycle(ports["lifecycle"], ports["unheld"], ports["bounded"], factory, echo, idp)
        finally:
            envoy.stop()


BOUNDED_HELD_BYTES = 6000  # the bounded listener's VM holds at most this much body at once


def chat_body(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()


def h2_chat(port: int, token: str | None, body: bytes, trailers=(("x-trace", "1"),), extra=()):
    headers = [("content-type", "application/json"), ("x-brickgate-subject", "spoofed"), *extra]
    if token:
        headers.append(("authorization", f"Bearer {token}"))
    middle = len(body) // 2
    return h2_request(port, "POST", CHAT, headers, body_chunks=[body[:middle], body[middle:]],
                      trailers=list(trailers) if trailers is not None else None)


def http1_chunked_with_trailers(port: int, token: str, body: bytes, timeout_s: float = 5.0,
                                trailer_section: bytes = b"x-trace: 1\r\nx-brickgate-subject: spoofed\r\n"
                                ) -> tuple[int, dict, bytes]:
    """POST with Transfer-Encoding: chunked, two chunks and a trailer section; raw socket."""
    middle = len(body) // 2
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nTrailer: x-trace\r\n"
            "X-Brickgate-Subject: spoofed\r\nConnection: close\r\n\r\n").encode()
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:middle], body[middle:]))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head + chunks + b"0\r\n" + trailer_section + b"\r\n")
        data = b""
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    head_part, _, payload = data.partition(b"\r\n\r\n")
    lines = head_part.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        decoded, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line or b"0", 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        payload = decoded
    return status, headers, payload


def upstream_hits(echo) -> int:
    return echo.snapshot_counts().get(CHAT, 0)


# --- finding 1: trailers do not skip the body's verdict -----------------------------------------------


@pytest.mark.parametrize("protocol", ["h2", "http1.1"])
@pytest.mark.parametrize("case", ["wrong_endpoint", "not_json", "no_serving_scope"])
def test_a_body_ending_in_trailers_is_still_decided_by_it(lifecycle, protocol, case):
    outsider = lifecycle.tokens.idp(scope="serving:churn")
    token, body, reason = {
        "wrong_endpoint": (outsider, chat_body("fraud"), "group_not_allowed"),
        "not_json": (outsider, b"model=fraud&x=1", "bad_body"),
        "no_serving_scope": (lifecycle.tokens.idp(scope="clusters:read"), chat_body("churn"), "insufficient_scope"),
    }[case]
    before = upstream_hits(lifecycle.echo)
    if protocol == "h2":
        reply = h2_chat(lifecycle.port, token, body)
        status, reason_header = reply.status, reply.header("x-brickgate-reason")
    else:
        status, headers, _ = http1_chunked_with_trailers(lifecycle.port, token, body)
        reason_header = headers.get("x-brickgate-reason")
    assert (status, reason_header) == ({"bad_body": 400}.get(reason, 403), reason)
    assert upstream_hits(lifecycle.echo) == before, "the upstream received a refused request"


@pytest.mark.parametrize("protocol", ["h2", "http1.1"])
def test_an_allowed_body_with_trailers_reaches_the_upstream_whole_with_verified_identity(lifecycle, protocol):
    token = lifecycle.tokens.idp(scope="serving:churn", subject="alice@example.com")
    body = chat_body("churn")
    if protocol == "h2":
        reply = h2_chat(lifecycle.port, token, body)
        assert reply.status == 200, reply.body
        echoed = reply.json()
    else:
        status, _, payload = http1_chunked_with_trailers(lifecycle.port, token, body)
        assert status == 200, payload
        echoed = json.loads(payload)
    forwarded = echoed["headers"]
    assert forwarded["x-brickgate-rule"] == ["endpoint"]
    assert forwarded["x-brickgate-subject"] == ["alice@example.com"]
    assert echoed["body_length"] == len(body)


@pytest.mark.parametrize("protocol", ["h2", "http1.1"])
def test_a_trailer_that_is_not_utf8_is_refused_while_the_request_is_held(lifecycle, protocol):
    """A trailer brickgate cannot read is one it cannot strip: 400 `bad_header` naming it, and
    nothing reaches the upstream, although token and body would be allowed. The worker's VM
    survives (the SDK's map reader panicked on such bytes)."""
    token = lifecycle.tokens.idp(scope="serving:churn")
    before = upstream_hits(lifecycle.echo)
    if protocol == "h2":
        reply = h2_chat(lifecycle.port, token, chat_body("churn"), trailers=[(b"x-trace", b"caf\xe9")])
        status, reason, body = reply.status, reply.header("x-brickgate-reason"), reply.body
    else:
        status, headers, body = http1_chunked_with_trailers(lifecycle.port, token, chat_body("churn"),
                                                            trailer_section=b"x-trace: caf\xe9\r\n")
        reason = headers.get("x-brickgate-reason")
    assert (status, reason) == (400, "bad_header"), body[:300]
    assert b"request trailer x-trace is not UTF-8" in body, body
    assert upstream_hits(lifecycle.echo) == before, "the upstream received a request with an unreadable trailer"
    for _ in range(4):
        assert h2_chat(lifecycle.port, token, chat_body("churn")).status == 200


# --- finding 2: the headers carry the body's verdict, never an anonymous candidate's ------------------


@pytest.mark.parametrize("protocol", ["h2", "http1.1"])
def test_headers_go_upstream_only_with_the_verdict_of_the_body(lifecycle, protocol):
    token = lifecycle.tokens.idp(scope="serving:churn", subject="bob@example.com")
    if protocol == "h2":
        reply = h2_chat(lifecycle.port, token, chat_body("churn"), trailers=None)
    else:
        reply = send_chat_http1(lifecycle.port, token, chat_body("churn"))
    forwarded = reply.forwarded
    # Decided by the endpoint rule with the caller's identity, not by the anonymous candidate.
    assert forwarded["x-brickgate-rule"] == ["endpoint"]
    assert forwarded["x-brickgate-subject"] == ["bob@example.com"]
    # The anonymous rule still works for its own endpoint, and its request carries no identity.
    anonymous = h2_chat(lifecycle.port, None, chat_body("public-demo"), trailers=None)
    assert "x-brickgate-subject" not in anonymous.forwarded


def send_chat_http1(port: int, token: str, body: bytes):
    from databricks_support import send_json
    return send_json(port, CHAT, token, body, headers=[("X-Brickgate-Subject", "spoofed")])


# --- finding 3: a stream held for keys is not released by its body ------------------------------------


def test_a_stream_waiting_for_keys_is_not_released_by_its_body(lifecycle):
    forged = raw.mint(raw.claims(lifecycle.idp.issuer, AUDIENCE, scope="clusters:read"), "attacker-rsa",
                      header={"kid": f"unknown-{uuid.uuid4().hex[:8]}"})
    idp_control(lifecycle.idp, down=True)
    try:
        before = lifecycle.echo.snapshot_counts().get("/api/2.1/jobs/run-now", 0)
        for body_chunks in ([b'{"job_id": 1}'], [b'{"job_id":', b' 1}']):
            reply = h2_request(lifecycle.port, "POST", "/api/2.1/jobs/run-now",
                               [("authorization", f"Bearer {forged}"), ("x-brickgate-subject", "spoofed")],
                               body_chunks=body_chunks, trailers=[("x-trace", "1")], timeout=10)
            assert reply.status == 401, reply.body
            assert reply.header("x-brickgate-reason") == "unknown_kid"
        assert lifecycle.echo.snapshot_counts().get("/api/2.1/jobs/run-now", 0) == before
    finally:
        idp_control(lifecycle.idp, down=False)


# --- finding 4: a body-decided request held for keys is decided again with its body -------------------


def test_body_decided_requests_signed_with_a_rotated_key_are_all_answered(lifecycle):
    idp_control(lifecycle.idp, jwks_keys=["rsa-1", "ec-1", "rsa-2"])
    # Past the kid-miss refetch interval (1 s here) since any earlier test's refetch.
    time.sleep(1.5)
    try:
        # At once, on both workers: every one waits for the same refetch, then is decided with
        # the body it held (never parked again with nothing to wake it).
        tokens = [raw.mint(raw.claims(lifecycle.idp.issuer, AUDIENCE, scope="serving:churn"), "rsa-2")
                  for _ in range(24)]
        replies = in_parallel([lambda t=t: h2_chat(lifecycle.port, t, chat_body("churn"), trailers=None)
                               for t in tokens], workers=12)
        for reply in replies:
            assert reply.status == 200, (reply.status, reply.body)
            assert reply.forwarded["x-brickgate-rule"] == ["endpoint"]
    finally:
        idp_control(lifecycle.idp, jwks_keys=["rsa-1", "ec-1"])


# --- a host without allow_on_headers_stop_iteration fails closed --------------------------------------


@pytest.mark.skipif(NATIVE, reason="Envoy always delivers a held request's body to a dynamic module")
def test_a_host_that_never_delivers_the_body_is_detected_and_the_request_refused(lifecycle):
    token = lifecycle.tokens.idp(scope="serving:churn")
    before = upstream_hits(lifecycle.echo)
    started = time.monotonic()
    reply = h2_chat(lifecycle.unheld_port, token, chat_body("churn"), trailers=None)
    assert reply.status == 503, reply.body
    assert json.loads(reply.body)["details"][0]["reason"] == "internal_error", "the gateway's fault, not the IdP's keys"
    assert time.monotonic() - started >= FIRST_BODY_WAIT_MS / 1000 * 0.9
    assert upstream_hits(lifecycle.echo) == before
    assert "allow_on_headers_stop_iteration" in json.loads(reply.body)["message"]
    # Requests decided on their headers are not affected.
    plain = send(lifecycle.unheld_port, "GET", "/api/2.1/jobs/list", token)
    assert plain.status == 200


# --- bodies held at once are bounded per VM ---------------------------------------------------------


def _padded_chat(model: str, size: int) -> bytes:
    head = b'{"model": "' + model.encode() + b'", "messages": [], "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_bodies_held_at_once_are_bounded_and_the_stream_over_the_limit_is_503_overloaded(lifecycle):
    """Two streams on one HTTP/2 connection (so one worker, one VM): the first holds 3,500 body
    bytes and stalls; the second would take the VM past `databricks.max_held_body_bytes` (6,000)
    and is refused with 503 `overloaded` and Retry-After, nothing of it upstream. The first then
    completes and is allowed; once it has gone, the same request passes."""
    token = lifecycle.tokens.idp(scope="serving:churn")
    first_body, second_body = _padded_chat("churn", 3500), _padded_chat("churn", 3000)
    before = upstream_hits(lifecycle.echo)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", "gw"), (":path", CHAT),
               ("content-type", "application/json"), ("authorization", f"Bearer {token}")]
    replies: dict[int, dict] = {}
    with socket.create_connection(("127.0.0.1", lifecycle.bounded_port), timeout=10) as sock:
        def pump_until(stream_id: int, deadline_s: float = 10.0) -> dict:
            end = time.monotonic() + deadline_s
            while not replies.get(stream_id, {}).get("ended"):
                assert time.monotonic() < end, f"stream {stream_id} unanswered: {replies}"
                data = sock.recv(65536)
                assert data, "connection closed"
                for event in connection.receive_data(data):
                    reply = replies.setdefault(getattr(event, "stream_id", 0), {"body": b""})
                    if isinstance(event, h2.events.ResponseReceived):
                        reply["headers"] = dict(event.headers)
                    elif isinstance(event, h2.events.DataReceived):
                        reply["body"] += event.data
                        connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        reply["ended"] = True
                sock.sendall(connection.data_to_send())
            return replies[stream_id]

        connection.initiate_connection()
        held = connection.get_next_available_stream_id()
        connection.send_headers(held, headers)
        connection.send_data(held, first_body[:-10])
        sock.sendall(connection.data_to_send())
        time.sleep(0.3)  # the first stream's bytes are read into the VM before the second starts
        over = connection.get_next_available_stream_id()
        connection.send_headers(over, headers)
        connection.send_data(over, second_body, end_stream=True)
        sock.sendall(connection.data_to_send())
        refused = pump_until(over)
        assert refused["headers"][":status"] == "503", refused
        assert refused["headers"]["x-brickgate-reason"] == "overloaded"
        assert refused["headers"]["retry-after"] == "5"
        assert b"databricks.max_held_body_bytes" in refused["body"], refused["body"]
        assert upstream_hits(lifecycle.echo) == before, "the refused stream reached the upstream"

        connection.send_data(held, first_body[-10:], end_stream=True)
        sock.sendall(connection.data_to_send())
        allowed = pump_until(held)
        assert allowed["headers"][":status"] == "200", allowed
        assert json.loads(allowed["body"])["body_length"] == len(first_body)

        again = connection.get_next_available_stream_id()
        connection.send_headers(again, headers)
        connection.send_data(again, second_body, end_stream=True)
        sock.sendall(connection.data_to_send())
        assert pump_until(again)["headers"][":status"] == "200", "the first body was not given back"
