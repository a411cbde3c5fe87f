"""The fake Databricks workspace's REST and serving APIs (devstack/workspace.py): the route
families and the scope each needs, and the answer, which echoes what arrived. `RestEndpoint` is
mixed into the workspace's request handler."""

import json
import re
from dataclasses import dataclass

from devstack.workspace_federation import DEFAULT_SCOPE, OIDC_SCOPES, WORKSPACE_ID, new_error_id


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
    # query-chat-models, query-openai-responses, query-open-responses-models, query-anthropic-messages
    # (docs.databricks.com/aws/en/machine-learning/model-serving/<page>): the endpoint is the body's `model`
    _route("serving-openai", r"/serving-endpoints/(chat/completions|completions|embeddings|responses|open-responses"
           r"|anthropic/v1/messages)", "model-serving", ("POST",), body_model=True),
    # query-gemini-api: `/serving-endpoints/gemini/v1beta/models/<endpoint>:generateContent`, endpoint in the path
    _route("serving-gemini", r"/serving-endpoints/gemini/v1beta/models/[^/:]+:[^/]+", "model-serving", ("POST",)),
    _route("serving-invocations", r"/serving-endpoints/[^/]+/invocations", "model-serving", ("POST",),
           also_accepted=("model-serving-inference",)),  # API_REFERENCE
    _route("served-model-invocations", r"/serving-endpoints/[^/]+/served-models/[^/]+/invocations", "model-serving",
           ("POST",), also_accepted=("model-serving-inference",)),  # API_REFERENCE
    _route("ai-gateway", r"/ai-gateway/.+", "ai-gateway"),  # Apps auth page names the ai-gateway scope
    _route("api", r"/api/.*", None),
)


def find_route(method: str, path: str) -> Route | None:
    return next((route for route in ROUTES if route.matches(method, path)), None)


class RestEndpoint:
    """REST and serving requests for `WorkspaceHandler` (devstack/workspace.py): only tokens this
    workspace issued, with the scope the route needs."""

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


def _json_model(body: bytes):
    try:
        document = json.loads(body or b"null")
    except ValueError:
        return None
    return document.get("model") if isinstance(document, dict) else None
