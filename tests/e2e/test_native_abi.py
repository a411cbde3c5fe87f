"""The native module's ABI binding (native/), proved in the real Envoy 1.40 binary.

The probe build of the module (`make native-probe`: dist/native-probe/libbrickgate.so, or the
directory in BRICKGATE_NATIVE_PROBE_DIR) runs one filter whose behaviour each request picks with
`x-probe`; every test checks one binding from outside: what the client got, what the upstream
received, Envoy's stats, its access log and its log. A wrong signature or enum value shows up here.
"""

import http.client
import json
import os
import socket
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from envoy_harness import HCM, ROUTER, STDOUT_ACCESS_LOG, STRING_VALUE, bootstrap, http_get, loopback, static_cluster

from envoy_harness import NATIVE as _NATIVE_FORM

pytestmark = pytest.mark.skipif(_NATIVE_FORM, reason="the ABI probe is form-independent: it runs once, in the Wasm pass")

DYNAMIC_MODULE_FILTER = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
# Filter state and dynamic metadata the probe sets (`x-probe: metadata`), as the access log sees them.
ACCESS_LOG_FORMAT = (
    "[native-access] probe=%REQ(X-PROBE)% code=%RESPONSE_CODE% details=%RESPONSE_CODE_DETAILS% "
    "fs=%FILTER_STATE(brickgate.probe:PLAIN)% decision=%DYNAMIC_METADATA(brickgate:decision)% "
    "scopes=%DYNAMIC_METADATA(brickgate:scopes)% completed=%DYNAMIC_METADATA(brickgate:completed)%\n"
)
CALLOUT_CLUSTER = "callout"
POLL_TIMEOUT_S = 10.0


def probe_listener() -> dict:
    module_filter = {
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": DYNAMIC_MODULE_FILTER,
            "dynamic_module_config": {"name": "brickgate"},
            "filter_name": "brickgate",
            # The probe's config: the cluster its callouts go to.
            "filter_config": {"@type": STRING_VALUE, "value": CALLOUT_CLUSTER},
        },
    }
    route_config = {"name": "probe", "virtual_hosts": [{"name": "probe", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "10s"}}]}]}
    access_log = {"name": "envoy.access_loggers.stdout",
                  "typed_config": {"@type": STDOUT_ACCESS_LOG, "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}}
    hcm = {"@type": HCM, "stat_prefix": "native_probe", "codec_type": "AUTO", "route_config": route_config,
           "access_log": [access_log],
           # HTTP/1.1 request trailers reach filters only with this.
           "http_protocol_options": {"enable_trailers": True},
           "http_filters": [module_filter, {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    return {"name": "probe", "address": loopback(0),
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}


@pytest.fixture(scope="module")
def probe_dir() -> Path:
    path = Path(os.environ.get("BRICKGATE_NATIVE_PROBE_DIR", "dist/native-probe"))
    path = path if path.is_absolute() else REPO_ROOT / path
    if not (path / "libbrickgate.so").is_file():
        pytest.fail(f"no probe module at {path}/libbrickgate.so: run `make native-probe` or set BRICKGATE_NATIVE_PROBE_DIR")
    return path


@pytest.fixture(scope="module")
def probe(start_envoy, probe_dir, upstream):
    config = bootstrap([probe_listener()], upstream.port, upstream.port)
    config["static_resources"]["clusters"].append(static_cluster(CALLOUT_CLUSTER, upstream.port))
    envoy = start_envoy(config, "native-probe", env={"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(probe_dir)})
    envoy.wait_ready()
    envoy.port = envoy.listener_ports()["probe"]
    return envoy


def request(port: int, probe: str, method: str = "GET", path: str = "/", headers: dict | None = None,
            body: bytes | None = None) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"x-probe": probe, **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def raw_request(port: int, raw: bytes) -> bytes:
    """Sends `raw` as is on one connection (`Connection: close`) and returns all Envoy answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def probe_stats(envoy) -> dict[str, int]:
    """The probe's counters by their own name (Envoy prefixes the module's metrics namespace)."""
    named = {name.rsplit(".", 1)[-1]: value for name, value in envoy.stats(r"\.probe_").items()}
    return {name: value for name, value in named.items() if name.startswith("probe_")}


def wait_for(predicate, what: str):
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def access_line(envoy, probe_name: str) -> str:
    def line():
        return next((entry for entry in envoy.log_text().splitlines()
                     if "[native-access]" in entry and f"probe={probe_name} " in entry), None)
    return wait_for(line, f"the access log line of x-probe: {probe_name}")


def test_module_loads_with_the_abi_version_envoy_expects(probe):
    log = probe.log_text()
    assert "Dynamic module ABI version v0.2.0 matched." in log
    assert "is deprecated" not in log
    # log + log_enabled, from new_config (main thread).
    assert f"abi probe config brickgate loaded (callout cluster {CALLOUT_CLUSTER})" in log


def test_request_headers_are_read_and_a_local_reply_carries_headers_and_body(probe):
    status, headers, body = request(probe.port, "echo", path="/echo?q=1", headers={"x-probe-in": "hello"})
    assert status == 200
    assert headers["x-echo"] == "hello"
    lines = body.decode().splitlines()
    assert ":path: /echo?q=1" in lines and ":method: GET" in lines
    assert "x-probe-in: hello" in lines


def test_a_non_utf8_header_value_is_reported_as_such(probe):
    answer = raw_request(probe.port, b"GET / HTTP/1.1\r\nHost: probe\r\nx-probe: echo\r\nx-bad: caf\xe9\r\n"
                                     b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(b"value-not-utf8 x-bad"), answer[-200:]


def test_request_header_edits_reach_the_upstream(probe):
    status, _, body = request(probe.port, "edit", headers={"x-remove": "gone", "x-set": "client", "x-keep": "kept"})
    assert status == 200
    received = json.loads(body)["headers"]
    assert received["x-set"] == ["set-value"]
    assert received["x-added"] == ["one", "two"]
    assert "x-remove" not in received
    assert received["x-keep"] == ["kept"]


@pytest.mark.parametrize("size", [1, 70_000, 300_000])
def test_a_held_request_body_is_whole_at_end_of_stream(probe, size):
    status, _, body = request(probe.port, "body", method="POST", body=b"x" * size)
    assert status == 200
    summary = dict(item.split("=") for item in body.decode().split())
    # At end of stream the last chunk is already in the buffered body (Envoy's decodeData adds
    # it), so the received chunk adds nothing and is not the buffered body itself.
    assert summary == {"size": str(size), "copied": str(size), "buffered": str(size), "received": "0",
                       "received_is_buffered": "false"}


def test_request_trailers_are_read_and_set(probe):
    answer = raw_request(probe.port, b"POST / HTTP/1.1\r\nHost: probe\r\nx-probe: trailers\r\nConnection: close\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: tv\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b"x-trailer-set: true" in head
    assert b"x-body-size: 5" in head
    assert body.decode().splitlines() == ["x-t: tv", "x-trailer-added: added"]


def test_a_stream_callout_answers_with_the_clusters_response(probe):
    status, headers, body = request(probe.port, "callout")
    assert status == 200
    assert headers["x-callout-status"] == "200"
    assert headers["x-callout-result"] == "Success"
    # The id Envoy wrote through the out-pointer is the one its answer carries.
    assert headers["x-callout-id-matches"] == "true"
    assert json.loads(body)["path"] == "/callout"


def test_a_callout_to_an_unknown_cluster_is_refused_at_once(probe):
    status, _, body = request(probe.port, "callout-missing")
    assert (status, body) == (503, b"ClusterNotFound")


def test_a_thread_of_the_module_wakes_a_held_request_through_the_stream_scheduler(probe):
    status, _, body = request(probe.port, "schedule")
    assert status == 200
    assert json.loads(body)["headers"]["x-scheduled"] == ["7 same-worker=true"]


def test_counters_and_histograms_reach_envoys_stats(probe):
    before = probe_stats(probe).get("probe_requests", 0)
    for _ in range(3):
        assert request(probe.port, "none")[0] == 200
    assert request(probe.port, "body", method="POST", body=b"abc")[0] == 200
    # Counters are flushed to the admin view with the stats flush (5 s by default).
    wait_for(lambda: probe_stats(probe).get("probe_requests", 0) >= before + 4, "probe_requests to grow by 4")
    _, histograms = http_get(f"{probe.admin_url}/stats?filter=probe_body_bytes")
    assert "dynamicmodulescustom.probe_body_bytes" in histograms


def test_filter_state_and_dynamic_metadata_reach_the_access_log(probe):
    status, _, body = request(probe.port, "metadata")
    assert status == 200
    assert json.loads(body)["headers"]["x-filter-state-stored"] == ["true"]
    line = access_line(probe, "metadata")
    assert "fs=fs-value" in line
    assert "decision=allow" in line
    assert 'scopes=["a","b"]' in line
    # Set in on_stream_complete: before access logs are written.
    assert "completed=yes" in line


def test_a_panic_in_a_stream_hook_answers_500_and_envoy_goes_on(probe):
    status, _, body = request(probe.port, "panic")
    assert (status, body) == (500, b"internal error\n")
    assert "panic in on_request_headers: abi probe: deliberate panic in on_request_headers" in probe.log_text()
    assert "details=brickgate_native_panic" in access_line(probe, "panic")
    assert request(probe.port, "echo", headers={"x-probe-in": "still here"})[1]["x-echo"] == "still here"
    assert probe.process.poll() is None


def test_a_panic_in_a_scheduled_hook_answers_500(probe):
    status, _, body = request(probe.port, "panic-scheduled")
    assert (status, body) == (500, b"internal error\n")
    assert "panic in on_scheduled" in probe.log_text()
    assert probe.process.poll() is None


def test_config_scheduler_and_callout_run_on_the_main_thread(probe):
    assert request(probe.port, "config")[0] == 202
    stats = wait_for(lambda: (s := probe_stats(probe)).get("probe_config_callout_ok", 0) >= 1 and s,
                     "the config callout's answer")
    # on_scheduled and on_callout_done, both on the thread that built the config.
    assert stats["probe_config_hook_on_main"] >= 2
    assert stats["probe_config_hook_off_main"] == 0
    # Stat creation is frozen once new_config returned.
    assert stats["probe_frozen_after_init"] >= 1
    # Streams run on workers, not on the main thread.
    assert stats["probe_stream_hook_off_main"] >= 1
