"""Issue 16 points 4, 7e and 8, against the fake workspace (devstack/workspace.py) behind a real
Envoy: the Databricks token brickgate obtains carries the caller's own Databricks scopes (narrowed to
upstream.scopes), not upstream.scopes; one exchange per audience; and token calls sent at once by the
stream that needs them, not at the root context's next tick.

The fake workspace issues tokens with exactly the scopes requested and its REST handlers enforce them,
`sql:restricted-query` included (a statement that is not a query is refused), so what the workspace
answers is what a restricted token can do.
"""

import http.client
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from databricks_support import (
    FETCH,
    STAT,
    allowed_by_brickgate,
    bootstrap_with,
    counters,
    delta,
    record,
    routed_listener,
    token_calls,
    wait_until_decided,
    workspace_control,
    workspace_stats,
)
from devstack.httpbase import running
from devstack.idp import make_idp
from devstack.workspace import SERVICE_PRINCIPALS, FederationPolicy, GRANT_CLIENT_CREDENTIALS, make_workspace
from envoy_harness import VM_SECRET_ENV
from gateway_client import Reply, send
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

SP_GATEWAY = SERVICE_PRINCIPALS[0]
OTHER_AUDIENCE = "other-api"
DEFERRED = f"{STAT}upstream_token.fetch_deferred"
STATEMENTS = "/api/2.0/sql/statements"
CLUSTERS = "/api/2.1/clusters/list"


def plugin_config(provider: dict, rules: list | None = None) -> dict:
    return {"realm": REALM, "providers": {"p": provider}, "rules": rules or [], "databricks": {"route_catalogue": True}}


# A rule on groups alone: its callers hold no Databricks scope.
ADMINS = [{"name": "cluster-admins", "match": {"prefix": "/api/2.1/clusters/"}, "providers": ["p"],
           "require": {"groups_any": ["cluster-admins"]}}]


@pytest.fixture(scope="module")
def swap(start_envoy, wasm_path):
    with (running(make_idp(0, audience=AUDIENCE)) as idp,
          running(make_workspace(0, policies=[FederationPolicy(idp.issuer, (AUDIENCE, OTHER_AUDIENCE))],
                                 users={"probe": ["all-apis"]})) as workspace):
        url = f"http://127.0.0.1:{workspace.port}"
        provider = lambda **upstream: idp_provider(idp.issuer, idp.port, audiences=[AUDIENCE, OTHER_AUDIENCE],  # noqa: E731
                                                   upstream={"cluster": "workspace", "workspace_url": url, **upstream})
        listeners = {
            "exchange": provider(mode="exchange", scopes=["all-apis"]),
            "sp": provider(mode="service_principal", client_id=SP_GATEWAY.application_id,
                           client_secret_env=VM_SECRET_ENV, scopes=["all-apis"]),
            "sql_only": provider(mode="exchange", scopes=["sql"]),
            "groups": provider(mode="exchange", scopes=["all-apis"]),
        }
        config = bootstrap_with([routed_listener(name, wasm_path, plugin_config(p, ADMINS if name == "groups" else None),
                                                 "workspace")
                                 for name, p in listeners.items()], {"workspace": workspace.port, "idp": idp.port})
        envoy = start_envoy(config, "token-swap", env={VM_SECRET_ENV: SP_GATEWAY.secret})
        try:
            envoy.wait_ready()
            ports = envoy.listener_ports()
            tokens = TokenFactory(idp.issuer)
            probe = tokens.idp(subject="probe", scope="sql")
            for port in ports.values():
                wait_until_decided(port, lambda p: send(p, "GET", "/api/2.0/sql/warehouses", probe))
            yield envoy, ports, workspace, tokens
        finally:
            envoy.stop()


def new_user(workspace, label: str) -> str:
    """A workspace user allowed any scope (all-apis): what it gets is what brickgate asks for."""
    subject = f"{label}-{uuid.uuid4().hex[:8]}@example.com"
    users = workspace_control(workspace)["users"]
    workspace_control(workspace, users={**users, subject: ["all-apis"]})
    return subject


def statement(port: int, token: str, text: str) -> Reply:
    """A Statement Execution request running `text`."""
    body = json.dumps({"statement": text, "warehouse_id": "abc123"}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", STATEMENTS, body=body,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("listener", ["exchange", "sp"])
def test_a_restricted_query_caller_gets_a_restricted_databricks_token(swap, listener):
    """Issue 16 point 4: admitted by `sql:restricted-query` alone, the caller's queries run, and its
    DROP TABLE reaches Databricks with a token that cannot run it."""
    envoy, ports, workspace, tokens = swap
    subject = new_user(workspace, "analyst")
    token = tokens.idp(subject=subject, scope="sql:restricted-query")
    query = statement(ports[listener], token, "SELECT 1")
    assert query.status == 200 and allowed_by_brickgate(query), query.body
    assert query.json()["scopes"] == ["sql:restricted-query"]
    drop = statement(ports[listener], token, "DROP TABLE main.default.trips")
    assert allowed_by_brickgate(drop), "brickgate leaves read-only enforcement to Databricks' SQL engine"
    assert drop.status == 403 and "read-only" in drop.json()["message"], drop.body
    record(f"restricted_query_{listener}", query=query.status, drop=drop.status, scopes=query.json()["scopes"])


def test_a_clusters_read_caller_gets_a_clusters_read_token_not_all_apis(swap):
    envoy, ports, workspace, tokens = swap
    subject = new_user(workspace, "reader")
    reply = send(ports["exchange"], "GET", CLUSTERS, tokens.idp(subject=subject, scope="clusters:read"))
    assert reply.status == 200 and reply.json()["scopes"] == ["clusters:read"], reply.body
    stats = workspace_stats(workspace)
    assert token_calls(stats, subject, scope="clusters:read") == 1 and token_calls(stats, subject, scope="all-apis") == 0


def test_service_principal_tokens_are_narrowed_per_caller_scope_set(swap):
    envoy, ports, workspace, tokens = swap
    reply = send(ports["sp"], "GET", CLUSTERS, tokens.idp(subject="sp-caller@example.com", scope="clusters:read"))
    assert reply.status == 200 and reply.json()["scopes"] == ["clusters:read"], reply.body
    assert reply.json()["principal"] == SP_GATEWAY.application_id
    assert token_calls(workspace_stats(workspace), grant_type=GRANT_CLIENT_CREDENTIALS, scope="clusters:read") >= 1


@pytest.mark.parametrize(("method", "path", "scope"), [("GET", CLUSTERS, "clusters:read"),
                                                       ("POST", "/api/2.1/clusters/create", "clusters")])
def test_a_caller_admitted_by_its_groups_alone_gets_the_routes_narrowest_scope(swap, method, path, scope):
    """No Databricks scope to narrow: brickgate asks for the narrowest scope the catalogue names for
    the request's route (within upstream.scopes), never upstream.scopes' all-apis."""
    envoy, ports, workspace, tokens = swap
    subject = new_user(workspace, "admin")
    reply = send(ports["groups"], method, path, tokens.idp(subject=subject, scope=None, groups=["cluster-admins"]))
    assert reply.status == 200 and reply.json()["scopes"] == [scope], reply.body


def test_a_caller_whose_scopes_upstream_cannot_honour_is_refused_before_any_exchange(swap):
    envoy, ports, workspace, tokens = swap
    subject = new_user(workspace, "outside")
    before = workspace_stats(workspace)["token_requests"]
    reply = send(ports["sql_only"], "GET", CLUSTERS, tokens.idp(subject=subject, scope="clusters:read"))
    assert reply.status == 403 and reply.header("x-brickgate-reason") == "insufficient_scope"
    assert "upstream.scopes [sql]" in reply.json()["message"], reply.body
    assert workspace_stats(workspace)["token_requests"] == before


def test_a_token_for_another_audience_gets_its_own_exchange(swap):
    """Issue 16 point 7e: the federation policy judges `aud`; a token of the same subject for another
    audience never reuses the Databricks token obtained for the first."""
    envoy, ports, workspace, tokens = swap
    subject = new_user(workspace, "two-auds")
    for aud in (AUDIENCE, OTHER_AUDIENCE, AUDIENCE, OTHER_AUDIENCE):
        reply = send(ports["exchange"], "GET", CLUSTERS, tokens.idp(subject=subject, scope="clusters:read", aud=aud))
        assert reply.status == 200, reply.body
    assert token_calls(workspace_stats(workspace), subject) == 2, "one exchange per audience, then cached"


def test_token_calls_are_sent_by_the_stream_that_needs_them(swap):
    """Issue 16 point 8, without timing: every first request of a new caller has its token call sent
    from its own stream (`fetch`), none from the root context's tick (`fetch_deferred`), and the
    workspace sees each exchange before that caller's API call."""
    envoy, ports, workspace, tokens = swap
    callers = [new_user(workspace, f"first-{i}") for i in range(8)]
    before = counters(envoy)
    offset = len(workspace.snapshot_log())
    for subject in callers:
        reply = send(ports["exchange"], "GET", CLUSTERS, tokens.idp(subject=subject, scope="clusters:read"))
        assert reply.status == 200, reply.body
    after = counters(envoy)
    assert delta(before, after, FETCH) == len(callers)
    assert delta(before, after, DEFERRED) == 0, "a token call waited for the tick"
    paths = [entry["path"] for entry in workspace.snapshot_log()[offset:]]
    assert paths == ["/oidc/v1/token", CLUSTERS] * len(callers), paths


CHECK_CASES = [
    # (upstream, a rule's scopes) → the warnings `brickgate check` prints (substrings), none when []
    ({"mode": "exchange", "scopes": ["all-apis"]}, ["jobs:read"], []),
    ({"mode": "exchange", "scopes": ["sql", "openid"]}, ["jobs:read"],
     ["upstream.scopes [openid] are not Databricks API scopes", "rules admit callers by [jobs:read]"]),
    ({"mode": "service_principal", "scopes": ["all-apis"], "client_id": "sp", "client_secret": "s"}, ["jobs:read"],
     ["must allow requesting a subset of its scopes"]),
]


@pytest.mark.parametrize(("upstream", "scopes", "expected"), CHECK_CASES)
def test_check_warns_where_the_configuration_cannot_honour_callers_scopes(tmp_path, upstream, scopes, expected):
    config = {"providers": {"p": {"issuer": "https://idp.example", "audiences": ["api"],
                                  "jwks": {"remote": {"cluster": "idp", "uri": "https://idp.example/keys"}},
                                  "upstream": {"cluster": "ws", "workspace_url": "https://ws.example", **upstream}}},
              "rules": [{"name": "r", "match": {"prefix": "/api/2.1/jobs/"}, "providers": ["p"],
                         "require": {"scopes_any": scopes}}],
              "allow_inline_secrets": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    cli = os.environ.get("BRICKGATE_CLI", str(Path(__file__).resolve().parents[2] / "target" / "release" / "brickgate"))
    result = subprocess.run([cli, "check", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.strip().startswith("warning:")]
    for text in expected:
        assert any(text in line for line in warnings), (text, warnings)
    if not expected:
        assert warnings == []
