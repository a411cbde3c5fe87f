"""Per-endpoint request body limits (`databricks.serving_body_limits`, docs/CONFIG.md), through a
real Envoy over HTTP/1.1 and HTTP/2.

Databricks accepts 16 MB per serving request, 4 MB for foundation-model (`databricks-*`) and agent
(`agents_*`) endpoints. brickgate refuses a larger body itself, 413 `body_too_large` naming the
endpoint kind and the setting, and the upstream never receives it: decided from `Content-Length`
when the endpoint is in the path, else once the body (and, on the OpenAI-compatible routes, its
`model`) has been read. `agents_` keeps Databricks' 4 MiB; `databricks-` is lowered to 8 KiB so
the read-the-body cases stay small. The upstream counts every request it receives.
"""

import http.client
import json
from dataclasses import dataclass

import pytest

from databricks_support import bootstrap_with, make_body_echo, routed_listener, send_body, wait_until_decided
from devstack.httpbase import running
from devstack.idp import make_idp
from gateway_client import NO_CHALLENGE, Refusal, Reply, assert_refused, send
from h2_client import h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

SMALL = 8192
AGENT_LIMIT = 4 << 20
AGENT = "agents_main-rag-bot"
FOUNDATION = "databricks-llama"
CHAT = "/serving-endpoints/chat/completions"


def limits_config(idp) -> dict:
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [{"name": "endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
                   "require": {"scopes_any": ["serving:{name}"]}}],
        "databricks": {"route_catalogue": True, "serving_body_limits": [
            {"endpoint_prefix": "databricks-", "max_body_bytes": SMALL},
            {"endpoint_prefix": "agents_", "max_body_bytes": AGENT_LIMIT},
        ]},
    }


@dataclass
class Gateway:
    port: int
    token: str
    echo: object

    def received(self, path: str) -> int:
        return self.echo.snapshot_counts().get(path, 0)


@pytest.fixture(scope="module")
def gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        factory = TokenFactory(idp.issuer)
        listener = routed_listener("limits", wasm_path, limits_config(idp), "echo")
        envoy = start_envoy(bootstrap_with([listener], {"echo": echo.port, "idp": idp.port}), "serving-body-limits")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["limits"]
            token = factory.idp(subject="limits", scope=f"serving:{AGENT} serving:{FOUNDATION} serving:probe")
            wait_until_decided(port, lambda p: send(p, "POST", "/serving-endpoints/probe/invocations", token))
            yield Gateway(port, token, echo)
        finally:
            envoy.stop()


def too_large(*naming: str) -> Refusal:
    return Refusal(413, "body_too_large", "BAD_REQUEST", NO_CHALLENGE, message_contains=naming)


def invocations(endpoint: str) -> str:
    return f"/serving-endpoints/{endpoint}/invocations"


def chat(model: str, size: int) -> bytes:
    """A chat body of exactly `size` bytes naming `model`."""
    head = json.dumps({"model": model, "messages": [], "pad": ""}).encode()[:-2]
    return head + b"x" * (size - len(head) - 2) + b'"}'


def h1_headers_only(port: int, path: str, token: str, length: int) -> Reply:
    """Headers announcing `length` bytes and no body yet: a refusal decided on the headers
    arrives anyway, before a byte of the body is sent."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.putrequest("POST", path, skip_accept_encoding=True)
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    try:
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def over_http(protocol: str, gateway: Gateway, path: str, body: bytes, chunked: bool):
    """One request; `chunked` sends the body without a Content-Length (HTTP/1.1 chunked, HTTP/2 frames)."""
    if protocol == "http1":
        return send_body(gateway.port, "POST", path, gateway.token,
                         [body[:len(body) // 2], body[len(body) // 2:]] if chunked else body,
                         headers=[("Content-Type", "application/json")], timeout_s=5)
    headers = [("authorization", f"Bearer {gateway.token}"), ("content-type", "application/json")]
    if not chunked:
        headers.append(("content-length", str(len(body))))
    return h2_request(gateway.port, "POST", path, headers, [body[:len(body) // 2], body[len(body) // 2:]])


PROTOCOLS = ["http1", "http2"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_agent_body_over_4_mib_is_refused_on_its_headers(gateway, protocol):
    path = invocations(AGENT)
    before = gateway.received(path)
    if protocol == "http1":
        reply = h1_headers_only(gateway.port, path, gateway.token, AGENT_LIMIT + 1)
    else:
        headers = [("authorization", f"Bearer {gateway.token}"), ("content-length", str(AGENT_LIMIT + 1))]
        # Sends the first 64 KiB only if the refusal has not arrived by then.
        reply = h2_request(gateway.port, "POST", path, headers, [b"x" * 65536, b"x" * (AGENT_LIMIT + 1 - 65536)])
    assert_refused(reply, too_large("agent endpoint", AGENT, "databricks.serving_body_limits[1]", str(AGENT_LIMIT)),
                   gateway.token)
    assert gateway.received(path) == before, "the upstream received a refused request"


# (case, path, body, chunked, refused naming or None)
CASES = [
    ("foundation path form, declared", invocations(FOUNDATION), b"x" * (SMALL + 1), False,
     ("foundation-model endpoint", "databricks.serving_body_limits[0]")),
    ("foundation path form, unknown length", invocations(FOUNDATION), b"x" * (SMALL + 1), True,
     ("foundation-model endpoint", "databricks.serving_body_limits[0]")),
    ("foundation body form", CHAT, chat(FOUNDATION, SMALL + 1), False,
     ("foundation-model endpoint", FOUNDATION, "databricks.serving_body_limits[0]")),
    ("foundation body form, unknown length", CHAT, chat(FOUNDATION, SMALL + 1), True,
     ("foundation-model endpoint", FOUNDATION)),
    ("foundation path form at the limit", invocations(FOUNDATION), b"x" * SMALL, True, None),
    ("foundation body form at the limit", CHAT, chat(FOUNDATION, SMALL), False, None),
    ("agent under its limit", invocations(AGENT), b"x" * (SMALL + 1), True, None),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case,path,body,chunked,refused", CASES, ids=[c[0] for c in CASES])
def test_bodies_are_limited_per_endpoint_kind(gateway, protocol, case, path, body, chunked, refused):
    before = gateway.received(path)
    reply = over_http(protocol, gateway, path, body, chunked)
    if refused is None:
        assert reply.status == 200, reply.body[:400]
        echo = json.loads(reply.body)
        assert echo["body_length"] == len(body), "the body did not reach the upstream whole"
        assert gateway.received(path) == before + 1
    else:
        assert_refused(reply, too_large(*refused), gateway.token)
        assert gateway.received(path) == before, "the upstream received a refused body"
