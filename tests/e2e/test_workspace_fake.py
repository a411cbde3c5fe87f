"""The fake Databricks workspace (devstack/workspace.py), tested directly over HTTP (no Envoy).

It gets its own fake IdP so its JWKS fetches never disturb the session IdP's counts.
"""

import base64
import http.client
import json
import uuid
import time
import urllib.parse

import jwt
import pytest

from devstack import tokens
from devstack.httpbase import running
from devstack.idp import make_idp
from devstack.keys import TEST_KEYS
from devstack.workspace import (
    ACCOUNT_ID,
    DEFAULT_USERS,
    FEDERATION_CLIENT_ID,
    GRANT_TOKEN_EXCHANGE,
    SERVICE_PRINCIPALS,
    TOKEN_TYPE_JWT,
    WORKSPACE_ID,
    dev_policy,
    make_workspace,
)

AUDIENCE = "brickgate-demo"
FORM = "application/x-www-form-urlencoded"
SP_GATEWAY, SP_READER = SERVICE_PRINCIPALS


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, elapsed_s: float):
        self.status, self.headers, self.body, self.elapsed_s = status, headers, body, elapsed_s

    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


def request(port: int, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    started = time.monotonic()
    try:
        connection.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.getheaders(), response.read(), time.monotonic() - started)
    finally:
        connection.close()


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.fixture(scope="module")
def ws_idp():
    with running(make_idp(0, audience=AUDIENCE)) as server:
        yield server


@pytest.fixture(scope="module")
def workspace(ws_idp):
    with running(make_workspace(0, policies=[dev_policy(ws_idp.issuer, AUDIENCE)])) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_state(request):
    """Default policy/users/fault and zero counts for every test that uses the workspace."""
    if "workspace" not in request.fixturenames:
        yield
        return
    workspace, idp = request.getfixturevalue("workspace"), request.getfixturevalue("ws_idp")
    default = {"policy": dev_policy(idp.issuer, AUDIENCE).public(), "users": {u: list(s) for u, s in DEFAULT_USERS.items()},
               "token_endpoint_fault": "none", "delay_s": 3.0, "reset_stats": True}
    control(workspace, default)
    yield
    control(workspace, default)
    with idp.control.lock:
        idp.control.apply({"signing_key": "rsa-1", "jwks_keys": ["rsa-1", "ec-1"], "jwks_fault": "none"})


def control(workspace, changes: dict) -> Answer:
    return request(workspace.port, "POST", "/_control", json.dumps(changes), {"Content-Type": "application/json"})


def token_request(workspace, form: dict, headers: dict | None = None) -> Answer:
    return request(workspace.port, "POST", "/oidc/v1/token", urllib.parse.urlencode(form), {"Content-Type": FORM, **(headers or {})})


def exchange(workspace, subject_token: str, scope: str | None = "all-apis", **extra) -> Answer:
    form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject_token, "subject_token_type": TOKEN_TYPE_JWT}
    if scope is not None:
        form["scope"] = scope
    form.update(extra)
    return token_request(workspace, form)


def idp_token(idp, key: str = "rsa-1", alg: str | None = None, header: dict | None = None, **claim_fields) -> str:
    claim_fields.setdefault("subject", "demo-reader")
    return tokens.mint(tokens.claims(idp.issuer, AUDIENCE, **claim_fields), key, alg, header=header)


def dbx_token(workspace, scope: str = "all-apis", subject: str = "demo-reader", key: str = "dbx-1", **claim_fields) -> str:
    return tokens.mint(tokens.databricks_claims(workspace.issuer, subject, scope, **claim_fields), key, header={"typ": "JWT"})


def verify_dbx(workspace, access_token: str) -> dict:
    jwks = request(workspace.port, "GET", "/oidc/v1/keys").json()
    header = jwt.get_unverified_header(access_token)
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == header["kid"])
    return jwt.decode(access_token, key, algorithms=["RS256"], issuer=workspace.issuer, options={"verify_aud": False})


def assert_no_token_in(answer: Answer, token: str) -> None:
    """No part of the subject token (any segment, the signature above all) is echoed."""
    for segment in tokens.segments(token) if token else ():
        if len(segment) >= 16:
            assert segment.encode() not in answer.body, "the response echoes part of the subject token"


# --- discovery ----------------------------------------------------------------------------------


def test_discovery_documents(workspace):
    host = f"http://127.0.0.1:{workspace.port}"
    as_metadata = request(workspace.port, "GET", "/oidc/.well-known/oauth-authorization-server").json()
    oidc = request(workspace.port, "GET", "/oidc/.well-known/openid-configuration").json()
    assert as_metadata == oidc
    assert oidc["issuer"] == f"{host}/oidc" == workspace.issuer
    assert oidc["jwks_uri"] == f"{host}/oidc/v1/keys" and oidc["token_endpoint"] == f"{host}/oidc/v1/token"
    assert {"client_credentials", GRANT_TOKEN_EXCHANGE} <= set(oidc["grant_types_supported"])

    keys = request(workspace.port, "GET", "/oidc/v1/keys")
    assert keys.status == 200 and keys.json() == {"keys": [TEST_KEYS["dbx-1"].public_jwk()]}
    assert keys.json()["keys"][0]["kid"] == "test-dbx-1" and keys.json()["keys"][0]["alg"] == "RS256"

    config = request(workspace.port, "GET", "/.well-known/databricks-config").json()
    assert config == {"oidc_endpoint": f"{host}/oidc", "account_id": ACCOUNT_ID, "workspace_id": WORKSPACE_ID, "cloud": "aws",
                      "host_type": "WORKSPACE_HOST", "token_federation_default_oidc_audiences": [f"{host}/oidc/v1/token"]}


def test_issuer_host_option():
    with running(make_workspace(0, issuer_host="https://adb-1234567890123456.7.example.test/")) as server:
        doc = request(server.port, "GET", "/oidc/.well-known/openid-configuration").json()
    assert doc["issuer"] == "https://adb-1234567890123456.7.example.test/oidc"
    assert doc["jwks_uri"] == "https://adb-1234567890123456.7.example.test/oidc/v1/keys"


# --- client_credentials ---------------------------------------------------------------------------


def test_client_credentials_issues_databricks_token(workspace):
    answer = token_request(workspace, {"grant_type": "client_credentials", "scope": "all-apis"}, basic("sp-gateway", "sp-gateway-secret"))
    assert answer.status == 200 and answer.header("Cache-Control") == "no-store"
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "all-apis"
    assert jwt.get_unverified_header(body["access_token"]) == {"alg": "RS256", "typ": "JWT", "kid": "test-dbx-1"}
    claims = verify_dbx(workspace, body["access_token"])
    assert set(claims) == {"iss", "sub", "client_id", "scope", "iat", "exp", "jti"}  # no aud
    assert claims["sub"] == claims["client_id"] == SP_GATEWAY.application_id
    assert claims["exp"] - claims["iat"] == 3600 and claims["scope"] == "all-apis"


CLIENT_CREDENTIALS = [
    pytest.param(basic("sp-gateway", "sp-gateway-secret"), {}, 200, None, "all-apis", id="default-scope"),
    pytest.param(basic(SP_GATEWAY.application_id, "sp-gateway-secret"), {"scope": "clusters:read sql"}, 200, None,
                 "clusters:read sql", id="application-id-narrower-scopes"),
    pytest.param({}, {"client_id": "sp-reader", "client_secret": "sp-reader-secret", "scope": "clusters:read"}, 200, None,
                 "clusters:read", id="form-auth"),
    pytest.param(basic("sp-reader", "sp-reader-secret"), {}, 400, "invalid_scope", None, id="default-all-apis-not-allowed"),
    pytest.param(basic("sp-reader", "sp-reader-secret"), {"scope": "clusters"}, 400, "invalid_scope", None, id="write-scope-not-allowed"),
    pytest.param(basic("sp-gateway", "wrong"), {}, 401, "invalid_client", None, id="wrong-secret"),
    pytest.param(basic("nobody", "x"), {}, 401, "invalid_client", None, id="unknown-client"),
    pytest.param({}, {}, 401, "invalid_client", None, id="no-client-auth"),
]


@pytest.mark.parametrize(("headers", "form", "status", "error", "scope"), CLIENT_CREDENTIALS)
def test_client_credentials(workspace, headers, form, status, error, scope):
    answer = token_request(workspace, {"grant_type": "client_credentials", **form}, headers)
    assert answer.status == status, answer.body
    if error:
        assert answer.json()["error"] == error and answer.json()["error_description"]
    else:
        assert answer.json()["scope"] == scope == verify_dbx(workspace, answer.json()["access_token"])["scope"]


@pytest.mark.parametrize(("form", "error"), [
    ({"grant_type": "password"}, "unsupported_grant_type"),
    ({"scope": "all-apis"}, "invalid_request"),
])
def test_token_endpoint_request_errors(workspace, form, error):
    answer = token_request(workspace, form, basic("sp-gateway", "sp-gateway-secret"))
    assert answer.status == 400 and answer.json()["error"] == error


# --- token exchange: success --------------------------------------------------------------------------


def test_exchange_real_idp_token(workspace, ws_idp):
    from devstack.token import fetch_token

    subject_token = fetch_token(ws_idp.issuer, "demo-reader", "demo-reader-secret")
    answer = exchange(workspace, subject_token, "all-apis")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and 3590 <= body["expires_in"] <= 3600 and body["scope"] == "all-apis"
    claims = verify_dbx(workspace, body["access_token"])
    assert claims["sub"] == "demo-reader" and claims["client_id"] == FEDERATION_CLIENT_ID
    assert claims["iss"] == workspace.issuer and "aud" not in claims
    assert_no_token_in(answer, subject_token)


@pytest.mark.parametrize(("token_fields", "scope", "granted"), [
    pytest.param({"key": "ec-1"}, "all-apis", "all-apis", id="es256"),
    pytest.param({"subject": "alice@example.com"}, "clusters:read sql", "clusters:read sql", id="email-user-narrow-scopes"),
    pytest.param({"subject": "bob@example.com"}, "clusters:read", "clusters:read", id="restricted-user"),
    pytest.param({"subject": "bob@example.com"}, "sql:read", "sql:read", id="modifier-of-allowed-scope"),
    pytest.param({"audience": ["other", AUDIENCE]}, "all-apis", "all-apis", id="any-of-audiences"),
    pytest.param({"omit_kid": True}, "all-apis", "all-apis", id="no-kid-single-matching-key"),
    pytest.param({}, None, "all-apis", id="scope-defaults-to-all-apis"),
])
def test_exchange_succeeds(workspace, ws_idp, token_fields, scope, granted):
    key = token_fields.pop("key", "rsa-1")
    audience = token_fields.pop("audience", AUDIENCE)
    omit = ("kid",) if token_fields.pop("omit_kid", False) else ()
    payload = tokens.claims(ws_idp.issuer, audience, **{"subject": "demo-reader", **token_fields})
    subject_token = tokens.mint(payload, key, omit_header=omit)
    answer = exchange(workspace, subject_token, scope)
    assert answer.status == 200, answer.body
    assert answer.json()["scope"] == granted
    assert verify_dbx(workspace, answer.json()["access_token"])["sub"] == payload["sub"]


def test_key_rotation_refetches_jwks(workspace, ws_idp):
    assert exchange(workspace, idp_token(ws_idp)).status == 200  # JWKS now cached
    with ws_idp.control.lock:
        ws_idp.control.apply({"jwks_keys": ["rsa-1", "rsa-2", "ec-1"]})
    assert exchange(workspace, idp_token(ws_idp, key="rsa-2")).status == 200
    fetches = request(workspace.port, "GET", "/_stats").json()["jwks_fetches"]
    assert fetches[f"{ws_idp.issuer}/jwks.json"] == 2


def test_policy_with_subject_claim_and_jwks_sources(workspace, ws_idp):
    policy = {"issuer": ws_idp.issuer, "audiences": [AUDIENCE], "subject_claim": "email", "jwks_uri": f"{ws_idp.issuer}/jwks.json"}
    assert control(workspace, {"policy": policy}).status == 200
    subject_token = idp_token(ws_idp, subject="opaque-id-42", email="alice@example.com")
    answer = exchange(workspace, subject_token)
    assert answer.status == 200 and verify_dbx(workspace, answer.json()["access_token"])["sub"] == "alice@example.com"
    assert "email" in exchange(workspace, idp_token(ws_idp)).json()["error_description"]  # no email claim

    inline = {"issuer": ws_idp.issuer, "audiences": [AUDIENCE], "jwks_json": json.dumps({"keys": [TEST_KEYS["ec-1"].public_jwk()]})}
    assert control(workspace, {"policy": inline}).status == 200
    assert exchange(workspace, idp_token(ws_idp, key="ec-1")).status == 200
    assert exchange(workspace, idp_token(ws_idp, key="rsa-1")).status == 401  # not in the inline JWKS


def test_policy_audiences_default_to_account_id(workspace, ws_idp):
    assert control(workspace, {"policy": {"issuer": ws_idp.issuer}}).status == 200
    refused = exchange(workspace, idp_token(ws_idp))
    assert refused.status == 401 and ACCOUNT_ID in refused.json()["error_description"]
    accepted = exchange(workspace, tokens.mint(tokens.claims(ws_idp.issuer, ACCOUNT_ID, subject="demo-ml"), "rsa-1"))
    assert accepted.status == 200, accepted.body


def test_service_principal_federation(workspace, ws_idp):
    sp_policy = {"issuer": ws_idp.issuer, "audiences": [AUDIENCE], "subject": "ci-workload", "service_principal": "sp-gateway"}
    assert control(workspace, {"policies": [dev_policy(ws_idp.issuer, AUDIENCE).public(), sp_policy]}).status == 200
    workload = idp_token(ws_idp, subject="ci-workload")

    answer = exchange(workspace, workload, "all-apis", client_id=SP_GATEWAY.application_id)
    assert answer.status == 200, answer.body
    claims = verify_dbx(workspace, answer.json()["access_token"])
    assert claims["sub"] == claims["client_id"] == SP_GATEWAY.application_id

    wrong_subject = exchange(workspace, idp_token(ws_idp, subject="demo-reader"), client_id="sp-gateway")
    assert wrong_subject.status == 401 and "does not match the subject" in wrong_subject.json()["error_description"]
    no_client_id = exchange(workspace, workload)  # account policy: ci-workload is no user
    assert no_client_id.status == 401 and "not a user" in no_client_id.json()["error_description"]
    other_sp = exchange(workspace, workload, "clusters:read", client_id=SP_READER.application_id)  # sp-reader has no policy
    assert other_sp.status == 401 and "issuer" in other_sp.json()["error_description"]
    unknown_sp = exchange(workspace, workload, client_id="no-such-sp")
    assert unknown_sp.status == 401 and unknown_sp.json()["error"] == "invalid_client"


def test_missing_client_id_hint(workspace, ws_idp):
    sp_policy = {"issuer": ws_idp.issuer, "audiences": [AUDIENCE], "subject": "ci-workload", "service_principal": "sp-gateway"}
    assert control(workspace, {"policy": sp_policy}).status == 200
    answer = exchange(workspace, idp_token(ws_idp, subject="ci-workload"))
    assert answer.status == 401 and "needs client_id" in answer.json()["error_description"]


# --- token exchange: failures -------------------------------------------------------------------------


def _failures(idp, workspace):
    now = int(time.time())
    good = idp_token(idp)
    return {
        "wrong-audience": (tokens.mint(tokens.claims(idp.issuer, "someone-else", subject="demo-reader"), "rsa-1"),
                           {}, 401, "invalid_request", "audience"),
        "wrong-issuer": (tokens.mint(tokens.claims("https://other-idp.example", AUDIENCE, subject="demo-reader"), "rsa-1"),
                         {}, 401, "invalid_request", "issuer"),
        "issuer-trailing-slash": (tokens.mint(tokens.claims(idp.issuer + "/", AUDIENCE, subject="demo-reader"), "rsa-1"),
                                  {}, 401, "invalid_request", "issuer"),
        "unknown-subject": (idp_token(idp, subject="mallory@example.com"), {}, 401, "invalid_request", "not a user"),
        "expired": (idp_token(idp, now=now - 7200), {}, 401, "invalid_request", "expired"),
        "no-exp": (idp_token(idp, exp=None), {}, 401, "invalid_request", "exp"),
        "not-yet-valid": (idp_token(idp, nbf=now + 600), {}, 401, "invalid_request", "nbf"),
        "bad-signature": (tokens.bad_signature(good), {}, 401, "invalid_request", "signature"),
        "tampered-subject": (tokens.tampered_payload(good, sub="demo-admin"), {}, 401, "invalid_request", "signature"),
        "forged-with-known-kid": (idp_token(idp, key="attacker-rsa", header={"kid": "test-rsa-1"}), {}, 401, "invalid_request", "signature"),
        "unknown-kid": (idp_token(idp, key="attacker-rsa"), {}, 401, "invalid_request", "key"),
        "hs256": (tokens.mint(tokens.claims(idp.issuer, AUDIENCE, subject="demo-reader"), b"secret-secret-secret-secret-32b!"),
                  {}, 400, "invalid_request", "algorithm"),
        "hs256-key-confusion": (tokens.hs256_with_public_key(tokens.claims(idp.issuer, AUDIENCE, subject="demo-reader")),
                                {}, 400, "invalid_request", "algorithm"),
        "alg-none": (tokens.alg_none(tokens.claims(idp.issuer, AUDIENCE, subject="demo-reader")), {}, 400, "invalid_request", "algorithm"),
        "rs384": (idp_token(idp, header={"alg": "RS384"}), {}, 400, "invalid_request", "algorithm"),
        "malformed": ("not-a-jwt." + good.split(".")[2], {}, 400, "invalid_request", "well-formed"),
        "wrong-token-type": (good, {"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, 400, "invalid_request", "subject_token_type"),
        "missing-subject-token": ("", {}, 400, "invalid_request", "subject_token is required"),
        "scope-not-allowed": (idp_token(idp, subject="bob@example.com"), {"scope": "all-apis"}, 400, "invalid_scope", "all-apis"),
        "unknown-client-id": (good, {"client_id": "ghost"}, 401, "invalid_client", "ghost"),
    }


FAILURE_CASES = ["wrong-audience", "wrong-issuer", "issuer-trailing-slash", "unknown-subject", "expired", "no-exp", "not-yet-valid",
                 "bad-signature", "tampered-subject", "forged-with-known-kid", "unknown-kid", "hs256", "hs256-key-confusion",
                 "alg-none", "rs384", "malformed", "wrong-token-type", "missing-subject-token", "scope-not-allowed",
                 "unknown-client-id"]


@pytest.mark.parametrize("case", FAILURE_CASES)
def test_exchange_failure(workspace, ws_idp, case, capfd):
    subject_token, extra, status, error, described = _failures(ws_idp, workspace)[case]
    form_extra = dict(extra)
    scope = form_extra.pop("scope", "all-apis")
    answer = exchange(workspace, subject_token, scope, **form_extra)
    assert answer.status == status, answer.body
    body = answer.json()
    assert set(body) == {"error", "error_description", "error_id"} and body["error"] == error
    uuid.UUID(body["error_id"])  # the handle Databricks support asks for
    assert described.lower() in body["error_description"].lower(), body
    assert answer.header("Cache-Control") == "no-store"
    assert_no_token_in(answer, subject_token)
    captured = capfd.readouterr()
    logged = captured.out + captured.err
    assert not [part for part in subject_token.split(".") if len(part) >= 16 and part in logged]  # nothing logged either
    stats = request(workspace.port, "GET", "/_stats").json()
    assert stats["errors"] == {error: 1} and stats["issued_by_grant_type"] == {}


def test_exchange_with_unreachable_jwks(workspace, ws_idp):
    policy = {"issuer": ws_idp.issuer, "audiences": [AUDIENCE], "jwks_uri": "http://127.0.0.1:9/jwks.json"}
    assert control(workspace, {"policy": policy}).status == 200
    answer = exchange(workspace, idp_token(ws_idp))
    assert answer.status == 503 and answer.json()["error"] == "temporarily_unavailable"


def test_users_control_changes_who_may_exchange(workspace, ws_idp):
    assert control(workspace, {"users": ["someone@example.com"]}).json()["users"] == {"someone@example.com": ["all-apis"]}
    assert exchange(workspace, idp_token(ws_idp)).status == 401  # demo-reader no longer a user
    assert exchange(workspace, idp_token(ws_idp, subject="someone@example.com"), "jobs").status == 200
    assert control(workspace, {"users": {"demo-reader": ["jobs:read"]}}).status == 200
    assert exchange(workspace, idp_token(ws_idp), "jobs").status == 400
    assert exchange(workspace, idp_token(ws_idp), "jobs:read").status == 200


# --- faults and control ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status", "error_code"), [("404", 404, "ENDPOINT_NOT_FOUND"), ("500", 500, "INTERNAL_ERROR")])
def test_token_endpoint_faults(workspace, ws_idp, fault, status, error_code):
    assert control(workspace, {"token_endpoint_fault": fault}).json()["token_endpoint_fault"] == fault
    for answer in (exchange(workspace, idp_token(ws_idp)),
                   token_request(workspace, {"grant_type": "client_credentials"}, basic("sp-gateway", "sp-gateway-secret"))):
        assert answer.status == status and answer.json()["error_code"] == error_code
    stats = request(workspace.port, "GET", "/_stats").json()
    assert stats["token_requests"] == 2 and stats["errors"] == {f"fault_{fault}": 2}


def test_slow_token_endpoint(workspace, ws_idp):
    assert control(workspace, {"token_endpoint_fault": "slow", "delay_s": 0.5}).status == 200
    answer = exchange(workspace, idp_token(ws_idp))
    assert answer.status == 200 and answer.elapsed_s >= 0.5


@pytest.mark.parametrize("changes", [
    {"token_endpoint_fault": "teapot"},
    {"delay_s": -1},
    {"delay_s": True},
    {"policy": {"audiences": ["x"]}},
    {"policy": {"issuer": "x", "subject": "y"}},
    {"policy": {"issuer": "x", "subject": "y", "service_principal": "no-such-sp"}},
    {"policy": {"issuer": "x", "bogus": 1}},
    {"policy": {"issuer": "x", "audiences": []}},
    {"users": "demo-reader"},
    {"users": {"demo-reader": "all-apis"}},
    {"nonsense": 1},
    {"token_endpoint_fault": "404", "delay_s": "soon"},  # one bad field: nothing changes
])
def test_control_rejects_bad_changes(workspace, changes):
    before = control(workspace, {}).json()
    answer = control(workspace, changes)
    assert answer.status == 400 and answer.json()["error"]
    assert control(workspace, {}).json() == before


# --- REST and serving routes ---------------------------------------------------------------------------------

ROUTE_CASES = [
    # method, path, scope, status
    ("GET", "/api/2.1/clusters/list", "all-apis", 200),
    ("GET", "/api/2.1/clusters/list", "clusters", 200),
    ("GET", "/api/2.1/clusters/list", "clusters:read", 200),
    ("GET", "/api/2.0/clusters/list", "clusters:read", 200),
    ("GET", "/api/2.1/clusters/list", "jobs", 403),
    ("POST", "/api/2.1/clusters/create", "clusters", 200),
    ("POST", "/api/2.1/clusters/create", "clusters:read", 403),
    ("POST", "/api/2.1/clusters/create", "all-apis", 200),
    ("GET", "/api/2.2/jobs/list", "jobs:read", 200),
    ("POST", "/api/2.2/jobs/run-now", "jobs", 200),
    ("POST", "/api/2.2/jobs/run-now", "jobs:read", 403),
    ("GET", "/api/2.0/mlflow/experiments/search", "mlflow:read", 200),
    ("POST", "/api/2.0/mlflow/runs/create", "mlflow", 200),
    ("POST", "/api/2.0/mlflow/runs/create", "mlflow:read", 403),
    ("GET", "/api/2.1/unity-catalog/catalogs", "unity-catalog:read", 200),
    ("GET", "/api/2.1/unity-catalog/catalogs", "sql", 403),
    ("POST", "/api/2.0/sql/statements", "sql", 200),
    ("POST", "/api/2.0/sql/statements", "sql:restricted-query", 200),
    ("POST", "/api/2.0/sql/statements", "sql:read", 403),
    ("GET", "/api/2.0/sql/statements/01ef-abc", "sql:read", 200),
    ("GET", "/api/2.0/preview/scim/v2/Me", "clusters:read", 200),
    ("GET", "/api/2.0/preview/scim/v2/Me", "openid", 403),
    ("POST", "/serving-endpoints/demo-model/invocations", "model-serving", 200),
    ("POST", "/serving-endpoints/demo-model/invocations", "model-serving:read", 403),
    ("POST", "/serving-endpoints/demo-model/invocations", "clusters", 403),
    ("POST", "/serving-endpoints/chat/completions", "model-serving", 200),
    ("POST", "/serving-endpoints/embeddings", "all-apis", 200),
    ("GET", "/api/2.0/serving-endpoints", "model-serving:read", 200),
    ("GET", "/api/2.0/secrets/list", "all-apis", 200),
    ("GET", "/api/2.0/secrets/list", "secrets:read", 200),
    ("GET", "/api/2.0/secrets/list", "clusters", 403),
    ("GET", "/api/2.0/dbfs/list", "files:read", 200),
    ("GET", "/api/2.0/repos/5", "workspace:read", 200),
    ("GET", "/api/2.0/instance-pools/list", "instance-pools:read", 200),
    ("GET", "/api/2.0/pipelines", "pipelines:read", 200),
    ("GET", "/api/2.0/pipelines", "jobs", 403),
    ("GET", "/api/2.0/git-credentials", "workspace:read", 200),
    ("GET", "/api/2.0/policies/clusters/list", "clusters:read", 200),
    ("GET", "/api/2.0/global-init-scripts", "global-init-scripts:read", 200),
    ("GET", "/api/2.0/global-init-scripts", "clusters", 403),
    ("GET", "/api/2.1/some-new-api/list", "clusters", 403),  # catch-all: all-apis
    ("DELETE", "/api/2.0/workspace/delete", "sql", 403),
    ("GET", "/api/2.0/workspace/list", "workspace:read", 200),
    ("POST", "/serving-endpoints/demo-model/invocations", "model-serving-inference", 200),
    ("GET", "/api/2.0/alerts", "alerts:read", 200),
    # issue 9: all-apis:read, the restricted-query modifiers, the drivers' Thrift endpoints, served
    # models, the AI gateway, service-principal secrets (authentication)
    ("GET", "/api/2.1/clusters/get", "all-apis:read", 200),
    ("POST", "/api/2.1/clusters/create", "all-apis:read", 403),
    ("POST", "/sql/1.0/warehouses/abc123", "sql:restricted-query", 200),
    ("POST", "/sql/protocolv1/o/1234/0123-abc", "sql:read:restricted-query", 200),
    ("POST", "/sql/1.0/warehouses/abc123", "clusters", 403),
    ("GET", "/api/2.0/sql/warehouses", "sql:restricted-query", 403),
    ("GET", "/api/2.0/sql/warehouses", "sql:read:restricted-query", 200),
    ("POST", "/serving-endpoints/demo-model/served-models/v2/invocations", "model-serving", 200),
    ("POST", "/ai-gateway/mlflow/v1/chat/completions", "ai-gateway", 200),
    ("GET", "/ai-gateway/mlflow/v1/models", "ai-gateway:read", 200),
    ("POST", "/api/2.0/accounts/servicePrincipals/7/credentials/secrets", "authentication", 200),
    ("POST", "/api/2.0/accounts/servicePrincipals/7/credentials/secrets", "clusters", 403),
    ("GET", "/not-an-api", "all-apis", 404),
    ("GET", "/serving-endpoints/demo-model/invocations", "all-apis", 404),
]


@pytest.mark.parametrize(("method", "path", "scope", "status"), ROUTE_CASES)
def test_route_scopes(workspace, method, path, scope, status):
    needed = needed_scope(path)
    answer = request(workspace.port, method, path, b"{}" if method == "POST" else None,
                     {"Authorization": f"Bearer {dbx_token(workspace, scope)}", "Content-Type": "application/json"})
    assert answer.status == status, answer.body
    if status == 200:
        echo = answer.json()
        assert echo["principal"] == "demo-reader" and echo["scopes"] == scope.split()
        assert echo["method"] == method and echo["path"] == path
    elif status == 403:
        body = answer.json()
        assert set(body) == {"error_code", "message", "error_id"} and body["error_code"] == "PERMISSION_DENIED"
        assert body["message"] == f"Provided OAuth token does not have required scopes: {needed}", body
    else:
        assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"


# The scope a 403 names, by path prefix (the first that matches; the rest: all-apis).
NEEDED = [
    ("/api/2.0/preview/scim/v2/Me", "all-apis"),
    ("/api/2.1/clusters", "clusters"), ("/api/2.0/clusters", "clusters"),
    ("/api/2.1/jobs", "jobs"), ("/api/2.0/jobs", "jobs"), ("/api/2.2/jobs", "jobs"),
    ("/api/2.0/mlflow", "mlflow"), ("/api/3.0/mlflow", "mlflow"),
    ("/api/2.1/unity-catalog", "unity-catalog"),
    ("/api/2.0/sql/", "sql"), ("/sql/", "sql"),
    ("/serving-endpoints/", "model-serving"), ("/api/2.0/serving-endpoints", "model-serving"),
    ("/ai-gateway/", "ai-gateway"),
    ("/api/2.0/accounts/servicePrincipals/", "authentication"),
    ("/api/2.0/workspace/", "workspace"), ("/api/2.0/repos/", "workspace"), ("/api/2.0/secrets/", "secrets"),
    ("/api/2.0/dbfs/", "files"), ("/api/2.0/git-credentials", "workspace"), ("/api/2.0/policies/clusters/", "clusters"),
    ("/api/2.0/global-init-scripts", "global-init-scripts"), ("/api/2.0/instance-pools/", "instance-pools"), ("/api/2.0/pipelines", "pipelines"),
]


def needed_scope(path: str) -> str:
    return next((scope for prefix, scope in NEEDED if path.startswith(prefix)), "all-apis")


@pytest.mark.parametrize("subject_lifetime_s", [120, 3600, 7200])
def test_exchanged_tokens_live_no_longer_than_the_subject_token(workspace, ws_idp, subject_lifetime_s):
    """Databricks derives the exchanged token's lifetime from the federated token's."""
    subject_token = tokens.mint(tokens.claims(ws_idp.issuer, AUDIENCE, subject="demo-reader",
                                              lifetime_s=subject_lifetime_s), "rsa-1")
    answer = exchange(workspace, subject_token, "all-apis")
    assert answer.status == 200, answer.body
    body = answer.json()
    subject_exp = jwt.decode(subject_token, options={"verify_signature": False})["exp"]
    claims = verify_dbx(workspace, body["access_token"])
    assert claims["exp"] <= subject_exp and body["expires_in"] <= min(subject_lifetime_s, 3600)
    assert body["expires_in"] >= min(subject_lifetime_s, 3600) - 5


def test_echo_shape(workspace):
    token = dbx_token(workspace, "model-serving sql", subject="alice@example.com", client_id="databricks-cli")
    answer = request(workspace.port, "POST", "/serving-endpoints/chat/completions?x=1", json.dumps({"model": "demo-model", "messages": []}),
                     {"Authorization": f"Bearer {token}", "User-Agent": "databricks-sdk-py/0.60.0 brickgate/0.1.0 req/abc123",
                      "X-Gw-Subject": "alice", "Content-Type": "application/json"})
    assert answer.status == 200 and answer.header("X-Databricks-Org-Id") == WORKSPACE_ID
    echo = answer.json()
    assert echo["principal"] == "alice@example.com" and echo["client_id"] == "databricks-cli"
    assert echo["scopes"] == ["model-serving", "sql"] and echo["route"] == "serving-openai" and echo["model"] == "demo-model"
    assert echo["method"] == "POST" and echo["path"] == "/serving-endpoints/chat/completions?x=1"
    assert echo["user_agent"] == "databricks-sdk-py/0.60.0 brickgate/0.1.0 req/abc123"
    assert echo["headers"]["user-agent"] == [echo["user_agent"]] and echo["headers"]["x-gw-subject"] == ["alice"]
    assert echo["body_length"] == int(echo["headers"]["content-length"][0])


def test_exchanged_token_is_accepted_end_to_end(workspace, ws_idp):
    subject_token = idp_token(ws_idp, subject="demo-ml")
    access_token = exchange(workspace, subject_token, "clusters:read").json()["access_token"]
    auth = {"Authorization": f"Bearer {access_token}"}
    echo = request(workspace.port, "GET", "/api/2.1/clusters/list", headers=auth).json()
    assert echo["principal"] == "demo-ml" and echo["scopes"] == ["clusters:read"]
    assert request(workspace.port, "POST", "/api/2.1/clusters/create", b"{}", auth).status == 403


def _unauthenticated(workspace, idp):
    now = int(time.time())
    return {
        "no-header": ({}, "Credential was not sent"),
        "basic-scheme": (basic("sp-gateway", "sp-gateway-secret"), "Credential was not sent"),
        "empty-bearer": ({"Authorization": "Bearer "}, "Credential was not sent"),
        "idp-token": ({"Authorization": f"Bearer {idp_token(idp, scope='all-apis')}"}, "Invalid access token"),
        "expired": ({"Authorization": f"Bearer {dbx_token(workspace, now=now - 7200)}"}, "Invalid access token"),
        "other-workspace": ({"Authorization": "Bearer " + tokens.mint(tokens.databricks_claims("https://other.example/oidc", "demo-reader", "all-apis"),
                                                                      "dbx-1", header={"typ": "JWT"})}, "Invalid access token"),
        "forged-dbx-kid": ({"Authorization": "Bearer " + tokens.mint(tokens.databricks_claims(workspace.issuer, "demo-reader", "all-apis"),
                                                                     "attacker-rsa", header={"kid": "test-dbx-1", "typ": "JWT"})},
                           "Invalid access token"),
        "bad-signature": ({"Authorization": f"Bearer {tokens.bad_signature(dbx_token(workspace))}"}, "Invalid access token"),
        "alg-none": ({"Authorization": f"Bearer {tokens.alg_none(tokens.databricks_claims(workspace.issuer, 'demo-reader', 'all-apis'))}"},
                     "Invalid access token"),
        "garbage": ({"Authorization": "Bearer dapi0123456789abcdef"}, "Invalid access token"),
    }


@pytest.mark.parametrize("case", ["no-header", "basic-scheme", "empty-bearer", "idp-token", "expired", "other-workspace",
                                  "forged-dbx-kid", "bad-signature", "alg-none", "garbage"])
def test_route_unauthenticated(workspace, ws_idp, case):
    headers, message = _unauthenticated(workspace, ws_idp)[case]
    answer = request(workspace.port, "GET", "/api/2.1/clusters/list", headers=headers)
    assert answer.status == 401, answer.body
    assert answer.json()["error_code"] == "UNAUTHENTICATED" and answer.json()["message"].startswith(message)


# --- stats ------------------------------------------------------------------------------------------------------


def test_stats_count_by_grant_and_subject_scope(workspace, ws_idp):
    reader, ml = idp_token(ws_idp), idp_token(ws_idp, subject="demo-ml")
    for subject_token, scope in ((reader, "all-apis"), (reader, "all-apis"), (reader, "clusters:read"), (ml, "all-apis")):
        assert exchange(workspace, subject_token, scope).status == 200
    assert exchange(workspace, idp_token(ws_idp, subject="mallory"), "all-apis").status == 401
    assert token_request(workspace, {"grant_type": "client_credentials"}, basic("sp-gateway", "sp-gateway-secret")).status == 200
    assert token_request(workspace, {"grant_type": "client_credentials"}, basic("sp-gateway", "nope")).status == 401

    stats = request(workspace.port, "GET", "/_stats").json()
    assert stats["token_requests"] == 7
    assert stats["by_grant_type"] == {GRANT_TOKEN_EXCHANGE: 5, "client_credentials": 2}
    assert stats["issued_by_grant_type"] == {GRANT_TOKEN_EXCHANGE: 4, "client_credentials": 1}
    assert stats["errors"] == {"invalid_request": 1, "invalid_client": 1}
    rows = {(row["grant_type"], row["subject"], row["scope"]): (row["requests"], row["issued"]) for row in stats["by_subject_scope"]}
    assert rows == {
        (GRANT_TOKEN_EXCHANGE, "demo-reader", "all-apis"): (2, 2),
        (GRANT_TOKEN_EXCHANGE, "demo-reader", "clusters:read"): (1, 1),
        (GRANT_TOKEN_EXCHANGE, "demo-ml", "all-apis"): (1, 1),
        (GRANT_TOKEN_EXCHANGE, "mallory", "all-apis"): (1, 0),
        ("client_credentials", SP_GATEWAY.application_id, "all-apis"): (2, 1),
    }
    assert stats["paths"]["/oidc/v1/token"] == 7

    reset = request(workspace.port, "POST", "/_stats/reset", b"")
    assert reset.status == 200 and reset.json()["token_requests"] == 0 and reset.json()["by_subject_scope"] == []
    assert request(workspace.port, "GET", "/_stats").json()["by_grant_type"] == {}


def test_stats_count_api_answers(workspace):
    request(workspace.port, "GET", "/api/2.1/clusters/list", headers={"Authorization": f"Bearer {dbx_token(workspace)}"})
    request(workspace.port, "GET", "/api/2.1/clusters/list")
    request(workspace.port, "POST", "/api/2.1/clusters/create", b"{}", {"Authorization": f"Bearer {dbx_token(workspace, 'clusters:read')}"})
    assert request(workspace.port, "GET", "/_stats").json()["api_requests_by_status"] == {"200": 1, "401": 1, "403": 1}
