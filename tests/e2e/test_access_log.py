"""Each decision in Envoy's access log (filter state `wasm.brickgate`; native form: `brickgate`) and
in labelled metrics, with the shipped config of the form under test: its access-log format, stats
tags, OpenTelemetry log and (native form) Prometheus scrape rule."""

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from envoy_harness import NATIVE, bootstrap, brickgate_listener, http_get
from gateway_client import send
from h2_client import h2_request
from plugin_configs import AUDIENCE, main_config
from shipped_config import OTEL_ACCESS_LOG, audit_record, scraped, with_shipped_observability

CLUSTERS = "/api/2.0/clusters/list"


@pytest.fixture(scope="module")
def observed(start_envoy, wasm_path, idp, upstream, tokens):
    plugin_config = main_config(idp.issuer, idp.port)
    config = with_shipped_observability(bootstrap([brickgate_listener("main", str(wasm_path), plugin_config)], upstream.port, idp.port))
    envoy = start_envoy(config, "observed")
    envoy.wait_ready()
    port = envoy.listener_ports()["main"]
    token = tokens.idp(scope="clusters:read")
    deadline = time.monotonic() + 20
    while send(port, "GET", CLUSTERS, token).status != 200:
        assert time.monotonic() < deadline, "keys never loaded"
        time.sleep(0.2)
    return envoy, port


def unique(path: str) -> str:
    """A path no other request used, so its access-log line can be found."""
    return f"{path}-{uuid.uuid4().hex}"


def access_lines(envoy, path: str) -> list[dict]:
    """The JSON access-log lines (Envoy's stdout, in its log file) for one path."""
    lines = (json.loads(line) for line in envoy.log_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line["path"] == path]


def logged(envoy, path: str) -> dict:
    deadline = time.monotonic() + 5  # the stdout access log is flushed every second
    while not (lines := access_lines(envoy, path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(lines) == 1, f"expected one access-log line for {path}, got {lines}"
    return lines[0]


def brickgate_fields(line: dict) -> dict:
    """The audit record in the line's `brickgate` field, as the form's shipped format renders it."""
    return audit_record(line["brickgate"])


def test_allowed_request_logs_the_verified_caller(observed, tokens):
    envoy, port = observed
    token = tokens.idp(scope="clusters:read", subject="alice", jti="jti-allowed-1")
    path = unique(CLUSTERS)
    reply = send(port, "GET", path, token)
    assert reply.status == 200
    line = logged(envoy, path)
    assert line["status"] == 200 and line["method"] == "GET"
    assert line["request_id"] == reply.forwarded["x-request-id"][0], "Envoy's request id, as the upstream saw it"
    assert line["upstream_host"].startswith("127.0.0.1:"), line
    assert isinstance(line["duration_ms"], int)
    fields = brickgate_fields(line)
    assert fields["decision"] == "allow" and fields["rule"] == "clusters-read" and fields["provider"] == "idp"
    assert fields["subject"] == "alice" and fields["token_id"] == "jti-allowed-1"
    assert "principal_kind" in fields and "client_id" in fields, fields
    assert re.fullmatch(r"[0-9a-f]{16}", fields["token_fingerprint"]), fields
    assert "reason" not in fields and "claimed_subject" not in fields
    assert token not in json.dumps(line), "the token itself reached the access log"


def test_refused_request_logs_reason_and_claims(observed, tokens):
    envoy, port = observed
    token = tokens.idp(scope="clusters:read", subject="mallory", aud="someone-else")
    path = unique(CLUSTERS)
    assert send(port, "GET", path, token).status == 401
    line = logged(envoy, path)
    assert line["status"] == 401 and line["upstream_host"] is None
    fields = brickgate_fields(line)
    assert fields["decision"] == "deny" and fields["reason"] == "audience_mismatch", fields
    assert fields["rule"] == "clusters-read"
    assert fields["claimed_subject"] == "mallory" and "subject" not in fields, fields


def test_anonymous_and_unparsed_requests_are_logged_too(observed):
    envoy, port = observed
    assert send(port, "GET", "/healthz").status == 200
    lines = access_lines(envoy, "/healthz")  # the fixture sent none
    deadline = time.monotonic() + 5
    while not (lines := access_lines(envoy, "/healthz")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert brickgate_fields(lines[-1]) == {"decision": "allow", "rule": "health"}, lines
    path = unique("/api/2.0/clusters%2Flist")
    assert send(port, "GET", path).status == 400
    fields = brickgate_fields(logged(envoy, path))
    assert fields["decision"] == "deny" and fields["reason"] == "bad_path", fields


def prometheus(envoy) -> str:
    """/stats/prometheus as the form's shipped scrape config stores it (Wasm: as is; native: renamed
    to the Wasm form's names by envoy/prometheus-native.yaml)."""
    status, body = http_get(f"{envoy.admin_url}/stats/prometheus")
    assert status == 200
    return scraped(body)


def sample(body: str, name: str, **labels) -> float:
    """The value of the one sample `name{labels}` (labels matched exactly, order-free)."""
    for line in body.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
        if found == labels:
            return float(match[3])
    return 0.0


def test_requests_are_counted_with_labels(observed, tokens):
    envoy, port = observed
    labels = {"decision": "deny", "reason": "audience_mismatch", "rule": "clusters-read"}
    before = sample(prometheus(envoy), "brickgate_requests_total", **labels)
    for _ in range(3):
        assert send(port, "GET", CLUSTERS, tokens.idp(scope="clusters:read", aud="nobody")).status == 401
    body = prometheus(envoy)
    assert sample(body, "brickgate_requests_total", **labels) == before + 3, [l for l in body.splitlines() if "brickgate_requests_total" in l]
    assert sample(body, "brickgate_requests_total", decision="allow", reason="none", rule="clusters-read") >= 1


def test_decision_time_is_a_histogram(observed, tokens):
    envoy, port = observed
    assert send(port, "GET", CLUSTERS, tokens.idp(scope="clusters:read")).status == 200
    deadline = time.monotonic() + 10  # histograms reach the admin output at the next stats flush (5 s)
    while (count := sample(prometheus(envoy), "brickgate_decision_time_us_count")) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert count >= 1
    body = prometheus(envoy)
    assert 'brickgate_decision_time_us_bucket{le="+Inf"}' in body
    assert sample(body, "brickgate_decision_time_us_sum") > 0, "decisions take time"
    # Far below the 10 s a request may wait for keys: synchronous decisions are quick.
    assert sample(body, "brickgate_decision_time_us_bucket", le="10000") >= 1


def test_application_log_audit_line_is_off_by_default(observed):
    envoy, _ = observed
    assert "brickgate audit {" not in envoy.log_text()


def test_application_log_audit_line_on_request(start_envoy, wasm_path, idp, upstream, tokens):
    plugin_config = {**main_config(idp.issuer, idp.port), "audit": {"log_line": True, "filter_state": False}}
    envoy = start_envoy(bootstrap([brickgate_listener("main", str(wasm_path), plugin_config)], upstream.port, idp.port), "audit-line")
    envoy.wait_ready()
    port = envoy.listener_ports()["main"]
    assert send(port, "GET", CLUSTERS).status == 401
    deadline = time.monotonic() + 5
    while "brickgate audit {" not in envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    records = [json.loads(line.split("brickgate audit ", 1)[1]) for line in envoy.log_text().splitlines() if "brickgate audit {" in line]
    assert records and records[-1]["reason"] == "missing_token", records


DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "brickgate.json"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"
PROMETHEUS_FUNCTIONS = {"sum", "rate", "topk", "histogram_quantile", "by", "le", "increase", "max", "min", "avg"}


def queries() -> list[str]:
    """Every query of the Grafana dashboard and every ```promql block of docs/OPERATIONS.md."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    found += re.findall(r"```promql\n(.*?)```", OPERATIONS.read_text(), re.S)
    return found


def test_every_dashboard_and_doc_query_names_exposed_metrics(observed, tokens):
    envoy, port = observed
    send(port, "GET", CLUSTERS, tokens.idp(scope="clusters:read", aud="nobody"))
    deadline = time.monotonic() + 10  # histograms appear after the first stats flush
    while "brickgate_decision_time_us_bucket" not in (body := prometheus(envoy)) and time.monotonic() < deadline:
        time.sleep(0.5)
    exposed = {match for match in re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", body, re.M)}
    label_names = set(re.findall(r'[{,]([a-z_]+)="', body))
    assert len(queries()) >= 12
    for query in queries():
        without_strings = re.sub(r'"[^"]*"', '""', query)
        names = set(re.findall(r"\b(brickgate_[a-z0-9_]+)", without_strings))
        assert names, query
        assert names <= exposed, f"{query}: not exposed: {names - exposed}"
        for label in re.findall(r"(?:by|without) \(([^)]*)\)", without_strings) + re.findall(r"(\w+)=", without_strings):
            for name in label.replace(" ", "").split(","):
                assert name in label_names | {"le"}, f"{query}: label {name} not exposed"


def test_opentelemetry_access_log_carries_the_decision(start_envoy, wasm_path, idp, upstream, tokens):
    """envoy/otel-access-log.yaml (native form: otel-access-log-native.yaml) as shipped, its
    collector cluster pointed at a fake collector."""
    import yaml

    from otlp_collector import OtlpCollector

    collector = OtlpCollector()
    try:
        otel = yaml.safe_load(OTEL_ACCESS_LOG.read_text())
        cluster = otel["clusters"][0]
        cluster["type"] = "STATIC"
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = collector.port
        listener = brickgate_listener("main", str(wasm_path), main_config(idp.issuer, idp.port))
        listener["filter_chains"][0]["filters"][0]["typed_config"]["access_log"] = otel["access_log"]
        config = bootstrap([listener], upstream.port, idp.port)
        config["static_resources"]["clusters"].append(cluster)
        envoy = start_envoy(config, "otel")
        envoy.wait_ready()
        port = envoy.listener_ports()["main"]
        path = unique(CLUSTERS)
        token = tokens.idp(scope="clusters:read", subject="otel-mallory", aud="someone-else")
        assert send(port, "GET", path, token).status == 401
        deadline = time.monotonic() + 10  # the logger flushes every second
        while path.encode() not in collector.received() and time.monotonic() < deadline:
            time.sleep(0.2)
        received = collector.received()
        assert path.encode() in received, "no OpenTelemetry log record for the request"
        # The attribute `brickgate` is the record's JSON text: Wasm, the Struct in its Any wrapper;
        # native, the filter state's bytes as brickgate wrote them.
        record_start = b'{"decision":"deny"' if NATIVE else b'{"@type":"type.googleapis.com/google.protobuf.Struct","value":{'
        assert record_start in received
        for expected in (b"brickgate", b"audience_mismatch", b"otel-mallory", b"clusters-read", b"401"):
            assert expected in received, expected
        assert token.encode() not in received
    finally:
        collector.close()


@pytest.mark.parametrize("protocol", ["h2", "http1.1"])
def test_a_default_configuration_leaves_one_record_per_decision(observed, tokens, protocol):
    """No `audit` section at all (the README snippet has none): each decision, allowed or refused,
    is one record in the filter state, which `%FILTER_STATE(wasm.brickgate)%` (native form:
    `%FILTER_STATE(brickgate:PLAIN)%`) reads."""
    assert "audit" not in main_config("https://idp.example", 1), "the observed listener uses the defaults"
    envoy, port = observed
    token = tokens.idp(scope="clusters:read", subject="default-alice")
    allowed, refused = unique(CLUSTERS), unique(CLUSTERS)
    for path, sent in ((allowed, token), (refused, None)):
        if protocol == "h2":
            headers = [("authorization", f"Bearer {sent}")] if sent else []
            h2_request(port, "GET", path, headers)
        else:
            send(port, "GET", path, sent)
    allowed_fields = brickgate_fields(logged(envoy, allowed))
    assert (allowed_fields["decision"], allowed_fields["subject"]) == ("allow", "default-alice"), allowed_fields
    refused_fields = brickgate_fields(logged(envoy, refused))
    assert (refused_fields["decision"], refused_fields["reason"]) == ("deny", "missing_token"), refused_fields


def test_with_filter_state_turned_off_the_access_log_has_no_record(start_envoy, wasm_path, idp, upstream, tokens):
    """`"audit": {"filter_state": false}` is the explicit way out: no host call, and the field is empty."""
    plugin_config = {**main_config(idp.issuer, idp.port), "audit": {"filter_state": False}}
    config = with_shipped_observability(bootstrap([brickgate_listener("main", str(wasm_path), plugin_config)], upstream.port, idp.port))
    envoy = start_envoy(config, "no-filter-state")
    envoy.wait_ready()
    port = envoy.listener_ports()["main"]
    token = tokens.idp(scope="clusters:read", subject="alice")
    deadline = time.monotonic() + 20
    while send(port, "GET", CLUSTERS, token).status != 200:
        assert time.monotonic() < deadline, "keys never loaded"
        time.sleep(0.2)
    path = unique(CLUSTERS)
    reply = send(port, "GET", path, token)
    assert reply.status == 200 and reply.forwarded["x-brickgate-subject"] == ["alice"]
    line = logged(envoy, path)
    assert line["status"] == 200
    assert line["brickgate"] in (None, "-", ""), line
