"""Identity headers sent upstream: right values, client-sent look-alikes removed, config (b) variants."""

import pytest

from databricks_support import wait_until_decided
from devstack.tokens import payload_of
from envoy_harness import bootstrap, brickgate_listener
from gateway_client import send
from plugin_configs import main_config

READER_ROUTE = "/api/2.0/clusters/list"


def identity_headers(forwarded: dict, prefix: str = "x-brickgate-") -> dict[str, list[str]]:
    return {name[len(prefix):]: values for name, values in forwarded.items() if name.startswith(prefix)}


def test_service_principal_identity_forwarded(gateway, tokens, idp):
    token = tokens.from_idp("demo-reader")
    reply = send(gateway.main_port, "GET", READER_ROUTE, token)
    assert identity_headers(reply.forwarded) == {
        "subject": ["demo-reader"],
        "issuer": [idp.issuer],
        "provider": ["idp"],
        "client-id": ["demo-reader"],
        "scopes": ["clusters:read"],
        "principal-kind": ["service_principal"],  # generic idp: sub == client_id
        "token-id": [payload_of(token)["jti"]],
        "rule": ["clusters-read"],
    }
    assert reply.forwarded["authorization"] == [f"Bearer {token}"]  # forward_authorization defaults to true


def test_user_identity_forwarded(gateway, tokens):
    token = tokens.idp(subject="alice@example.com", client_id=None, azp="web-portal",
                       scope="clusters:read clusters", groups=["eng", "sql-admins"])
    forwarded = identity_headers(send(gateway.main_port, "GET", READER_ROUTE, token).forwarded)
    assert forwarded["subject"] == ["alice@example.com"]
    assert forwarded["client-id"] == ["web-portal"]  # no client_id claim: azp
    assert forwarded["scopes"] == ["clusters:read clusters"]
    assert forwarded["groups"] == ["eng,sql-admins"]
    assert forwarded["principal-kind"] == ["user"]


SPOOFED = [("X-Brickgate-Subject", "admin"), ("x-brickgate-evil", "1"), ("X-BRICKGATE-PRINCIPAL-KIND", "user"),
           ("x-BrickGate-Rule", "api"), ("X-Brickgate-Token-Id", "forged"), ("x-brickgate-groups", "sql-admins")]


def test_spoofed_identity_headers_replaced(gateway, tokens):
    token = tokens.idp(subject="svc-1", client_id="svc-1", scope="clusters:read", jti=None)  # no jti, no groups
    forwarded = identity_headers(send(gateway.main_port, "GET", READER_ROUTE, token, headers=SPOOFED).forwarded)
    assert forwarded["subject"] == ["svc-1"]
    assert forwarded["principal-kind"] == ["service_principal"]
    assert forwarded["rule"] == ["clusters-read"]
    assert "evil" not in forwarded
    assert "token-id" not in forwarded, "the token has no jti: the client's value must be removed, not kept"
    assert "groups" not in forwarded


def test_spoofed_identity_headers_removed_on_anonymous_route(gateway):
    reply = send(gateway.main_port, "GET", "/healthz", headers=SPOOFED)
    assert reply.status == 200
    forwarded = identity_headers(reply.forwarded)
    assert forwarded.pop("rule", ["health"]) == ["health"]  # docs are silent on whether anonymous requests get it
    assert forwarded == {}


UNSAFE_CLAIMS = [
    pytest.param("jürgen", id="non-ascii"),
    pytest.param("alice\r\nx-injected: 1", id="crlf"),
    pytest.param("tab\there", id="control-character"),
]


@pytest.mark.parametrize("subject", UNSAFE_CLAIMS)
def test_claim_that_is_not_printable_ascii_not_forwarded(gateway, tokens, subject):
    token = tokens.idp(subject=subject, client_id="svc-2", scope="clusters:read")
    forwarded = send(gateway.main_port, "GET", READER_ROUTE, token).forwarded
    assert "x-brickgate-subject" not in forwarded
    assert "x-injected" not in forwarded
    assert forwarded["x-brickgate-client-id"] == ["svc-2"]


# --- listener `identity`: header_prefix x-gw-, forward_authorization false, claim_headers ---------------


def test_custom_prefix_and_no_authorization_forwarded(gateway, tokens, idp):
    token = tokens.from_idp("demo-reader")
    spoofed = [("X-GW-Subject", "admin"), ("x-gw-evil", "1")]
    forwarded = send(gateway.identity_port, "GET", "/api/2.0/clusters/list", token, headers=spoofed).forwarded
    assert "authorization" not in forwarded
    assert identity_headers(forwarded, "x-gw-") == {
        "subject": ["demo-reader"], "issuer": [idp.issuer], "provider": ["idp"], "client-id": ["demo-reader"],
        "scopes": ["clusters:read"], "principal-kind": ["service_principal"],
        "token-id": [payload_of(token)["jti"]], "rule": ["everything"],
    }
    assert not any(name.startswith("x-brickgate-") for name in forwarded), "the default prefix must not be used"


def test_claim_headers_forwarded(gateway, tokens):
    token = tokens.idp(email="alice@example.com", realm_access={"roles": ["reader", "auditor"]}, tenant_no=42,
                       email_verified=True, profile={"team": "data"})
    forwarded = identity_headers(send(gateway.identity_port, "GET", "/anything", token).forwarded, "x-gw-")
    assert forwarded["email"] == ["alice@example.com"]
    assert forwarded["roles"] == ["reader,auditor"]  # dotted name, array joined with ","
    assert forwarded["tenant"] == ["42"]
    assert forwarded["verified"] == ["true"]
    assert "profile" not in forwarded  # objects are skipped


QUERY_CREDENTIAL = [
    pytest.param("/reports?access_token={token}&keep=1", "/reports?keep=1", id="other-parameters-kept"),
    pytest.param("/reports?keep=1&access_token={token}", "/reports?keep=1", id="credential-last"),
    pytest.param("/reports?access_token={token}", "/reports", id="only-parameter"),
]


@pytest.mark.parametrize(("path", "upstream_path"), QUERY_CREDENTIAL)
def test_query_credential_removed_when_not_forwarded(gateway, tokens, path, upstream_path):
    token = tokens.idp(scope="clusters:read")
    reply = send(gateway.identity_port, "GET", path.format(token=token))
    assert reply.status == 200, reply.body
    assert reply.forwarded_path == upstream_path
    assert token not in reply.body.decode()


# --- identity.headers: only the chosen built-in headers are sent ---------------------------------


@pytest.fixture(scope="module")
def chosen_headers_port(start_envoy, wasm_path, idp, upstream, tokens) -> int:
    config = main_config(idp.issuer, idp.port)
    config.setdefault("identity", {})["headers"] = ["subject", "rule"]
    envoy = start_envoy(bootstrap([brickgate_listener("chosen", str(wasm_path), config)], upstream.port, idp.port),
                        "identity-headers-chosen")
    envoy.wait_ready()
    port = envoy.listener_ports()["chosen"]
    token = tokens.idp(scope="clusters:read")
    wait_until_decided(port, lambda p: send(p, "GET", READER_ROUTE, token))
    return port


def test_only_the_chosen_identity_headers_are_sent_and_every_owned_one_is_stripped(chosen_headers_port, tokens):
    token = tokens.idp(subject="alice@example.com", scope="clusters:read", groups=["eng"])
    forwarded = send(chosen_headers_port, "GET", READER_ROUTE, token, headers=SPOOFED).forwarded
    assert identity_headers(forwarded) == {"subject": ["alice@example.com"], "rule": ["clusters-read"]}
