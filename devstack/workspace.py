"""Fake Databricks workspace for local runs and e2e tests: OAuth server, token federation, REST echo.

`python -m devstack.workspace --port 9600 [--issuer-host http://127.0.0.1:9600]
                              [--idp-issuer http://127.0.0.1:9400] [--audience brickgate-demo]`

OAuth (shared/design/databricks-facts.md §1, §2); issuer `<host>/oidc`:
  GET  /oidc/.well-known/oauth-authorization-server   RFC 8414 metadata
  GET  /oidc/.well-known/openid-configuration         same document
  GET  /oidc/v1/keys                                  JWKS: test-dbx-1 (RS256) only
  GET  /.well-known/databricks-config                 host metadata (WORKSPACE_HOST)
  POST /oidc/v1/token                                 client_credentials (service principals) and
                                                      RFC 8693 token exchange under federation policies
REST and serving (§3): only tokens this workspace issued, with the scope the route needs; the
answer echoes what arrived (principal, scopes, method, path, headers, User-Agent).
Test hooks:
  GET  /_stats, POST /_stats/reset                    token-endpoint counts (see `Stats`)
  POST /_control                                      switch behaviour at run time (see `Control.apply`)

Nothing here logs, and no response ever contains a subject token (the REST echo does show the
headers it received, Authorization included: by then that holds a token this workspace issued).
Messages and status codes follow Databricks where known; where the facts note marks them
unverified (§6), the choice is documented next to the code.

The parts live beside this module: OAuth and token federation in workspace_federation.py, REST and
serving in workspace_rest.py, the mutable state in workspace_state.py. Everything they define is
re-exported here, so `from devstack.workspace import …` keeps working.
"""

import argparse
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterable

import jwt

from devstack import tokens
from devstack.httpbase import DevServer, JsonHandler, serve_until_interrupted
from devstack.idp import IdpHandler
# The parts, and everything public in them: re-exported for `from devstack.workspace import …`.
from devstack.workspace_federation import (
    ACCOUNT_ID,
    CLOUD,
    DEFAULT_SCOPE,
    DEFAULT_USERS,
    FEDERATED_ALGORITHMS,
    FEDERATION_CLIENT_ID,
    FederationPolicy,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    JWKS_CACHE_TTL_S,
    JWKS_FETCH_TIMEOUT_S,
    MAX_ECHOED_CLAIM_CHARS,
    NO_STORE,
    OIDC_SCOPES,
    SERVICE_PRINCIPALS,
    SIGNING_KEY,
    ServicePrincipal,
    TOKEN_ENDPOINT_FAULTS,
    TOKEN_LIFETIME_S,
    TOKEN_TYPE_JWT,
    TokenEndpoint,
    WORKSPACE_ID,
    dev_policy,
    new_error_id,
    scope_grantable,
)
from devstack.workspace_rest import (
    ANY_API_SCOPE,
    READ_METHODS,
    READ_ONLY_STATEMENTS,
    RESTRICTED_QUERY,
    ROUTES,
    RestEndpoint,
    Route,
    find_route,
    only_restricted_sql,
    read_only_statement,
)
from devstack.workspace_state import Control, KeyCache, Stats, parse_users


# --- server -----------------------------------------------------------------------------------


class WorkspaceServer(DevServer):
    def __init__(self, address, issuer_host: str | None, policies, users, service_principals):
        super().__init__(address, WorkspaceHandler)
        self.host_url = (issuer_host or f"http://127.0.0.1:{self.port}").rstrip("/")
        self.issuer = f"{self.host_url}/oidc"
        self.token_endpoint = f"{self.issuer}/v1/token"
        self.control = Control(list(policies), dict(users), tuple(service_principals))
        self.stats = Stats()
        self.key_cache = KeyCache(self.stats)

    # --- documents ---

    def metadata(self) -> dict:
        """RFC 8414 / OIDC discovery. Only the grants this fake implements are listed."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/v1/authorize",  # listed for shape; not served
            "token_endpoint": self.token_endpoint,
            "jwks_uri": f"{self.issuer}/v1/keys",
            "grant_types_supported": [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [SIGNING_KEY.alg],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["all-apis", "sql", "offline_access", "openid", "profile", "email"],
        }

    def databricks_config(self) -> dict:
        return {
            "oidc_endpoint": self.issuer,
            "account_id": ACCOUNT_ID,
            "workspace_id": WORKSPACE_ID,
            "cloud": CLOUD,
            "host_type": "WORKSPACE_HOST",
            "token_federation_default_oidc_audiences": [self.token_endpoint],
        }

    # --- tokens ---

    def issue(self, subject: str, client_id: str, scopes: list[str], lifetime_s: int = TOKEN_LIFETIME_S) -> dict:
        claims = tokens.databricks_claims(self.issuer, subject, " ".join(scopes), client_id=client_id, lifetime_s=lifetime_s)
        token = tokens.mint(claims, SIGNING_KEY.name, header={"typ": "JWT"})
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime_s, "scope": " ".join(scopes)}

    def verify_access_token(self, token: str) -> dict:
        """Claims of a token this workspace issued; ValueError(reason) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise ValueError("not a JWT") from None
        if header.get("kid", SIGNING_KEY.kid) != SIGNING_KEY.kid or header.get("alg") != SIGNING_KEY.alg:
            raise ValueError("not issued by this workspace")
        try:
            return jwt.decode(
                token, SIGNING_KEY.public_key, algorithms=[SIGNING_KEY.alg], issuer=self.issuer,
                options={"require": ["iss", "sub", "exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise ValueError("token expired") from None
        except jwt.InvalidIssuerError:
            raise ValueError("not issued by this workspace") from None
        except jwt.InvalidSignatureError:
            raise ValueError("bad signature") from None
        except jwt.PyJWTError:
            raise ValueError("invalid token") from None


class WorkspaceHandler(TokenEndpoint, RestEndpoint, JsonHandler):
    server: WorkspaceServer

    # The fake IdP's form parsing and client authentication (RFC 6749 §2.3.1, §3.2) fit as they are.
    read_form = IdpHandler.read_form
    client_authentication = IdpHandler.client_authentication

    def route_path(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    def do_GET(self):
        path = self.route_path()
        self.server.count(path, self.command)
        if path in ("/oidc/.well-known/oauth-authorization-server", "/oidc/.well-known/openid-configuration"):
            self.send_json(200, self.server.metadata())
        elif path == "/oidc/v1/keys":
            self.send_json(200, {"keys": [SIGNING_KEY.public_jwk()]}, {"Cache-Control": "max-age=300"})
        elif path == "/.well-known/databricks-config":
            self.send_json(200, self.server.databricks_config())
        elif path == "/_stats":
            self.send_json(200, {**self.server.stats.snapshot(), "paths": self.server.snapshot_counts()})
        else:
            self.serve_api(path)

    def do_POST(self):
        path = self.route_path()
        self.server.count(path, self.command)
        if path == "/oidc/v1/token":
            self.serve_token()
        elif path == "/_control":
            self.serve_control()
        elif path == "/_stats/reset":
            self.read_body()
            self.server.stats.reset()
            self.server.reset_counts()
            self.send_json(200, {**self.server.stats.snapshot(), "paths": {}})
        else:
            self.serve_api(path)

    def do_other(self):
        path = self.route_path()
        self.server.count(path, self.command)
        self.serve_api(path)

    do_HEAD = do_PUT = do_PATCH = do_DELETE = do_other

    # --- control ------------------------------------------------------------------------------------

    def serve_control(self) -> None:
        try:
            changes = json.loads(self.read_body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object")
            reset_stats = changes.pop("reset_stats", False)
            with self.server.control.lock:
                self.server.control.apply(changes)
                state = self.server.control.public()
            if "policy" in changes or "policies" in changes:
                self.server.key_cache.clear()
            if reset_stats:
                self.server.stats.reset()
                self.server.reset_counts()
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            self.send_json(400, {"error": str(err)})
            return
        self.send_json(200, state)


def make_workspace(
    port: int = 0,
    issuer_host: str | None = None,
    policies: Iterable[FederationPolicy] | None = None,
    users: dict | None = None,
    service_principals: Iterable[ServicePrincipal] = SERVICE_PRINCIPALS,
    host: str = "127.0.0.1",
) -> WorkspaceServer:
    """policies default to [dev_policy()] (trust the fake IdP on 9400, audience brickgate-demo)."""
    return WorkspaceServer(
        (host, port),
        issuer_host,
        [dev_policy()] if policies is None else list(policies),
        DEFAULT_USERS if users is None else parse_users(users),
        service_principals,
    )


# --- client helpers (tests, scripts) ------------------------------------------------------------


def _post_form(url: str, form: dict, headers: dict | None = None, timeout_s: float = 5.0) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def exchange_token(workspace_url: str, subject_token: str, scope: str = DEFAULT_SCOPE, client_id: str | None = None) -> tuple[int, dict]:
    """RFC 8693 exchange at the workspace; (status, JSON body)."""
    form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject_token,
            "subject_token_type": TOKEN_TYPE_JWT, "scope": scope}
    if client_id is not None:
        form["client_id"] = client_id
    return _post_form(f"{workspace_url.rstrip('/')}/oidc/v1/token", form)


def client_credentials_token(workspace_url: str, client_id: str, secret: str, scope: str | None = None) -> tuple[int, dict]:
    form = {"grant_type": GRANT_CLIENT_CREDENTIALS, **({"scope": scope} if scope is not None else {})}
    basic = base64.b64encode(f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}".encode()).decode()
    return _post_form(f"{workspace_url.rstrip('/')}/oidc/v1/token", form, {"Authorization": f"Basic {basic}"})


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake Databricks workspace (test keys only).")
    parser.add_argument("--port", type=int, default=9600)
    parser.add_argument("--issuer-host", help="public base URL; default http://127.0.0.1:<port> (issuer = <host>/oidc)")
    parser.add_argument("--idp-issuer", default="http://127.0.0.1:9400", help="issuer the default federation policy trusts")
    parser.add_argument("--audience", default="brickgate-demo", help="audience the default federation policy requires")
    args = parser.parse_args()
    server = make_workspace(args.port, args.issuer_host, [dev_policy(args.idp_issuer, args.audience)])
    serve_until_interrupted(server, f"fake Databricks workspace listening on http://127.0.0.1:{server.port} (issuer {server.issuer}; "
          f"federation trusts {args.idp_issuer} for audience {args.audience})")


if __name__ == "__main__":
    main()
