"""Per-endpoint serving rules (`match.serving_endpoint`, docs/CONFIG.md "Rule"), through a real Envoy.

A rule for one endpoint (`fraud-detector`: group `fraud-team`) and one for any endpoint
(`{name}`: scope `serving:{name}`) come before the route catalogue. An endpoint is named in the path
(`POST /serving-endpoints/<name>/invocations`) or, on the OpenAI-compatible routes, in the JSON
body's `model`; both forms must be decided alike. The body is read up to `databricks.max_body_bytes`
and must reach the upstream intact. Pass-through mode; the upstream reports the body it received.
"""

import hashlib
import json
from dataclasses import dataclass

import pytest

from databricks_support import bootstrap_with, make_body_echo, routed_listener, send_body, send_json, wait_until_decided
from devstack.httpbase import running
from devstack.idp import make_idp
from gateway_client import MISSING_TOKEN, NO_CHALLENGE, Refusal, assert_refused, insufficient_scope, send
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

MAX_BODY = 4096
FRAUD = "fraud-detector"
FRAUD_TEAM = "fraud-team"
OPENAI_ROUTES = ["/serving-endpoints/chat/completions", "/serving-endpoints/completions",
                 "/serving-endpoints/embeddings", "/serving-endpoints/responses"]
# The other body-`model` shapes Databricks documents (core/src/databricks/serving.rs cites each page):
# Open Responses, Anthropic Messages, and the AI Gateway's Anthropic and MLflow routes.
OTHER_BODY_ROUTES = ["/serving-endpoints/open-responses", "/serving-endpoints/anthropic/v1/messages",
                     "/ai-gateway/anthropic/v1/messages", "/ai-gateway/mlflow/v1/chat/completions"]
# Gemini-style shapes name the endpoint in the path; Google's body has `contents`, no `model`.
GEMINI_PATHS = ["/serving-endpoints/gemini/v1beta/models/{}:generateContent",
                "/ai-gateway/gemini/v1beta/models/{}:streamGenerateContent"]
GEMINI_BODY = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()
# A body-form request that brickgate never answers is a failure, not a hang (brickgate decides in ms).
BODY_TIMEOUT_S = 3.0

BAD_BODY = Refusal(400, "bad_body", "BAD_REQUEST", NO_CHALLENGE, message_contains=("model",))
TOO_LARGE = Refusal(413, "body_too_large", "BAD_REQUEST", NO_CHALLENGE, message_contains=(str(MAX_BODY),))
GROUP_NOT_ALLOWED = Refusal(403, "group_not_allowed", "PERMISSION_DENIED", "insufficient_scope",
                            message_contains=(FRAUD_TEAM,))


def serving_config(idp) -> dict:
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [
            {"name": "fraud", "match": {"serving_endpoint": FRAUD}, "providers": ["idp"],
             "require": {"groups_any": [FRAUD_TEAM]}},
            {"name": "endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
             "require": {"scopes_any": ["serving:{name}"]}},
        ],
        "databricks": {"route_catalogue": True, "max_body_bytes": MAX_BODY},
    }


def answered(call, *args, **kwargs):
    """send_body / send_json, failing with what an unanswered request means rather than a bare timeout."""
    try:
        return call(*args, timeout_s=BODY_TIMEOUT_S, **kwargs)
    except TimeoutError as err:  # socket.timeout
        pytest.fail(f"no answer within {BODY_TIMEOUT_S}s: brickgate never decided the request ({err}); "
                    "see the Envoy log below (access log `-> 0`, no audit line)")


@dataclass
class ServingGateway:
    port: int
    tokens: TokenFactory


@pytest.fixture(scope="module")
def serving_gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        factory = TokenFactory(idp.issuer)
        listener = routed_listener("serving", wasm_path, serving_config(idp), "echo")
        envoy = start_envoy(bootstrap_with([listener], {"echo": echo.port, "idp": idp.port}), "databricks-serving")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["serving"]
            probe = factory.idp(scope="serving:probe")
            wait_until_decided(port, lambda p: send(p, "POST", "/serving-endpoints/probe/invocations", probe))
            yield ServingGateway(port, factory)
        finally:
            envoy.stop()


def chat_body(model, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "is this transaction fraud?"}], **extra}


def by_path(gateway: ServingGateway, endpoint: str, token: str | None, document=None):
    return answered(send_json, gateway.port, f"/serving-endpoints/{endpoint}/invocations", token,
                    document if document is not None else {"inputs": [[1, 2, 3]]})


def by_body(gateway: ServingGateway, endpoint: str, token: str | None, route: str = OPENAI_ROUTES[0]):
    return answered(send_json, gateway.port, route, token, chat_body(endpoint))


# (case id, endpoint, token claims, expected: ("allow", rule) or a Refusal)
CASES = [
    ("fraud-team-member", FRAUD, {"groups": [FRAUD_TEAM]}, ("allow", "fraud")),
    ("fraud-scope-without-group", FRAUD, {"scope": f"serving:{FRAUD}"}, GROUP_NOT_ALLOWED),
    ("all-apis-without-group", FRAUD, {"scope": "all-apis"}, GROUP_NOT_ALLOWED),  # user rules override the catalogue
    ("other-endpoint-own-scope", "chat-bot", {"scope": "serving:chat-bot"}, ("allow", "endpoint")),
    ("other-endpoint-wrong-scope", "chat-bot", {"scope": f"serving:{FRAUD}"}, insufficient_scope("serving:chat-bot", "chat-bot")),
    ("other-endpoint-group-only", "chat-bot", {"groups": [FRAUD_TEAM]}, insufficient_scope("serving:chat-bot")),
    ("other-endpoint-model-serving", "chat-bot", {"scope": "model-serving"}, insufficient_scope("serving:chat-bot")),
]


def check(reply, expected, token):
    if isinstance(expected, Refusal):
        assert_refused(reply, expected, token)
        return
    _, rule = expected
    assert reply.status == 200 and reply.header("x-brickgate-reason") is None, f"{reply.status}: {reply.body[:400]!r}"
    # The body form lets the headers through before the body picks the rule (docs/DATABRICKS.md).
    assert reply.json()["headers"]["x-brickgate-rule"] in ([rule], ["serving-endpoint"])


@pytest.mark.parametrize(("case", "endpoint", "claims", "expected"), CASES, ids=[c[0] for c in CASES])
def test_endpoint_named_in_the_path(serving_gateway, case, endpoint, claims, expected):
    token = serving_gateway.tokens.idp(subject=f"serving-{case}", **claims)
    check(by_path(serving_gateway, endpoint, token), expected, token)


@pytest.mark.parametrize(("case", "endpoint", "claims", "expected"), CASES, ids=[c[0] for c in CASES])
def test_endpoint_named_in_the_body(serving_gateway, case, endpoint, claims, expected):
    """The same decisions when the endpoint is the OpenAI-style body's `model`."""
    token = serving_gateway.tokens.idp(subject=f"serving-{case}", **claims)
    check(by_body(serving_gateway, endpoint, token), expected, token)


@pytest.mark.parametrize("route", OPENAI_ROUTES)
def test_every_openai_compatible_route_reads_the_model(serving_gateway, route):
    allowed = serving_gateway.tokens.idp(subject="serving-routes", scope="serving:embedder")
    check(by_body(serving_gateway, "embedder", allowed, route), ("allow", "endpoint"), allowed)
    check(by_body(serving_gateway, FRAUD, allowed, route), GROUP_NOT_ALLOWED, allowed)


@pytest.mark.parametrize("route", OTHER_BODY_ROUTES)
def test_every_other_documented_body_shape_reads_the_model(serving_gateway, route):
    allowed = serving_gateway.tokens.idp(subject="serving-shapes", scope="serving:embedder ai-gateway")
    check(by_body(serving_gateway, "embedder", allowed, route), ("allow", "endpoint"), allowed)
    check(by_body(serving_gateway, FRAUD, allowed, route), GROUP_NOT_ALLOWED, allowed)


@pytest.mark.parametrize("template", GEMINI_PATHS)
def test_gemini_shapes_name_the_endpoint_in_the_path(serving_gateway, template):
    """No body `model` needed: the per-endpoint rule decides, and the body passes untouched."""
    token = serving_gateway.tokens.idp(subject="serving-gemini", scope="serving:gemini-bot ai-gateway")
    reply = answered(send_body, serving_gateway.port, "POST", template.format("gemini-bot"), token, GEMINI_BODY,
                     headers=[("Content-Type", "application/json")])
    assert reply.status == 200, reply.body[:400]
    assert reply.json()["headers"]["x-brickgate-rule"] == ["endpoint"]
    assert reply.json()["body_sha256"] == hashlib.sha256(GEMINI_BODY).hexdigest()
    refused = answered(send_body, serving_gateway.port, "POST", template.format(FRAUD), token, GEMINI_BODY,
                       headers=[("Content-Type", "application/json")])
    assert_refused(refused, GROUP_NOT_ALLOWED, token)


BAD_BODIES = [
    pytest.param(json.dumps({"messages": []}).encode(), id="no-model"),
    pytest.param(json.dumps({"model": 7, "messages": []}).encode(), id="model-not-a-string"),
    pytest.param(json.dumps({"model": "../fraud-detector"}).encode(), id="model-not-an-endpoint-name"),
    pytest.param(json.dumps([{"model": FRAUD}]).encode(), id="json-array"),
    pytest.param(b"model=fraud-detector", id="not-json"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_body_without_a_usable_model_is_refused(serving_gateway, body):
    token = serving_gateway.tokens.idp(subject="serving-bad-body", scope="all-apis", groups=[FRAUD_TEAM])
    reply = answered(send_body, serving_gateway.port, "POST", OPENAI_ROUTES[0], token, body,
                     headers=[("Content-Type", "application/json")])
    assert_refused(reply, BAD_BODY, token)


def test_request_without_body_is_a_bad_body(serving_gateway):
    token = serving_gateway.tokens.idp(subject="serving-bad-body", scope="all-apis")
    assert_refused(send(serving_gateway.port, "POST", OPENAI_ROUTES[0], token), BAD_BODY, token)


def test_body_over_max_body_bytes_is_refused(serving_gateway):
    token = serving_gateway.tokens.idp(subject="serving-large", scope="serving:chat-bot")
    padding = "x" * (MAX_BODY + 100)
    reply = answered(send_json, serving_gateway.port, OPENAI_ROUTES[0], token, chat_body("chat-bot", padding=padding))
    assert_refused(reply, TOO_LARGE, token)


def test_chunked_body_over_max_body_bytes_is_refused(serving_gateway):
    token = serving_gateway.tokens.idp(subject="serving-large", scope="serving:chat-bot")
    parts = [b'{"model": "chat-bot", "padding": "'] + [b"y" * 1000] * 6 + [b'"}']
    reply = answered(send_body, serving_gateway.port, "POST", OPENAI_ROUTES[0], token, parts,
                     headers=[("Content-Type", "application/json")])
    assert_refused(reply, TOO_LARGE, token)


def test_allowed_body_reaches_the_upstream_intact(serving_gateway):
    """Read to find `model`, then forwarded byte for byte: same length, same SHA-256."""
    token = serving_gateway.tokens.idp(subject="serving-intact", scope="serving:chat-bot")
    body = json.dumps(chat_body("chat-bot", padding="é" * 900, temperature=0.2), ensure_ascii=False).encode()
    assert len(body) <= MAX_BODY
    reply = answered(send_body, serving_gateway.port, "POST", OPENAI_ROUTES[0], token, body,
                     headers=[("Content-Type", "application/json")])
    assert reply.status == 200, reply.body[:400]
    echo = reply.json()
    assert echo["body_length"] == len(body) and echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["headers"]["x-brickgate-rule"] in (["endpoint"], ["serving-endpoint"])


def test_chunked_body_is_read_to_the_end_and_forwarded_intact(serving_gateway):
    """A body in several chunks, the model in the first: decided once the whole body is there."""
    token = serving_gateway.tokens.idp(subject="serving-chunked", scope="serving:chat-bot")
    parts = [b'{"model": "chat-bot", "messages": [', b'{"role": "user", "content": "hi"}', b"]}"]
    reply = answered(send_body, serving_gateway.port, "POST", OPENAI_ROUTES[0], token, parts,
                     headers=[("Content-Type", "application/json")], chunk_delay_s=0.1)
    assert reply.status == 200, reply.body[:400]
    whole = b"".join(parts)
    assert reply.json()["body_length"] == len(whole) and reply.json()["body_sha256"] == hashlib.sha256(whole).hexdigest()


def test_path_form_body_reaches_the_upstream_intact(serving_gateway):
    """/invocations names its endpoint in the path: the body is not needed, and passes untouched."""
    token = serving_gateway.tokens.idp(subject="serving-intact", scope="serving:chat-bot")
    body = b'{"dataframe_records": [{"amount": 12.5}]}' * 50
    reply = answered(send_body, serving_gateway.port, "POST", "/serving-endpoints/chat-bot/invocations", token, body,
                     headers=[("Content-Type", "application/json")])
    assert reply.status == 200, reply.body[:400]
    assert reply.json()["body_length"] == len(body) and reply.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_body_form_without_token_is_missing_token(serving_gateway):
    reply = answered(send_json, serving_gateway.port, OPENAI_ROUTES[0], None, chat_body("chat-bot"))
    assert_refused(reply, MISSING_TOKEN)
