"""Rules: first match decides; scopes (all/any, templated), groups, anonymous routes, no match."""

import pytest

from gateway_client import NO_CHALLENGE, Refusal, assert_refused, insufficient_scope, send
from plugin_configs import SQL_ADMINS

NO_MATCHING_RULE = Refusal(403, "no_matching_rule", "PERMISSION_DENIED", NO_CHALLENGE)


def group_not_allowed(*message_contains: str) -> Refusal:
    return Refusal(403, "group_not_allowed", "PERMISSION_DENIED", "insufficient_scope", message_contains=message_contains)


ALLOWED = [
    pytest.param("GET", "/healthz", lambda t: None, "health", id="health-anonymous"),
    pytest.param("GET", "/healthz", lambda t: "not-a-jwt", "health", id="health-ignores-credentials"),
    pytest.param("GET", "/api/2.0/clusters/list", lambda t: t.from_idp("demo-reader"), "clusters-read", id="reader-lists-clusters"),
    pytest.param("POST", "/api/2.0/clusters/create", lambda t: t.from_idp("demo-admin"), "clusters-write", id="admin-creates-cluster"),
    pytest.param("POST", "/serving-endpoints/demo-model/invocations", lambda t: t.from_idp("demo-ml"), "serving", id="serving-scope-template"),
    pytest.param("POST", "/serving-endpoints/other-model/invocations", lambda t: t.from_idp("demo-admin"), "serving", id="serving-all-apis"),
    pytest.param("GET", "/api/2.0/jobs/list", lambda t: t.from_idp("demo-admin"), "api", id="catch-all-api-with-all-apis"),
    pytest.param("GET", "/api/2.0/sql/warehouses", lambda t: t.idp(groups=["analysts", SQL_ADMINS]), "sql-admin", id="group-in-array"),
    pytest.param("GET", "/api/2.0/sql/warehouses", lambda t: t.idp(groups=SQL_ADMINS), "sql-admin", id="group-as-string"),
]


@pytest.mark.parametrize(("method", "path", "make_token", "rule"), ALLOWED)
def test_request_allowed_by_rule(gateway, tokens, method, path, make_token, rule):
    reply = send(gateway.main_port, method, path, make_token(tokens))
    assert reply.status == 200, reply.body
    assert reply.json()["method"] == method
    if rule != "health":  # identity headers only exist for authenticated requests
        assert reply.forwarded["x-brickgate-rule"] == [rule]


# scope= names what to ask for: all of scopes_all, and only the first (least-privileged) of scopes_any.
REFUSED = [
    pytest.param("POST", "/api/2.0/clusters/create", lambda t: t.from_idp("demo-reader"),
                 insufficient_scope("clusters", message_equals="insufficient scope: rule clusters-write needs all of [clusters]; token has [clusters:read]"),
                 id="reader-cannot-create-cluster"),
    pytest.param("GET", "/api/2.0/clusters/list", lambda t: t.idp(scope=""),
                 insufficient_scope("clusters:read", "clusters-read"), id="token-without-scopes"),
    pytest.param("POST", "/serving-endpoints/other-model/invocations", lambda t: t.from_idp("demo-ml"),
                 insufficient_scope("serving:other-model", "serving:other-model"), id="serving-template-other-model"),
    pytest.param("GET", "/api/2.0/jobs/list", lambda t: t.from_idp("demo-reader"),
                 insufficient_scope("all-apis", "all-apis"), id="catch-all-api-needs-all-apis"),
    pytest.param("GET", "/api/2.0/sql/warehouses", lambda t: t.idp(groups=["analysts"]), group_not_allowed(SQL_ADMINS), id="wrong-group"),
    pytest.param("GET", "/api/2.0/sql/warehouses", lambda t: t.idp(), group_not_allowed(SQL_ADMINS), id="no-groups-claim"),
    pytest.param("GET", "/nothing/here", lambda t: t.from_idp("demo-admin"), NO_MATCHING_RULE, id="no-rule-for-path"),
    pytest.param("POST", "/healthz", lambda t: None, NO_MATCHING_RULE, id="no-rule-for-method"),
]


@pytest.mark.parametrize(("method", "path", "make_token", "expected"), REFUSED)
def test_request_refused_by_rule(gateway, tokens, method, path, make_token, expected):
    token = make_token(tokens)
    reply = send(gateway.main_port, method, path, token)
    assert_refused(reply, expected, token)
