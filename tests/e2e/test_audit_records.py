"""Audit you can trust (issue 8, findings 11 and 14), through a real Envoy over HTTP/1.1 and HTTP/2:
every local reply has its reason, its counter and one audit record; a record written before the
signature verified names the holder as `claimed_*`, never `subject`; and what a refusal repeats of
attacker-chosen token fields is bounded."""

import json
import re
import time
from dataclasses import dataclass

import pytest

from databricks_support import bootstrap_with, counters, delta, make_body_echo, routed_listener, wait_until_decided
from devstack import tokens as raw
from devstack.httpbase import running
from devstack.idp import make_idp
from envoy_harness import EnvoyProcess
from gateway_client import send
from h2_client import h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

MAX_BODY = 2048
CHAT = "/serving-endpoints/chat/completions"
AUDIT_LINE = re.compile(r"brickgate audit (\{.*\})")


def audit_config(idp) -> dict:
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [
            {"name": "endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"],
             "require": {"scopes_any": ["serving:{name}"]}},
            {"name": "jobs", "match": {"prefix": "/api/2.1/jobs/"}, "providers": ["idp"],
             "require": {"scopes_any": ["jobs"]}},
        ],
        "databricks": {"route_catalogue": False, "max_body_bytes": MAX_BODY},
        # The record as an application-log line too (off by default), which these tests read.
        "audit": {"log_line": True},
    }


@dataclass
class AuditGateway:
    port: int
    envoy: EnvoyProcess
    tokens: TokenFactory
    idp: object
    echo: object


@pytest.fixture(scope="module")
def audit_gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        factory = TokenFactory(idp.issuer)
        listener = routed_listener("audit", wasm_path, audit_config(idp), "echo")
        # Behind a trusted proxy a gateway keeps the request id it is given; the client then
        # chooses it, which the bounded-record test needs.
        listener["filter_chains"][0]["filters"][0]["typed_config"]["preserve_external_request_id"] = True
        envoy = start_envoy(bootstrap_with([listener], {"echo": echo.port, "idp": idp.port}), "audit-records")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["audit"]
            probe = factory.idp(scope="jobs")
            wait_until_decided(port, lambda p: send(p, "GET", "/api/2.1/jobs/list", probe))
            yield AuditGateway(port, envoy, factory, idp, echo)
        finally:
            envoy.stop()


def records_for(envoy: EnvoyProcess, offset: int, request_id: str | None = None) -> list[dict]:
    records = [json.loads(match.group(1)) for match in AUDIT_LINE.finditer(envoy.log_since(offset, 400_000))]
    return [r for r in records if request_id is None or r.get("request_id") == request_id]


def wait_for_records(envoy: EnvoyProcess, offset: int, count: int) -> list[dict]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = records_for(envoy, offset)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return records_for(envoy, offset)


@pytest.mark.parametrize("protocol", ["h2", "http1.1"])
def test_a_body_over_the_limit_is_refused_counted_and_audited_once(audit_gateway, protocol):
    token = audit_gateway.tokens.idp(scope="serving:churn")
    body = json.dumps({"model": "churn", "pad": "x" * (MAX_BODY + 10)}).encode()
    before, offset = counters(audit_gateway.envoy), audit_gateway.envoy.log_size()
    hits = audit_gateway.echo.snapshot_counts().get(CHAT, 0)
    if protocol == "h2":
        reply = h2_request(audit_gateway.port, "POST", CHAT, [("authorization", f"Bearer {token}")],
                           body_chunks=[body[:1000], body[1000:]])
    else:
        from databricks_support import send_json
        reply = send_json(audit_gateway.port, CHAT, token, body)
    assert (reply.status, reply.header("x-brickgate-reason")) == (413, "body_too_large")
    assert audit_gateway.echo.snapshot_counts().get(CHAT, 0) == hits
    after = counters(audit_gateway.envoy)
    assert delta(before, after, "wasmcustom.brickgate.denied.body_too_large") == 1
    assert delta(before, after, "wasmcustom.brickgate.denied") == 1
    (record,) = wait_for_records(audit_gateway.envoy, offset, 1)
    assert (record["decision"], record["reason"], record["status"]) == ("deny", "body_too_large", 413)


def test_a_forged_token_is_recorded_with_a_claimed_subject_only(audit_gateway):
    victim = "ceo@example.com"
    forged = raw.mint(raw.claims(audit_gateway.idp.issuer, AUDIENCE, scope="jobs", subject=victim), "attacker-rsa",
                      header={"kid": "test-rsa-1"})
    offset = audit_gateway.envoy.log_size()
    reply = send(audit_gateway.port, "GET", "/api/2.1/jobs/list", forged)
    assert (reply.status, reply.header("x-brickgate-reason")) == (401, "bad_signature")
    (record,) = wait_for_records(audit_gateway.envoy, offset, 1)
    assert record["claimed_subject"] == victim
    assert "subject" not in record, record
    # A verified token names its holder as `subject`.
    offset = audit_gateway.envoy.log_size()
    genuine = audit_gateway.tokens.idp(scope="jobs", subject="alice@example.com")
    assert send(audit_gateway.port, "GET", "/api/2.1/jobs/list", genuine).status == 200
    (record,) = wait_for_records(audit_gateway.envoy, offset, 1)
    assert record["subject"] == "alice@example.com" and "claimed_subject" not in record


@pytest.mark.parametrize("field", ["alg", "aud", "scope"])
def test_attacker_chosen_strings_are_repeated_bounded(audit_gateway, field):
    huge = "A" * 3000
    if field == "alg":
        token = raw.mint(raw.claims(audit_gateway.idp.issuer, AUDIENCE, scope="jobs"), "rsa-1", header={"alg": huge})
        path = "/api/2.1/jobs/list"
    elif field == "aud":
        claims = raw.claims(audit_gateway.idp.issuer, AUDIENCE, scope="jobs")
        claims["aud"] = [f"aud-{i}-{huge[:100]}" for i in range(50)]
        token = raw.mint(claims, "rsa-1")
        path = "/api/2.1/jobs/list"
    else:
        token = audit_gateway.tokens.idp(scope=" ".join(f"s{i}{huge[:80]}" for i in range(40)))
        path = "/api/2.1/jobs/list"
    reply = send(audit_gateway.port, "GET", path, token)
    assert reply.status in (400, 401, 403), reply.body
    challenge = reply.header("www-authenticate") or ""
    assert len(challenge) < 1200, challenge[:200]
    assert len(reply.body) < 2500, reply.body[:200]
    assert huge[:200] not in reply.body.decode()


def test_every_answer_is_counted_once_over_both_protocols(audit_gateway):
    token = audit_gateway.tokens.idp(scope="jobs")
    before, offset = counters(audit_gateway.envoy), audit_gateway.envoy.log_size()
    answers = [
        send(audit_gateway.port, "GET", "/api/2.1/jobs/list", token),
        send(audit_gateway.port, "GET", "/api/2.1/jobs/list", None),
        h2_request(audit_gateway.port, "GET", "/api/2.1/jobs/list", [("authorization", f"Bearer {token}")]),
        h2_request(audit_gateway.port, "GET", "/api/2.1/clusters/list", [("authorization", f"Bearer {token}")]),
    ]
    assert [a.status for a in answers] == [200, 401, 200, 403]
    after = counters(audit_gateway.envoy)
    assert delta(before, after, "wasmcustom.brickgate.allowed") == 2
    assert delta(before, after, "wasmcustom.brickgate.denied") == 2
    assert len(wait_for_records(audit_gateway.envoy, offset, 4)) == 4


TRUNCATED = re.compile(r"…\[truncated from (\d+) bytes\]$")


@pytest.mark.parametrize("protocol", ["h2", "http1.1"])
def test_a_huge_request_id_and_path_are_recorded_bounded_and_marked(audit_gateway, protocol):
    """Request id at most 128 bytes, path at most 2 KiB (identity/audit.rs), cut with a mark that
    says how long they were: for a path brickgate refuses unread (over 8 KiB) and one it allows."""
    token = audit_gateway.tokens.idp(scope="jobs")
    request_id = "r" * 5000
    refused_path = "/api/2.1/jobs/" + "p" * 20_000
    allowed_path = "/api/2.1/jobs/" + "a" * 3000
    offset = audit_gateway.envoy.log_size()
    for path, status in ((refused_path, 400), (allowed_path, 200)):
        headers = [("authorization", f"Bearer {token}"), ("x-request-id", request_id)]
        if protocol == "h2":
            reply = h2_request(audit_gateway.port, "GET", path, headers)
        else:
            reply = send(audit_gateway.port, "GET", path, headers=headers)
        assert reply.status == status, reply.body[:200]
    records = wait_for_records(audit_gateway.envoy, offset, 2)
    assert [r["status"] for r in records] == [400, 200], records
    assert records[0]["reason"] == "bad_path"
    for record, path in zip(records, (refused_path, allowed_path)):
        assert len(record["path"].encode()) <= 2048 and len(record["request_id"].encode()) <= 128, record
        assert TRUNCATED.search(record["path"]).group(1) == str(len(path)), record["path"][-60:]
        assert TRUNCATED.search(record["request_id"]).group(1) == "5000", record["request_id"]
        assert path.startswith(TRUNCATED.sub("", record["path"]))


def test_a_databricks_personal_access_token_is_recorded_as_what_it_is(audit_gateway):
    pat = "dapi0123456789abcdef0123456789abcdef"
    offset = audit_gateway.envoy.log_size()
    reply = send(audit_gateway.port, "GET", "/api/2.1/jobs/list", pat)
    assert (reply.status, reply.header("x-brickgate-reason")) == (401, "databricks_credential")
    (record,) = wait_for_records(audit_gateway.envoy, offset, 1)
    assert (record["decision"], record["reason"], record["status"]) == ("deny", "databricks_credential", 401)
    assert record["detail"].startswith("this is a Databricks personal access token; rule "), record
    assert pat not in json.dumps(record)
