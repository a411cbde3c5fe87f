"""How allowed requests authenticate to Databricks (docs/CONFIG.md "Provider upstream"), against the
fake workspace (devstack/workspace.py) behind a real Envoy: pass-through, token exchange (RFC 8693
federation) and service principal; the exchange cache; every federation failure; the audit trail
headers; and the upstream_token counters.

One Envoy, one listener per upstream configuration, all routing to the fake workspace (or a second
one, or a closed port). Each test starts from the workspace's default policy, users and no fault,
and uses subjects of its own, so brickgate's cached Databricks tokens never carry over.
"""

import re
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from databricks_support import (
    CACHE_HIT,
    FAILED,
    FETCH,
    GRANT_CLIENT_CREDENTIALS,
    JWT_LIKE,
    VERSION,
    allowed_by_brickgate,
    assert_no_token_leaked,
    bootstrap_with,
    closed_port,
    counters,
    delta,
    leaked_fragment,
    record,
    routed_listener,
    token_calls,
    wait_until_decided,
    workspace_control,
    workspace_stats,
)
from devstack import tokens as raw_tokens
from devstack.httpbase import DevServer, JsonHandler, running
from devstack.idp import make_idp
from devstack.workspace import (
    FEDERATION_CLIENT_ID,
    SERVICE_PRINCIPALS,
    WorkspaceServer,
    client_credentials_token,
    dev_policy,
    exchange_token,
    make_workspace,
)
from envoy_harness import VM_SECRET_ENV, EnvoyProcess, http_get
from gateway_client import NO_CHALLENGE, Refusal, Reply, assert_refused, send
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

SP_GATEWAY, SP_READER = SERVICE_PRINCIPALS
PATH = "/api/2.1/clusters/list"
BASE_USERS = {"probe": ["all-apis"], "alice@example.com": ["all-apis"]}
ROBOT = "robot@example.com"  # the subject a service-principal federation policy names


class QuotingTokenEndpoint(JsonHandler):
    """A token endpoint that refuses every exchange with an error_description quoting (part of) the
    subject token, or some other JWT: what brickgate relays must be scrubbed of it."""

    def do_POST(self):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.read_body().decode()).items()}
        subject_token = form.get("subject_token", "")
        if subject_token.startswith("eyJ") and subject_token.count(".") == 2:
            header, payload, signature = subject_token.split(".")
            quoted = {"whole": f"cannot verify subject_token {subject_token}",
                      "quoted": f"subject_token='{subject_token}'; retry",
                      "payload": f"claims {payload} rejected",
                      "signature": f"signature {signature} does not verify",
                      "other-jwt": f"your previous token {self.server.other_jwt} expired"}[self.server.mode]
        else:
            quoted = "no subject_token"
        self.send_json(400, {"error": "invalid_request", "error_description": quoted})


def make_quoting_endpoint() -> DevServer:
    server = DevServer(("127.0.0.1", 0), QuotingTokenEndpoint)
    server.mode = "whole"
    server.other_jwt = raw_tokens.mint({"iss": "https://elsewhere.example", "sub": "x" * 20, "exp": 9999999999}, "dbx-1")
    return server


def exchange_upstream(cluster: str, workspace: WorkspaceServer, **extra) -> dict:
    return {"mode": "exchange", "cluster": cluster, "workspace_url": f"http://127.0.0.1:{workspace.port}", **extra}


def plugin_config(providers: dict, **top_level) -> dict:
    # The audit line in the application log too (off by default): tests read it.
    return {"realm": REALM, "providers": providers, "rules": [], "databricks": {"route_catalogue": True},
            "audit": {"log_line": True}, **top_level}


@dataclass
class UpstreamGateway:
    envoy: EnvoyProcess
    ports: dict[str, int]
    workspace: WorkspaceServer
    workspace_b: WorkspaceServer
    quoting: DevServer
    tokens: TokenFactory
    idp_port: int

    def idp_token(self, subject: str, scope: str = "clusters:read", **claims) -> str:
        return self.tokens.idp(subject=subject, scope=scope, **claims)


@pytest.fixture(scope="module")
def gateway(start_envoy, wasm_path):
    """A fake IdP, two fake workspaces trusting it, a token endpoint that quotes tokens back, and one
    Envoy with a listener per upstream configuration. Every listener is probed until its keys are in."""
    with (running(make_idp(0, audience=AUDIENCE)) as idp,
          running(make_workspace(0, policies=[dev_policy(idp.issuer, AUDIENCE)], users=BASE_USERS)) as workspace,
          running(make_workspace(0, policies=[dev_policy(idp.issuer, AUDIENCE)], users=BASE_USERS)) as workspace_b,
          running(make_quoting_endpoint()) as quoting):
        remote_idp = lambda **upstream: idp_provider(idp.issuer, idp.port, **({"upstream": upstream} if upstream else {}))  # noqa: E731
        databricks_issuer = {"issuer": workspace.issuer, "allow_any_audience": True, "idp": "databricks",
                             "jwks": {"remote": {"cluster": "workspace"}}}  # no uri: discovered from the issuer
        listeners = {
            "pass": (plugin_config({"dbx": databricks_issuer, "pt": remote_idp()}), "workspace"),
            "exchange": (plugin_config({"xch": remote_idp(**exchange_upstream("workspace", workspace, scopes=["all-apis"]))}), "workspace"),
            # the same provider name, in front of another workspace
            "exchange_b": (plugin_config({"xch": remote_idp(**exchange_upstream("workspace_b", workspace_b, scopes=["all-apis"]))}), "workspace_b"),
            "sp": (plugin_config({"spm": remote_idp(mode="service_principal", cluster="workspace",
                                                    workspace_url=f"http://127.0.0.1:{workspace.port}",
                                                    client_id=SP_GATEWAY.application_id, client_secret_env=VM_SECRET_ENV,
                                                    scopes=["all-apis"])}), "workspace"),
            # Databricks refuses brickgate's own credentials: a wrong secret; scopes not granted to the secret
            "sp_bad_secret": (plugin_config({"spb": remote_idp(mode="service_principal", cluster="workspace",
                                                               workspace_url=f"http://127.0.0.1:{workspace.port}",
                                                               client_id=SP_GATEWAY.application_id, client_secret="wrong",
                                                               scopes=["all-apis"])}, allow_inline_secrets=True), "workspace"),
            "sp_scope_not_granted": (plugin_config({"sps": remote_idp(mode="service_principal", cluster="workspace",
                                                                      workspace_url=f"http://127.0.0.1:{workspace.port}",
                                                                      client_id=SP_READER.application_id,
                                                                      client_secret=SP_READER.secret,
                                                                      scopes=["all-apis"])}, allow_inline_secrets=True), "workspace"),
            "down": (plugin_config({"dwn": remote_idp(**exchange_upstream("closed", workspace))}), "workspace"),
            "timeout": (plugin_config({"tmo": remote_idp(**exchange_upstream("workspace", workspace, timeout_ms=500))}), "workspace"),
            "sql_scope": (plugin_config({"xsql": remote_idp(**exchange_upstream("workspace", workspace, scopes=["sql"]))}), "workspace"),
            # RFC 8693 with client_id: the service principal's own federation policy decides
            "exchange_sp": (plugin_config({"xsp": remote_idp(**exchange_upstream("workspace", workspace,
                                                                                 client_id=SP_GATEWAY.application_id))}), "workspace"),
            "quoting": (plugin_config({"xq": remote_idp(**exchange_upstream("quoting", workspace))}), "workspace"),
        }
        clusters = {"workspace": workspace.port, "workspace_b": workspace_b.port, "idp": idp.port, "closed": closed_port(),
                    "quoting": quoting.port}
        config = bootstrap_with([routed_listener(name, wasm_path, cfg, cluster) for name, (cfg, cluster) in listeners.items()], clusters)
        envoy = start_envoy(config, "databricks-upstream", env={VM_SECRET_ENV: SP_GATEWAY.secret})
        try:
            envoy.wait_ready()
            ports = envoy.listener_ports()
            factory = TokenFactory(idp.issuer)
            probe = factory.idp(subject="probe", scope="clusters:read")
            _, issued = client_credentials_token(f"http://127.0.0.1:{workspace.port}", SP_READER.application_id, SP_READER.secret, "clusters:read")
            for name, port in ports.items():
                wait_until_decided(port, lambda p: send(p, "GET", PATH, probe))
                if name == "pass":  # both providers' keys: the workspace's (discovered) and the IdP's
                    wait_until_decided(port, lambda p: send(p, "GET", PATH, issued["access_token"]))
            yield UpstreamGateway(envoy, ports, workspace, workspace_b, quoting, factory, idp.port)
        finally:
            envoy.stop()


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


def sp_policy(gateway) -> dict:
    return {"issuer": gateway.tokens.idp_issuer, "audiences": [AUDIENCE], "subject": ROBOT, "service_principal": SP_GATEWAY.name}


@pytest.fixture(autouse=True)
def fresh_workspaces(gateway):
    default = {"policies": [dev_policy(gateway.tokens.idp_issuer, AUDIENCE).public(), sp_policy(gateway)], "users": BASE_USERS,
               "token_endpoint_fault": "none", "delay_s": 3.0, "reset_stats": True}
    for workspace in (gateway.workspace, gateway.workspace_b):
        workspace_control(workspace, **default)
    yield
    for workspace in (gateway.workspace, gateway.workspace_b):
        workspace_control(workspace, **default)


def new_subject(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}@example.com"


def add_users(workspace: WorkspaceServer, *subjects: str, scopes=("all-apis",)) -> None:
    workspace_control(workspace, users={**BASE_USERS, **{s: list(scopes) for s in subjects}})


def workspace_url(workspace: WorkspaceServer) -> str:
    return f"http://127.0.0.1:{workspace.port}"


def claims_of(token: str) -> dict:
    return raw_tokens.payload_of(token)


def received_bearer(echo: dict) -> str:
    (authorization,) = echo["headers"]["authorization"]
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer", authorization
    return token


def assert_idp_token_not_received(echo: dict, idp_token: str) -> None:
    """The workspace never saw the client's IdP token (nor its signature), in any header."""
    signature = idp_token.rsplit(".", 1)[1]
    for name, values in echo["headers"].items():
        for value in values:
            assert idp_token not in value and signature not in value, f"the IdP token reached the workspace in {name}"


def workspace_echo(reply: Reply) -> dict:
    assert reply.status == 200 and allowed_by_brickgate(reply), f"{reply.status} {reply.header('x-brickgate-reason')}: {reply.body[:500]!r}"
    return reply.json()


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


# --- exchange cache ---------------------------------------------------------------------------------


def test_exchange_once_per_subject_and_scope(gateway):
    first, second = new_subject("cache-1"), new_subject("cache-2")
    add_users(gateway.workspace, first, second)
    before = counters(gateway.envoy)
    same_token = gateway.idp_token(first)
    tokens_for_first = [same_token] * 5 + [gateway.idp_token(first) for _ in range(5)]  # refreshed IdP tokens too
    for token in tokens_for_first:
        assert workspace_echo(send(gateway.ports["exchange"], "GET", PATH, token))["principal"] == first
    after_first = workspace_stats(gateway.workspace)
    for _ in range(5):
        assert workspace_echo(send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(second)))["principal"] == second
    stats = workspace_stats(gateway.workspace)
    after = counters(gateway.envoy)
    measured = {"first_subject_requests": len(tokens_for_first), "first_subject_exchanges": token_calls(after_first, first),
                "second_subject_requests": 5, "second_subject_exchanges": token_calls(stats, second),
                "total_exchanges": token_calls(stats), "fetch": delta(before, after, FETCH),
                "cache_hit": delta(before, after, CACHE_HIT), "failed": delta(before, after, FAILED)}
    record("exchange_once_per_subject_and_scope", **measured)
    assert measured["first_subject_exchanges"] == 1, measured
    assert measured["second_subject_exchanges"] == 1 and measured["total_exchanges"] == 2, measured
    assert (measured["fetch"], measured["cache_hit"], measured["failed"]) == (2, 13, 0), measured


def test_concurrent_burst_for_a_new_subject_shares_one_exchange(gateway):
    """While the first exchange is in flight (the token endpoint takes 1 s), every other request for
    the same subject waits for it: one exchange for the whole burst, across Envoy's workers."""
    subject = new_subject("burst")
    add_users(gateway.workspace, subject)
    workspace_control(gateway.workspace, token_endpoint_fault="slow", delay_s=1.0)
    burst = 24
    tokens = [gateway.idp_token(subject) for _ in range(burst)]
    barrier = threading.Barrier(burst)

    def one(token):
        barrier.wait(timeout=10)
        return send(gateway.ports["exchange"], "GET", PATH, token, timeout_s=15)

    before = counters(gateway.envoy)
    started = time.monotonic()
    with ThreadPoolExecutor(burst) as pool:
        replies = list(pool.map(one, tokens))
    elapsed = time.monotonic() - started
    after = counters(gateway.envoy)
    stats = workspace_stats(gateway.workspace)
    measured = {"requests": burst, "exchanges": token_calls(stats, subject), "statuses": sorted({r.status for r in replies}),
                "fetch": delta(before, after, FETCH), "cache_hit": delta(before, after, CACHE_HIT),
                "elapsed_s": round(elapsed, 2), "envoy_workers": 2}
    record("concurrent_burst_one_subject", **measured)
    assert all(r.status == 200 and r.json()["principal"] == subject for r in replies), measured
    assert measured["exchanges"] <= measured["envoy_workers"], f"requests did not even coalesce within a worker: {measured}"
    # Requests coalesce within a worker; across workers the token is shared once obtained
    # (docs/CONFIG.md), so a burst that hits every worker at once may cost one call per worker.


def test_exchange_cache_does_not_cross_workspaces(gateway):
    """Two listeners whose providers share a name front two workspaces: each workspace must get a
    token it issued itself, never the other's (a Databricks token is a credential for its workspace)."""
    subject = new_subject("two-ws")
    for workspace in (gateway.workspace, gateway.workspace_b):
        add_users(workspace, subject)
    assert workspace_echo(send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(subject)))["principal"] == subject
    reply = send(gateway.ports["exchange_b"], "GET", PATH, gateway.idp_token(subject))
    stats_b = workspace_stats(gateway.workspace_b)
    record("exchange_cache_across_workspaces", status_b=reply.status, exchanges_a=token_calls(workspace_stats(gateway.workspace), subject),
           exchanges_b=token_calls(stats_b, subject))
    assert reply.status == 200, (f"workspace B answered {reply.status} {reply.body[:300]!r}; it got "
                                 f"{token_calls(stats_b, subject)} exchange(s) for the subject: brickgate sent it workspace A's token")
    echo = reply.json()
    assert echo["principal"] == subject and claims_of(received_bearer(echo))["iss"] == gateway.workspace_b.issuer
    assert token_calls(stats_b, subject) == 1


# --- federation failures ------------------------------------------------------------------------------


def rejected(*message_contains) -> Refusal:
    return Refusal(401, "exchange_rejected", "UNAUTHENTICATED", "invalid_token", message_contains=message_contains)


def failed(*message_contains) -> Refusal:
    return Refusal(502, "exchange_failed", "INTERNAL_ERROR", NO_CHALLENGE, message_contains=message_contains)


def other_policy(gateway, **changes) -> dict:
    return {"policies": [{**dev_policy(gateway.tokens.idp_issuer, AUDIENCE).public(), **changes}, sp_policy(gateway)]}


# case → (listener, workspace changes (or a callable of the gateway), subject is a user?, expected)
FAILURES = {
    "audience-mismatch": ("exchange", lambda g: other_policy(g, audiences=["urn:some-other-audience"]), True,
                          rejected("Databricks refused the token exchange", "invalid_request", "audience", "urn:some-other-audience")),
    "audience-unset-means-account-id": ("exchange", lambda g: other_policy(g, audiences=None), True,
                                        rejected("audience", "account id")),
    "issuer-mismatch": ("exchange", lambda g: other_policy(g, issuer="https://other-idp.example.com"), True,
                        rejected("Databricks refused the token exchange", "issuer", "does not match")),
    "unknown-subject": ("exchange", lambda g: {}, False, rejected("subject", "not a user of this workspace")),
    # An all-apis caller on a listener whose upstream.scopes are [sql]: brickgate asks for `sql`, which
    # the workspace does not grant this user (allowed clusters:read only).
    "scope-not-granted": ("sql_scope", lambda g: {}, "clusters:read", rejected("invalid_scope", "sql")),
    "federation-not-enabled-404": ("exchange", lambda g: {"token_endpoint_fault": "404"}, True,
                                   failed("HTTP 404", "federation not enabled, or not a Databricks workspace host")),
    "token-endpoint-500": ("exchange", lambda g: {"token_endpoint_fault": "500"}, True, failed("HTTP 500")),
    "workspace-down": ("down", lambda g: {}, True, failed()),  # wording: test_transport_failures_are_not_blamed_on_databricks
    "token-endpoint-timeout": ("timeout", lambda g: {"token_endpoint_fault": "slow", "delay_s": 2.0}, True, failed()),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_federation_failure(gateway, case):
    listener, changes, is_user, expected = FAILURES[case]
    subject = new_subject(f"fail-{case}")
    if is_user:
        add_users(gateway.workspace, subject, scopes=("all-apis",) if is_user is True else (is_user,))
    workspace_control(gateway.workspace, **changes(gateway))
    idp_token = gateway.idp_token(subject, "all-apis" if case == "scope-not-granted" else "clusters:read")
    before, log_offset = counters(gateway.envoy), gateway.envoy.log_size()
    reply = send(gateway.ports[listener], "GET", PATH, idp_token, timeout_s=10)
    after = counters(gateway.envoy)
    assert_refused(reply, expected, idp_token)
    assert_no_token_leaked(reply, idp_token)
    assert delta(before, after, FAILED) == 1 and delta(before, after, FETCH) == 1
    assert delta(before, after, "wasmcustom.brickgate.denied." + expected.reason) == 1
    stats = workspace_stats(gateway.workspace)
    assert "200" not in stats["api_requests_by_status"], "a request brickgate could not get a token for never reaches the API"
    time.sleep(0.2)  # the audit line is written as the refusal goes out
    logged = gateway.envoy.log_since(log_offset)
    assert leaked_fragment(logged, idp_token) is None and not JWT_LIKE.search(logged), "a token reached Envoy's log"
    record(f"federation_failure:{case}", status=reply.status, reason=reply.header("x-brickgate-reason"), message=reply.json()["message"])


@pytest.mark.parametrize("case", ["workspace-down", "token-endpoint-timeout"])
def test_transport_failures_are_not_blamed_on_databricks(gateway, case):
    """When the workspace cannot be reached (connection refused) or does not answer in time, the
    message says so (docs/ERRORS.md: "unreachable"); it must not claim that Databricks answered
    an HTTP error, which sends an operator looking at Databricks instead of the network."""
    listener, changes, _, _ = FAILURES[case]
    subject = new_subject(f"transport-{case}")
    add_users(gateway.workspace, subject)
    workspace_control(gateway.workspace, **changes(gateway))
    reply = send(gateway.ports[listener], "GET", PATH, gateway.idp_token(subject), timeout_s=10)
    assert reply.status == 502 and reply.header("x-brickgate-reason") == "exchange_failed", reply.body
    message = reply.json()["message"]
    assert "answered HTTP" not in message, f"blames Databricks for a transport failure: {message!r}"
    assert any(word in message for word in ("no response", "unreachable", "timed out", "timeout", "could not reach")), message


@pytest.mark.parametrize("mode", ["whole", "quoted", "payload", "signature", "other-jwt"])
def test_databricks_error_descriptions_are_scrubbed_of_tokens(gateway, mode):
    """Databricks' refusal is relayed (error + error_description) but never a token in it: neither
    the subject token, whole or in part, nor any other JWT (docs/CONFIG.md: "scrubbed of anything
    token-like")."""
    gateway.quoting.mode = mode
    idp_token = gateway.idp_token(new_subject(f"quote-{mode}"))
    log_offset = gateway.envoy.log_size()
    reply = send(gateway.ports["quoting"], "GET", PATH, idp_token)
    assert_refused(reply, rejected("Databricks refused the token exchange", "invalid_request"), idp_token)
    assert_no_token_leaked(reply, idp_token, gateway.quoting.other_jwt)
    time.sleep(0.2)
    assert leaked_fragment(gateway.envoy.log_since(log_offset), idp_token) is None, "part of the token reached Envoy's log (audit detail)"


def test_a_refused_exchange_is_not_cached(gateway):
    """Once the policy is fixed, the same caller gets through at once: failures are not remembered."""
    subject = new_subject("recover")
    add_users(gateway.workspace, subject)
    workspace_control(gateway.workspace, **other_policy(gateway, audiences=["urn:wrong"]))
    token = gateway.idp_token(subject)
    assert send(gateway.ports["exchange"], "GET", PATH, token).header("x-brickgate-reason") == "exchange_rejected"
    workspace_control(gateway.workspace, **other_policy(gateway))
    assert workspace_echo(send(gateway.ports["exchange"], "GET", PATH, token))["principal"] == subject
    assert token_calls(workspace_stats(gateway.workspace), subject) == 2


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


def test_exchange_happens_once_before_the_api_call(gateway):
    """A cold request: one RFC 8693 exchange at /oidc/v1/token, then the API call with its result."""
    subject = new_subject("ua-token")
    add_users(gateway.workspace, subject)
    offset = len(gateway.workspace.snapshot_log())
    workspace_echo(send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(subject)))
    paths = [entry["path"] for entry in gateway.workspace.snapshot_log()[offset:]]
    assert paths == ["/oidc/v1/token", PATH], paths
    stats = workspace_stats(gateway.workspace)
    assert stats["by_grant_type"] == {"urn:ietf:params:oauth:grant-type:token-exchange": 1}
    assert stats["issued_by_grant_type"] == {"urn:ietf:params:oauth:grant-type:token-exchange": 1}


# --- counters ---------------------------------------------------------------------------------------


def test_upstream_token_counters(gateway):
    subject = new_subject("counters")
    add_users(gateway.workspace, subject)
    steps = []
    before = counters(gateway.envoy)
    for label in ("miss", "hit", "hit"):
        assert send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(subject)).status == 200
        now = counters(gateway.envoy)
        steps.append((label, delta(before, now, FETCH), delta(before, now, CACHE_HIT), delta(before, now, FAILED)))
    assert steps == [("miss", 1, 0, 0), ("hit", 1, 1, 0), ("hit", 1, 2, 0)], steps
    stranger = new_subject("counters-stranger")  # not a user: refused by Databricks
    assert send(gateway.ports["exchange"], "GET", PATH, gateway.idp_token(stranger)).status == 401
    after = counters(gateway.envoy)
    assert (delta(before, after, FETCH), delta(before, after, CACHE_HIT), delta(before, after, FAILED)) == (2, 2, 1)


@pytest.fixture(scope="module")
def single_worker(gateway, start_envoy, wasm_path):
    """An Envoy of its own with one worker (so every request shares one VM and its in-flight calls):
    exchange mode in front of the module's workspace."""
    provider = idp_provider(gateway.tokens.idp_issuer, gateway.idp_port, upstream=exchange_upstream("workspace", gateway.workspace))
    listener = routed_listener("one_worker", wasm_path, plugin_config({"x1": provider}), "workspace")
    envoy = start_envoy(bootstrap_with([listener], {"workspace": gateway.workspace.port, "idp": gateway.idp_port}),
                        "databricks-one-worker", concurrency=1)
    try:
        envoy.wait_ready()
        port = envoy.listener_ports()["one_worker"]
        probe = gateway.idp_token("probe")
        wait_until_decided(port, lambda p: send(p, "GET", PATH, probe))
        yield port
    finally:
        envoy.stop()


def test_callers_waiting_on_an_exchange_survive_the_first_caller_leaving(gateway, single_worker):
    """The request that started an exchange gives up (client timeout) while the exchange is in
    flight. The requests parked behind the same exchange, and later ones for the same subject, must
    still be answered (one impatient client must not wedge a user's access)."""
    subject = new_subject("abandoned")
    add_users(gateway.workspace, subject)
    workspace_control(gateway.workspace, token_endpoint_fault="slow", delay_s=1.5)
    try:
        send(single_worker, "GET", PATH, gateway.idp_token(subject), timeout_s=0.3)
        raise AssertionError("the first request should still be waiting for the slow exchange")
    except TimeoutError:
        pass  # the client hangs up while the exchange is in flight

    def attempt():
        try:
            return send(single_worker, "GET", PATH, gateway.idp_token(subject), timeout_s=5).status
        except TimeoutError:
            return "no answer in 5 s"

    parked = attempt()  # arrives while the abandoned exchange would still be in flight
    workspace_control(gateway.workspace, token_endpoint_fault="none")
    later = attempt()  # the token endpoint is fast again
    stats = workspace_stats(gateway.workspace)
    measured = {"parked": parked, "later": later, "exchanges": token_calls(stats, subject)}
    record("abandoned_first_caller_one_worker", **measured)
    assert parked == 200 and later == 200, f"requests for the subject were never answered: {measured}"
