"""`body_rules: buffer_filter` (issue 18, finding 1; docs/LIFECYCLE.md): body-decided rules with the
Wasm filter rendered WITHOUT `allow_on_headers_stop_iteration`, as Istio's `WasmPlugin` and Envoy
Gateway's `EnvoyExtensionPolicy` render it, and Envoy's buffer filter right after brickgate, before
the router. The exact Istio and Envoy Gateway renderings are tested by test_deploy.py; this file
proves the design itself in Envoy 1.40, over HTTP/1.1 (Content-Length and chunked) and HTTP/2 (with
trailers):

- brickgate settles every header change at the headers (identity headers, the Databricks token)
  and lets them on to the buffer filter; its body callbacks still see every byte, and the verdict
  is given at the end of the body (or at the trailers);
- allowed: the upstream receives the headers with the identity headers, and the whole body;
- refused by the endpoint rule the body selects (403), or over the endpoint's body limit (413),
  after the headers went on: the client gets the local reply and the upstream receives NOTHING;
- no token: refused at the headers (401), nothing upstream;
- a caller whose Databricks token is exchanged: the headers wait for the token (brickgate pauses
  them, so Envoy holds the body back), then go on with it, and the body still reaches brickgate.

Without the buffer filter the same brickgate configuration would let the headers and the body's
first chunks reach the upstream before a refusal; brickgate cannot see the filter chain, so this
is not detectable from inside (docs/LIFECYCLE.md): the operator must render the buffer filter.
"""

import hashlib
import json

import pytest

from databricks_support import bootstrap_with, make_body_echo, routed_listener, send_body, wait_until_decided
from devstack.httpbase import running
from devstack.idp import make_idp
from devstack.workspace import FederationPolicy, make_workspace
from h2_client import h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

from envoy_harness import NATIVE as _NATIVE_FORM

pytestmark = pytest.mark.skipif(_NATIVE_FORM, reason="the mesh renderings (Istio WasmPlugin, Envoy Gateway Wasm) are of the Wasm form")

CHAT = "/serving-endpoints/chat/completions"
BODY_LIMIT = 64 * 1024
# Envoy's buffer filter must hold the largest body brickgate allows (16 MiB for serving) and more.
BUFFER_FILTER_MAX_BYTES = 17 * 1024 * 1024
BUFFER_FILTER = {
    "name": "envoy.filters.http.buffer",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                     "max_request_bytes": BUFFER_FILTER_MAX_BYTES},
}
PROTOCOLS = ["http1-content-length", "http1-chunked", "http2-trailers"]


def buffered_config(idp, upstream: dict | None = None) -> dict:
    provider = idp_provider(idp.issuer, idp.port)
    if upstream is not None:
        provider["upstream"] = upstream
    return {
        "realm": REALM,
        "body_rules": "buffer_filter",
        "providers": {"idp": provider},
        "rules": [{"name": "endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
                   "require": {"scopes_any": ["serving:{name}"]}}],
        "databricks": {"route_catalogue": False, "max_body_bytes": BODY_LIMIT, "serving_body_limits": []},
    }


def as_the_mesh_renders(listener: dict) -> dict:
    """The Wasm filter without `allow_on_headers_stop_iteration`, then the buffer filter, then the
    router."""
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    wasm, router = hcm["http_filters"]
    del wasm["typed_config"]["config"]["allow_on_headers_stop_iteration"]
    hcm["http_filters"] = [wasm, BUFFER_FILTER, router]
    return listener


@pytest.fixture(scope="module")
def mesh(start_envoy, wasm_path):
    with (running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo,
          running(make_workspace(0, policies=[FederationPolicy(idp.issuer, (AUDIENCE,))],
                                 users={"exchanged": ["all-apis"]})) as workspace):
        exchange = {"mode": "exchange", "cluster": "workspace", "scopes": ["all-apis"],
                    "workspace_url": f"http://127.0.0.1:{workspace.port}"}
        listeners = [as_the_mesh_renders(routed_listener("buffered", wasm_path, buffered_config(idp), "echo")),
                     as_the_mesh_renders(routed_listener("exchange", wasm_path, buffered_config(idp, exchange), "echo"))]
        envoy = start_envoy(bootstrap_with(listeners, {"echo": echo.port, "idp": idp.port,
                                                       "workspace": workspace.port}), "body-mode-buffered")
        try:
            envoy.wait_ready()
            ports = envoy.listener_ports()
            tokens = TokenFactory(idp.issuer)
            probe = tokens.idp(subject="probe", scope="serving:churn")
            wait_until_decided(ports["buffered"], lambda p: chat("http1-content-length", p, probe, body("churn")))
            yield ports, tokens, echo, workspace
        finally:
            envoy.stop()


def body(model: str, pad: int = 0) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "pad": "x" * pad}).encode()


def chat(protocol: str, port: int, token: str | None, document: bytes):
    """The request, its body in three parts (chunked and HTTP/2) so that brickgate reads it in
    several callbacks; HTTP/2 ends it with trailers."""
    parts = [document[:10], document[10:-5], document[-5:]]
    if protocol == "http2-trailers":
        headers = [("content-type", "application/json")]
        if token is not None:
            headers.append(("authorization", f"Bearer {token}"))
        return h2_request(port, "POST", CHAT, headers, parts, trailers=[("x-trace", "1")])
    sent = parts if protocol == "http1-chunked" else document
    return send_body(port, "POST", CHAT, token, sent, headers=[("Content-Type", "application/json")],
                     chunk_delay_s=0.05 if protocol == "http1-chunked" else 0.0)


def upstream_received(echo) -> int:
    return echo.snapshot_counts().get(CHAT, 0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_allowed_body_form_request_reaches_the_upstream_whole_with_identity(mesh, protocol):
    ports, tokens, echo, _ = mesh
    token = tokens.idp(subject="member", scope="serving:churn")
    document = body("churn", pad=20_000)
    before = upstream_received(echo)
    reply = chat(protocol, ports["buffered"], token, document)
    assert reply.status == 200, reply.body[:400]
    received = json.loads(reply.body)
    assert upstream_received(echo) == before + 1
    assert received["body_length"] == len(document)
    assert received["body_sha256"] == hashlib.sha256(document).hexdigest()
    assert received["headers"]["x-brickgate-subject"] == ["member"]
    # Decided by the body, after the headers went on: the rule name cannot be sent.
    assert "x-brickgate-rule" not in received["headers"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_the_body_refuses_is_answered_and_the_upstream_gets_nothing(mesh, protocol):
    ports, tokens, echo, _ = mesh
    token = tokens.idp(subject="member", scope="serving:churn")
    before = upstream_received(echo)
    reply = chat(protocol, ports["buffered"], token, body("fraud"))
    assert reply.status == 403, reply.body[:400]
    assert reply.header("x-brickgate-reason") == "insufficient_scope"
    assert upstream_received(echo) == before, "the upstream received a refused request"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_body_over_the_endpoint_limit_is_refused_and_the_upstream_gets_nothing(mesh, protocol):
    ports, tokens, echo, _ = mesh
    token = tokens.idp(subject="member", scope="serving:churn")
    before = upstream_received(echo)
    reply = chat(protocol, ports["buffered"], token, body("churn", pad=BODY_LIMIT))
    assert reply.status == 413, reply.body[:400]
    assert reply.header("x-brickgate-reason") == "body_too_large"
    assert upstream_received(echo) == before, "the upstream received a refused request"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_without_a_token_is_refused_at_its_headers(mesh, protocol):
    ports, _, echo, _ = mesh
    before = upstream_received(echo)
    reply = chat(protocol, ports["buffered"], None, body("churn"))
    assert reply.status == 401, reply.body[:400]
    assert reply.header("x-brickgate-reason") == "missing_token"
    assert upstream_received(echo) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_exchanged_token_is_set_at_the_headers_and_the_body_still_decides(mesh, protocol):
    """The headers wait for the Databricks token (paused: Envoy holds the body back), then go on;
    the body reaches brickgate after that, and decides."""
    ports, tokens, echo, _ = mesh
    token = tokens.idp(subject="exchanged", scope="serving:churn")
    before = upstream_received(echo)
    reply = wait_until_decided(ports["exchange"], lambda p: chat(protocol, p, token, body("churn")), in_a_row=1)
    assert reply.status == 200, reply.body[:400]
    authorization = json.loads(reply.body)["headers"]["authorization"]
    assert authorization != [f"Bearer {token}"], "the client's token went upstream in exchange mode"
    refused = chat(protocol, ports["exchange"], token, body("fraud"))
    assert refused.status == 403, refused.body[:400]
    assert upstream_received(echo) == before + 1
