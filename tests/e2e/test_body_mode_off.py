"""`body_rules: off` (docs/LIFECYCLE.md, "When the body cannot be had"): the Wasm filter rendered
WITHOUT `allow_on_headers_stop_iteration` and with no buffer filter after it, in Envoy 1.40, over
HTTP/1.1 and HTTP/2. Every request is decided at its headers, so none waits for a body that the host
will not deliver to paused headers:

- a body-form serving request goes by the path rules (no rule may select it by `model`): allowed at
  once, whole, to the upstream;
- a serving invocation with `Content-Length` is held to the endpoint's limit at its headers;
- one without `Content-Length` (chunked HTTP/1.1, HTTP/2 without the header) is refused at its
  headers with 411 `length_required`, and the upstream gets nothing (under `hold_headers` on this
  host it would wait `first_body_wait_ms` and get 503).
"""

import hashlib
import json

from envoy_harness import without_held_bodies
import pytest

from databricks_support import bootstrap_with, make_body_echo, routed_listener, send_body, wait_until_decided
from devstack.httpbase import running
from devstack.idp import make_idp
from h2_client import h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

CHAT = "/serving-endpoints/chat/completions"
INVOCATIONS = "/serving-endpoints/churn/invocations"
BODY_LIMIT = 64 * 1024


def off_config(idp) -> dict:
    return {
        "realm": REALM,
        "body_rules": "off",
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [{"name": "serving", "match": {"prefix": "/serving-endpoints/"}, "providers": ["idp"]}],
        "databricks": {"route_catalogue": False, "max_body_bytes": BODY_LIMIT, "serving_body_limits": []},
    }


@pytest.fixture(scope="module")
def gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        listener = without_held_bodies(routed_listener("off", wasm_path, off_config(idp), "echo"))
        envoy = start_envoy(bootstrap_with([listener], {"echo": echo.port, "idp": idp.port}), "body-mode-off")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["off"]
            token = TokenFactory(idp.issuer).idp(subject="member", scope="all-apis")
            wait_until_decided(port, lambda p: send_body(p, "POST", CHAT, token, b"{}"))
            yield port, token, echo
        finally:
            envoy.stop()


def document(pad: int = 0) -> bytes:
    return json.dumps({"model": "churn", "inputs": [1], "pad": "x" * pad}).encode()


def post(protocol: str, port: int, path: str, token: str, sent: bytes):
    """HTTP/1.1 with Content-Length, chunked, or HTTP/2 without a content-length header."""
    parts = [sent[:10], sent[10:]]
    if protocol == "http2":
        return h2_request(port, "POST", path, [("authorization", f"Bearer {token}")], parts)
    body = parts if protocol == "http1-chunked" else sent
    return send_body(port, "POST", path, token, body, headers=[("Content-Type", "application/json")])


def received(echo, path: str) -> int:
    return echo.snapshot_counts().get(path, 0)


@pytest.mark.parametrize("protocol", ["http1-content-length", "http1-chunked", "http2"])
def test_a_body_form_request_is_decided_by_path_at_its_headers(gateway, protocol):
    port, token, echo = gateway
    sent = document(pad=20_000)
    before = received(echo, CHAT)
    reply = post(protocol, port, CHAT, token, sent)
    assert reply.status == 200, reply.body[:400]
    echoed = json.loads(reply.body)
    assert received(echo, CHAT) == before + 1
    assert echoed["body_sha256"] == hashlib.sha256(sent).hexdigest()
    # Decided at the headers: the rule is known, and its header is sent.
    assert echoed["headers"]["x-brickgate-rule"] == ["serving"]


@pytest.mark.parametrize("protocol, status, reason", [
    ("http1-content-length", 200, None),
    ("http1-chunked", 411, "length_required"),
    ("http2", 411, "length_required"),
])
def test_an_invocation_needs_a_length_to_be_held_to_its_limit(gateway, protocol, status, reason):
    port, token, echo = gateway
    before = received(echo, INVOCATIONS)
    reply = post(protocol, port, INVOCATIONS, token, document())
    assert reply.status == status, reply.body[:400]
    assert reply.header("x-brickgate-reason") == reason
    assert received(echo, INVOCATIONS) == before + (1 if status == 200 else 0)
    if status == 411:
        assert "Content-Length" in reply.body.decode(), reply.body[:400]


def test_a_declared_length_over_the_limit_is_refused_at_the_headers(gateway):
    port, token, echo = gateway
    before = received(echo, INVOCATIONS)
    reply = post("http1-content-length", port, INVOCATIONS, token, document(pad=BODY_LIMIT))
    assert reply.status == 413 and reply.header("x-brickgate-reason") == "body_too_large", reply.body[:400]
    assert received(echo, INVOCATIONS) == before
