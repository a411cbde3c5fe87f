"""The Databricks upstream e2e tests' shared setup (test_databricks_upstream*.py): one Envoy with a
listener per upstream configuration in front of two fake workspaces (devstack/workspace.py), a token
endpoint that quotes tokens back, the autouse fixture that resets the workspaces, and helpers.

A test module imports `gateway` and `fresh_workspaces` for pytest to use them; the fixture is
module-scoped, so each test module gets its own Envoy.
"""

import urllib.parse
import uuid
from dataclasses import dataclass

import pytest

from databricks_support import (
    allowed_by_brickgate,
    bootstrap_with,
    closed_port,
    routed_listener,
    wait_until_decided,
    workspace_control,
)
from devstack import tokens as raw_tokens
from devstack.httpbase import DevServer, JsonHandler, running
from devstack.idp import make_idp
from devstack.workspace import (
    SERVICE_PRINCIPALS,
    WorkspaceServer,
    client_credentials_token,
    dev_policy,
    make_workspace,
)
from envoy_harness import VM_SECRET_ENV, EnvoyProcess
from gateway_client import NO_CHALLENGE, Refusal, Reply, send
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


def rejected(*message_contains) -> Refusal:
    return Refusal(401, "exchange_rejected", "UNAUTHENTICATED", "invalid_token", message_contains=message_contains)


def failed(*message_contains) -> Refusal:
    return Refusal(502, "exchange_failed", "INTERNAL_ERROR", NO_CHALLENGE, message_contains=message_contains)


def other_policy(gateway, **changes) -> dict:
    return {"policies": [{**dev_policy(gateway.tokens.idp_issuer, AUDIENCE).public(), **changes}, sp_policy(gateway)]}
