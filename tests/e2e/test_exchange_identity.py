"""Whose Databricks token a request carries (issue 8, findings 5 and 6), against the fake workspace
(devstack/workspace.py) behind a real Envoy.

Finding 5: in exchange mode a Databricks token is cached under the issuer, the claim the workspace's
federation policy maps (`upstream.subject_claim`) and the client id. A verified token without that
claim is refused (401 missing_subject) before any exchange; callers told apart only by that claim get
each their own Databricks token.

Finding 6: when brickgate sends its own Databricks token (exchange, service principal), the client's
credential never reaches the workspace, wherever it was read from (a custom header, the query
string), whatever `forward_authorization` says.
"""

import urllib.parse
import uuid
from dataclasses import dataclass

import pytest

from databricks_support import bootstrap_with, routed_listener, wait_until_decided, workspace_control, workspace_stats
from devstack import tokens as raw_tokens
from devstack.httpbase import running
from devstack.idp import make_idp
from devstack.workspace import SERVICE_PRINCIPALS, FederationPolicy, WorkspaceServer, make_workspace
from envoy_harness import VM_SECRET_ENV, EnvoyProcess
from gateway_client import Reply, assert_refused, invalid_token, send
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

SP_GATEWAY = SERVICE_PRINCIPALS[0]
PATH = "/api/2.1/clusters/list"
SHARED_SUB = "shared-login"  # the `sub` every caller of the email-mapped tests has in common
CUSTOM_HEADER = "x-idp-token"
QUERY_PARAM = "access_token"
TOKEN_SOURCES = [{"header": "authorization", "prefix": "Bearer "}, {"header": CUSTOM_HEADER}, {"query": QUERY_PARAM}]


def exchange(workspace: WorkspaceServer, **extra) -> dict:
    return {"mode": "exchange", "cluster": "workspace", "workspace_url": f"http://127.0.0.1:{workspace.port}", **extra}


def service_principal(workspace: WorkspaceServer) -> dict:
    return {"mode": "service_principal", "cluster": "workspace", "workspace_url": f"http://127.0.0.1:{workspace.port}",
            "client_id": SP_GATEWAY.application_id, "client_secret_env": VM_SECRET_ENV, "scopes": ["all-apis"]}


@dataclass
class Gateway:
    envoy: EnvoyProcess
    ports: dict[str, int]
    workspace: WorkspaceServer
    tokens: TokenFactory


def plugin_config(provider: dict, forward_authorization: bool = True, **top_level) -> dict:
    return {"realm": REALM, "providers": {"idp": provider}, "rules": [], "databricks": {"route_catalogue": True},
            "identity": {"forward_authorization": forward_authorization}, **top_level}


@pytest.fixture(scope="module")
def gateway(start_envoy, wasm_path):
    """A fake IdP; a workspace whose account federation policy maps the `email` claim; listeners in
    exchange mode mapping `sub` (the default) or `email`, and in service-principal mode, reading the
    token from Authorization, a custom header or the query string."""
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_workspace(0, policies=[], users={})) as workspace:
        provider = lambda upstream: idp_provider(idp.issuer, idp.port, upstream=upstream, token_sources=TOKEN_SOURCES)  # noqa: E731
        listeners = {
            "by_sub": plugin_config(provider(exchange(workspace))),
            "by_email": plugin_config(provider(exchange(workspace, subject_claim="email"))),
            "exchange_no_forward": plugin_config(provider(exchange(workspace, subject_claim="email")), forward_authorization=False),
            "exchange_forward": plugin_config(provider(exchange(workspace, subject_claim="email")), forward_authorization=True),
            "sp_no_forward": plugin_config(provider(service_principal(workspace)), forward_authorization=False),
            # Finding 12: far fewer shared upstream-token slots than callers.
            "few_slots": plugin_config(provider(exchange(workspace, subject_claim="email")),
                                       performance={"upstream_token_slots": 16}),
        }
        config = bootstrap_with([routed_listener(name, wasm_path, cfg, "workspace") for name, cfg in listeners.items()],
                                {"workspace": workspace.port, "idp": idp.port})
        envoy = start_envoy(config, "exchange-identity", env={VM_SECRET_ENV: SP_GATEWAY.secret})
        try:
            envoy.wait_ready()
            ports = envoy.listener_ports()
            factory = TokenFactory(idp.issuer)
            # Without a policy every exchange is refused; the probe only waits for the IdP's keys.
            probe = factory.idp(subject="probe", scope="clusters:read", email="probe")
            for port in ports.values():
                wait_until_decided(port, lambda p: send(p, "GET", PATH, probe))
            yield Gateway(envoy, ports, workspace, factory)
        finally:
            envoy.stop()


@pytest.fixture(autouse=True)
def email_policy(gateway):
    """The federation policy maps `email`; brickgate's `by_sub` listener maps `sub` (a deliberate
    mismatch there: those tests never reach an exchange)."""
    policy = FederationPolicy(issuer=gateway.tokens.idp_issuer, audiences=(AUDIENCE,), subject_claim="email").public()
    workspace_control(gateway.workspace, policy=policy, users=[], reset_stats=True)


def add_users(gateway: Gateway, *names: str) -> None:
    workspace_control(gateway.workspace, users=list(names))


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}@example.com"


def echo_of(reply: Reply) -> dict:
    assert reply.status == 200 and reply.header("x-brickgate-reason") is None, f"{reply.status}: {reply.body[:500]!r}"
    return reply.json()


def received_bearer(echo: dict) -> str:
    (authorization,) = echo["headers"]["authorization"]
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer", authorization
    return token


def assert_credential_not_received(echo: dict, idp_token: str) -> None:
    """Neither the client's token (nor its signature) nor the header or parameter that carried it
    reached the workspace."""
    signature = idp_token.rsplit(".", 1)[1]
    assert CUSTOM_HEADER not in echo["headers"], f"{CUSTOM_HEADER} reached the workspace"
    target = urllib.parse.urlsplit(echo["path"])
    assert QUERY_PARAM not in urllib.parse.parse_qs(target.query, keep_blank_values=True), echo["path"]
    assert signature not in echo["path"], "the IdP token reached the workspace in the path"
    for name, values in echo["headers"].items():
        for value in values:
            assert signature not in value, f"the IdP token reached the workspace in {name}"


# --- finding 5: no exchange without the mapped subject --------------------------------------------


@pytest.mark.parametrize("listener, claim", [("by_sub", "sub"), ("by_email", "email")])
def test_callers_without_the_mapped_claim_are_refused_before_any_exchange(gateway, listener, claim):
    """Two different callers whose tokens lack the claim: each refused, neither exchanged (before,
    both shared the Databricks token cached under an empty subject)."""
    callers = [
        gateway.tokens.idp(subject=unique("first"), scope="clusters:read", jti=uuid.uuid4().hex, **{claim: None}),
        gateway.tokens.idp(subject=unique("second"), scope="clusters:read", client_id="other-app", **{claim: None}),
        gateway.tokens.idp(subject=unique("third"), scope="clusters:read", **{claim: ""}),
    ]
    for token in callers:
        reply = send(gateway.ports[listener], "GET", PATH, token)
        assert_refused(reply, invalid_token("missing_subject", f'"{claim}"', "subject_claim"), token)
        again = send(gateway.ports[listener], "GET", PATH, token)  # the verified-token cache's answer
        assert_refused(again, invalid_token("missing_subject", f'"{claim}"'), token)
    stats = workspace_stats(gateway.workspace)
    assert stats["token_requests"] == 0, f"no exchange without the subject: {stats}"
    assert stats["api_requests_by_status"] == {}, "nothing reached the workspace"


def test_callers_told_apart_only_by_the_mapped_claim_get_their_own_databricks_tokens(gateway):
    """Same `sub`, different `email` (the claim the policy maps): each caller's request reaches the
    workspace with a Databricks token issued for that caller's email, and a new IdP token of the
    same caller reuses that caller's cached token."""
    alice, bob = unique("alice"), unique("bob")
    add_users(gateway, alice, bob)
    port = gateway.ports["by_email"]
    received = {}
    for email in (alice, bob):
        idp_token = gateway.tokens.idp(subject=SHARED_SUB, scope="clusters:read", email=email)
        echo = echo_of(send(port, "GET", PATH, idp_token))
        assert echo["principal"] == email, "the workspace answered as the caller the policy maps"
        databricks_token = received_bearer(echo)
        assert raw_tokens.payload_of(databricks_token)["sub"] == email
        assert echo["headers"]["x-brickgate-subject"] == [SHARED_SUB], "brickgate's own subject claim is unchanged"
        received[email] = databricks_token
    assert received[alice] != received[bob]
    again = echo_of(send(port, "GET", PATH, gateway.tokens.idp(subject=SHARED_SUB, scope="clusters:read", email=alice)))
    assert received_bearer(again) == received[alice], "alice's cached Databricks token, not bob's"
    stats = workspace_stats(gateway.workspace)
    assert stats["token_requests"] == 2, f"one exchange per mapped subject: {stats}"


# --- finding 6: the client's credential stays here --------------------------------------------------


@pytest.mark.parametrize("listener", ["exchange_no_forward", "exchange_forward", "sp_no_forward"])
@pytest.mark.parametrize("place", ["header", "query"])
def test_the_client_credential_never_reaches_the_workspace_when_brickgate_sends_its_own(gateway, listener, place):
    caller = unique("carrier")
    add_users(gateway, caller)
    idp_token = gateway.tokens.idp(subject=caller, scope="clusters:read", email=caller)
    if place == "header":
        reply = send(gateway.ports[listener], "GET", f"{PATH}?cluster_id=7", headers=[(CUSTOM_HEADER, idp_token)])
    else:
        reply = send(gateway.ports[listener], "GET", f"{PATH}?cluster_id=7&{QUERY_PARAM}={idp_token}")
    echo = echo_of(reply)
    assert_credential_not_received(echo, idp_token)
    assert echo["path"] == f"{PATH}?cluster_id=7", "the rest of the query goes through as sent"
    expected = SP_GATEWAY.application_id if listener.startswith("sp") else caller
    assert echo["principal"] == expected, "only brickgate's Databricks token authenticated the request"
    assert raw_tokens.payload_of(received_bearer(echo))["iss"] == gateway.workspace.issuer
    assert echo["headers"]["x-brickgate-subject"] == [caller]


# --- finding 12: shared upstream-token entries are bounded, and a shared slot never mixes callers ------


def test_more_callers_than_token_slots_each_get_their_own_databricks_token(gateway):
    """16 shared slots, 48 callers: slots are overwritten (the shared entries stay bounded), yet
    every request reaches the workspace with a Databricks token issued for its own caller."""
    callers = [unique(f"slot{i}") for i in range(48)]
    add_users(gateway, *callers)
    port = gateway.ports["few_slots"]
    for _ in range(2):  # the second round meets slots other callers overwrote
        for email in callers:
            echo = echo_of(send(port, "GET", PATH, gateway.tokens.idp(subject=SHARED_SUB, scope="clusters:read", email=email)))
            assert echo["principal"] == email
            assert raw_tokens.payload_of(received_bearer(echo))["sub"] == email
