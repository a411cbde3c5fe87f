"""The observability parts of the shipped Envoy config (envoy/envoy.yaml), for tests that run them.

Tests take the access log and the stats tags from the shipped YAML itself, so what they check is
what users run."""

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "envoy" / "envoy.yaml"


def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def shipped_hcm(config: dict | None = None) -> dict:
    config = config or shipped()
    listener = config["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def with_shipped_observability(bootstrap: dict) -> dict:
    """`bootstrap` with the shipped stats tags, and the shipped access log on each listener."""
    config = shipped()
    bootstrap["stats_config"] = config["stats_config"]
    for listener in bootstrap["static_resources"]["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["access_log"] = shipped_hcm(config)["access_log"]
    return bootstrap
