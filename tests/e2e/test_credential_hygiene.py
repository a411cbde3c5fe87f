"""Issue 8, findings 9 and 10, through the real Envoy over HTTP/1.1 and HTTP/2 (h2c):

- a bearer token next to any second credential (another scheme in the same or a second
  `Authorization`, a token in the custom header or the query, `Proxy-Authorization`) is 400
  `multiple_tokens`, and nothing reaches the upstream;
- method-override headers never reach the upstream: removed when they name the request's own
  method, 400 `method_override` when they name another;
- headers brickgate owns or that carry identity are stripped whatever their case and whether
  spelled with `_` or `-`, on a listener that lets `_` through; the shipped listener setting
  (`headers_with_underscores_action: REJECT_REQUEST`) makes Envoy refuse them before brickgate.
"""

import time
import uuid
from dataclasses import dataclass

import pytest

from envoy_harness import bootstrap, brickgate_listener
from gateway_client import NO_CHALLENGE, Refusal, Reply, assert_refused, invalid_request, send
from h2_client import StreamReset, h2_request
from plugin_configs import REALM, idp_provider

READ = "clusters:read"
METHOD_OVERRIDE = Refusal(400, "method_override", "BAD_REQUEST", NO_CHALLENGE)
MULTIPLE_TOKENS = invalid_request("multiple_tokens")
BASIC = "Basic ZGVtbzpzZWNyZXQ="
PROTOCOLS = ["http1", "h2"]
# Look-alikes of headers brickgate strips: identity prefix, Databricks identity headers, overrides.
OWNED_PREFIX = "x-brickgate-"
IDENTITY_HEADERS = {"x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "x-databricks-gcp-sa-access-token"}
OVERRIDE_HEADERS = {"x-http-method-override", "x-http-method", "x-method-override"}


def hygiene_config(idp_issuer: str, idp_port: int) -> dict:
    """Tokens in `Authorization: Bearer`, `?access_token=` or `x-api-token`; a Databricks section
    (so `X-Forwarded-*` are stripped); one token rule, one anonymous rule."""
    sources = [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}, {"header": "x-api-token"}]
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp_issuer, idp_port, token_sources=sources)},
        "rules": [
            {"name": "health", "match": {"path": "/healthz", "methods": ["GET"]}, "allow_anonymous": True},
            {"name": "public", "match": {"prefix": "/public/"}, "allow_anonymous": True},
            {"name": "clusters-read", "match": {"prefix": "/api/2.0/clusters/", "methods": ["GET"]},
             "providers": ["idp"], "require": {"scopes_any": [READ]}},
        ],
        "databricks": {},
    }


@dataclass
class Listeners:
    strict: int  # the shipped setting: Envoy refuses header names with `_`
    lenient: int  # Envoy lets them through: brickgate's own stripping is what is tested


@pytest.fixture(scope="module")
def listeners(start_envoy, wasm_path, idp, upstream, tokens) -> Listeners:
    config = hygiene_config(idp.issuer, idp.port)
    built = [brickgate_listener("strict", str(wasm_path), config, root_id="bg-strict"),
             brickgate_listener("lenient", str(wasm_path), config, root_id="bg-lenient", underscores_in_headers=True)]
    envoy = start_envoy(bootstrap(built, upstream.port, idp.port), "credential-hygiene")
    envoy.wait_ready()
    ports = envoy.listener_ports()
    found = Listeners(ports["strict"], ports["lenient"])
    _wait_for_keys(found, tokens.idp(scope=READ))
    return found


def _wait_for_keys(found: Listeners, token: str, timeout_s: float = 20.0) -> None:
    deadline, in_a_row, last = time.monotonic() + timeout_s, 0, None
    while in_a_row < 6 and time.monotonic() < deadline:
        for port in (found.strict, found.lenient):
            last = send(port, "GET", "/api/2.0/clusters/warm-up", token, timeout_s=5)
            in_a_row = in_a_row + 1 if last.status == 200 else 0
        time.sleep(0.05 if in_a_row else 0.2)
    assert in_a_row >= 6, f"keys never loaded: {last}"


def request(protocol: str, port: int, method: str, path: str, headers: list[tuple[str, str]], **h2_options) -> Reply:
    """The same request over HTTP/1.1 (names as given) or HTTP/2 (names lower-cased, as h2 requires)."""
    if protocol == "h2":
        return h2_request(port, method, path, [(name.lower(), value) for name, value in headers], **h2_options)
    return send(port, method, path, headers=headers)


def fold(name: str) -> str:
    return name.lower().replace("_", "-")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def assert_upstream_not_reached(upstream, path: str) -> None:
    assert upstream.snapshot_counts().get(path.split("?", 1)[0], 0) == 0, f"{path} reached the upstream"


# --- what reaches the upstream --------------------------------------------------------------------

SPOOFED = [("X_Brickgate_Subject", "admin"), ("X_Brickgate_Rule", "api"), ("x-brickgate-subject", "admin"),
           ("X_BRICKGATE_GROUPS", "sql-admins"), ("X_Forwarded_User", "admin@example.com"),
           ("x_forwarded_email", "admin@example.com"), ("X_Forwarded_Groups", "admins"),
           ("X_Databricks_GCP_SA_Access_Token", "ya29.forged")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_token_route_forwards_verified_identity_only(listeners, tokens, protocol):
    token = tokens.idp(subject="svc-hygiene", client_id="svc-hygiene", scope=READ)
    overrides = [("X-HTTP-Method-Override", "GET"), ("X_HTTP_Method", "get"), ("x-method-override", "GET")]
    headers = [("Authorization", f"Bearer {token}"), *SPOOFED, *overrides]
    reply = request(protocol, listeners.lenient, "GET", "/api/2.0/clusters/list", headers)
    forwarded = reply.forwarded
    assert reply.json()["method"] == "GET"
    assert {name: values for name, values in forwarded.items() if fold(name).startswith(OWNED_PREFIX)} == {
        "x-brickgate-subject": ["svc-hygiene"],
        "x-brickgate-issuer": [tokens.idp_issuer],
        "x-brickgate-provider": ["idp"],
        "x-brickgate-client-id": ["svc-hygiene"],
        "x-brickgate-scopes": [READ],
        "x-brickgate-principal-kind": ["service_principal"],
        "x-brickgate-token-id": forwarded.get("x-brickgate-token-id", []),
        "x-brickgate-rule": ["clusters-read"],
    }
    assert not [name for name in forwarded if fold(name) in IDENTITY_HEADERS | OVERRIDE_HEADERS]
    assert forwarded["authorization"] == [f"Bearer {token}"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_anonymous_route_strips_lookalikes_overrides_and_proxy_credentials(listeners, protocol):
    headers = [*SPOOFED, ("X_HTTP_Method_Override", "GET"), ("Proxy-Authorization", BASIC)]
    forwarded = request(protocol, listeners.lenient, "GET", "/healthz", headers).forwarded
    leaked = [name for name in forwarded
              if fold(name) in IDENTITY_HEADERS | OVERRIDE_HEADERS | {"proxy-authorization"}
              or (fold(name).startswith(OWNED_PREFIX) and name != "x-brickgate-rule")]
    assert leaked == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_body_and_trailers_pass_with_an_override_naming_the_same_method(listeners, protocol):
    if protocol == "http1":
        reply = send(listeners.strict, "POST", "/public/upload", headers=[("X-HTTP-Method-Override", "POST")])
    else:
        reply = h2_request(listeners.strict, "POST", "/public/upload", [("x-http-method-override", "POST")],
                           body_chunks=[b"ab", b"cd", b"ef"], trailers=[("x-checksum", "1")])
    assert reply.json()["method"] == "POST"
    assert not [name for name in reply.forwarded if fold(name) in OVERRIDE_HEADERS]


# --- method overrides that name another method ----------------------------------------------------

OVERRIDES = [
    pytest.param("strict", "/api/2.0/clusters/", "X-HTTP-Method-Override", "DELETE", id="token-route-override"),
    pytest.param("strict", "/api/2.0/clusters/", "X-HTTP-Method", "POST", id="token-route-x-http-method"),
    pytest.param("strict", "/api/2.0/clusters/", "X-Method-Override", "PATCH", id="token-route-x-method-override"),
    pytest.param("strict", "/api/2.0/clusters/", "x-http-method-override", "GET, DELETE", id="one-of-two-values"),
    pytest.param("strict", "/public/", "X-HTTP-Method-Override", "PUT", id="anonymous-route"),
    pytest.param("lenient", "/api/2.0/clusters/", "X_HTTP_Method_Override", "DELETE", id="underscore-spelling"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("listener", "route", "name", "value"), OVERRIDES)
def test_override_naming_another_method_is_refused(listeners, tokens, upstream, protocol, listener, route, name, value):
    token = tokens.idp(scope=READ)
    path = unique(route)
    reply = request(protocol, getattr(listeners, listener), "GET", path, [("Authorization", f"Bearer {token}"), (name, value)])
    assert_refused(reply, METHOD_OVERRIDE, token)
    assert_upstream_not_reached(upstream, path)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("query", ["_method=POST", "a=1&_METHOD=DELETE", "%5Fmethod=PUT", "X-HTTP-Method-Override=PATCH"])
def test_query_parameter_naming_another_method_is_refused(listeners, tokens, upstream, protocol, query):
    """Review R1: Rails and Laravel read `_method` from the query as the method."""
    token = tokens.idp(scope=READ)
    path = unique("/api/2.0/clusters/")
    reply = request(protocol, listeners.strict, "GET", f"{path}?{query}", [("Authorization", f"Bearer {token}")])
    assert_refused(reply, METHOD_OVERRIDE, token)
    assert_upstream_not_reached(upstream, path)


# --- a second credential next to the bearer token -------------------------------------------------

SECOND_CREDENTIALS = [
    pytest.param("strict", lambda a, b: [("Authorization", f"Bearer {a}, {BASIC}")], "", id="bearer-and-basic-one-header"),
    pytest.param("strict", lambda a, b: [("Authorization", f"{BASIC}, Bearer {a}")], "", id="basic-and-bearer-one-header"),
    pytest.param("strict", lambda a, b: [("Authorization", f"Bearer {a}"), ("Authorization", BASIC)], "",
                 id="bearer-and-basic-two-headers"),
    pytest.param("strict", lambda a, b: [("Authorization", f"Bearer {a}"), ("Authorization", f"Bearer {b}")], "",
                 id="two-bearer-headers"),
    pytest.param("strict", lambda a, b: [("Authorization", f"Bearer {a}"), ("X-Api-Token", b)], "", id="custom-header-token"),
    pytest.param("strict", lambda a, b: [("X-Api-Token", a), ("Authorization", BASIC)], "", id="custom-header-and-basic"),
    pytest.param("strict", lambda a, b: [("Authorization", f"Bearer {a}")], "?access_token={b}", id="query-token"),
    pytest.param("strict", lambda a, b: [("Authorization", f"Bearer {a}"), ("Proxy-Authorization", BASIC)], "",
                 id="proxy-authorization"),
    pytest.param("lenient", lambda a, b: [("Authorization", f"Bearer {a}"), ("X_Api_Token", b)], "",
                 id="underscore-custom-header"),
    pytest.param("lenient", lambda a, b: [("Authorization", f"Bearer {a}"), ("Proxy_Authorization", BASIC)], "",
                 id="underscore-proxy-authorization"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("listener", "make_headers", "query"), SECOND_CREDENTIALS)
def test_second_credential_is_multiple_tokens(listeners, tokens, upstream, protocol, listener, make_headers, query):
    first, second = tokens.idp(scope=READ), tokens.idp(scope=READ)
    path = unique("/api/2.0/clusters/")
    reply = request(protocol, getattr(listeners, listener), "GET", path + query.format(b=second), make_headers(first, second))
    assert_refused(reply, MULTIPLE_TOKENS, first)
    assert_refused(reply, MULTIPLE_TOKENS, second)
    assert_upstream_not_reached(upstream, path)


# --- the shipped listener setting ----------------------------------------------------------------


def test_strict_listener_refuses_underscore_header_over_http1(listeners, upstream):
    path = unique("/public/")
    reply = send(listeners.strict, "GET", path, headers=[("X_Brickgate_Subject", "admin")])
    assert reply.status == 400, reply.body
    assert reply.header("x-brickgate-reason") is None, "Envoy itself refuses it, before brickgate runs"
    assert_upstream_not_reached(upstream, path)


def test_strict_listener_resets_underscore_header_over_h2(listeners, upstream):
    path = unique("/public/")
    with pytest.raises(StreamReset):
        h2_request(listeners.strict, "GET", path, [("x_brickgate_subject", "admin")])
    assert_upstream_not_reached(upstream, path)


# --- header values that are not UTF-8 ------------------------------------------------------------

BAD_HEADER = Refusal(400, "bad_header", "BAD_REQUEST", NO_CHALLENGE)
NOT_UTF8 = b"caf\xe9"  # HTTP/1.1 obs-text: Envoy passes it on; the SDK's map reader panicked on it


def _still_serving(port: int, token: str) -> None:
    """The VM survived: fresh connections (any worker) are still decided, and allowed."""
    for _ in range(6):
        reply = send(port, "GET", "/api/2.0/clusters/list", token)
        assert reply.status == 200, (reply.status, reply.body[:300])


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("route", "name"), [
    pytest.param("/api/2.0/clusters/", "x-note", id="token-route"),
    pytest.param("/public/", "user-agent", id="anonymous-route"),
    pytest.param("/api/2.0/clusters/", "authorization", id="in-the-credential"),
])
def test_header_value_not_utf8_is_bad_header_and_the_worker_keeps_serving(listeners, tokens, upstream, protocol,
                                                                           route, name):
    token = tokens.idp(scope=READ)
    path = unique(route)
    value = b"Bearer " + token.encode() + NOT_UTF8 if name == "authorization" else NOT_UTF8
    headers = [(name, value)] if name == "authorization" else [("authorization", f"Bearer {token}"), (name, value)]
    if protocol == "h2":
        reply = h2_request(listeners.strict, "GET", path, [(n.encode(), v if isinstance(v, bytes) else v.encode())
                                                           for n, v in headers])
    else:
        reply = send(listeners.strict, "GET", path, headers=headers)
    assert_refused(reply, BAD_HEADER, token)
    assert f"request header {name} is not UTF-8".encode() in reply.body, reply.body
    assert_upstream_not_reached(upstream, path)
    _still_serving(listeners.strict, token)

