"""The observability parts of the shipped Envoy config of the form under test (envoy/envoy.yaml for
Wasm, envoy/native.yaml for the dynamic module), for tests that run them.

Tests take the access log, the stats tags, the OpenTelemetry log and the Prometheus scrape rule from
the shipped files themselves, so what they check is what users run."""

import json
import re
from pathlib import Path

import yaml

from envoy_harness import NATIVE

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVOY_DIR = REPO_ROOT / "envoy"
WASM_CONFIG = ENVOY_DIR / "envoy.yaml"
NATIVE_CONFIG = ENVOY_DIR / "native.yaml"
OTEL_ACCESS_LOG = ENVOY_DIR / ("otel-access-log-native.yaml" if NATIVE else "otel-access-log.yaml")
# The native form's scrape job: renames its Prometheus names to the Wasm form's.
PROMETHEUS_NATIVE = ENVOY_DIR / "prometheus-native.yaml"


def shipped(path: Path | None = None, native: bool = NATIVE) -> dict:
    """A shipped YAML file; by default the dev config of the form (`native`, default: the form under test)."""
    return yaml.safe_load((path or (NATIVE_CONFIG if native else WASM_CONFIG)).read_text())


def shipped_hcm(config: dict | None = None) -> dict:
    config = config or shipped()
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def with_shipped_observability(bootstrap: dict, native: bool = NATIVE) -> dict:
    """`bootstrap` with the shipped stats tags (the Wasm form's; the native form needs none: its
    request counter carries its labels), and the shipped access log on each listener, of the form
    whose filter `bootstrap` runs (`native`, default: the form under test)."""
    config = shipped(native=native)
    if "stats_config" in config:
        bootstrap["stats_config"] = config["stats_config"]
    for listener in bootstrap["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["access_log"] = shipped_hcm(config)["access_log"]
    return bootstrap


def audit_record(logged: str | dict | None, native: bool = NATIVE) -> dict:
    """The audit record in a shipped json_format access-log line's `brickgate` field: in the Wasm
    form the `google.protobuf.Struct` object Envoy renders inside its `Any` wrapper; in the native
    form the string `%FILTER_STATE(brickgate:PLAIN)%` gives, the record's JSON text."""
    if native:
        assert isinstance(logged, str), logged
        return json.loads(logged)
    assert logged["@type"] == "type.googleapis.com/google.protobuf.Struct", logged
    return logged["value"]


def scraped(body: str) -> str:
    """/stats/prometheus as Prometheus stores it with the form's shipped scrape config: the Wasm
    form's as Envoy wrote it; the native form's with the metric_relabel_configs of
    envoy/prometheus-native.yaml applied to each sample's name (a relabel regex is anchored at both
    ends; `$1` is its first group: prometheus.io/docs/prometheus/latest/configuration/configuration/#relabel_config)."""
    if not NATIVE:
        return body
    (job,) = shipped(PROMETHEUS_NATIVE)["scrape_configs"]
    (rule,) = job["metric_relabel_configs"]
    assert (rule["source_labels"], rule["target_label"]) == (["__name__"], "__name__"), rule
    regex = re.compile(rule["regex"])
    replacement = re.sub(r"\$(\d+)", r"\\\1", rule["replacement"])

    def rename(line: str) -> str:
        match = re.match(r"(# TYPE )?([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)", line, re.S)
        if not match or not regex.fullmatch(match[2]):
            return line
        return (match[1] or "") + regex.fullmatch(match[2]).expand(replacement) + match[3]

    return "\n".join(rename(line) for line in body.splitlines())
