"""One canonical request (issue 16, points 2, 3 and 7: docs/PATHS.md), through the real Envoy over
HTTP/1.1 and HTTP/2 (h2c), asserting what the upstream received:

- a method spelled otherwise than the exact upper-case ones (`Post`, `get`, `TRACE`) is refused
  with 400 `bad_method` before any rule (or by Envoy's codec first) and never reaches the upstream;
- escaped `?`, `#`, `;` and `%` and trailing dots are data in both places: refused where reading
  them as structure changes the rule (`secrets/get%3F`), forwarded exactly as sent where it does not,
  Files API names included, as the Databricks SDKs encode them;
- path-override headers are removed when they name the request's own path and refused otherwise;
- a CORS preflight gets the same hygiene: path normalised, method and path overrides refused,
  proxy credentials removed.

The upstream is an echo that answers (and counts) any method, so a method Envoy passes on would be
seen here.
"""

import urllib.parse
from dataclasses import dataclass

import pytest

from databricks_support import BodyEchoHandler, bootstrap_with, routed_listener, wait_until_decided
from devstack.httpbase import DevServer, running
from devstack.idp import make_idp
from gateway_client import NO_CHALLENGE, Refusal, Reply, assert_refused, send
from h2_client import StreamReset, h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

PROTOCOLS = ["http1", "h2"]
BAD_METHOD = Refusal(400, "bad_method", "BAD_REQUEST", NO_CHALLENGE)
PATH_OVERRIDE = Refusal(400, "path_override", "BAD_REQUEST", NO_CHALLENGE, message_contains=("/api/2.0/token/create",))
METHOD_OVERRIDE = Refusal(400, "method_override", "BAD_REQUEST", NO_CHALLENGE)
BAD_PATH = Refusal(400, "bad_path", "BAD_REQUEST", NO_CHALLENGE)
ROUTE_DISABLED = Refusal(403, "route_disabled", "PERMISSION_DENIED", NO_CHALLENGE)
SP_SECRETS = "/api/2.0/accounts/servicePrincipals/1/credentials/secrets"
VOLUME = "/api/2.0/fs/files/Volumes/main/default/vol"
# Envoy itself removes `X-Envoy-Original-Path` from a request it deems external (as here, loopback
# clients included), before brickgate runs: brickgate's own check covers internal clients.
PATH_OVERRIDES = ["X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Forwarded-Uri", "X-Forwarded-Path"]
ENVOY_SANITISED = "X-Envoy-Original-Path"
PREFLIGHT = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")]


class AnyMethodEcho(BodyEchoHandler):
    """The body echo, answering and counting whatever method arrives (`Post`, `TRACE` …)."""

    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self.echo
        raise AttributeError(name)


def canonical_config(idp) -> dict:
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [{"name": "health", "match": {"path": "/healthz"}, "allow_anonymous": True}],
        "databricks": {"route_catalogue": True},
        "bypass_cors_preflight": True,
    }


@dataclass
class Gateway:
    port: int
    echo: DevServer
    token: str  # all-apis
    secrets_reader: str


@pytest.fixture(scope="module")
def gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(DevServer(("127.0.0.1", 0), AnyMethodEcho)) as echo:
        factory = TokenFactory(idp.issuer)
        listener = routed_listener("canonical", wasm_path, canonical_config(idp), "echo")
        envoy = start_envoy(bootstrap_with([listener], {"echo": echo.port, "idp": idp.port}), "canonical-request")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["canonical"]
            token = factory.idp(subject="canonical-admin", scope="all-apis")
            wait_until_decided(port, lambda p: send(p, "GET", "/api/2.0/clusters/list", token))
            yield Gateway(port, echo, token, factory.idp(subject="canonical-reader", scope="secrets:read"))
        finally:
            envoy.stop()


def request(protocol: str, port: int, method: str, path: str, headers: list[tuple[str, str]]) -> Reply | None:
    """The request over HTTP/1.1 or HTTP/2; None when Envoy's HTTP/2 codec reset the stream."""
    if protocol == "h2":
        try:
            return h2_request(port, method, path, [(name.lower(), value) for name, value in headers])
        except StreamReset:
            return None
    return send(port, method, path, headers=headers)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def received(gateway: Gateway) -> int:
    return sum(gateway.echo.snapshot_counts().values())


def assert_forwarded_as_sent(reply: Reply, path: str) -> dict:
    assert reply is not None and reply.status == 200 and reply.header("x-brickgate-reason") is None, \
        f"{path}: {reply and reply.status} {reply and reply.body[:300]!r}"
    echo = reply.json()
    assert echo["path"] == path, f"{path} reached the upstream as {echo['path']}"
    return echo


# --- one canonical method ------------------------------------------------------------------------

# (method, path, token?) — every one refused, none reaching the upstream. Over HTTP/2 Envoy passes
# `:method` on as written and brickgate refuses it; over HTTP/1.1 Envoy's codec refuses a method
# with lower-case letters itself (400 without `x-brickgate-reason`) and passes upper-case ones on.
OTHER_SPELLINGS = [
    pytest.param("Post", SP_SECRETS, True, id="issue-16-Post-on-sp-secrets"),
    pytest.param("post", SP_SECRETS, True, id="lower-case-post"),
    pytest.param("gEt", "/api/2.0/clusters/list", True, id="mixed-case-get"),
    pytest.param("Get", "/healthz", False, id="anonymous-rule"),
    pytest.param("TRACE", "/api/2.0/clusters/list", True, id="trace"),
    pytest.param("PROPFIND", "/api/2.0/workspace/list", True, id="unknown-method"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("method", "path", "with_token"), OTHER_SPELLINGS)
def test_a_method_spelled_otherwise_never_reaches_the_upstream(gateway, protocol, method, path, with_token):
    before = received(gateway)
    reply = request(protocol, gateway.port, method, path, bearer(gateway.token) if with_token else [])
    assert reply is not None, "Envoy reset the stream"
    if protocol == "http1" and not method.isupper():
        assert (reply.status, reply.header("x-brickgate-reason")) == (400, None), "Envoy's codec refuses it first"
    else:
        assert_refused(reply, BAD_METHOD, gateway.token if with_token else None)
        assert method in reply.json()["message"]
    assert received(gateway) == before, "a refused request reached the upstream"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_upper_case_method_meets_its_rule(gateway, protocol):
    before = received(gateway)
    reply = request(protocol, gateway.port, "POST", SP_SECRETS, bearer(gateway.token))
    assert_refused(reply, ROUTE_DISABLED, gateway.token)
    echo = assert_forwarded_as_sent(request(protocol, gateway.port, "GET", "/healthz", []), "/healthz")
    assert echo["method"] == "GET"
    assert received(gateway) == before + 1


# --- escaped delimiters, trailing dots, Files API names --------------------------------------------

# (path as sent, token: "admin" or "reader") refused with bad_path, never forwarded.
DELIMITERS_THAT_CHANGE_THE_RULE = [
    pytest.param("GET", "/api/2.0/secrets/get%3F", "reader", id="issue-16-secrets-get-escaped-question-mark"),
    pytest.param("GET", "/api/2.0/secrets/get%3Fscope=s&key=k", "reader", id="secrets-get-escaped-query"),
    pytest.param("GET", "/api/2.0/secrets/get%23", "reader", id="secrets-get-escaped-hash"),
    pytest.param("GET", "/api/2.0/secrets/get%3B", "reader", id="secrets-get-escaped-semicolon"),
    pytest.param("GET", "/api/2.0/secrets/get.", "reader", id="secrets-get-trailing-dot"),
    pytest.param("POST", "/api/2.0/token%3B/create", "admin", id="token-escaped-semicolon"),
    pytest.param("POST", "/api/2.0/token./create", "admin", id="token-trailing-dot"),
    pytest.param("POST", "/oidc/..%3B/api/2.0/token/create", None, id="oidc-dotdot-escaped-semicolon"),
    pytest.param("PUT", f"{VOLUME}/100%2541.csv", "admin", id="double-encoded-file-name"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("method", "path", "who"), DELIMITERS_THAT_CHANGE_THE_RULE)
def test_escaped_delimiters_that_change_the_rule_are_refused(gateway, protocol, method, path, who):
    token = {"admin": gateway.token, "reader": gateway.secrets_reader, None: None}[who]
    before = received(gateway)
    reply = request(protocol, gateway.port, method, path, bearer(token) if token else [])
    assert_refused(reply, BAD_PATH, token)
    assert received(gateway) == before


def go_path_escape(segment: str) -> str:
    """Go's `url.PathEscape` (golang/go src/net/url/url.go at 011829989365218ba4532e86ab0b6702971daab3,
    `shouldEscape` in mode `encodePathSegment`): keeps letters, digits, `-_.~` and `$&+=:@`."""
    kept = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+=:@")
    return "".join(chr(byte) if chr(byte) in kept else f"%{byte:02X}" for byte in segment.encode())


def sdk_encodings(file_path: str) -> dict[str, str]:
    """How the SDKs put `file_path` after `/api/2.0/fs/files`: databricks-sdk-py's
    `_escape_multi_segment_path_parameter` is `urllib.parse.quote(param)` (databricks/sdk/service/
    _internal.py at 9ae2241564f93eec8b747514cdef56439f77a077); databricks-sdk-go's
    `EncodeMultiSegmentPathParameter` is `url.PathEscape` per `/`-separated segment (httpclient/
    request.go at 1ff3c785425fbb6ad4c96c50c538231fce761996)."""
    return {"python": urllib.parse.quote(file_path),
            "go": "/".join(go_path_escape(segment) for segment in file_path.split("/"))}


AWKWARD_NAMES = ["my report.csv", "100%.csv", "a+b.csv", "issue#7.txt", "why?.txt", "a;b.csv", "café.csv",
                 "数据 2024.csv", "draft.", "trailing space ", "a,b=c@d!(1).csv"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_files_api_names_from_the_sdks_reach_the_upstream_as_sent(gateway, protocol, name):
    for sdk, encoded in sdk_encodings(f"/Volumes/main/default/vol/{name}").items():
        path = f"/api/2.0/fs/files{encoded}"
        for method in ("PUT", "GET"):
            echo = assert_forwarded_as_sent(request(protocol, gateway.port, method, path, bearer(gateway.token)), path)
            rule = echo["headers"]["x-brickgate-rule"][0]
            assert rule.startswith("databricks:files:"), f"{sdk} {method} {path}: {rule}"
            assert echo["method"] == method


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_escaped_question_mark_that_changes_no_rule_is_data(gateway, protocol):
    path = "/api/2.0/secrets/list%3F"
    echo = assert_forwarded_as_sent(request(protocol, gateway.port, "GET", path, bearer(gateway.secrets_reader)), path)
    assert echo["headers"]["x-brickgate-rule"] == ["databricks:secrets:read"]


# --- path-override headers -------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("header", PATH_OVERRIDES)
def test_a_path_override_naming_the_path_is_removed(gateway, protocol, header):
    path = "/api/2.0/clusters/list"
    headers = [*bearer(gateway.token), (header, f"{path}?x=1"), ("X-Forwarded-Prefix", "/admin")]
    echo = assert_forwarded_as_sent(request(protocol, gateway.port, "GET", path, headers), path)
    leaked = {name for name in echo["headers"] if name in {h.lower() for h in PATH_OVERRIDES} | {"x-forwarded-prefix"}}
    assert leaked == set()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_envoy_removes_its_own_original_path_header_from_clients(gateway, protocol):
    path = "/api/2.0/clusters/list"
    headers = [*bearer(gateway.token), (ENVOY_SANITISED, "/api/2.0/token/create")]
    echo = assert_forwarded_as_sent(request(protocol, gateway.port, "GET", path, headers), path)
    assert ENVOY_SANITISED.lower() not in echo["headers"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("header", PATH_OVERRIDES)
@pytest.mark.parametrize(("path", "with_token"), [("/api/2.0/clusters/list", True), ("/healthz", False)],
                         ids=["token-rule", "anonymous-rule"])
def test_a_path_override_naming_another_path_is_refused(gateway, protocol, header, path, with_token):
    before = received(gateway)
    headers = [*(bearer(gateway.token) if with_token else []), (header, "/api/2.0/token/create")]
    reply = request(protocol, gateway.port, "GET", path, headers)
    assert_refused(reply, PATH_OVERRIDE, gateway.token if with_token else None)
    assert received(gateway) == before


# --- CORS preflights -------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_preflight_is_forwarded_normalised_without_credentials_or_overrides(gateway, protocol):
    headers = [*PREFLIGHT, ("Proxy-Authorization", "Basic dXNlcjpwdw=="), ("X-HTTP-Method-Override", "OPTIONS"),
               ("X-Original-URL", "/api/2.0/sql/statements")]
    reply = request(protocol, gateway.port, "OPTIONS", "//api/2.0/./sql//statements?x=1", headers)
    echo = assert_forwarded_as_sent(reply, "/api/2.0/sql/statements?x=1")
    assert echo["method"] == "OPTIONS"
    leaked = {"proxy-authorization", "authorization", "x-http-method-override", "x-original-url"} & set(echo["headers"])
    assert leaked == set()


PREFLIGHT_REFUSALS = [
    pytest.param("options", "/api/2.0/sql/statements", PREFLIGHT, BAD_METHOD, id="lower-case-options"),
    pytest.param("OPTIONS", "/api/2.0/sql/statements", [PREFLIGHT[0], ("Access-Control-Request-Method", "Post")],
                 BAD_METHOD, id="announced-method-spelled-otherwise"),
    pytest.param("OPTIONS", "/api/2.0/sql/statements", [*PREFLIGHT, ("X-HTTP-Method-Override", "DELETE")],
                 METHOD_OVERRIDE, id="method-override"),
    pytest.param("OPTIONS", "/api/2.0/sql/statements", [*PREFLIGHT, ("X-Rewrite-URL", "/api/2.0/token/create")],
                 PATH_OVERRIDE, id="path-override"),
    pytest.param("OPTIONS", "/api/2.0/token;/create", PREFLIGHT, BAD_PATH, id="path-parameter"),
    pytest.param("OPTIONS", "/api/2.0/%2e%2e/token/create", PREFLIGHT, BAD_PATH, id="escaped-dot-segment"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("method", "path", "headers", "expected"), PREFLIGHT_REFUSALS)
def test_a_preflight_gets_the_refusals_of_any_request(gateway, protocol, method, path, headers, expected):
    before = received(gateway)
    reply = request(protocol, gateway.port, method, path, headers)
    if protocol == "http1" and not method.isupper():
        assert (reply.status, reply.header("x-brickgate-reason")) == (400, None), "Envoy's codec refuses it first"
    else:
        assert_refused(reply, expected)
    assert received(gateway) == before
