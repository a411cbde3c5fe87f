"""How allowed requests authenticate to Databricks (docs/CONFIG.md "Provider upstream"), against the
fake workspace (devstack/workspace.py) behind a real Envoy: pass-through, token exchange (RFC 8693
federation) and service principal, and the audit trail headers that reach the workspace.

The exchange cache and the upstream_token counters are in test_databricks_upstream_exchange_cache.py,
every federation failure in test_databricks_upstream_failures.py; the shared setup (one Envoy, one
listener per upstream configuration) in databricks_upstream_support.py. Each test starts from the
workspace's default policy, users and no fault, and uses subjects of its own, so brickgate's cached
Databricks tokens never carry over.
"""

import re
import uuid

import pytest

from databricks_support import (
    CACHE_HIT,
    FETCH,
    GRANT_CLIENT_CREDENTIALS,
    VERSION,
    allowed_by_brickgate,
    counters,
    delta,
    token_calls,
    workspace_stats,
)
# `gateway` and `fresh_workspaces` (autouse) are fixtures: imported for pytest to use them.
from databricks_upstream_support import (
    PATH,
    ROBOT,
    SP_GATEWAY,
    SP_READER,
    add_users,
    assert_idp_token_not_received,
    claims_of,
    fresh_workspaces,
    gateway,
    new_subject,
    received_bearer,
    rejected,
    workspace_echo,
    workspace_url,
)
from devstack.workspace import FEDERATION_CLIENT_ID, client_credentials_token, exchange_token
from envoy_harness import VM_SECRET_ENV, http_get
from gateway_client import assert_refused, send


# --- (a) pass-through ---------------------------------------------------------------------------


def test_passthrough_databricks_service_principal_token_is_accepted(gateway):
    """A token the workspace minted (client_credentials), verified by brickgate through the keys it
    discovered at `<workspace>/oidc`, reaches the workspace unchanged and is accepted."""
    status, issued = client_credentials_token(workspace_url(gateway.workspace), SP_READER.application_id, SP_READER.secret, "clusters:read")
    assert status == 200, issued
    token = issued["access_token"]
    echo = workspace_echo(send(gateway.ports["pass"], "GET", PATH, token))
    assert echo["principal"] == SP_READER.application_id and echo["scopes"] == ["clusters:read"]
    assert received_bearer(echo) == token, "pass-through forwards the client's token as it is"
    headers = echo["headers"]
    assert headers["x-brickgate-provider"] == ["dbx"] and headers["x-brickgate-issuer"] == [gateway.workspace.issuer]
    assert headers["x-brickgate-subject"] == [SP_READER.application_id]
    assert headers["x-brickgate-principal-kind"] == ["service_principal"]
    # the catalogue still applies: clusters:read cannot create a cluster, whoever issued the token
    refused = send(gateway.ports["pass"], "POST", "/api/2.1/clusters/create", token)
    assert refused.status == 403 and refused.header("x-brickgate-reason") == "insufficient_scope"
    stats = workspace_stats(gateway.workspace)
    assert stats["api_requests_by_status"] == {"200": 1}, "the refused request never reached the workspace"
    assert token_calls(stats, grant_type="urn:ietf:params:oauth:grant-type:token-exchange") == 0


def test_passthrough_databricks_user_token_is_accepted(gateway):
    subject = new_subject("pt-user")
    add_users(gateway.workspace, subject)
    status, issued = exchange_token(workspace_url(gateway.workspace), gateway.idp_token(subject), "all-apis")
    assert status == 200, issued
    echo = workspace_echo(send(gateway.ports["pass"], "POST", "/api/2.1/clusters/create", issued["access_token"]))
    assert echo["principal"] == subject and echo["method"] == "POST"
    assert echo["headers"]["x-brickgate-principal-kind"] == ["user"]


def test_passthrough_idp_token_is_refused_by_databricks(gateway):
    """The "mysterious 401": brickgate verifies and allows the IdP token, forwards it as it is, and
    Databricks refuses it because it did not issue it. The 401 is the workspace's, not brickgate's."""
    idp_token = gateway.idp_token(new_subject("mystery"))
    before = counters(gateway.envoy)
    reply = send(gateway.ports["pass"], "GET", PATH, idp_token)
    after = counters(gateway.envoy)
    assert reply.status == 401, reply.body
    assert allowed_by_brickgate(reply), "brickgate allowed it; the refusal comes from the workspace"
    assert reply.header("x-databricks-org-id") is not None, "answered by the workspace"
    assert reply.json()["error_code"] == "UNAUTHENTICATED" and "Invalid access token" in reply.json()["message"]
    assert delta(before, after, "wasmcustom.brickgate.allowed") == 1
    assert delta(before, after, FETCH) == 0, "pass-through obtains no token"
    stats = workspace_stats(gateway.workspace)
    assert stats["api_requests_by_status"] == {"401": 1} and stats["token_requests"] == 0


# --- (b) exchange ----------------------------------------------------------------------------------


def test_exchange_sends_a_databricks_token_for_the_caller(gateway):
    subject = new_subject("xch")
    add_users(gateway.workspace, subject)
    idp_token = gateway.idp_token(subject, "clusters:read")
    echo = workspace_echo(send(gateway.ports["exchange"], "GET", PATH, idp_token))
    assert echo["principal"] == subject, "the workspace sees the IdP subject, as mapped by the federation policy"
    assert echo["client_id"] == FEDERATION_CLIENT_ID
    assert echo["scopes"] == ["clusters:read"], "issue 16 point 4: the caller's own scope, not upstream.scopes' all-apis"
    databricks_token = received_bearer(echo)
    assert databricks_token != idp_token
    claims = claims_of(databricks_token)
    assert claims["iss"] == gateway.workspace.issuer and claims["sub"] == subject
    assert_idp_token_not_received(echo, idp_token)
    headers = echo["headers"]
    assert headers["x-brickgate-subject"] == [subject] and headers["x-brickgate-provider"] == ["xch"]
    assert headers["x-brickgate-scopes"] == ["clusters:read"], "identity headers carry the caller's own scopes"
    assert token_calls(workspace_stats(gateway.workspace), subject, scope="clusters:read") == 1


def test_exchange_still_enforces_the_callers_scopes(gateway):
    """brickgate still checks the caller's scopes before any exchange: clusters:read cannot create a
    cluster, and a refused request costs no exchange."""
    subject = new_subject("xch-scope")
    add_users(gateway.workspace, subject)
    reply = send(gateway.ports["exchange"], "POST", "/api/2.1/clusters/create", gateway.idp_token(subject, "clusters:read"))
    assert reply.status == 403 and reply.header("x-brickgate-reason") == "insufficient_scope"
    assert workspace_stats(gateway.workspace)["token_requests"] == 0


# --- (c) service principal --------------------------------------------------------------------------


@pytest.mark.parametrize(("listener", "databricks_error"), [("sp_bad_secret", "invalid_client"),
                                                          ("sp_scope_not_granted", "invalid_scope")])
def test_service_principal_mode_blames_the_gateway_when_databricks_refuses_its_credentials(gateway, listener,
                                                                                         databricks_error):
    """Issue 9 point 5: the client's token is fine, brickgate's own client credentials are not: 502 with
    its own reason (not 401 invalid_token), and Databricks' error_id kept for a support ticket."""
    # `clusters`: brickgate asks for the caller's own scope, which sp-reader's secret does not hold.
    reply = send(gateway.ports[listener], "GET", PATH, gateway.idp_token(new_subject("sp-erin"), "clusters"))
    assert reply.status == 502, reply.body
    assert reply.header("x-brickgate-reason") == "upstream_credentials_rejected"
    assert reply.header("www-authenticate") is None, "nothing tells the client its token is bad"
    message = reply.json()["message"]
    assert databricks_error in message and "not your token" in message, message
    error_id = re.search(r"error_id ([0-9a-f-]{36})", message)
    assert error_id and uuid.UUID(error_id.group(1)), message


def test_service_principal_mode_names_the_caller_in_identity_headers(gateway):
    callers = [new_subject("sp-carol"), new_subject("sp-dave")]  # not workspace users: they need not be
    before = counters(gateway.envoy)
    for caller in callers:
        idp_token = gateway.idp_token(caller, "clusters:read")
        echo = workspace_echo(send(gateway.ports["sp"], "GET", PATH, idp_token))
        assert echo["principal"] == SP_GATEWAY.application_id, "Databricks sees brickgate's service principal"
        assert claims_of(received_bearer(echo))["sub"] == SP_GATEWAY.application_id
        assert echo["headers"]["x-brickgate-subject"] == [caller], "brickgate's headers name the verified caller"
        assert echo["headers"]["x-brickgate-provider"] == ["spm"]
        assert_idp_token_not_received(echo, idp_token)
    after = counters(gateway.envoy)
    stats = workspace_stats(gateway.workspace)
    # the SP token was fetched when the listener was probed; every caller shares it
    assert token_calls(stats, grant_type=GRANT_CLIENT_CREDENTIALS) == 0 and stats["token_requests"] == 0
    assert delta(before, after, FETCH) == 0 and delta(before, after, CACHE_HIT) == len(callers)
    refused = send(gateway.ports["sp"], "POST", "/api/2.1/clusters/create", gateway.idp_token(callers[0], "clusters:read"))
    assert refused.status == 403 and refused.header("x-brickgate-reason") == "insufficient_scope", \
        "the service principal's all-apis never widens what the caller may do"


def test_the_service_principal_secret_is_neither_in_config_dump_nor_in_any_log_line(gateway):
    """The secret reaches the VM through `vm_config.environment_variables` (host_env_keys): the
    service principal above authenticated with it, yet Envoy's /config_dump and every line Envoy
    and brickgate logged (access log, audit records, token fetches) are free of it."""
    echo = workspace_echo(send(gateway.ports["sp"], "GET", PATH, gateway.idp_token(new_subject("sp-erin"))))
    assert echo["principal"] == SP_GATEWAY.application_id, "the secret from the environment authenticated"
    status, dump = http_get(f"{gateway.envoy.admin_url}/config_dump?include_eds", timeout_s=5.0)
    assert status == 200 and "client_secret_env" in dump and VM_SECRET_ENV in dump
    assert SP_GATEWAY.secret not in dump, "/config_dump shows the variable's name, never its value"
    log = gateway.envoy.log_text()
    assert "brickgate audit" in log and log.count("\n") > 20
    assert SP_GATEWAY.secret not in log, "no log line carries the secret"


def test_exchange_with_client_id_uses_the_service_principal_federation_policy(gateway):
    """`client_id` in exchange mode: the service principal's policy maps one IdP subject to it."""
    idp_token = gateway.idp_token(ROBOT, "clusters:read")
    echo = workspace_echo(send(gateway.ports["exchange_sp"], "GET", PATH, idp_token))
    assert echo["principal"] == SP_GATEWAY.application_id and echo["client_id"] == SP_GATEWAY.application_id
    assert echo["headers"]["x-brickgate-subject"] == [ROBOT]
    assert_idp_token_not_received(echo, idp_token)
    other = gateway.idp_token(new_subject("not-the-robot"))
    reply = send(gateway.ports["exchange_sp"], "GET", PATH, other)
    assert_refused(reply, rejected("does not match the subject", SP_GATEWAY.application_id), other)


# --- audit trail headers -------------------------------------------------------------------------------

CLIENT_UA = "databricks-sdk-py/0.40.0 python/3.11.4 os/linux auth/pat"
SMUGGLED = [
    ("X-Databricks-Azure-SP-Management-Token", "azure-management-secret"),
    ("X-Databricks-Azure-Workspace-Resource-Id", "/subscriptions/0/resourceGroups/rg/providers/Microsoft.Databricks/workspaces/w"),
    ("X-Databricks-GCP-SA-Access-Token", "gcp-service-account-secret"),
    ("X-Forwarded-User", "admin"),
    ("X-Forwarded-Email", "ceo@example.com"),
    ("x-FORWARDED-email", "cfo@example.com"),  # any case, repeated
    ("X-Forwarded-Preferred-Username", "admin"),
    ("X-Forwarded-Access-Token", "forwarded-access-secret"),
    ("X-Forwarded-Groups", "admins"),
    ("X-Brickgate-Subject", "someone-else"),
]


@pytest.mark.parametrize("listener", ["exchange", "pass"])
def test_audit_user_agent_and_header_hygiene(gateway, listener):
    subject = new_subject("audit")
    add_users(gateway.workspace, subject)
    if listener == "pass":
        _, issued = exchange_token(workspace_url(gateway.workspace), gateway.idp_token(subject), "all-apis")
        token = issued["access_token"]
    else:
        token = gateway.idp_token(subject)
    echo = workspace_echo(send(gateway.ports[listener], "GET", PATH, token, headers=[("User-Agent", CLIENT_UA), *SMUGGLED]))
    headers = echo["headers"]
    (request_id,) = headers["x-request-id"]
    assert echo["user_agent"] == f"{CLIENT_UA} brickgate/{VERSION} req/{request_id}"
    assert headers["user-agent"] == [echo["user_agent"]], "one User-Agent"
    leaked = sorted({name for name, _ in SMUGGLED if name.lower() in headers and name.lower() != "x-brickgate-subject"})
    assert not leaked, f"client-sent headers reached the workspace: {leaked}"
    assert headers["x-brickgate-subject"] == [subject], "the spoofed identity header was replaced"
    for _, secret in SMUGGLED:
        assert all(secret not in value for values in headers.values() for value in values), secret


def test_user_agent_without_a_client_user_agent(gateway):
    subject = new_subject("no-ua")
    add_users(gateway.workspace, subject)
    echo = workspace_echo(send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(subject)))
    (request_id,) = echo["headers"]["x-request-id"]
    assert echo["user_agent"] == f"brickgate/{VERSION} req/{request_id}"


@pytest.mark.parametrize("client_ua, request_id, kept", [
    ("sdk/1 brickgate/9 req/victim", None, "sdk/1"),
    ("BrickGate/0.1.0 REQ/victim", None, ""),
    ("sdk/1", "victim req/other", "sdk/1"),
    ("sdk/1", "under_score%", "sdk/1"),
    ("sdk/1", "6f1c2a3e-0d4b-4c5e-9f60-7a8b9c0d1e2f", "sdk/1"),
], ids=["client-marker", "client-marker-any-case", "request-id-with-space", "request-id-bad-characters",
        "request-id-of-a-victim"])
def test_the_user_agent_marker_cannot_be_forged(gateway, client_ua, request_id, kept):
    """The marker that joins Databricks' audit rows to brickgate's is always the last two words,
    and names the request the workspace received: client-sent markers are removed, and a request
    id that is not [A-Za-z0-9-]{1,64} becomes `-` (docs/DATABRICKS.md); and Envoy, at the edge
    (`use_remote_address: true`), replaces a client-sent x-request-id, so a client cannot make the
    marker name another request."""
    subject = new_subject("ua-forged")
    add_users(gateway.workspace, subject)
    headers = [("User-Agent", client_ua)] + ([("x-request-id", request_id)] if request_id else [])
    echo = workspace_echo(send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(subject), headers=headers))
    (received_id,) = echo["headers"]["x-request-id"]
    valid = re.fullmatch(r"[A-Za-z0-9-]{1,64}", received_id)
    marker = f"brickgate/{VERSION} req/{received_id if valid else '-'}"
    assert echo["user_agent"] == f"{kept} {marker}".strip()
    if request_id:
        # The shipped configs set use_remote_address: Envoy replaces an external client's id.
        assert received_id != request_id, "a client chose the request id the audit marker names"
    assert "victim" not in echo["user_agent"].split()[-1]
