"""The built-in Databricks route catalogue (docs/CONFIG.md "Databricks"), through a real Envoy.

Tokens with one scope each are sent to a representative set of routes; what each route accepts is
written here from Databricks' semantics, independently of src/databricks/catalogue.rs: `all-apis`
satisfies everything; a service scope `S` its routes; `S:read` only GET/HEAD reads (so not MLflow's
POST searches); SCIM Me takes any token; unknown `/api/**` routes need `all-apis`; routes that mint
credentials or run code are refused (403 route_disabled, naming their class) unless
`databricks.enable_route_classes` names the class; `all-apis:read` satisfies every GET/HEAD (Databricks'
scope-modifiers page); `sql:restricted-query` only statements and the SQL drivers' Thrift endpoints;
`/oidc/**` and `/.well-known/databricks-config` need no token. Pass-through mode; allowed requests reach an echo.
"""

from dataclasses import dataclass

import pytest

from databricks_support import VERSION, bootstrap_with, make_body_echo, routed_listener, wait_until_decided
from devstack.httpbase import running
from devstack.idp import make_idp
from gateway_client import MISSING_TOKEN, NO_CHALLENGE, Refusal, assert_refused, parse_challenge, send
from h2_client import h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

ANONYMOUS = "anonymous"  # no token needed
ANY_TOKEN = "any token"  # any valid token, whatever its scopes
DISABLED = "disabled"  # refused with route_disabled unless its class is enabled

# token name → its `scope` claim (None: no scope claim at all)
TOKENS = {
    "all-apis": "all-apis",
    "all-apis:read": "all-apis:read",
    "sql:read:restricted-query": "sql:read:restricted-query",
    "clusters": "clusters",
    "clusters:read": "clusters:read",
    "jobs:read": "jobs:read",
    "mlflow": "mlflow",
    "mlflow:read": "mlflow:read",
    "model-serving": "model-serving",
    "sql:restricted-query": "sql:restricted-query",
    "none-relevant": "openid profile email offline_access",
    "no-scope-claim": None,
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    accepts: frozenset | str  # the scopes besides all-apis that satisfy it, or ANONYMOUS / ANY_TOKEN / DISABLED
    sensitive_scopes: frozenset = frozenset()  # with its class enabled: the scopes besides all-apis
    route_class: str = ""  # the class a DISABLED route belongs to

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def scopes(*names: str) -> frozenset:
    return frozenset(names)


# Other spellings of credential operations (issue 16 point 1), and operations whose response carries a
# credential (core/src/databricks/catalogue/credential_operations.tsv).
CREDENTIAL_SPELLINGS = [
    # Databricks serves a family under several API versions and with or without `preview/`; each spelling is
    # in the canonical spelling's class, an unknown version (3.0) included.
    Route("POST", "/api/2.1/token/create", DISABLED, scopes("authentication"), "personal_access_tokens"),
    Route("POST", "/api/2.0/preview/token/create", DISABLED, scopes("authentication"), "personal_access_tokens"),
    Route("POST", "/api/2.2/preview/token/create", DISABLED, scopes("authentication"), "personal_access_tokens"),
    Route("POST", "/api/3.0/token/create", DISABLED, scopes("authentication"), "personal_access_tokens"),
    Route("POST", "/api/2.1/token-management/on-behalf-of/tokens", DISABLED, scopes("authentication"),
          "personal_access_tokens"),
    Route("POST", "/api/2.0/preview/token-management/on-behalf-of/tokens", DISABLED, scopes("authentication"),
          "personal_access_tokens"),
    Route("GET", "/api/2.1/secrets/get?scope=s&key=k", DISABLED, scopes("secrets"), "secret_values"),
    Route("GET", "/api/2.0/preview/secrets/get?scope=s&key=k", DISABLED, scopes("secrets"), "secret_values"),
    Route("GET", "/api/2.0/unity-catalog/secrets/main.default.s1?include_value=true", DISABLED,
          scopes("unity-catalog"), "secret_values"),
    # Marketplace installations return a Delta Sharing bearer token, a custom OAuth app's creation its client
    # secret, a recipient its activation link, a provider file's creation a pre-signed upload URL.
    Route("POST", "/api/2.1/marketplace-consumer/listings/l1/installations", DISABLED, scopes("gw.marketplace"),
          "marketplace_installations"),
    Route("GET", "/api/2.1/marketplace-consumer/installations", DISABLED, scopes("gw.marketplace"),
          "marketplace_installations"),
    Route("PUT", "/api/2.0/preview/marketplace-consumer/listings/l1/installations/i1", DISABLED,
          scopes("gw.marketplace"), "marketplace_installations"),
    Route("POST", "/api/2.0/accounts/acc-1/oauth2/custom-app-integrations", DISABLED, scopes("authentication"),
          "oauth_secrets_and_federation"),
    Route("POST", "/api/2.1/preview/accounts/acc-1/oauth2/custom-app-integrations", DISABLED,
          scopes("authentication"), "oauth_secrets_and_federation"),
    Route("GET", "/api/2.1/unity-catalog/recipients/r1", DISABLED, scopes("unity-catalog"), "sharing_tokens"),
    Route("POST", "/api/2.0/marketplace-provider/files", DISABLED, scopes("gw.marketplace"), "presigned_urls"),
    # Review R1: a route that mints with POST is in its class for PUT and PATCH too.
    Route("PUT", "/api/2.0/accounts/acc-1/servicePrincipals/7/credentials/secrets", DISABLED,
          scopes("authentication"), "oauth_secrets_and_federation"),
    Route("PATCH", "/api/2.0/accounts/servicePrincipals/7/credentials/secrets", DISABLED,
          scopes("authentication"), "oauth_secrets_and_federation"),
]

# Review R1: spellings Databricks serves no route under (stacked versions or `preview/`, the serving data plane
# under /api/): 400 bad_path with every class enabled too, rather than the all-apis default.
UNSERVED_SPELLINGS = [
    ("POST", "/api/2.0/preview/preview/token/create"),
    ("POST", "/api/2.0/2.1/token/create"),
    ("POST", "/api/preview/2.0/token/create"),
    ("POST", "/api/x/2.0/token-management/on-behalf-of/tokens"),
    ("GET", "/api/2.0/Preview/preview/secrets/get?scope=s&key=k"),
    ("POST", "/api/2.0/serving-endpoints/fraud/invocations"),
    ("POST", "/api/2.0/preview/serving-endpoints/chat/completions"),
]

ROUTES = [
    # compute
    Route("GET", "/api/2.0/clusters/list", scopes("clusters", "clusters:read")),
    Route("GET", "/api/2.1/clusters/get?cluster_id=0123-456789-abcdefgh", scopes("clusters", "clusters:read")),
    Route("POST", "/api/2.1/clusters/create", scopes("clusters")),
    Route("POST", "/api/2.0/clusters/delete", scopes("clusters")),
    # jobs, all three API versions
    Route("GET", "/api/2.0/jobs/list", scopes("jobs", "jobs:read")),
    Route("GET", "/api/2.1/jobs/get?job_id=11", scopes("jobs", "jobs:read")),
    Route("GET", "/api/2.2/jobs/runs/list", scopes("jobs", "jobs:read")),
    Route("POST", "/api/2.1/jobs/create", scopes("jobs")),
    Route("POST", "/api/2.2/jobs/run-now", scopes("jobs")),
    Route("POST", "/api/2.0/jobs/runs/submit", scopes("jobs")),
    # MLflow: POST searches are reads in spirit, but not GET/HEAD, so mlflow:read does not cover them
    Route("GET", "/api/2.0/mlflow/experiments/get?experiment_id=1", scopes("mlflow", "mlflow:read")),
    Route("GET", "/api/3.0/mlflow/logged-models/m-1", scopes("mlflow", "mlflow:read")),
    Route("POST", "/api/2.0/mlflow/runs/search", scopes("mlflow")),
    Route("POST", "/api/2.0/mlflow/experiments/search", scopes("mlflow")),
    Route("POST", "/api/2.0/mlflow/runs/create", scopes("mlflow")),
    # Unity Catalog
    Route("GET", "/api/2.1/unity-catalog/catalogs", scopes("unity-catalog", "unity-catalog:read")),
    Route("POST", "/api/2.1/unity-catalog/schemas", scopes("unity-catalog")),
    Route("DELETE", "/api/2.1/unity-catalog/tables/main.default.trips", scopes("unity-catalog")),
    # SQL: statements also take sql:restricted-query, warehouses do not
    Route("POST", "/api/2.0/sql/statements", scopes("sql", "sql:restricted-query", "sql:read:restricted-query")),
    Route("GET", "/api/2.0/sql/statements/01ef-0000-statement",
          scopes("sql", "sql:restricted-query", "sql:read", "sql:read:restricted-query")),
    Route("POST", "/api/2.0/sql/statements/01ef-0000-statement/cancel",
          scopes("sql", "sql:restricted-query", "sql:read:restricted-query")),
    Route("GET", "/api/2.0/sql/warehouses", scopes("sql", "sql:read", "sql:read:restricted-query")),
    # the Thrift endpoints of the SQL connectors, JDBC, ODBC and dbt
    Route("POST", "/sql/1.0/warehouses/abc123", scopes("sql", "sql:restricted-query", "sql:read:restricted-query")),
    Route("POST", "/sql/protocolv1/o/1234567890/0123-456789-abcdefgh",
          scopes("sql", "sql:restricted-query", "sql:read:restricted-query")),
    Route("POST", "/api/2.0/sql/warehouses/abc123/start", scopes("sql")),
    # model serving
    Route("POST", "/serving-endpoints/any-model/invocations", scopes("model-serving", "serving.serving-endpoints")),
    Route("POST", "/serving-endpoints/chat/completions", scopes("model-serving", "serving.serving-endpoints")),
    Route("POST", "/serving-endpoints/any-model/served-models/v2/invocations",
          scopes("model-serving", "serving.serving-endpoints")),
    Route("GET", "/ai-gateway/mlflow/v1/models", scopes("ai-gateway", "ai-gateway:read")),
    Route("POST", "/ai-gateway/mlflow/v1/chat/completions", scopes("ai-gateway")),
    Route("POST", "/serving-endpoints/embeddings", scopes("model-serving", "serving.serving-endpoints")),
    Route("GET", "/api/2.0/serving-endpoints", scopes("model-serving", "model-serving:read")),
    Route("PUT", "/api/2.0/serving-endpoints/e1/config", scopes("model-serving")),
    # identity
    Route("GET", "/api/2.0/preview/scim/v2/Me", ANY_TOKEN),
    Route("GET", "/api/2.0/preview/scim/v2/Users", scopes("scim", "scim:read")),
    # anything else under /api needs all-apis
    Route("GET", "/api/2.0/unknown-service/things", scopes()),
    Route("POST", "/api/2.0/unknown-service/things", scopes()),
    # tokens: listing is a read, minting is sensitive
    Route("GET", "/api/2.0/token/list", scopes("authentication", "authentication:read")),
    Route("POST", "/api/2.0/token/create", DISABLED, scopes("authentication"), "personal_access_tokens"),
    Route("POST", "/api/2.0/token/delete", DISABLED, scopes("authentication"), "personal_access_tokens"),
    Route("GET", "/api/2.0/token-management/tokens", DISABLED, scopes("authentication"), "personal_access_tokens"),
    Route("POST", "/api/1.2/commands/execute", DISABLED, scopes("command-execution"), "code_execution"),
    Route("POST", "/api/1.2/contexts/create", DISABLED, scopes("command-execution"), "code_execution"),
    Route("POST", "/api/2.0/global-init-scripts", DISABLED, scopes("global-init-scripts"), "code_execution"),
    Route("POST", "/spark.connect.SparkConnectService/ExecutePlan", DISABLED, scopes("gw.command-execution"),
          "code_execution"),
    # credential minting: OAuth secrets (served on the workspace host too), federation, cloud and database
    # credentials, IdP token exchange, secret values
    Route("POST", "/api/2.0/accounts/servicePrincipals/7/credentials/secrets", DISABLED, scopes("authentication"),
          "oauth_secrets_and_federation"),
    Route("POST", "/api/2.0/accounts/acc-1/federationPolicies", DISABLED, scopes("authentication"),
          "oauth_secrets_and_federation"),
    Route("POST", "/api/2.0/credentials-manager/exchange-tokens/token", DISABLED, scopes("gw.workspace-admin"),
          "oauth_secrets_and_federation"),
    Route("POST", "/api/2.0/unity-catalog/temporary-table-credentials", DISABLED, scopes("unity-catalog"),
          "cloud_credentials"),
    Route("POST", "/api/2.1/unity-catalog/temporary-service-credentials", DISABLED, scopes("unity-catalog"),
          "cloud_credentials"),
    Route("POST", "/api/2.0/database/credentials", DISABLED, scopes("postgres"), "database_credentials"),
    Route("POST", "/api/2.0/postgres/credentials", DISABLED, scopes("postgres"), "database_credentials"),
    Route("GET", "/api/2.0/secrets/get?scope=s&key=k", DISABLED, scopes("secrets"), "secret_values"),
    *CREDENTIAL_SPELLINGS,
    # their non-minting neighbours are ordinary routes
    Route("GET", "/api/2.0/accounts/servicePrincipals/7/credentials/secrets", scopes("authentication", "authentication:read")),
    Route("DELETE", "/api/2.1/unity-catalog/recipients/r1", scopes("unity-catalog")),
    Route("GET", "/api/2.1/marketplace-consumer/listings", scopes("gw.marketplace", "gw.marketplace:read")),
    # OAuth and host metadata: no token
    Route("POST", "/oidc/v1/token", ANONYMOUS),
    Route("GET", "/oidc/.well-known/oauth-authorization-server", ANONYMOUS),
    Route("GET", "/.well-known/databricks-config", ANONYMOUS),
]
TOKEN_ROUTES = [r for r in ROUTES if r.accepts not in (ANONYMOUS, DISABLED)]
SENSITIVE_ROUTES = [r for r in ROUTES if r.accepts == DISABLED]


def catalogue_config(idp, allow_sensitive: bool) -> dict:
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [],
        "databricks": {"route_catalogue": True,
                       "enable_route_classes": sorted({r.route_class for r in SENSITIVE_ROUTES}) if allow_sensitive else []},
    }


@dataclass
class CatalogueGateway:
    port: int  # allow_sensitive_routes off (the default)
    sensitive_port: int  # allow_sensitive_routes on
    tokens: dict[str, str]  # TOKENS name → token
    factory: TokenFactory
    cors_port: int  # bypass_cors_preflight on
    echo: object  # the upstream: counts the requests it received, per path


@pytest.fixture(scope="module")
def catalogue_gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as echo:
        factory = TokenFactory(idp.issuer)
        listeners = [routed_listener("catalogue", wasm_path, catalogue_config(idp, False), "echo"),
                     routed_listener("sensitive", wasm_path, catalogue_config(idp, True), "echo"),
                     routed_listener("cors", wasm_path, {**catalogue_config(idp, False), "bypass_cors_preflight": True}, "echo")]
        envoy = start_envoy(bootstrap_with(listeners, {"echo": echo.port, "idp": idp.port}), "databricks-catalogue")
        try:
            envoy.wait_ready()
            ports = envoy.listener_ports()
            probe = factory.idp(scope="clusters:read")
            for port in ports.values():
                wait_until_decided(port, lambda p: send(p, "GET", "/api/2.0/clusters/list", probe))
            tokens = {name: factory.idp(subject=f"user-{name.replace(':', '-')}", scope=scope) for name, scope in TOKENS.items()}
            yield CatalogueGateway(ports["catalogue"], ports["sensitive"], tokens, factory, ports["cors"], echo)
        finally:
            envoy.stop()


def token_scopes(name: str) -> set[str]:
    return set((TOKENS[name] or "").split())


def expected_allowed(route: Route, token_name: str, sensitive_enabled: bool = False) -> bool:
    have = token_scopes(token_name)
    if route.accepts == ANY_TOKEN:
        return True
    if route.accepts == DISABLED:
        return sensitive_enabled and bool(have & ({"all-apis"} | route.sensitive_scopes))
    if "all-apis:read" in have and route.method in ("GET", "HEAD"):
        return True
    return bool(have & ({"all-apis"} | route.accepts))


def check_insufficient_scope(reply, accepted: set[str]) -> list[str]:
    """Problems with a 403 insufficient_scope refusal (docs/ERRORS.md): status, reason, body, and a
    challenge whose `scope=` names a scope that would actually satisfy the route."""
    problems = []
    if reply.status != 403 or reply.header("x-brickgate-reason") != "insufficient_scope":
        return [f"expected 403 insufficient_scope, got {reply.status} {reply.header('x-brickgate-reason')}: {reply.body[:300]!r}"]
    body = reply.json()
    if body.get("error_code") != "PERMISSION_DENIED":
        problems.append(f"error_code {body.get('error_code')}")
    if body.get("details", [{}])[0].get("reason") != "insufficient_scope":
        problems.append(f"details {body.get('details')}")
    challenge = reply.header("www-authenticate")
    if challenge is None:
        return problems + ["no WWW-Authenticate challenge"]
    scheme, params = parse_challenge(challenge)
    if scheme != "Bearer" or params.get("realm") != REALM or params.get("error") != "insufficient_scope":
        problems.append(f"challenge {challenge!r}")
    if params.get("scope") not in accepted:
        problems.append(f"challenge scope={params.get('scope')!r} is not a scope this route accepts ({sorted(accepted)})")
    return problems


def check_allowed(reply, route: Route) -> list[str]:
    if reply.status != 200 or reply.header("x-brickgate-reason") is not None:
        return [f"expected the echo (allowed), got {reply.status} {reply.header('x-brickgate-reason')}: {reply.body[:300]!r}"]
    echo = reply.json()
    problems = []
    if echo["method"] != route.method or echo["path"] != route.path:
        problems.append(f"upstream saw {echo['method']} {echo['path']}")
    rule = echo["headers"].get("x-brickgate-rule", [""])[0]
    if not rule.startswith("databricks:"):
        problems.append(f"allowed by rule {rule!r}, not a catalogue rule")
    return problems


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=lambda r: r.id)
def test_scope_matrix(catalogue_gateway, route):
    """Every token against one route: allowed exactly when one of its scopes satisfies the route."""
    failures = []
    for name, token in catalogue_gateway.tokens.items():
        reply = send(catalogue_gateway.port, route.method, route.path, token)
        if expected_allowed(route, name):
            problems = check_allowed(reply, route)
        else:
            reads = {"all-apis:read"} if route.method in ("GET", "HEAD") else set()
            problems = check_insufficient_scope(reply, {"all-apis"} | reads | set(route.accepts))
        failures += [f"token {name!r}: {problem}" for problem in problems]
    assert not failures, f"{route.id}:\n" + "\n".join(failures)


@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=lambda r: r.id)
def test_catalogue_routes_need_a_token(catalogue_gateway, route):
    assert_refused(send(catalogue_gateway.port, route.method, route.path), MISSING_TOKEN)


@pytest.mark.parametrize("route", SENSITIVE_ROUTES, ids=lambda r: r.id)
def test_sensitive_routes_are_disabled_by_default(catalogue_gateway, route):
    """route_disabled whatever the token, all-apis included, and without one: the route decides first."""
    expected = Refusal(403, "route_disabled", "PERMISSION_DENIED", NO_CHALLENGE,
                       message_contains=(f'databricks.enable_route_classes includes "{route.route_class}"',
                                         f"route class {route.route_class}"))
    for name, token in [*catalogue_gateway.tokens.items(), ("(none)", None)]:
        reply = send(catalogue_gateway.port, route.method, route.path, token)
        assert reply.header("x-brickgate-reason") == "route_disabled", f"token {name}: {reply.status} {reply.body[:300]!r}"
        assert_refused(reply, expected, token)


@pytest.mark.parametrize("route", SENSITIVE_ROUTES, ids=lambda r: r.id)
def test_sensitive_routes_when_enabled(catalogue_gateway, route):
    """With allow_sensitive_routes: all-apis (or the route's own service scope) is allowed, others 403."""
    failures = []
    for name, token in catalogue_gateway.tokens.items():
        reply = send(catalogue_gateway.sensitive_port, route.method, route.path, token)
        if expected_allowed(route, name, sensitive_enabled=True):
            problems = check_allowed(reply, route)
        else:
            problems = check_insufficient_scope(reply, {"all-apis"} | set(route.sensitive_scopes))
        failures += [f"token {name!r}: {problem}" for problem in problems]
    assert not failures, f"{route.id}:\n" + "\n".join(failures)


@pytest.mark.parametrize("route", SENSITIVE_ROUTES, ids=lambda r: r.id)
def test_sensitive_route_allowed_for_its_service_scope(catalogue_gateway, route):
    """Once sensitive routes are on, the route's own service scope (`authentication` for tokens) does too."""
    (scope,) = route.sensitive_scopes
    token = catalogue_gateway.factory.idp(subject="service-scope-holder", scope=scope)
    assert not check_allowed(send(catalogue_gateway.sensitive_port, route.method, route.path, token), route)
    reply = send(catalogue_gateway.port, route.method, route.path, token)
    assert reply.header("x-brickgate-reason") == "route_disabled", reply.body


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
@pytest.mark.parametrize("route", CREDENTIAL_SPELLINGS, ids=lambda r: r.id)
def test_every_spelling_of_a_credential_operation_is_refused_and_nothing_reaches_the_upstream(
        catalogue_gateway, route, http2):
    """An all-apis token on another version or `preview/` spelling of a credential operation: 403
    route_disabled naming the class, over HTTP/1.1 and HTTP/2, and the upstream receives nothing; with the
    class enabled the same request reaches it."""
    token = catalogue_gateway.tokens["all-apis"]

    def request(port):
        if http2:
            return h2_request(port, route.method, route.path, [("authorization", f"Bearer {token}")])
        return send(port, route.method, route.path, token)

    upstream_path = route.path.split("?", 1)[0]
    before = catalogue_gateway.echo.snapshot_counts().get(upstream_path, 0)
    refused = request(catalogue_gateway.port)
    assert refused.status == 403 and refused.header("x-brickgate-reason") == "route_disabled", refused.body[:300]
    assert f'databricks.enable_route_classes includes "{route.route_class}"' in refused.json()["message"], refused.body
    assert catalogue_gateway.echo.snapshot_counts().get(upstream_path, 0) == before, "a refused request reached the upstream"
    admitted = request(catalogue_gateway.sensitive_port)
    assert not check_allowed(admitted, route), admitted.body[:300]
    assert catalogue_gateway.echo.snapshot_counts().get(upstream_path, 0) == before + 1


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
@pytest.mark.parametrize(("method", "path"), UNSERVED_SPELLINGS, ids=lambda v: v)
def test_spellings_databricks_does_not_serve_are_refused_before_any_rule(catalogue_gateway, method, path, http2):
    token = catalogue_gateway.tokens["all-apis"]
    before = sum(catalogue_gateway.echo.snapshot_counts().values())
    for port in (catalogue_gateway.port, catalogue_gateway.sensitive_port):
        if http2:
            reply = h2_request(port, method, path, [("authorization", f"Bearer {token}")])
        else:
            reply = send(port, method, path, token)
        assert reply.status == 400 and reply.header("x-brickgate-reason") == "bad_path", reply.body[:300]
    assert sum(catalogue_gateway.echo.snapshot_counts().values()) == before, "a refused request reached the upstream"


@pytest.mark.parametrize("route", [r for r in ROUTES if r.accepts == ANONYMOUS], ids=lambda r: r.id)
def test_oauth_and_host_metadata_need_no_token(catalogue_gateway, route):
    reply = send(catalogue_gateway.port, route.method, route.path)
    assert reply.status == 200 and reply.header("x-brickgate-reason") is None, reply.body[:300]
    echo = reply.json()
    assert echo["path"] == route.path and echo["method"] == route.method
    assert "x-brickgate-subject" not in echo["headers"]


def test_paths_outside_the_catalogue_match_no_rule(catalogue_gateway):
    token = catalogue_gateway.tokens["all-apis"]
    for method, path in [("GET", "/some/app/page"), ("POST", "/.well-known/databricks-config"), ("GET", "/serving-endpoints/chat/completions")]:
        reply = send(catalogue_gateway.port, method, path, token)
        assert_refused(reply, Refusal(403, "no_matching_rule", "PERMISSION_DENIED", NO_CHALLENGE), token)


def test_scope_hint_names_the_service_scope(catalogue_gateway):
    """README ("Two commands"): `POST /api/2.1/clusters/create` with a clusters:read token is refused
    with `WWW-Authenticate: Bearer … error="insufficient_scope", scope="clusters"`: the hint names the
    least scope that would do, not all-apis."""
    reply = send(catalogue_gateway.port, "POST", "/api/2.1/clusters/create", catalogue_gateway.tokens["clusters:read"])
    assert reply.status == 403 and reply.header("x-brickgate-reason") == "insufficient_scope"
    _, params = parse_challenge(reply.header("www-authenticate"))
    assert params.get("scope") == "clusters", f"challenge: {reply.header('www-authenticate')}"


def test_refusal_message_names_what_was_needed_and_what_the_token_had(catalogue_gateway):
    reply = send(catalogue_gateway.port, "POST", "/api/2.0/mlflow/runs/search", catalogue_gateway.tokens["mlflow:read"])
    assert reply.status == 403, reply.body
    message = reply.json()["message"]
    assert "mlflow" in message and "all-apis" in message and "token has [mlflow:read]" in message, message


def test_header_hygiene_applies_to_anonymous_routes_too(catalogue_gateway):
    """With a `databricks` section every allowed request loses client-sent credential and
    forwarded-identity headers and gets brickgate's User-Agent, token or not (docs/CONFIG.md)."""
    smuggled = [("X-Forwarded-Email", "ceo@example.com"), ("X-Forwarded-Access-Token", "secret"),
                ("X-Databricks-Azure-SP-Management-Token", "mgmt"), ("X-Brickgate-Subject", "spoofed")]
    reply = send(catalogue_gateway.port, "POST", "/oidc/v1/token", headers=[("User-Agent", "curl/8.5.0"), *smuggled])
    assert reply.status == 200, reply.body
    headers = reply.json()["headers"]
    assert not {name.lower() for name, _ in smuggled} & set(headers), headers
    (request_id,) = headers["x-request-id"]
    assert headers["user-agent"] == [f"curl/8.5.0 brickgate/{VERSION} req/{request_id}"]


PREFLIGHT = [("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST")]


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_cors_preflight_passes_only_with_the_option(catalogue_gateway, http2):
    """bypass_cors_preflight (as in Envoy's jwt_authn): a browser preflight reaches the upstream without a
    token, and without any Authorization header; other OPTIONS requests, or the option off, need a token."""
    def options(port, headers):
        if http2:
            return h2_request(port, "OPTIONS", "/api/2.0/sql/statements", [(n.lower(), v) for n, v in headers])
        return send(port, "OPTIONS", "/api/2.0/sql/statements", headers=headers)
    reply = options(catalogue_gateway.cors_port, [*PREFLIGHT, ("Authorization", "Bearer not-a-token")])
    assert reply.status == 200 and reply.header("x-brickgate-reason") is None, reply.body[:300]
    echo = reply.json()
    assert echo["method"] == "OPTIONS" and "authorization" not in echo["headers"], echo["headers"]
    for port, headers in [(catalogue_gateway.cors_port, PREFLIGHT[:1]), (catalogue_gateway.port, PREFLIGHT)]:
        refused = options(port, headers)
        assert refused.status == 401 and refused.header("x-brickgate-reason") == "missing_token", refused.body[:300]
