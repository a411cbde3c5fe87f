"""Streamed (SSE) serving answers pass through brickgate unbuffered (issue 9 point 6).

A chat completion with `"stream": true` is decided on its body (a per-endpoint rule names the
endpoint in `model`), then the upstream answers with server-sent events: the first at once, the
next after a pause. The client must see the first event long before the stream ends, over
HTTP/1.1 and HTTP/2: nothing between Databricks and the client may hold the response back.
"""

import http.client
import json
import socket
import time
from http.server import BaseHTTPRequestHandler

import h2.config
import h2.connection
import h2.events
import pytest

from databricks_support import bootstrap_with, routed_listener, wait_until_decided
from devstack.httpbase import DevServer, running
from devstack.idp import make_idp
from gateway_client import send
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

PAUSE_S = 1.5  # between the first and the second event
FIRST_EVENT_WITHIN_S = 0.6
CHAT = "/serving-endpoints/chat/completions"
BODY = json.dumps({"model": "chat-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()


class SseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # readiness probes
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, event in enumerate([b'data: {"delta": "first"}\n\n', b'data: {"delta": "second"}\n\n', b"data: [DONE]\n\n"]):
            if index:
                time.sleep(PAUSE_S)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture(scope="module")
def streaming_gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(DevServer(("127.0.0.1", 0), SseHandler)) as sse:
        config = {
            "realm": REALM,
            "providers": {"idp": idp_provider(idp.issuer, idp.port)},
            "rules": [{"name": "chat", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
                       "require": {"scopes_any": ["serving:{name}"]}}],
            "databricks": {"route_catalogue": True, "max_body_bytes": 65536},
        }
        envoy = start_envoy(bootstrap_with([routed_listener("sse", wasm_path, config, "sse")], {"sse": sse.port, "idp": idp.port}),
                            "databricks-streaming")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["sse"]
            token = TokenFactory(idp.issuer).idp(scope="serving:chat-model")
            wait_until_decided(port, lambda p: send(p, "GET", "/api/2.1/clusters/list", token))
            yield port, token
        finally:
            envoy.stop()


def http1_event_times(port: int, token: str) -> tuple[float, float, bytes]:
    """(seconds to the first event, seconds to the end, the whole body) over HTTP/1.1."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    start = time.monotonic()
    connection.request("POST", CHAT, BODY, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert response.getheader("content-type") == "text/event-stream"
    first_line = response.readline()
    first = time.monotonic() - start
    rest = response.read()
    connection.close()
    return first, time.monotonic() - start, first_line + rest


def http2_event_times(port: int, token: str) -> tuple[float, float, bytes]:
    """The same over HTTP/2 (h2c with prior knowledge)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    start = time.monotonic()
    conn.send_headers(1, [(":method", "POST"), (":path", CHAT), (":scheme", "http"), (":authority", "gateway"),
                          ("authorization", f"Bearer {token}"), ("content-type", "application/json")])
    conn.send_data(1, BODY, end_stream=True)
    sock.sendall(conn.data_to_send())
    first, body, status = None, b"", None
    while True:
        data = sock.recv(65536)
        if not data:
            break
        ended = False
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers)[b":status"]
            elif isinstance(event, h2.events.DataReceived):
                if first is None and event.data:
                    first = time.monotonic() - start
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                ended = True
        sock.sendall(conn.data_to_send())
        if ended:
            break
    sock.close()
    assert status == b"200", (status, body)
    return first, time.monotonic() - start, body


@pytest.mark.parametrize("client", [http1_event_times, http2_event_times], ids=["http1", "http2"])
def test_sse_first_event_arrives_before_the_stream_ends(streaming_gateway, client):
    port, token = streaming_gateway
    first, total, body = client(port, token)
    assert b'"first"' in body and b'"second"' in body and body.rstrip().endswith(b"[DONE]"), body
    assert total >= 2 * PAUSE_S, f"the upstream paused {2 * PAUSE_S}s in all, yet the stream took {total:.2f}s"
    assert first < FIRST_EVENT_WITHIN_S, f"first event after {first:.2f}s (stream ended after {total:.2f}s): buffered"
