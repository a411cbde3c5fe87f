"""Every federation failure of the token exchange, behind a real Envoy in front of the fake workspace:
what the client gets and the counters, transport failures not blamed on Databricks, error
descriptions scrubbed of tokens, and failures not cached. Setup: databricks_upstream_support.py.
"""

import time

import pytest

from databricks_support import (
    FAILED,
    FETCH,
    JWT_LIKE,
    assert_no_token_leaked,
    counters,
    delta,
    leaked_fragment,
    record,
    token_calls,
    workspace_control,
    workspace_stats,
)
# `gateway` and `fresh_workspaces` (autouse) are fixtures: imported for pytest to use them.
from databricks_upstream_support import (
    PATH,
    add_users,
    failed,
    fresh_workspaces,
    gateway,
    new_subject,
    other_policy,
    rejected,
    workspace_echo,
)
from gateway_client import assert_refused, send


# --- federation failures ------------------------------------------------------------------------------


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
