"""`body_rules: buffer_filter` under attack (review R2 of issue 18): the Wasm filter rendered WITHOUT
`allow_on_headers_stop_iteration`, Envoy's buffer filter after it, in Envoy 1.40, over HTTP/1.1 and
HTTP/2. Every case asserts what the recording upstream received: a request brickgate refuses must
never reach it, not even its headers (the echo counts a request at its request line).

- `buffered`: the buffer filter on every route (HTTP/1.1 trailers enabled);
- `small`: a buffer filter whose `max_request_bytes` (32 KiB) is below brickgate's body limit;
- `split`: the buffer filter enabled only on the serving routes (`/serving-endpoints`,
  `/ai-gateway`, as the shipped manifests do), with Envoy's default path handling: a path that the
  route match and brickgate read differently must not reach the upstream through the unbuffered
  route.
"""

import json
import socket
import time

import h2.config
import h2.connection
import pytest

from databricks_support import bootstrap_with, make_body_echo, routed_listener, send_body, wait_until_decided
from devstack.httpbase import running
from devstack.idp import make_idp
from h2_client import h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

from envoy_harness import NATIVE as _NATIVE_FORM

pytestmark = pytest.mark.skipif(_NATIVE_FORM, reason="the mesh renderings (Istio WasmPlugin, Envoy Gateway Wasm) are of the Wasm form")

CHAT = "/serving-endpoints/chat/completions"
BODY_LIMIT = 64 * 1024
BUFFER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
BUFFER_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute"
BODY_DEADLINE_MS = 1500


def plugin_config(idp) -> dict:
    return {
        "realm": REALM,
        "body_rules": "buffer_filter",
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [{"name": "endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
                   "require": {"scopes_any": ["serving:{name}"]}}],
        "databricks": {"route_catalogue": False, "max_body_bytes": BODY_LIMIT, "serving_body_limits": [],
                       "body_deadline_ms": BODY_DEADLINE_MS, "first_body_wait_ms": 1000},
    }


def mixed_config(config: dict) -> dict:
    """An anonymous endpoint rule before the per-endpoint one: at the headers the anonymous rule
    admits any request (its passage sends no identity), and the body may pick the other."""
    public = {"name": "public", "match": {"serving_endpoint": "public"}, "allow_anonymous": True}
    return {**config, "rules": [public, *config["rules"]]}


def buffer_filter(max_bytes: int, disabled: bool = False) -> dict:
    return {"name": "envoy.filters.http.buffer", "disabled": disabled,
            "typed_config": {"@type": BUFFER_TYPE, "max_request_bytes": max_bytes}}


def without_flag_then(listener: dict, buffer: dict) -> dict:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    wasm, router = hcm["http_filters"]
    del wasm["typed_config"]["config"]["allow_on_headers_stop_iteration"]
    hcm["http_filters"] = [wasm, buffer, router]
    hcm["http_protocol_options"] = {"enable_trailers": True}
    return listener


def split_routes(listener: dict) -> dict:
    """The buffer filter off on the listener, on for the serving routes only (as the manifests)."""
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = hcm["route_config"]["virtual_hosts"][0]["routes"]
    enable = {"envoy.filters.http.buffer": {"@type": BUFFER_PER_ROUTE, "buffer": {"max_request_bytes": 17 << 20}}}
    serving = [{"name": f"serving-{i}", "match": {"path_separated_prefix": prefix}, "route": dict(route["route"]),
                "typed_per_filter_config": enable} for i, prefix in enumerate(("/serving-endpoints", "/ai-gateway"))]
    hcm["route_config"]["virtual_hosts"][0]["routes"] = [*serving, {"name": "workspace", **route}]
    return listener


@pytest.fixture(scope="module")
def mesh(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        config = plugin_config(idp)
        listeners = [
            without_flag_then(routed_listener("buffered", wasm_path, config, "echo"), buffer_filter(17 << 20)),
            without_flag_then(routed_listener("small", wasm_path, config, "echo"), buffer_filter(32 * 1024)),
            split_routes(without_flag_then(routed_listener("split", wasm_path, config, "echo"),
                                           buffer_filter(17 << 20, disabled=True))),
            without_flag_then(routed_listener("mixed", wasm_path, mixed_config(config), "echo"), buffer_filter(17 << 20)),
        ]
        for listener in listeners:
            listener["per_connection_buffer_limit_bytes"] = 17 << 20
        envoy = start_envoy(bootstrap_with(listeners, {"echo": echo.port, "idp": idp.port}), "body-mode-attacks")
        try:
            envoy.wait_ready()
            ports = envoy.listener_ports()
            tokens = TokenFactory(idp.issuer)
            probe = tokens.idp(subject="probe", scope="serving:churn")
            for name, port in ports.items():
                if name == "mixed":
                    continue  # the member's request is refused there: the rules disagree on its headers
                wait_until_decided(port, lambda p: send_body(p, "POST", CHAT, probe, body("churn")))
            yield ports, tokens.idp(subject="member", scope="serving:churn"), echo, envoy
        finally:
            envoy.stop()


def body(model: str, pad: int = 0) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "pad": "x" * pad}).encode()


def upstream_total(echo) -> int:
    return sum(echo.snapshot_counts().values())


def decided(envoy) -> dict[str, int]:
    """brickgate's allowed/denied counters (one per answered stream)."""
    stats = envoy.stats(r"^wasmcustom\.brickgate\.(allowed|denied)$")
    return {name: value for name, value in stats.items()}


def h1_raw(port: int, request: bytes, read_timeout_s: float = 5.0, pause_after: bytes | None = None) -> bytes:
    """Raw bytes on one connection; reads until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout_s) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pass
        return received


# --- buffered everywhere ------------------------------------------------------------------------


def test_expect_100_continue_refused_by_the_body_sends_nothing_upstream(mesh):
    ports, token, echo, _ = mesh
    document = body("fraud")
    before = upstream_total(echo)
    request = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Expect: 100-continue\r\nContent-Length: {len(document)}\r\nConnection: close\r\n\r\n").encode() + document
    answer = h1_raw(ports["buffered"], request)
    assert b" 403 " in answer.split(b"\r\n", 1)[0] or b"HTTP/1.1 403" in answer, answer[:300]
    assert upstream_total(echo) == before


@pytest.mark.parametrize("trailer", ["authorization: Bearer smuggled", "x-http-method-override: GET", "x-brickgate-subject: admin"])
def test_http1_chunked_trailers_are_decided_and_never_carry_credentials(mesh, trailer):
    ports, token, echo, _ = mesh
    document = body("churn")
    request = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Transfer-Encoding: chunked\r\nTrailer: {trailer.split(':')[0]}\r\nConnection: close\r\n\r\n").encode()
    request += f"{len(document):x}\r\n".encode() + document + f"\r\n0\r\n{trailer}\r\n\r\n".encode()
    refused = request.replace(b'"churn"', b'"fraud"')
    before = upstream_total(echo)
    assert b"HTTP/1.1 200" in h1_raw(ports["buffered"], request)[:20]
    assert b"HTTP/1.1 403" in h1_raw(ports["buffered"], refused)[:20]
    assert upstream_total(echo) == before + 1


@pytest.mark.parametrize("trailer", [("authorization", "Bearer smuggled"), ("x-http-method-override", "GET")])
def test_http2_trailers_refused_by_the_body_send_nothing_upstream(mesh, trailer):
    ports, token, echo, _ = mesh
    before = upstream_total(echo)
    headers = [("authorization", f"Bearer {token}"), ("content-type", "application/json")]
    allowed = h2_request(ports["buffered"], "POST", CHAT, headers, [body("churn")], trailers=[trailer])
    refused = h2_request(ports["buffered"], "POST", CHAT, headers, [body("fraud")], trailers=[trailer])
    assert (allowed.status, refused.status) == (200, 403), (allowed.body[:300], refused.body[:300])
    assert refused.header("x-brickgate-reason"), refused.body[:300]
    assert upstream_total(echo) == before + 1


def test_content_length_longer_than_the_body_then_close_sends_nothing_upstream(mesh):
    ports, token, echo, _ = mesh
    document = body("churn")
    before = upstream_total(echo)
    request = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(document) + 100}\r\n\r\n").encode() + document
    with socket.create_connection(("127.0.0.1", ports["buffered"]), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionResetError):
            pass
    assert upstream_total(echo) == before


def test_content_length_shorter_than_the_body_does_not_smuggle_a_second_request(mesh):
    ports, token, echo, _ = mesh
    smuggled = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    document = body("churn")
    request = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(document)}\r\nConnection: keep-alive\r\n\r\n").encode() + document + smuggled
    before = upstream_total(echo)
    answer = h1_raw(ports["buffered"], request, read_timeout_s=3)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"HTTP/1.1 401" in answer, "the tokenless second request must be refused"
    assert upstream_total(echo) == before + 1


@pytest.mark.parametrize("http2", [False, True])
def test_an_empty_body_ending_at_the_headers_is_refused_with_nothing_upstream(mesh, http2):
    ports, token, echo, _ = mesh
    before = upstream_total(echo)
    if http2:
        reply = h2_request(ports["buffered"], "POST", CHAT, [("authorization", f"Bearer {token}")], [])
    else:
        reply = send_body(ports["buffered"], "POST", CHAT, token, b"")
    assert reply.status == 400 and reply.header("x-brickgate-reason") == "bad_body", (reply.status, reply.body[:300])
    assert upstream_total(echo) == before


def test_pipelined_requests_each_get_their_own_verdict(mesh):
    """The second request's headers arrive while the first one's body is still being read."""
    ports, token, echo, _ = mesh
    refused, allowed = body("fraud"), body("churn")
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: {}\r\n\r\n")
    before = upstream_total(echo)
    with socket.create_connection(("127.0.0.1", ports["buffered"]), timeout=5) as sock:
        sock.sendall(head.format(len(refused)).encode() + refused[:10])
        time.sleep(0.2)
        sock.sendall(refused[10:] + head.format(len(allowed)).encode() + allowed[:10])
        time.sleep(0.2)
        sock.sendall(allowed[10:])
        sock.settimeout(3)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    statuses = [line.split(b" ")[1] for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    assert statuses[:1] == [b"403"], answer[:400]
    assert upstream_total(echo) - before <= 1 and b'"churn"' not in answer.split(b"HTTP/1.1 403", 1)[0]


def test_an_http2_reset_mid_body_sends_nothing_upstream_and_records_at_most_once(mesh):
    ports, token, echo, envoy = mesh
    before, counted = upstream_total(echo), decided(envoy)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with socket.create_connection(("127.0.0.1", ports["buffered"]), timeout=5) as sock:
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        connection.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", CHAT),
                                         ("authorization", f"Bearer {token}"), ("content-type", "application/json")])
        connection.send_data(stream, body("churn")[:20])
        sock.sendall(connection.data_to_send())
        time.sleep(0.3)
        connection.reset_stream(stream)
        sock.sendall(connection.data_to_send())
        time.sleep(0.3)
    time.sleep(0.3)  # brickgate's counters reach Envoy's stats on its next tick
    after = decided(envoy)
    assert upstream_total(echo) == before
    assert sum(after.values()) - sum(counted.values()) <= 1, (counted, after)


def test_a_body_slower_than_the_deadline_is_refused_with_nothing_upstream(mesh):
    """Half a body, then nothing: the client waits for the answer (the deadline is brickgate's
    clock; the test only waits for the reply)."""
    ports, token, echo, _ = mesh
    document = body("churn")
    before = upstream_total(echo)
    request = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(document)}\r\n\r\n").encode() + document[:10]
    answer = h1_raw(ports["buffered"], request, read_timeout_s=BODY_DEADLINE_MS / 1000 + 5)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"x-brickgate-reason: body_timeout" in answer.lower(), answer[:300]
    assert upstream_total(echo) == before


@pytest.mark.parametrize("document, status", [
    (b"{" + b" " * (BODY_LIMIT + 10) + b'"model":"churn"}', 413),
    (b'{"model":"churn","model":"fraud"}', 400),
    (b'{"model":"fraud","model":"churn"}', 400),
    (b'{"\\u006dodel":"fraud"}', 403),
    (b'{"model":"churn","\\u006dodel":"fraud"}', 400),
    (b'{"model":"\\u0063hurn"}', 200),
    (b'{"model":"churn"}\n{"model":"fraud"}', 400),
    (b'\xef\xbb\xbf{"model":"churn"}', 400),
    (b'[{"model":"churn"}]', 400),
], ids=["whitespace-past-limit", "duplicate-allowed-first", "duplicate-refused-first", "escaped-key", "escaped-duplicate",
        "escaped-value", "two-documents", "bom", "array"])
@pytest.mark.parametrize("http2", [False, True])
def test_hostile_json_bodies_are_decided_as_the_upstream_would_read_them(mesh, document, status, http2):
    ports, token, echo, _ = mesh
    before = upstream_total(echo)
    if http2:
        reply = h2_request(ports["buffered"], "POST", CHAT, [("authorization", f"Bearer {token}")], [document[:7], document[7:]])
    else:
        reply = send_body(ports["buffered"], "POST", CHAT, token, [document[:7], document[7:]])
    assert reply.status == status, (reply.status, reply.body[:300])
    # A refusal is brickgate's own, with its reason (not the codec's or the buffer filter's).
    assert status == 200 or reply.header("x-brickgate-reason"), (reply.status, reply.body[:300])
    assert upstream_total(echo) == before + (status == 200)


@pytest.mark.parametrize("http2", [False, True])
def test_a_body_over_the_buffer_filters_limit_but_under_brickgates_is_refused_with_nothing_upstream(mesh, http2):
    ports, token, echo, _ = mesh
    document = body("churn", pad=48 * 1024)
    before = upstream_total(echo)
    parts = [document[:1000], document[1000:]]
    if http2:
        reply = h2_request(ports["small"], "POST", CHAT, [("authorization", f"Bearer {token}")], parts)
    else:
        reply = send_body(ports["small"], "POST", CHAT, token, parts)
    assert reply.status == 413, (reply.status, reply.body[:300])
    assert upstream_total(echo) == before


# --- buffered on the serving routes only -------------------------------------------------------

ALIASES = ["//serving-endpoints/chat/completions", "/%73erving-endpoints/chat/completions",
           "/x/../serving-endpoints/chat/completions", "/./serving-endpoints/chat/completions",
           "/serving-endpoints/./chat/completions", "/serving-endpoints//chat/completions",
           "/serving-endpoints/chat/completions/", "/Serving-Endpoints/chat/completions",
           "/serving-endpoints%2Fchat/completions", "/serving-endpoints%2fchat%2fcompletions",
           "/%2e/serving-endpoints/chat/completions", "//ai-gateway/mlflow/v1/chat/completions",
           "/ai-gateway%2Fmlflow/v1/chat/completions", "/%61i-gateway/mlflow/v1/chat/completions",
           "/serving-endpoints/chat/completions?x=1", "/serving-endpoints/chat/completions;x"]


@pytest.mark.parametrize("path", ALIASES)
@pytest.mark.parametrize("http2", [False, True])
def test_a_path_alias_refused_by_the_body_never_reaches_the_upstream_past_an_unbuffered_route(mesh, path, http2):
    ports, token, echo, _ = mesh
    document = body("fraud")
    before = upstream_total(echo)
    parts = [document[:10], document[10:]]
    if http2:
        reply = h2_request(ports["split"], "POST", path, [("authorization", f"Bearer {token}")], parts)
    else:
        reply = send_body(ports["split"], "POST", path, token, parts, chunk_delay_s=0.05)
    # brickgate refuses: an alias at its headers (`bad_path`, docs/LIFECYCLE.md "Only canonical
    # paths stream"), a canonical spelling at its body's end.
    assert reply.status != 200 and reply.header("x-brickgate-reason"), (reply.status, reply.body[:300])
    assert upstream_total(echo) == before, (path, reply.status, echo.snapshot_counts())


@pytest.mark.parametrize("http2", [False, True])
def test_a_body_that_picks_a_rule_with_other_header_changes_than_the_admitting_one_reaches_nothing(mesh, http2):
    """At the headers the anonymous rule admitted the request (no identity headers); the body picks
    the per-endpoint rule, which would have sent the caller's identity: the headers already went on
    to the buffer filter, so brickgate refuses (503) and the upstream receives nothing."""
    ports, token, echo, _ = mesh
    before = upstream_total(echo)
    for model, status, reason in (("public", 200, None), ("churn", 503, "internal_error")):
        document = body(model)
        if http2:
            reply = h2_request(ports["mixed"], "POST", CHAT, [("authorization", f"Bearer {token}")], [document[:9], document[9:]])
        else:
            reply = send_body(ports["mixed"], "POST", CHAT, token, [document[:9], document[9:]])
        assert (reply.status, reply.header("x-brickgate-reason")) == (status, reason), (model, reply.status, reply.body[:300])
    assert upstream_total(echo) == before + 1
