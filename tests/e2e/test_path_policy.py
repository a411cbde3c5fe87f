"""One canonical path (docs/PATHS.md; issue 8, findings 7 and 8), through a real Envoy over HTTP/1.1.

Each path from finding 7 could name one route to brickgate and another to an upstream: `;` path
parameters, backslashes, letter case, dot-ended segments, extension suffixes. Each is sent with a
token that would pass the looser reading, and the test asserts who refused it (brickgate, with its
`x-brickgate-reason`, or Envoy's own codec before brickgate ran) and that the upstream never received
it; or, for forms brickgate resolves itself, exactly what the upstream received and which rule
decided. The listener uses Envoy's defaults (no `normalize_path`, no `merge_slashes`, escaped
slashes kept), as the shipped envoy/envoy.yaml does, so brickgate sees the path as sent.
"""

import json
import socket
from dataclasses import dataclass

import pytest

from databricks_support import bootstrap_with, make_body_echo, routed_listener, send_json, wait_until_decided
from devstack.httpbase import running
from devstack.idp import make_idp
from h2_client import StreamReset, h2_request
from gateway_client import NO_CHALLENGE, Refusal, assert_refused, send
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

FRAUD = "fraud-detector"
FRAUD_TEAM = "fraud-team"
CHAT = "/serving-endpoints/chat/completions"


def bad_path(*words: str) -> Refusal:
    return Refusal(400, "bad_path", "BAD_REQUEST", NO_CHALLENGE, message_contains=words)


def bad_body(*words: str) -> Refusal:
    return Refusal(400, "bad_body", "BAD_REQUEST", NO_CHALLENGE, message_contains=words)


ROUTE_DISABLED = Refusal(403, "route_disabled", "PERMISSION_DENIED", NO_CHALLENGE,
                         message_contains=("databricks.enable_route_classes",))


def policy_config(idp) -> dict:
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [
            {"name": "fraud", "match": {"serving_endpoint": FRAUD}, "providers": ["idp"],
             "require": {"groups_any": [FRAUD_TEAM]}},
            {"name": "endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
             "require": {"scopes_any": ["serving:{name}"]}},
        ],
        "databricks": {"route_catalogue": True},
    }


@dataclass
class PolicyGateway:
    port: int
    echo: object  # the upstream: counts every request it receives, by path
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def policy_gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        factory = TokenFactory(idp.issuer)
        listener = routed_listener("paths", wasm_path, policy_config(idp), "echo")
        envoy = start_envoy(bootstrap_with([listener], {"echo": echo.port, "idp": idp.port}), "path-policy")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["paths"]
            probe = factory.idp(scope="clusters:read")
            wait_until_decided(port, lambda p: send(p, "GET", "/api/2.0/clusters/list", probe))
            tokens = {
                "all-apis": factory.idp(subject="paths-admin", scope="all-apis"),
                "secrets:read": factory.idp(subject="paths-secrets-reader", scope="secrets:read"),
                "outsider": factory.idp(subject="paths-outsider", scope=f"serving:{FRAUD.upper()} serving:churn"),
            }
            yield PolicyGateway(port, echo, tokens)
        finally:
            envoy.stop()


# (id, method, path as sent, token name or None, expected)
# expected: a Refusal from brickgate; ("envoy", status) when Envoy's codec refuses it first;
#           ("forwarded", upstream path, rule) when allowed.
ATTACKS = [
    # `;` path parameters: not the anonymous OIDC rule, not around route_disabled.
    ("oidc-dotdot-semicolon", "POST", "/oidc/..;/api/2.0/token/create", None, bad_path("path parameter separator ;")),
    ("oidc-dotdot-semicolon-with-token", "POST", "/oidc/..;/api/2.0/token/create", "all-apis", bad_path(";")),
    ("oidc-escaped-dotdot-semicolon", "POST", "/oidc/%2e%2e;/api/2.0/token/create", None, bad_path("%2E")),
    ("oidc-dotdot-escaped-semicolon", "POST", "/oidc/..%3B/api/2.0/token/create", None,
     bad_path("escaped ?, # or ;")),
    ("token-semicolon", "POST", "/api/2.0/token;/create", "all-apis", bad_path("path parameter separator ;")),
    ("token-jsessionid", "POST", "/api/2.0/token;jsessionid=1/create", "all-apis", bad_path(";")),
    ("token-escaped-semicolon", "POST", "/api/2.0/token%3B/create", "all-apis", bad_path("escaped ?, # or ;")),
    # Backslashes, raw as escaped.
    ("oidc-dotdot-backslash", "POST", "/oidc/..\\api/2.0/token/create", None, bad_path("backslash")),
    ("token-backslash", "POST", "/api/2.0/token\\create", "all-apis", bad_path("backslash")),
    ("token-escaped-backslash", "POST", "/api/2.0/token%5Ccreate", "all-apis", bad_path("escaped backslash %5C")),
    # Letter case that would change the rule.
    ("token-capitalised", "POST", "/api/2.0/Token/create", "all-apis", bad_path("letter case", "databricks:default")),
    ("token-upper", "POST", "/API/2.0/TOKEN/CREATE", "all-apis", bad_path("letter case")),
    ("oidc-upper", "POST", "/OIDC/v1/token", None, bad_path("letter case")),
    ("scim-me-lower", "GET", "/api/2.0/preview/scim/v2/me", "secrets:read", bad_path("letter case")),
    # Dot- and space-ended segments, where stripping them changes the rule.
    ("token-trailing-dot", "POST", "/api/2.0/token./create", "all-apis", bad_path("trailing dot or space")),
    ("token-trailing-dots", "POST", "/api/2.0/token../create", "all-apis", bad_path("trailing dot or space")),
    ("triple-dot-segment", "POST", "/api/2.0/.../token/create", "all-apis", bad_path("only dots and spaces")),
    ("token-trailing-space", "POST", "/api/2.0/token%20/create", "all-apis", bad_path("trailing dot or space")),
    # Escaped `?` and `#` read as the query or fragment by a server that decodes first (issue 16).
    ("secret-get-escaped-question-mark", "GET", "/api/2.0/secrets/get%3F", "secrets:read",
     bad_path("escaped ?, # or ;", "databricks:secrets:read")),
    ("secret-get-escaped-hash", "GET", "/api/2.0/secrets/get%23x", "secrets:read", bad_path("escaped ?, # or ;")),
    # Extension suffixes: a secret's value is never a `:read`.
    ("secret-get-json", "GET", "/api/2.0/secrets/get.json", "secrets:read", bad_path("extension suffix")),
    ("secret-get-escaped-dot", "GET", "/api/2.0/secrets/get%2Ejson", "secrets:read", bad_path("escaped dot %2E")),
    ("token-list-json", "GET", "/api/2.0/token/list.json", "all-apis", bad_path("extension suffix")),
    # Escapes that change structure, double encoding, overlong UTF-8, look-alikes.
    ("escaped-slash", "GET", "/api/2.0/secrets%2Fget", "secrets:read", bad_path("escaped slash %2F")),
    ("double-encoded-dotdot", "GET", "/api/2.0/clusters/%252e%252e/secrets/get", "secrets:read", bad_path("%25")),
    ("double-encoded-file-name", "PUT", "/api/2.0/fs/files/Volumes/c/s/v/100%2541.csv", "all-apis",
     bad_path("double encoding")),
    ("overlong-dot", "GET", "/api/2.0/clusters/%C0%AE%C0%AE/secrets/get", "secrets:read", bad_path("UTF-8")),
    ("fullwidth-dots", "GET", "/api/2.0/clusters/%EF%BC%8E%EF%BC%8E/secrets/get", "secrets:read", bad_path("U+FF0E")),
    ("kelvin-sign", "POST", "/api/2.0/to%E2%84%AAen/create", "all-apis", bad_path("U+212A")),
    # Forms brickgate resolves itself: decided by the resolved path's rule, which the upstream receives.
    ("oidc-dotdot", "POST", "/oidc/../api/2.0/token/create", None, ROUTE_DISABLED),
    ("secrets-list-read", "GET", "/api/2.0/secrets/list", "secrets:read",
     ("forwarded", "/api/2.0/secrets/list", "databricks:secrets:read")),
    ("oidc-anonymous", "POST", "/oidc/v1/token", None, ("forwarded", "/oidc/v1/token", None)),
    ("jobs-case-same-rule", "GET", "/api/2.1/jobs/List", "all-apis", ("forwarded", "/api/2.1/jobs/List", "databricks:jobs:read")),
    ("uc-dotted-name", "GET", "/api/2.1/unity-catalog/tables/main.default.trips", "all-apis",
     ("forwarded", "/api/2.1/unity-catalog/tables/main.default.trips", "databricks:unity-catalog:read")),
    ("files-escaped-space", "GET", "/api/2.0/fs/files/Volumes/c/s/v/my%20file.csv", "all-apis",
     ("forwarded", "/api/2.0/fs/files/Volumes/c/s/v/my%20file.csv", "databricks:files:read")),
    # Issue 16: the upload of a file named `100%.csv`, and other names the SDKs send escaped.
    ("files-escaped-percent", "PUT", "/api/2.0/fs/files/Volumes/main/default/vol/100%25.csv", "all-apis",
     ("forwarded", "/api/2.0/fs/files/Volumes/main/default/vol/100%25.csv", "databricks:files:full")),
    ("files-escaped-question-mark", "GET", "/api/2.0/fs/files/Volumes/c/s/v/why%3F.txt", "all-apis",
     ("forwarded", "/api/2.0/fs/files/Volumes/c/s/v/why%3F.txt", "databricks:files:read")),
    ("files-trailing-dot", "GET", "/api/2.0/fs/files/Volumes/c/s/v/draft.", "all-apis",
     ("forwarded", "/api/2.0/fs/files/Volumes/c/s/v/draft.", "databricks:files:read")),
    ("escaped-letter-decoded", "GET", "/api/2.0/secrets/%6Cist", "secrets:read",
     ("forwarded", "/api/2.0/secrets/list", "databricks:secrets:read")),
]


def check(gateway: PolicyGateway, reply, expected, token, path):
    if isinstance(expected, Refusal):
        assert_refused(reply, expected, token)
        return
    if expected[0] == "envoy":
        assert reply.status == expected[1], f"{reply.status}: {reply.body[:300]!r}"
        assert reply.header("x-brickgate-reason") is None, "expected Envoy's codec to refuse it before brickgate"
        return
    _, upstream_path, rule = expected
    assert reply.status == 200 and reply.header("x-brickgate-reason") is None, f"{reply.status}: {reply.body[:300]!r}"
    echo = reply.json()
    assert echo["path"] == upstream_path, f"{path} reached the upstream as {echo['path']}"
    assert echo["headers"].get("x-brickgate-rule", [None])[0] == rule


@pytest.mark.parametrize(("case", "method", "path", "token_name", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_finding_7_paths(policy_gateway, case, method, path, token_name, expected):
    token = policy_gateway.tokens[token_name] if token_name else None
    before = policy_gateway.echo.snapshot_counts()
    reply = send(policy_gateway.port, method, path, token)
    check(policy_gateway, reply, expected, token, path)
    after = policy_gateway.echo.snapshot_counts()
    if isinstance(expected, tuple) and expected[0] == "forwarded":
        assert sum(after.values()) == sum(before.values()) + 1, "the upstream should have received it once"
    else:
        assert after == before, f"a refused request reached the upstream: {after}"


@pytest.mark.parametrize(("case", "method", "path", "token_name", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_finding_7_paths_over_http2(policy_gateway, case, method, path, token_name, expected):
    """The same paths as HTTP/2 `:path`s: brickgate decides them alike (or Envoy's HTTP/2 codec
    refuses them first), and nothing refused reaches the upstream."""
    token = policy_gateway.tokens[token_name] if token_name else None
    headers = [("authorization", f"Bearer {token}")] if token else []
    before = policy_gateway.echo.snapshot_counts()
    try:
        reply = h2_request(policy_gateway.port, method, path, headers)
    except StreamReset:
        reply = None  # Envoy's codec refused the :path
    after = policy_gateway.echo.snapshot_counts()
    if isinstance(expected, tuple) and expected[0] == "forwarded":
        check(policy_gateway, reply, expected, token, path)
        assert sum(after.values()) == sum(before.values()) + 1
        return
    assert after == before, f"a refused request reached the upstream: {after}"
    if reply is not None and reply.header("x-brickgate-reason") is not None:
        check(policy_gateway, reply, expected, token, path)
    else:
        assert reply is None or reply.status >= 400, reply.status


def test_refusal_messages_quote_at_most_a_short_excerpt(policy_gateway):
    path = "/api/2.0/" + "a" * 3000 + ";/x"
    reply = send(policy_gateway.port, "GET", path, policy_gateway.tokens["all-apis"])
    assert_refused(reply, bad_path(";"), policy_gateway.tokens["all-apis"])
    assert len(reply.json()["message"]) < 300, reply.json()["message"]


# Bytes http.client will not put in a request line, sent on a raw socket: (id, request target, who refuses).
RAW_TARGETS = [
    pytest.param(b"/api/2.0/fs/files/caf\xc3\xa9", "envoy", id="raw-utf8"),
    pytest.param(b"/api/2.0/token/create#x", "envoy", id="fragment"),
    pytest.param(b"/api/2.0/token\x01/create", "envoy", id="raw-control"),
    pytest.param(b"/api/2.0/token\t/create", "envoy", id="raw-tab"),
    pytest.param(b'/api/2.0/token"/create', "brickgate", id="raw-double-quote"),
    pytest.param(b"/api/2.0/token|/create", "brickgate", id="raw-pipe"),
    pytest.param(b"/api/2.0/{token}/create", "brickgate", id="raw-braces"),
]


def send_raw_target(port: int, target: bytes) -> tuple[int, str | None]:
    """GET `target` on a raw socket: (status, x-brickgate-reason or None)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    reasons = [line.split(":", 1)[1].strip() for line in head[1:] if line.lower().startswith("x-brickgate-reason:")]
    return status, (reasons[0] if reasons else None)


@pytest.mark.parametrize(("target", "refused_by"), RAW_TARGETS)
def test_raw_bytes_outside_a_uri_path(policy_gateway, target, refused_by):
    """Envoy's HTTP/1 codec refuses raw non-ASCII, `#` and controls before brickgate runs; brickgate
    refuses the other characters RFC 3986 does not allow unescaped. Either way nothing goes upstream."""
    before = policy_gateway.echo.snapshot_counts()
    status, reason = send_raw_target(policy_gateway.port, target)
    assert status == 400
    assert reason == ("bad_path" if refused_by == "brickgate" else None)
    assert policy_gateway.echo.snapshot_counts() == before


# Finding 8: the body's `model` read once, and endpoint names that differ only in case refused.
def test_endpoint_named_in_the_path_in_another_case_is_refused(policy_gateway):
    token = policy_gateway.tokens["outsider"]
    before = policy_gateway.echo.snapshot_counts()
    reply = send_json(policy_gateway.port, f"/serving-endpoints/{FRAUD.upper()}/invocations", token, {"inputs": [1]})
    assert_refused(reply, bad_path("letter case", FRAUD), token)
    assert policy_gateway.echo.snapshot_counts() == before


SERVING_BODIES = [
    pytest.param(b'{"model":"churn","model":"fraud-detector","messages":[]}', bad_body("repeats a top-level key"),
                 id="duplicate-model-last-is-guarded"),
    pytest.param(b'{"model":"fraud-detector","model":"churn","messages":[]}', bad_body("repeats a top-level key"),
                 id="duplicate-model-first-is-guarded"),
    pytest.param(b'{"model":"churn","mod\\u0065l":"fraud-detector"}', bad_body("repeats a top-level key"),
                 id="duplicate-model-escaped-key"),
    pytest.param(json.dumps({"model": FRAUD.upper(), "messages": []}).encode(), bad_body("letter case", FRAUD),
                 id="model-in-another-case"),
    # Review R1: Go's encoding/json matches keys ignoring case, the last one winning.
    pytest.param(b'{"model":"churn","MODEL":"fraud-detector"}', bad_body("ignoring case"),
                 id="second-model-key-in-upper-case"),
    pytest.param(b'{"Model":"fraud-detector","model":"churn"}', bad_body("ignoring case"),
                 id="second-model-key-capitalised-first"),
]


@pytest.mark.parametrize(("body", "expected"), SERVING_BODIES)
def test_serving_body_cannot_sidestep_an_endpoint_rule(policy_gateway, body, expected):
    """The outsider's token names `serving:FRAUD-DETECTOR` and `serving:churn`, not group fraud-team."""
    token = policy_gateway.tokens["outsider"]
    reply = send_json(policy_gateway.port, CHAT, token, body, timeout_s=3.0)
    assert_refused(reply, expected, token)


@pytest.mark.parametrize(("body", "expected"), SERVING_BODIES)
def test_refused_serving_body_never_reaches_the_upstream(policy_gateway, body, expected):
    token = policy_gateway.tokens["outsider"]
    before = policy_gateway.echo.snapshot_counts()
    assert_refused(send_json(policy_gateway.port, CHAT, token, body, timeout_s=3.0), expected, token)
    assert policy_gateway.echo.snapshot_counts() == before, "the upstream received the request's headers"


def test_nested_model_keys_are_not_read(policy_gateway):
    token = policy_gateway.tokens["outsider"]
    body = json.dumps({"model": "churn", "messages": [{"model": FRAUD, "role": "user"}]}).encode()
    reply = send_json(policy_gateway.port, CHAT, token, body, timeout_s=3.0)
    assert reply.status == 200 and reply.header("x-brickgate-reason") is None, reply.body[:300]
    assert reply.json()["path"] == CHAT
