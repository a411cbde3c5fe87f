"""Where a credential is read from, and the refusals for missing, malformed, duplicate or huge ones."""

import pytest

from gateway_client import MISSING_TOKEN, assert_refused, invalid_request, invalid_token, parse_challenge, send

IDP_ROUTE = "/api/2.0/clusters/list"  # provider idp: Authorization Bearer only
LOCAL_ROUTE = "/local/reports"  # provider local: Authorization Bearer and ?access_token=
READ = "clusters:read"


def bearer(token: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


def two_tokens(tokens, provider: str) -> tuple[str, str]:
    """Two different valid tokens (distinct jti) of one provider."""
    mint = tokens.local if provider == "local" else lambda: tokens.idp(scope=READ)
    return mint(), mint()


# provider, then path and header builders that take (a valid token, another valid token)
ACCEPTED = [
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [("Authorization", f"bearer {a}")], id="scheme-is-case-insensitive"),
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [bearer(a), bearer(a)], id="same-token-in-two-headers"),
    pytest.param("local", lambda a, b: f"{LOCAL_ROUTE}?access_token={a}", lambda a, b: [], id="local-query-token"),
    pytest.param("local", lambda a, b: f"{LOCAL_ROUTE}?access_token={a}", lambda a, b: [bearer(a)], id="local-same-token-in-header-and-query"),
]


@pytest.mark.parametrize(("provider", "make_path", "make_headers"), ACCEPTED)
def test_credential_accepted(gateway, tokens, provider, make_path, make_headers):
    first, second = two_tokens(tokens, provider)
    reply = send(gateway.main_port, "GET", make_path(first, second), headers=make_headers(first, second))
    assert reply.status == 200, reply.body


REFUSED = [
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [], MISSING_TOKEN, id="no-credential"),
    pytest.param("idp", lambda a, b: f"{IDP_ROUTE}?access_token={a}", lambda a, b: [], MISSING_TOKEN, id="query-token-on-header-only-provider"),
    # RFC 6750 §3.1: another scheme is not a bearer credential, so the bare challenge.
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [("Authorization", "Basic ZGVtbzpzZWNyZXQ=")],
                 MISSING_TOKEN, id="basic-scheme"),
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [("Authorization", f"Bearer {a} extra")],
                 invalid_request("malformed_credential"), id="bearer-two-words"),
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [("Authorization", "Bearer ")], invalid_request("malformed_credential"), id="bearer-empty"),
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [("Authorization", "Bearer")], invalid_request("malformed_credential"), id="bearer-no-token"),
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [("Authorization", "")], invalid_request("malformed_credential"), id="authorization-empty"),
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [("Authorization", "Bearer abc{def}")],
                 invalid_request("malformed_credential"), id="bearer-bad-characters"),
    pytest.param("idp", lambda a, b: IDP_ROUTE, lambda a, b: [bearer(a), bearer(b)], invalid_request("multiple_tokens"), id="two-authorization-headers"),
    pytest.param("local", lambda a, b: f"{LOCAL_ROUTE}?access_token={b}", lambda a, b: [bearer(a)],
                 invalid_request("multiple_tokens"), id="local-header-and-query-differ"),
    pytest.param("local", lambda a, b: f"{LOCAL_ROUTE}?access_token={a}&access_token={b}", lambda a, b: [],
                 invalid_request("multiple_tokens"), id="local-two-query-tokens"),
]


@pytest.mark.parametrize(("provider", "make_path", "make_headers", "expected"), REFUSED)
def test_credential_refused(gateway, tokens, provider, make_path, make_headers, expected):
    first, second = two_tokens(tokens, provider)
    reply = send(gateway.main_port, "GET", make_path(first, second), headers=make_headers(first, second))
    assert_refused(reply, expected, first)
    assert_refused(reply, expected, second)


def test_oversized_token_is_refused_before_decoding(gateway, tokens):
    token = tokens.idp(scope=READ, padding="x" * 9000)  # well-formed and validly signed, but > 8192 bytes
    reply = send(gateway.main_port, "GET", IDP_ROUTE, token)
    assert_refused(reply, invalid_request("token_too_large", "8192"), token)


# Databricks' own credentials where the route takes IdP tokens: named, with what to send instead.
DATABRICKS_PAT = "dapi0123456789abcdef0123456789abcdef"
DATABRICKS_ISSUER = "https://dbc-1234abcd-5678.cloud.databricks.com/oidc"
DATABRICKS_CREDENTIALS = [
    pytest.param(lambda t: DATABRICKS_PAT, "this is a Databricks personal access token", id="personal-access-token"),
    pytest.param(lambda t: t.idp(scope=READ, iss=DATABRICKS_ISSUER),
                 f'this is a Databricks-issued OAuth token (issuer "{DATABRICKS_ISSUER}")', id="databricks-oauth-token"),
]


@pytest.mark.parametrize(("make_token", "named"), DATABRICKS_CREDENTIALS)
def test_databricks_own_credentials_are_named(gateway, tokens, make_token, named):
    token = make_token(tokens)
    reply = send(gateway.main_port, "GET", IDP_ROUTE, token)
    what_to_do = "takes tokens issued by ["
    assert_refused(reply, invalid_token("databricks_credential", named, what_to_do, tokens.idp_issuer), token)
    _, challenge = parse_challenge(reply.header("www-authenticate"))
    assert challenge["error_description"].startswith(named.replace('"', "'")), challenge
    assert what_to_do in challenge["error_description"], challenge
