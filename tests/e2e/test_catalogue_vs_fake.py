"""Where brickgate's catalogue and the fake workspace disagree (issue 9 point 7).

The fake workspace's route → scope table (devstack/workspace_rest.py) is written from Databricks'
documentation, independently of core/src/databricks/catalogue.rs. Here the same workspace-issued
token is sent to each route twice: through brickgate (pass-through, catalogue on, upstream = the
fake) and to the fake directly. Each (route, scope) where one allows and the other refuses is a
disagreement; the known ones are listed below with the reason. A new one fails the test: either
the catalogue or the fake is wrong about Databricks, and someone has to decide which.
"""

import json
import urllib.request

import pytest

from databricks_support import bootstrap_with, routed_listener, wait_until_decided
from devstack.httpbase import running
from devstack.workspace import make_workspace
from gateway_client import send
from plugin_configs import REALM

ROUTES = [
    ("GET", "/api/2.1/clusters/list"),
    ("POST", "/api/2.1/clusters/create"),
    ("POST", "/api/2.0/sql/statements"),
    ("GET", "/api/2.0/sql/warehouses"),
    ("GET", "/api/2.0/sql/alerts"),
    ("POST", "/sql/1.0/warehouses/w1"),
    ("POST", "/sql/protocolv1/o/1234/0123-abc"),
    ("POST", "/serving-endpoints/m1/invocations"),
    ("POST", "/serving-endpoints/m1/served-models/v1/invocations"),
    ("POST", "/serving-endpoints/gemini/v1beta/models/m1:generateContent"),
    ("GET", "/ai-gateway/mlflow/v1/models"),
    ("GET", "/api/2.0/permissions/clusters/c1"),
    ("GET", "/api/2.0/alerts"),
    ("DELETE", "/api/2.0/alerts/a1"),
    ("GET", "/api/2.0/preview/accounts/access-control/rule-sets"),
    ("PUT", "/api/2.0/accounts/acc1/workspaces/9/permissionassignments/principals/2"),
    ("POST", "/api/2.0/lakeview/dashboards"),
    ("GET", "/api/2.0/preview/scim/v2/Me"),
    ("GET", "/api/2.0/workspace/list"),
    ("GET", "/api/2.0/secrets/list"),
    ("GET", "/api/2.0/secrets/get"),
    ("POST", "/api/2.0/token/create"),
    ("GET", "/api/2.0/accounts/servicePrincipals/7/credentials/secrets"),
    ("POST", "/api/2.0/accounts/servicePrincipals/7/credentials/secrets"),
    ("POST", "/api/2.0/unity-catalog/temporary-table-credentials"),
]
SCOPES = ["all-apis", "all-apis:read", "clusters", "clusters:read", "sql", "sql:restricted-query",
          "sql:read:restricted-query", "model-serving", "ai-gateway:read", "authentication", "access-management",
          "dashboards", "alerts:read", "workspace.workspace:read", "workspace:read", "gw.secrets", "secrets", "unity-catalog",
          "model-serving-inference"]

CREDENTIAL_MINTING = "brickgate refuses credential-minting and code-running classes unless enabled; Databricks does not"
# (method, path, scope) → why. True in the value's first place: brickgate allows, the fake refuses.
KNOWN = {
    **{(m, p, s): (False, CREDENTIAL_MINTING)
       for m, p, scopes in [("GET", "/api/2.0/secrets/get", ["all-apis", "secrets"]),
                            ("POST", "/api/2.0/token/create", ["all-apis"]),
                            ("POST", "/api/2.0/accounts/servicePrincipals/7/credentials/secrets", ["all-apis", "authentication"]),
                            ("POST", "/api/2.0/unity-catalog/temporary-table-credentials", ["all-apis", "unity-catalog"])]
       for s in scopes},
    ("GET", "/api/2.0/secrets/get", "all-apis:read"): (False, CREDENTIAL_MINTING + "; and a secret's value is never a read"),
    ("POST", "/serving-endpoints/gemini/v1beta/models/m1:generateContent", "model-serving-inference"): (
        True, "the Query API page names model-serving-inference for /invocations; no page states the Gemini shape's "
              "scopes, and the catalogue holds every query shape of an endpoint to the same scopes"),
}


def fake_allows(workspace_port: int, method: str, path: str, token: str) -> bool | None:
    """The fake's verdict: True (200), False (401/403), None (no such API: 404)."""
    request = urllib.request.Request(f"http://127.0.0.1:{workspace_port}{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except urllib.error.HTTPError as error:
        return None if error.code == 404 else False


@pytest.fixture(scope="module")
def both(start_envoy, wasm_path):
    with running(make_workspace(0)) as workspace:
        provider = {"issuer": workspace.issuer, "allow_any_audience": True, "idp": "databricks",
                    "jwks": {"remote": {"cluster": "workspace"}}}
        config = {"realm": REALM, "providers": {"dbx": provider}, "rules": [], "databricks": {"route_catalogue": True}}
        envoy = start_envoy(bootstrap_with([routed_listener("vs", wasm_path, config, "workspace")],
                                           {"workspace": workspace.port}), "catalogue-vs-fake")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["vs"]
            probe = workspace.issue("probe", "databricks-cli", ["clusters:read"])["access_token"]
            wait_until_decided(port, lambda p: send(p, "GET", "/api/2.1/clusters/list", probe))
            yield port, workspace
        finally:
            envoy.stop()


def test_where_the_catalogue_and_the_fake_disagree(both):
    port, workspace = both
    found = {}
    for scope in SCOPES:
        token = workspace.issue("alice@example.com", "databricks-cli", [scope])["access_token"]
        for method, path in ROUTES:
            fake = fake_allows(workspace.port, method, path, token)
            if fake is None:
                continue
            reply = send(port, method, path, token)
            brickgate = reply.header("x-brickgate-reason") is None
            if brickgate and reply.status != 200:  # allowed by brickgate, so the fake answered
                assert not fake, (method, path, scope, reply.status)
            if brickgate != fake:
                found[(method, path, scope)] = brickgate
    unexpected = {key: allows for key, allows in found.items() if KNOWN.get(key, (None,))[0] != allows}
    vanished = sorted(key for key in KNOWN if key not in found)
    report = "\n".join(f"  {'brickgate allows' if allows else 'brickgate refuses'}: {m} {p} with {s}"
                       for (m, p, s), allows in sorted(unexpected.items()))
    assert not unexpected, f"new disagreements (fix the catalogue or the fake, or list them in KNOWN):\n{report}"
    assert not vanished, f"listed disagreements that no longer occur: {json.dumps(vanished)}"
