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
"""

import argparse
import base64
import hmac
import json
import re
import socket
import struct
import threading
import time
import uuid
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import jwt

from devstack import tokens
from devstack.httpbase import DevServer, JsonHandler, serve_until_interrupted
from devstack.idp import DEMO_CLIENTS, IdpHandler, OAuthError
from devstack.keys import TEST_KEYS

TOKEN_LIFETIME_S = 3600
SIGNING_KEY = TEST_KEYS["dbx-1"]
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
FEDERATED_ALGORITHMS = ("RS256", "ES256")  # what Databricks accepts on federated tokens (§2)
DEFAULT_SCOPE = "all-apis"  # the SDK/CLI default, also used when `scope` is absent
# OIDC-only scopes: no API access of their own, always grantable.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})

# Fake identifiers: clearly not real ones.
ACCOUNT_ID = "11111111-2222-4333-8444-555555555555"
WORKSPACE_ID = "1234567890123456"
CLOUD = "aws"
# `client_id` claim of tokens minted under an *account* federation policy. What Databricks puts
# there is not established (facts §6 q2); this placeholder only has to be recognisable.
FEDERATION_CLIENT_ID = "databricks-token-federation"

JWKS_CACHE_TTL_S = 300.0
JWKS_FETCH_TIMEOUT_S = 5.0
TOKEN_ENDPOINT_FAULTS = ("none", "404", "500", "slow", "reset", "garbage", "oversized")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_ECHOED_CLAIM_CHARS = 200


@dataclass(frozen=True)
class ServicePrincipal:
    name: str  # display name; accepted as an alias of the application id in `client_id`
    application_id: str  # the OAuth client id of a Databricks SP (a UUID), and `sub` of its tokens
    secret: str
    scopes: tuple[str, ...] = (DEFAULT_SCOPE,)

    def public(self) -> dict:
        return {"name": self.name, "application_id": self.application_id, "scopes": list(self.scopes)}


SERVICE_PRINCIPALS = (
    ServicePrincipal("sp-gateway", "5a1c0d6e-0000-4000-8000-000000000001", "sp-gateway-secret", ("all-apis",)),
    ServicePrincipal("sp-reader", "5a1c0d6e-0000-4000-8000-000000000002", "sp-reader-secret",
                     ("clusters:read", "jobs:read", "sql:read")),
)

# Workspace users (username → scopes they may be granted). An account federation policy maps the
# token's subject claim to one of these. "Allowed scopes per user" is this fake's stand-in for
# Databricks permissions: a user allowed `all-apis` may be granted any scope, one allowed `S` may be
# granted `S` and `S:<modifier>`.
DEFAULT_USERS = {
    **{client_id: (DEFAULT_SCOPE,) for client_id in DEMO_CLIENTS},  # demo-reader, demo-admin, demo-ml
    "alice@example.com": (DEFAULT_SCOPE,),
    "bob@example.com": ("clusters:read", "sql"),
}


@dataclass(frozen=True)
class FederationPolicy:
    """A Databricks `oidc_policy` (§2). `subject` set ⇒ a service-principal policy for `service_principal`."""

    issuer: str
    audiences: tuple[str, ...] | None = None  # None: Databricks' default, the account id
    subject_claim: str = "sub"
    subject: str | None = None
    service_principal: str | None = None  # SP name or application id; required iff `subject` is set
    jwks_uri: str | None = None
    jwks_json: dict | None = field(default=None, hash=False)  # neither: discover from the issuer

    FIELDS = ("issuer", "audiences", "subject_claim", "subject", "service_principal", "jwks_uri", "jwks_json")

    @property
    def effective_audiences(self) -> tuple[str, ...]:
        return self.audiences if self.audiences is not None else (ACCOUNT_ID,)

    @property
    def is_service_principal_policy(self) -> bool:
        return self.subject is not None

    def public(self) -> dict:
        return {
            "issuer": self.issuer,
            "audiences": list(self.audiences) if self.audiences is not None else None,
            "subject_claim": self.subject_claim,
            "subject": self.subject,
            "service_principal": self.service_principal,
            "jwks_uri": self.jwks_uri,
            "jwks_json": self.jwks_json,
        }

    @classmethod
    def from_json(cls, value, service_principals: Iterable[ServicePrincipal]) -> "FederationPolicy":
        if not isinstance(value, dict):
            raise ValueError("a federation policy is a JSON object")
        unknown = set(value) - set(cls.FIELDS)
        if unknown:
            raise ValueError(f"unknown federation policy field(s): {', '.join(sorted(unknown))}")

        def optional_str(name):
            item = value.get(name)
            if item is not None and (not isinstance(item, str) or not item):
                raise ValueError(f"policy {name} must be a non-empty string")
            return item

        issuer = optional_str("issuer")
        if issuer is None:
            raise ValueError("policy issuer is required")
        audiences = value.get("audiences")
        if audiences is not None:
            if not isinstance(audiences, list) or not audiences or not all(isinstance(a, str) and a for a in audiences):
                raise ValueError("policy audiences must be a non-empty list of strings (or null for the account id)")
            audiences = tuple(audiences)
        subject_claim = optional_str("subject_claim") or "sub"
        subject, principal = optional_str("subject"), optional_str("service_principal")
        if (subject is None) != (principal is None):
            raise ValueError("subject and service_principal go together: set both (SP policy) or neither (account policy)")
        if principal is not None and not any(principal in (sp.name, sp.application_id) for sp in service_principals):
            raise ValueError(f"unknown service principal {principal!r}")
        jwks_json = value.get("jwks_json")
        if isinstance(jwks_json, str):  # Databricks' API carries it as a JSON string
            jwks_json = json.loads(jwks_json)
        if jwks_json is not None and not (isinstance(jwks_json, dict) and isinstance(jwks_json.get("keys"), list)):
            raise ValueError("policy jwks_json must be a JWKS object {\"keys\": [...]}")
        return cls(issuer, audiences, subject_claim, subject, principal, optional_str("jwks_uri"), jwks_json)


def dev_policy(idp_issuer: str = "http://127.0.0.1:9400", audience: str = "brickgate-demo") -> FederationPolicy:
    """The account federation policy of the dev stack: trust the fake IdP's tokens for `audience`."""
    return FederationPolicy(issuer=idp_issuer, audiences=(audience,), subject_claim="sub")


def scope_grantable(requested: str, allowed: Iterable[str]) -> bool:
    allowed = set(allowed)
    if requested in OIDC_SCOPES or requested in allowed or DEFAULT_SCOPE in allowed:
        return True
    return any(requested.startswith(f"{scope}:") for scope in allowed)  # a narrower modifier (S:read ...)


# --- routes ---------------------------------------------------------------------------------
# Which scope a route needs, written from Databricks' documentation (the URL beside each entry),
# independently of brickgate's catalogue (core/src/databricks/catalogue.rs): the two can disagree,
# and tests/e2e/test_catalogue_vs_fake.py lists where they do.
#   SCOPE_MODIFIERS = https://docs.databricks.com/aws/en/dev-tools/auth/scope-modifiers
#     `S:read`: GET and HEAD of scope S. `sql:restricted-query`: read-only queries through the
#     Statement Execution API and the SQL drivers; no other SQL API. `sql:read:restricted-query`:
#     both. (`all-apis:read` is the `:read` modifier on `all-apis`.)
#   WORKSPACE_SCOPES = https://docs.databricks.com/api/workspace/scopes (SCIM Me is in every scope)
#   ACCOUNT_SCOPES = https://docs.databricks.com/api/account/scopes (`authentication`: service
#     principal secrets and federation policies)
#   API_REFERENCE = the per-operation pages of https://docs.databricks.com/api ("API scopes: ..."):
#     model-serving-query/v1/query (`model-serving`, `model-serving-inference`),
#     workspace-objects/v1/get-status (`workspace`)

ANY_API_SCOPE = "*"  # SCIM Me: every Databricks scope lists it (WORKSPACE_SCOPES)
READ_METHODS = frozenset({"GET", "HEAD"})
RESTRICTED_QUERY = "restricted-query"


@dataclass(frozen=True)
class Route:
    name: str
    pattern: re.Pattern
    service: str | None  # the service scope S; None: only `all-apis`; ANY_API_SCOPE: any API scope
    methods: frozenset | None = None  # None: any method
    also_accepted: tuple[str, ...] = ()  # further scopes that satisfy it
    body_model: bool = False  # OpenAI-compatible serving: the endpoint is the JSON body's `model`
    query: bool = False  # a SQL query route: `sql:restricted-query` satisfies it (SCOPE_MODIFIERS)

    def matches(self, method: str, path: str) -> bool:
        return (self.methods is None or method in self.methods) and self.pattern.fullmatch(path) is not None

    def needed(self) -> str:
        """The scope a 403 names: the service scope, or all-apis."""
        return self.service if self.service not in (None, ANY_API_SCOPE) else DEFAULT_SCOPE

    def satisfied_by(self, method: str, scopes: set[str]) -> bool:
        read = method in READ_METHODS
        if DEFAULT_SCOPE in scopes or (read and f"{DEFAULT_SCOPE}:read" in scopes):
            return True
        if self.service is None:
            return False
        if self.service == ANY_API_SCOPE:
            return bool(scopes - OIDC_SCOPES)
        accepted = {self.service, *self.also_accepted}
        if scopes & accepted:
            return True
        if read and any(f"{scope}:read" in scopes for scope in accepted):
            return True
        if self.service == "sql":
            if self.query and scopes & {"sql:restricted-query", "sql:read:restricted-query"}:
                return True
            if read and "sql:read:restricted-query" in scopes:
                return True
        return False


def only_restricted_sql(scopes) -> bool:
    """A token whose only SQL grant is `:restricted-query` (no `sql`, no `all-apis`)."""
    return not ({DEFAULT_SCOPE, "sql"} & set(scopes))


READ_ONLY_STATEMENTS = ("SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "WITH", "VALUES")


def read_only_statement(body: bytes) -> bool:
    """The Statement Execution request's `statement` is a query (this fake's stand-in for the SQL
    engine's read-only check)."""
    try:
        statement = json.loads(body or b"{}").get("statement", "")
    except (ValueError, AttributeError):
        return True
    words = str(statement).split(None, 1)
    return not words or words[0].upper() in READ_ONLY_STATEMENTS


def _route(name, regex, service, methods=None, **kwargs) -> Route:
    return Route(name, re.compile(regex), service, frozenset(methods) if methods else None, **kwargs)


# First match wins. Paths outside these families under /api/ need `all-apis`; anything else is 404
# like an unknown Databricks API.
ROUTES = (
    _route("scim-me", r"/api/2\.0/preview/scim/v2/Me", ANY_API_SCOPE, ("GET", "HEAD")),  # WORKSPACE_SCOPES
    _route("sql-statements", r"/api/2\.0/sql/statements(/.*)?", "sql", query=True),  # SCOPE_MODIFIERS
    # The Thrift endpoints of the SQL drivers (JDBC/ODBC/Python/dbt): "SQL drivers and connectors"
    _route("sql-thrift-warehouse", r"/sql/1\.0/(warehouses|endpoints)/[^/]+", "sql", query=True),
    _route("sql-thrift-cluster", r"/sql/protocolv1/o/[^/]+/[^/]+", "sql", query=True),
    _route("clusters", r"/api/2\.[01]/clusters/.+", "clusters"),  # SCOPE_MODIFIERS example
    _route("jobs", r"/api/2\.[012]/jobs/.+", "jobs"),
    _route("mlflow", r"/api/[23]\.0/mlflow/.+", "mlflow"),
    _route("unity-catalog", r"/api/2\.[01]/unity-catalog/.+", "unity-catalog"),
    _route("alerts", r"/api/2\.0/sql/alerts(/.*)?", "alerts"),  # WORKSPACE_SCOPES
    _route("alerts-v2", r"/api/2\.0/alerts(/.*)?", "alerts"),  # WORKSPACE_SCOPES: List/Create/Update/Get/Trash Alert
    _route("sql", r"/api/2\.0/sql/.+", "sql"),
    _route("permissions", r"/api/2\.0/permissions/.+", "access-management"),  # WORKSPACE_SCOPES
    # ACCOUNT_SCOPES: workspace permission assignments; rule sets and assignable roles (and proxies)
    _route("permission-assignments", r"/api/2\.0/accounts/[^/]+/workspaces/[^/]+/permissionassignments(/.*)?",
           "access-management"),
    _route("rule-sets", r"/api/2\.0/preview/accounts/(?:[^/]+/)?access-control/(rule-sets|assignable-roles)",
           "access-management"),
    _route("dashboards", r"/api/2\.0/lakeview/.+", "dashboards"),  # WORKSPACE_SCOPES
    _route("workspace-objects", r"/api/2\.0/(workspace|repos|git-credentials)(/.*)?", "workspace"),  # API_REFERENCE
    _route("cluster-policies", r"/api/2\.0/policies/clusters/.+", "clusters"),  # API_REFERENCE (get-policy)
    _route("command-execution", r"/api/1\.2/.+", "command-execution"),  # API_REFERENCE (command-execution execute)
    _route("instance-profiles", r"/api/2\.0/instance-profiles/.+", "instance-profiles"),  # API_REFERENCE
    _route("global-init-scripts", r"/api/2\.0/global-init-scripts(/.*)?", "global-init-scripts"),  # API_REFERENCE
    _route("secrets", r"/api/2\.0/secrets/.+", "secrets"),  # API_REFERENCE (list-secrets)
    _route("dbfs", r"/api/2\.0/dbfs/.+", "files"),  # API_REFERENCE (dbfs get-status)
    _route("instance-pools", r"/api/2\.0/instance-pools/.+", "instance-pools"),  # API_REFERENCE
    _route("pipelines", r"/api/2\.0/pipelines(/.*)?", "pipelines"),  # API_REFERENCE (pipelines list)
    _route("apps", r"/api/2\.0/apps(/.*)?", "apps"),  # WORKSPACE_SCOPES
    _route("sp-secrets", r"/api/2\.0/accounts/(?:[^/]+/)?servicePrincipals/[^/]+/credentials/secrets(/.*)?",
           "authentication"),  # ACCOUNT_SCOPES: service principal secrets (proxy on the workspace)
    _route("federation-policies", r"/api/2\.0/accounts/[^/]+/(?:servicePrincipals/[^/]+/)?federationPolicies(/.*)?",
           "authentication"),  # ACCOUNT_SCOPES
    _route("serving-endpoints-api", r"/api/2\.0/serving-endpoints(/.*)?", "model-serving"),
    _route("serving-openai", r"/serving-endpoints/(chat/completions|completions|embeddings|responses)", "model-serving",
           ("POST",), body_model=True),
    _route("serving-invocations", r"/serving-endpoints/[^/]+/invocations", "model-serving", ("POST",),
           also_accepted=("model-serving-inference",)),  # API_REFERENCE
    _route("served-model-invocations", r"/serving-endpoints/[^/]+/served-models/[^/]+/invocations", "model-serving",
           ("POST",), also_accepted=("model-serving-inference",)),  # API_REFERENCE
    _route("ai-gateway", r"/ai-gateway/.+", "ai-gateway"),  # Apps auth page names the ai-gateway scope
    _route("api", r"/api/.*", None),
)


def find_route(method: str, path: str) -> Route | None:
    return next((route for route in ROUTES if route.matches(method, path)), None)


# --- mutable state ----------------------------------------------------------------------------


@dataclass
class Control:
    """Everything POST /_control may change. Guarded by `lock`: handlers run on many threads."""

    policies: list[FederationPolicy]
    users: dict[str, tuple[str, ...]]
    service_principals: tuple[ServicePrincipal, ...]
    token_endpoint_fault: str = "none"
    delay_s: float = 3.0  # for token_endpoint_fault "slow"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def public(self) -> dict:
        return {
            "policies": [policy.public() for policy in self.policies],
            "users": {name: list(scopes) for name, scopes in self.users.items()},
            "service_principals": [sp.public() for sp in self.service_principals],
            "token_endpoint_fault": self.token_endpoint_fault,
            "delay_s": self.delay_s,
        }

    def service_principal(self, client_id: str) -> ServicePrincipal | None:
        return next((sp for sp in self.service_principals if client_id in (sp.application_id, sp.name)), None)

    def apply(self, changes: dict) -> None:
        """Validate everything first, so a bad request changes nothing.

        policy: one policy object (replaces all policies); policies: a list of them;
        users: {"name": ["scope", ...] | null (= all-apis)} or ["name", ...] (each all-apis);
        token_endpoint_fault: none | 404 | 500 | slow | reset | garbage | oversized; delay_s: seconds
        for "slow" (0..60).
        """
        new = {}
        for name, value in changes.items():
            if name == "policy":
                new["policies"] = [FederationPolicy.from_json(value, self.service_principals)]
            elif name == "policies":
                if not isinstance(value, list):
                    raise ValueError("policies must be a list")
                new["policies"] = [FederationPolicy.from_json(item, self.service_principals) for item in value]
            elif name == "users":
                new["users"] = parse_users(value)
            elif name == "token_endpoint_fault":
                if value not in TOKEN_ENDPOINT_FAULTS:
                    raise ValueError(f"token_endpoint_fault must be one of {', '.join(TOKEN_ENDPOINT_FAULTS)}")
                new[name] = value
            elif name == "delay_s":
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 60:
                    raise ValueError("delay_s must be a number of seconds in 0..60")
                new[name] = float(value)
            else:
                raise ValueError(f"unknown control field {name!r}")
        if "policy" in changes and "policies" in changes:
            raise ValueError("send policy or policies, not both")
        for name, value in new.items():
            setattr(self, name, value)


def parse_users(value) -> dict[str, tuple[str, ...]]:
    if isinstance(value, list):
        value = {name: None for name in value}
    if not isinstance(value, dict):
        raise ValueError("users must be a list of usernames or an object {username: [scopes] | null}")
    users = {}
    for name, scopes in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError("usernames must be non-empty strings")
        if scopes is None:
            scopes = [DEFAULT_SCOPE]
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
            raise ValueError(f"scopes of user {name!r} must be a list of strings")
        users[name] = tuple(scopes)
    return users


class Stats:
    """Token-endpoint and API counts (GET /_stats). Thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.token_requests = 0
            self.by_grant_type: Counter = Counter()
            self.issued_by_grant_type: Counter = Counter()
            self.errors: Counter = Counter()
            self.by_subject_scope: dict[tuple[str, str, str], Counter] = {}
            self.jwks_fetches: Counter = Counter()
            self.api_by_status: Counter = Counter()

    def token_request(self, grant_type: str) -> None:
        with self.lock:
            self.token_requests += 1
            self.by_grant_type[grant_type] += 1

    def token_outcome(self, grant_type: str, subject: str | None, scope: str | None, error: str | None) -> None:
        with self.lock:
            entry = self.by_subject_scope.setdefault((grant_type, subject or "", scope or ""), Counter())
            entry["requests"] += 1
            if error is None:
                entry["issued"] += 1
                self.issued_by_grant_type[grant_type] += 1
            else:
                self.errors[error] += 1

    def fault(self, name: str) -> None:
        with self.lock:
            self.errors[f"fault_{name}"] += 1

    def jwks_fetch(self, url: str) -> None:
        with self.lock:
            self.jwks_fetches[url] += 1

    def api(self, status: int) -> None:
        with self.lock:
            self.api_by_status[str(status)] += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "token_requests": self.token_requests,
                "by_grant_type": dict(self.by_grant_type),
                "issued_by_grant_type": dict(self.issued_by_grant_type),
                "errors": dict(self.errors),
                "by_subject_scope": [
                    {"grant_type": grant, "subject": subject, "scope": scope,
                     "requests": counts["requests"], "issued": counts["issued"]}
                    for (grant, subject, scope), counts in sorted(self.by_subject_scope.items())
                ],
                "jwks_fetches": dict(self.jwks_fetches),
                "api_requests_by_status": dict(self.api_by_status),
            }


class KeyCache:
    """Federated issuers' signing keys by source URL: cached JWKS_CACHE_TTL_S, refetched on a kid miss."""

    def __init__(self, stats: Stats):
        self.stats = stats
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, dict]] = {}

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()

    def jwks(self, policy: FederationPolicy, refresh: bool = False) -> dict:
        if policy.jwks_json is not None:
            return policy.jwks_json
        source = policy.jwks_uri or _discovery_url(policy.issuer)
        with self.lock:
            cached = self.entries.get(source)
        if cached and not refresh and time.monotonic() - cached[0] < JWKS_CACHE_TTL_S:
            return cached[1]
        jwks_uri = policy.jwks_uri or self._jwks_uri_from_discovery(source)
        document = self._fetch_json(jwks_uri)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise OAuthError("temporarily_unavailable", f"The JWKS at {jwks_uri} is not a JWK set", 503)
        with self.lock:
            self.entries[source] = (time.monotonic(), document)
        return document

    def _jwks_uri_from_discovery(self, discovery_url: str) -> str:
        document = self._fetch_json(discovery_url)
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str):
            raise OAuthError("temporarily_unavailable", f"No jwks_uri in the issuer's discovery document {discovery_url}", 503)
        return jwks_uri

    def _fetch_json(self, url: str):
        self.stats.jwks_fetch(url)
        try:
            with urllib.request.urlopen(url, timeout=JWKS_FETCH_TIMEOUT_S) as response:
                return json.loads(response.read(1_000_000))
        except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts, bad JSON
            reason = f"HTTP {err.code}" if isinstance(err, urllib.error.HTTPError) else type(err).__name__
            raise OAuthError("temporarily_unavailable", f"Could not fetch the issuer's signing keys from {url} ({reason})", 503) from None


def _discovery_url(issuer: str) -> str:
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"


def _shown(value) -> str:
    """A claim value for an error description (claims only: never the token itself)."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_ECHOED_CLAIM_CHARS else text[:MAX_ECHOED_CLAIM_CHARS] + "…"


def _policy_rejection(description: str) -> OAuthError:
    # RFC 8693 §2.2.2 names invalid_request for an unacceptable subject_token; Databricks answers
    # policy rejections with 401 (facts §2, failure mode 6). Exact Databricks wording is unverified.
    return OAuthError("invalid_request", description, 401)


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


class WorkspaceHandler(JsonHandler):
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

    # --- token endpoint -------------------------------------------------------------------------

    def serve_token(self) -> None:
        control = self.server.control
        with control.lock:
            fault, delay_s = control.token_endpoint_fault, control.delay_s
        try:
            form = self.read_form()
        except OAuthError as err:
            form, form_error = {}, err
        else:
            form_error = None
        grant_type = form.get("grant_type", "")
        grant_label = grant_type or "(none)"
        self.server.stats.token_request(grant_label)
        if fault == "404":  # federation / the OAuth endpoint not available on this workspace (§2 failure mode 6)
            self.server.stats.fault("404")
            self.send_json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found for 'POST /oidc/v1/token'"})
            return
        if fault == "500":
            self.server.stats.fault("500")
            self.send_json(500, {"error_code": "INTERNAL_ERROR", "message": "The token service failed; retry later"})
            return
        if fault == "slow":
            time.sleep(delay_s)
        if fault == "reset":  # no answer: the connection is closed with a TCP RST
            self.server.stats.fault("reset")
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if fault == "garbage":  # a proxy's error page, with a success status
            self.server.stats.fault("garbage")
            self.send_bytes(200, b"<html><body>Service Unavailable</body></html>", "text/html")
            return
        if fault == "oversized":  # a token answer far beyond what a token answer can be (1 MiB)
            self.server.stats.fault("oversized")
            padding = "x" * (1 << 20)
            self.send_json(200, {"access_token": "dapi-oversized", "expires_in": 3600, "padding": padding})
            return

        # Stats key: (grant type, subject, requested scope). The subject is, for client_credentials,
        # the SP's application id (or the client id as presented when unknown); for an exchange, the
        # subject token's `sub` read without verification (the IdP identity, success or not).
        subject, scope = None, form.get("scope", DEFAULT_SCOPE)
        try:
            if form_error is not None:
                raise form_error
            if not grant_type:
                raise OAuthError("invalid_request", "grant_type is required")
            if grant_type == GRANT_CLIENT_CREDENTIALS:
                client_id, secret = self.client_authentication(form)
                with control.lock:
                    principal = control.service_principal(client_id)
                subject = principal.application_id if principal else client_id
                scopes = self.client_credentials(principal, secret, form)
                body = self.server.issue(principal.application_id, principal.application_id, scopes)
            elif grant_type == GRANT_TOKEN_EXCHANGE:
                subject = _unverified_subject(form.get("subject_token"))
                self.subject_exp = None
                principal_sub, client_id, scopes = self.token_exchange(form)
                # Databricks derives the exchanged token's lifetime from the federated token's
                # (oauth-federation-exchange page): never longer than the subject token lives.
                lifetime = TOKEN_LIFETIME_S
                if self.subject_exp is not None:
                    lifetime = max(1, min(TOKEN_LIFETIME_S, int(self.subject_exp - time.time())))
                body = self.server.issue(principal_sub, client_id, scopes, lifetime)
            else:
                raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {_shown(grant_type)}")
        except OAuthError as err:
            self.server.stats.token_outcome(grant_label, subject, scope, err.error)
            headers = dict(NO_STORE)
            if err.status == 401 and err.error == "invalid_client":
                headers["WWW-Authenticate"] = 'Basic realm="databricks"'
            # error_id: the handle Databricks support asks for (oauth-federation-exchange page)
            self.send_json(err.status, {"error": err.error, "error_description": err.description,
                                        "error_id": new_error_id()}, headers)
            return
        except Exception:  # never let a traceback (which could quote request data) reach stderr
            self.server.stats.token_outcome(grant_label, subject, scope, "server_error")
            self.send_json(500, {"error": "server_error", "error_description": "internal error"}, NO_STORE)
            return
        self.server.stats.token_outcome(grant_type, subject, scope, None)
        self.send_json(200, body, NO_STORE)

    def client_credentials(self, principal: ServicePrincipal | None, secret: str, form: dict) -> list[str]:
        if principal is None or not hmac.compare_digest(principal.secret.encode(), secret.encode()):
            raise OAuthError("invalid_client", "Client authentication failed", 401)
        return self.granted_scopes(form, principal.scopes, f"service principal {principal.application_id}")

    def granted_scopes(self, form: dict, allowed: Iterable[str], who: str) -> list[str]:
        requested = form.get("scope", DEFAULT_SCOPE).split()
        if not requested:
            raise OAuthError("invalid_scope", "scope is empty")
        refused = [scope for scope in requested if not scope_grantable(scope, allowed)]
        if refused:
            raise OAuthError("invalid_scope", f"Scope {_shown(' '.join(refused))} is not allowed for {who}")
        return list(dict.fromkeys(requested))

    def token_exchange(self, form: dict) -> tuple[str, str, list[str]]:
        """RFC 8693 under the federation policies (facts §2). Returns (sub, client_id, scopes) to mint."""
        subject_token = form.get("subject_token")
        if not subject_token:
            raise OAuthError("invalid_request", "subject_token is required")
        if form.get("subject_token_type") != TOKEN_TYPE_JWT:
            raise OAuthError("invalid_request", f"subject_token_type must be {TOKEN_TYPE_JWT}")
        try:
            header = jwt.get_unverified_header(subject_token)
            claims = jwt.decode(subject_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_request", "subject_token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in FEDERATED_ALGORITHMS:
            raise OAuthError("invalid_request", f"Unsupported token signing algorithm {_shown(alg)}: federated tokens must be signed with RS256 or ES256")

        control = self.server.control
        client_id = form.get("client_id")
        with control.lock:
            principal = control.service_principal(client_id) if client_id else None
            users = dict(control.users)
            service_principals = control.service_principals
            if client_id and principal is None:
                raise OAuthError("invalid_client", f"Service principal {_shown(client_id)} does not exist in this workspace", 401)
            if principal is None:
                candidates = [p for p in control.policies if not p.is_service_principal_policy]
                kind = "account federation policy"
            else:
                candidates = [p for p in control.policies if p.is_service_principal_policy
                              and control.service_principal(p.service_principal) == principal]
                kind = f"federation policy of service principal {principal.application_id}"
            sp_policy_exists = any(p.is_service_principal_policy for p in control.policies)

        issuer = claims.get("iss")
        matching = [policy for policy in candidates if policy.issuer == issuer]
        if not matching:
            hint = " (service principal federation needs client_id)" if principal is None and sp_policy_exists else ""
            raise _policy_rejection(f"Token issuer {_shown(issuer)} does not match the issuer of any {kind}{hint}")
        first_error = None
        for policy in matching:
            try:
                verified = self.verify_subject_token(subject_token, header, policy)
                subject = self.check_claims(verified, policy, principal, users, service_principals)
                self.subject_exp = verified.get("exp")
            except OAuthError as err:
                if err.status >= 500:
                    raise
                first_error = first_error or err
                continue
            if principal is not None:
                return principal.application_id, principal.application_id, self.granted_scopes(
                    form, principal.scopes, f"service principal {principal.application_id}")
            user_principal = None if subject in users else next((sp for sp in service_principals if sp.application_id == subject), None)
            if user_principal is not None:  # account policies also cover the account's SPs
                return subject, FEDERATION_CLIENT_ID, self.granted_scopes(form, user_principal.scopes, f"service principal {subject}")
            return subject, FEDERATION_CLIENT_ID, self.granted_scopes(form, users[subject], f"user {_shown(subject)}")
        raise first_error

    def verify_subject_token(self, token: str, header: dict, policy: FederationPolicy) -> dict:
        cache = self.server.key_cache
        key = _select_key(cache.jwks(policy), header)
        if key is None and header.get("kid") is not None and policy.jwks_json is None:
            key = _select_key(cache.jwks(policy, refresh=True), header)  # rotated keys: refetch once
        if key is None:
            raise _policy_rejection(f"Token signing key {_shown(header.get('kid'))} is not in the issuer's JWKS")
        try:
            return jwt.decode(token, key, algorithms=[header["alg"]], options={
                "verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                "verify_aud": False, "verify_iss": False,
            })
        except jwt.PyJWTError:
            raise _policy_rejection("Token signature verification failed") from None

    @staticmethod
    def check_claims(claims: dict, policy: FederationPolicy, principal, users: dict, service_principals) -> str:
        """exp, nbf, aud (any-of), subject claim; returns the subject value."""
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise _policy_rejection("Token has no valid exp claim")
        if exp <= now:
            raise _policy_rejection("Token has expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and nbf > now:
            raise _policy_rejection("Token is not yet valid (nbf)")
        audience = claims.get("aud")
        token_audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if not set(policy.effective_audiences) & {a for a in token_audiences if isinstance(a, str)}:
            default = " (policy audiences unset: the account id)" if policy.audiences is None else ""
            raise _policy_rejection(
                f"Token audience {_shown(audience)} does not match any audience of the federation policy "
                f"{_shown(list(policy.effective_audiences))}{default}"
            )
        subject = claims.get(policy.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise _policy_rejection(f"Token has no string {_shown(policy.subject_claim)} claim (the policy's subject_claim)")
        if principal is not None:
            if subject != policy.subject:
                raise _policy_rejection(
                    f"Token subject {_shown(subject)} (claim {_shown(policy.subject_claim)}) does not match the subject of "
                    f"the federation policy of service principal {principal.application_id}"
                )
        elif subject not in users and not any(subject == sp.application_id for sp in service_principals):
            raise _policy_rejection(f"Token subject {_shown(subject)} (claim {_shown(policy.subject_claim)}) is not a user of this workspace")
        return subject

    # --- REST and serving ---------------------------------------------------------------------------

    def serve_api(self, path: str) -> None:
        try:
            body = self.read_body()
        except ValueError:
            self.api_error(413, "REQUEST_LIMIT_EXCEEDED", "Request body too large")
            return
        route = find_route(self.command, path)
        if route is None:
            self.api_error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{self.command} {path}'")
            return
        authorizations = self.headers.get_all("Authorization") or []
        scheme, _, token = (authorizations[0] if len(authorizations) == 1 else "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self.api_error(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type for this API.")
            return
        try:
            claims = self.server.verify_access_token(token)
        except ValueError as reason:
            self.api_error(401, "UNAUTHENTICATED", f"Invalid access token. ({reason})")
            return
        raw_scope = claims.get("scope", "")
        scopes = raw_scope.split() if isinstance(raw_scope, str) else [s for s in raw_scope if isinstance(s, str)]
        if not route.satisfied_by(self.command, set(scopes)):
            self.api_error(403, "PERMISSION_DENIED",
                           f"Provided OAuth token does not have required scopes: {route.needed()}")
            return
        executes = route.name == "sql-statements" and path.rstrip("/") == "/api/2.0/sql/statements"
        if executes and self.command == "POST" and only_restricted_sql(scopes) and not read_only_statement(body):
            # SCOPE_MODIFIERS: `:restricted-query` allows read-only queries; Databricks' SQL engine refuses the rest.
            self.api_error(403, "PERMISSION_DENIED",
                           "The token's sql:restricted-query scope allows read-only queries only")
            return
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        echo = {
            "principal": claims["sub"],
            "client_id": claims.get("client_id"),
            "scopes": scopes,
            "method": self.command,
            "path": self.path,
            "route": route.name,
            "user_agent": self.headers.get("User-Agent"),
            "body_length": len(body),
            "headers": headers,
        }
        if route.body_model:
            echo["model"] = _json_model(body)
        self.server.stats.api(200)
        self.send_json(200, echo, {"X-Databricks-Org-Id": WORKSPACE_ID})

    def api_error(self, status: int, code: str, message: str) -> None:
        self.server.stats.api(status)
        self.send_json(status, {"error_code": code, "message": message, "error_id": new_error_id()},
                       {"X-Databricks-Org-Id": WORKSPACE_ID})

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


def new_error_id() -> str:
    return str(uuid.uuid4())


def _select_key(jwks: dict, header: dict):
    """The JWK for the token's kid (or, without a kid, the only key that fits its alg)."""
    kid, alg = header.get("kid"), header["alg"]
    kty = {"RS256": "RSA", "ES256": "EC"}[alg]
    usable = []
    for jwk in jwks.get("keys", []):
        if not isinstance(jwk, dict) or jwk.get("kty") != kty or jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg:
            continue
        if kid is not None and jwk.get("kid") != kid:
            continue
        try:
            usable.append(jwt.PyJWK(jwk, algorithm=alg))
        except jwt.PyJWTError:
            continue
    return usable[0] if len(usable) == 1 or (usable and kid is not None) else None


def _unverified_subject(subject_token: str | None) -> str | None:
    """`sub` for the stats, read without verification; None if unreadable."""
    try:
        value = jwt.decode(subject_token or "", options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return value if isinstance(value, str) else None


def _json_model(body: bytes):
    try:
        document = json.loads(body or b"null")
    except ValueError:
        return None
    return document.get("model") if isinstance(document, dict) else None


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
