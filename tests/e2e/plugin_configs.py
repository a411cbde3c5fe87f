"""The brickgate plugin configurations (docs/CONFIG.md) the e2e Envoy serves, one per listener."""

import json

from devstack.keys import TEST_KEYS, oct_jwk
from envoy_harness import VM_HMAC_JWKS_ENV

REALM = "brickgate-e2e"
AUDIENCE = "brickgate-e2e"
LOCAL_ISSUER = "https://local.test"
HMAC_ISSUER = "https://hmac.test"
HMAC_SECRET = b"e2e-hmac-secret-that-is-32-bytes!"
HMAC_KID = "test-hmac-1"
# What every test Envoy hands its VM (host_env_keys): the HMAC provider's JWKS, a secret.
VM_ENV = {VM_HMAC_JWKS_ENV: json.dumps({"keys": [oct_jwk(HMAC_SECRET, HMAC_KID)]})}
SQL_ADMINS = "sql-admins"


def idp_provider(idp_issuer: str, idp_port: int, **overrides) -> dict:
    provider = {
        "issuer": idp_issuer,
        "audiences": [AUDIENCE],
        "jwks": {"remote": {"cluster": "idp", "uri": f"http://127.0.0.1:{idp_port}/jwks.json"}},
        "algorithms": ["RS256", "ES256"],
    }
    provider.update(overrides)
    return provider


def main_config(idp_issuer: str, idp_port: int) -> dict:
    """Listener `main`: three providers and one rule of each kind."""
    return {
        "realm": REALM,
        # No `audit` section: the defaults (the decision record in the filter state) are what
        # the access-log tests read.
        "providers": {
            "idp": idp_provider(idp_issuer, idp_port),
            "local": {
                "issuer": LOCAL_ISSUER,
                "audiences": [AUDIENCE],
                "jwks": {"inline": {"keys": [TEST_KEYS["ec-1"].public_jwk()]}},
                "algorithms": ["ES256"],
                "require_typ": True,
                "token_sources": [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}],
            },
            "hmac": {
                "issuer": HMAC_ISSUER,
                "audiences": [AUDIENCE],
                "jwks": {"inline_env": VM_HMAC_JWKS_ENV},
                "algorithms": ["HS256"],
            },
        },
        "rules": [
            {"name": "health", "match": {"path": "/healthz", "methods": ["GET"]}, "allow_anonymous": True},
            {"name": "clusters-read", "match": {"prefix": "/api/2.0/clusters/", "methods": ["GET"]},
             "providers": ["idp"], "require": {"scopes_any": ["clusters:read", "clusters", "all-apis"]}},
            {"name": "clusters-write", "match": {"prefix": "/api/2.0/clusters/", "methods": ["POST"]},
             "providers": ["idp"], "require": {"scopes_all": ["clusters"]}},
            {"name": "serving", "match": {"template": "/serving-endpoints/{name}/invocations", "methods": ["POST"]},
             "providers": ["idp"], "require": {"scopes_any": ["serving:{name}", "all-apis"]}},
            {"name": "sql-admin", "match": {"prefix": "/api/2.0/sql/"},
             "providers": ["idp"], "require": {"groups_any": [SQL_ADMINS]}},
            {"name": "local-reports", "match": {"template": "/local/**"}, "providers": ["local"]},
            {"name": "hmac-reports", "match": {"template": "/hmac/**"}, "providers": ["hmac"]},
            {"name": "api", "match": {"template": "/api/**"}, "providers": ["idp"],
             "require": {"scopes_all": ["all-apis"]}},
        ],
    }


IDENTITY_PREFIX = "x-gw-"
# One claim of each kind docs/CONFIG.md describes: string, dotted path to an array, number, boolean, object (skipped).
CLAIM_HEADERS = {"email": "email", "realm_access.roles": "roles", "tenant_no": "tenant", "email_verified": "verified", "profile": "profile"}


def identity_config(idp_issuer: str, idp_port: int) -> dict:
    """Listener `identity`: credential not forwarded, custom header prefix, extra claim headers."""
    token_sources = [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}]
    return {
        "realm": REALM,
        "providers": {"idp": idp_provider(idp_issuer, idp_port, token_sources=token_sources)},
        "rules": [
            {"name": "health", "match": {"path": "/healthz", "methods": ["GET"]}, "allow_anonymous": True},
            {"name": "everything", "match": {"template": "/**"}, "providers": ["idp"]},
        ],
        "identity": {"header_prefix": IDENTITY_PREFIX, "forward_authorization": False, "claim_headers": CLAIM_HEADERS},
    }
