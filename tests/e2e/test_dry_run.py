"""Dry-run through the real Envoy (README "Dry-run", docs/CONFIG.md `mode`): a refusal that a rule, a
provider or the whole plugin only reports goes upstream, is counted under brickgate.would_deny.<reason>
and audited as `would_deny` with its reason; identity headers go upstream only when the token verified;
what is not covered is still refused. HTTP/1.1 and HTTP/2.
"""

import json
import re
import time

import pytest

from envoy_harness import bootstrap, brickgate_listener
from gateway_client import send
from h2_client import h2_request
from plugin_configs import main_config

CREATE = "/api/2.0/clusters/create"  # rule clusters-write: scopes_all [clusters]
LIST = "/api/2.0/clusters/list"  # rule clusters-read, enforced


def h1(port, method, path, token=None, headers=()):
    return send(port, method, path, token, headers=list(headers))


def h2(port, method, path, token=None, headers=()):
    all_headers = [*headers, *([("authorization", f"Bearer {token}")] if token else [])]
    return h2_request(port, method, path, [(n.lower(), v) for n, v in all_headers])


@pytest.fixture(scope="module")
def dry(start_envoy, wasm_path, idp, upstream, tokens):
    # The tests read the application-log audit line (off by default).
    rule_dry = {**main_config(idp.issuer, idp.port), "audit": {"log_line": True}}
    for rule in rule_dry["rules"]:
        if rule["name"] == "clusters-write":
            rule["mode"] = "dry_run"
    plugin_dry = {**main_config(idp.issuer, idp.port), "mode": "dry_run", "audit": {"log_line": True}}
    listeners = [brickgate_listener("rule_dry", str(wasm_path), rule_dry, root_id="rule_dry"),
                 brickgate_listener("plugin_dry", str(wasm_path), plugin_dry, root_id="plugin_dry")]
    envoy = start_envoy(bootstrap(listeners, upstream.port, idp.port), "dry-run")
    envoy.wait_ready()
    ports = envoy.listener_ports()
    probe = tokens.idp(scope="clusters:read")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(h1(port, "GET", LIST, probe).header("x-brickgate-reason") is None for port in ports.values()):
            break
        time.sleep(0.2)
    return envoy, ports


def audits(envoy, offset):
    return [json.loads(m) for m in re.findall(r"brickgate audit (\{.*\})", envoy.log_since(offset))]


@pytest.mark.parametrize("client", [h1, h2], ids=["http1", "http2"])
def test_a_rule_in_dry_run_lets_its_refusals_through_and_reports_them(dry, tokens, client):
    envoy, ports = dry
    before, offset = envoy.stats(), envoy.log_size()
    reader = tokens.idp(subject="dry-reader", scope="clusters:read")
    forged_subject = [("X-Brickgate-Subject", "mallory")]
    verified = client(ports["rule_dry"], "POST", CREATE, reader, forged_subject)
    assert verified.status == 200, "insufficient_scope is only reported"
    assert verified.forwarded["x-brickgate-subject"] == ["dry-reader"], "verified: identity headers go upstream"
    assert verified.forwarded["x-brickgate-rule"] == ["clusters-write"]
    anonymous = client(ports["rule_dry"], "POST", CREATE, None, forged_subject)
    assert anonymous.status == 200, "missing_token is only reported"
    assert "x-brickgate-subject" not in anonymous.forwarded, "nothing verified: no identity, the forged one stripped"
    enforced = client(ports["rule_dry"], "GET", LIST, tokens.idp(subject="dry-x", scope="clusters:read", aud="other"))
    assert enforced.status == 401 and enforced.header("x-brickgate-reason") == "audience_mismatch", "other rules enforce"
    time.sleep(0.3)
    after = envoy.stats()
    grew = lambda name: after.get(f"wasmcustom.{name}", 0) - before.get(f"wasmcustom.{name}", 0)  # noqa: E731
    assert grew("brickgate.would_deny") == 2
    assert grew("brickgate.would_deny.insufficient_scope") == 1 and grew("brickgate.would_deny.missing_token") == 1
    assert grew("brickgate.denied.audience_mismatch") == 1 and grew("brickgate.denied.insufficient_scope") == 0
    records = [r for r in audits(envoy, offset) if r.get("rule") == "clusters-write"]
    assert {(r["decision"], r["reason"], r["status"]) for r in records} == {
        ("would_deny", "insufficient_scope", 403), ("would_deny", "missing_token", 401)}
    assert any(r.get("subject") == "dry-reader" for r in records), "verified: the record names the caller"


@pytest.mark.parametrize("client", [h1, h2], ids=["http1", "http2"])
def test_the_whole_plugin_in_dry_run_still_refuses_what_the_upstream_would_misread(dry, client):
    _, ports = dry
    nowhere = client(ports["plugin_dry"], "GET", "/nowhere")
    assert nowhere.status == 200, "no_matching_rule is only reported"
    hostile = client(ports["plugin_dry"], "GET", "/api/a%2Fb")
    assert hostile.status == 400 and hostile.header("x-brickgate-reason") == "bad_path", "hygiene is always enforced"
