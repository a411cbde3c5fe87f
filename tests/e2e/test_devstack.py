"""The fake IdP and echo upstream behave like the real things the e2e tests and `make run` rely on."""

import base64
import json
import urllib.error
import urllib.request

import jwt
import pytest

from devstack.token import fetch_token
from plugin_configs import AUDIENCE

FORM = "application/x-www-form-urlencoded"


def call(url: str, body: bytes | None = None, headers: dict | None = None, method: str | None = None):
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode(), "Content-Type": FORM}


TOKEN_REQUESTS = [
    pytest.param(basic("demo-reader", "demo-reader-secret"), "grant_type=client_credentials", 200, None, id="basic-auth"),
    pytest.param({"Content-Type": FORM}, "grant_type=client_credentials&client_id=demo-ml&client_secret=demo-ml-secret&scope=clusters:read",
                 200, None, id="form-auth-with-scope"),
    pytest.param(basic("demo-reader", "wrong"), "grant_type=client_credentials", 401, "invalid_client", id="wrong-secret"),
    pytest.param(basic("nobody", "x"), "grant_type=client_credentials", 401, "invalid_client", id="unknown-client"),
    pytest.param({"Content-Type": FORM}, "grant_type=client_credentials", 401, "invalid_client", id="no-client-auth"),
    pytest.param(basic("demo-ml", "demo-ml-secret"), "grant_type=client_credentials&client_id=demo-ml&client_secret=demo-ml-secret",
                 400, "invalid_request", id="two-auth-methods"),
    pytest.param(basic("demo-reader", "demo-reader-secret"), "grant_type=client_credentials&scope=all-apis", 400, "invalid_scope", id="scope-not-allowed"),
    pytest.param(basic("demo-reader", "demo-reader-secret"), "grant_type=password", 400, "unsupported_grant_type", id="password-grant"),
    pytest.param(basic("demo-reader", "demo-reader-secret"), "scope=clusters:read", 400, "invalid_request", id="no-grant-type"),
    pytest.param(basic("demo-reader", "demo-reader-secret"), "grant_type=client_credentials&grant_type=client_credentials",
                 400, "invalid_request", id="repeated-parameter"),
    pytest.param({**basic("demo-reader", "demo-reader-secret"), "Content-Type": "application/json"}, '{"grant_type": "client_credentials"}',
                 400, "invalid_request", id="json-body"),
]


@pytest.mark.parametrize(("headers", "body", "status", "error"), TOKEN_REQUESTS)
def test_token_endpoint(idp, headers, body, status, error):
    code, response_headers, payload = call(f"{idp.issuer}/oauth2/token", body.encode(), headers)
    assert code == status, payload
    assert response_headers["Cache-Control"] == "no-store"
    if error:
        assert payload["error"] == error and payload["error_description"]
        assert ("WWW-Authenticate" in response_headers) == (status == 401)
    else:
        assert payload["token_type"] == "Bearer" and payload["expires_in"] == 3600


def test_issued_token_verifies_against_published_jwks(idp):
    _, _, discovery = call(f"{idp.issuer}/.well-known/openid-configuration")
    assert discovery["issuer"] == idp.issuer and "client_credentials" in discovery["grant_types_supported"]
    _, _, jwks = call(discovery["jwks_uri"])
    assert {(k["kid"], k["alg"], k["use"]) for k in jwks["keys"]} == {("test-rsa-1", "RS256", "sig"), ("test-ec-1", "ES256", "sig")}

    token = fetch_token(idp.issuer, "demo-admin", "demo-admin-secret", "clusters all-apis")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": "test-rsa-1", "typ": "at+jwt"}
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE, issuer=idp.issuer)
    assert claims["sub"] == claims["client_id"] == "demo-admin"
    assert claims["scope"] == "clusters all-apis"
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"] and claims["jti"]


def test_idp_counts_requests_and_validates_control(idp):
    _, _, before = call(f"{idp.issuer}/_stats")
    call(f"{idp.issuer}/jwks.json")
    _, _, after = call(f"{idp.issuer}/_stats")
    assert after["/jwks.json"] == before.get("/jwks.json", 0) + 1
    code, _, payload = call(f"{idp.issuer}/_control", b'{"jwks_fault": "bogus"}', method="POST")
    assert code == 400 and "jwks_fault" in payload["error"]
    _, _, state = call(f"{idp.issuer}/_control", b"{}", method="POST")
    assert state["jwks_fault"] == "none"


def test_upstream_echoes_request(upstream):
    headers = {"X-Multi": "a", "Content-Type": "text/plain"}
    code, _, echo = call(f"http://127.0.0.1:{upstream.port}/some/path?q=1", b"body", headers, method="PUT")
    assert code == 200
    assert echo["method"] == "PUT" and echo["path"] == "/some/path?q=1"
    assert echo["headers"]["x-multi"] == ["a"] and echo["headers"]["content-length"] == ["4"]


def test_idp_lifecycle_switches():
    """The switches the JWKS lifecycle tests rely on (devstack/idp.py ControlState), on a fresh IdP."""
    import http.client
    import time

    from devstack.httpbase import running
    from devstack.idp import make_idp

    with running(make_idp(0, audience=AUDIENCE, down=True)) as fresh:
        base = fresh.issuer
        connection = http.client.HTTPConnection("127.0.0.1", fresh.port, timeout=5)
        try:
            connection.request("GET", "/jwks.json")
            with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
                connection.getresponse()
        finally:
            connection.close()
        started = time.time()
        code, _, state = call(f"{base}/_control", json.dumps({"down": False, "jwks_max_age": None}).encode(), method="POST")
        assert code == 200 and state["down"] is False
        code, headers, _ = call(f"{base}/oauth2/v1/keys")
        assert code == 200 and "Cache-Control" not in headers

        call(f"{base}/_control", json.dumps({"jwks_max_age": 7, "openid_configuration_status": 404,
                                             "discovery_issuer": "https://other.example"}).encode(), method="POST")
        assert call(f"{base}/jwks.json")[1]["Cache-Control"] == "max-age=7"
        assert call(f"{base}/.well-known/openid-configuration")[0] == 404
        code, _, metadata = call(f"{base}/.well-known/oauth-authorization-server")
        assert code == 200 and metadata["issuer"] == "https://other.example" and metadata["jwks_uri"] == f"{base}/jwks.json"

        _, _, log = call(f"{base}/_log")
        assert [entry["path"] for entry in log["requests"]] == [
            "/jwks.json", "/oauth2/v1/keys", "/jwks.json", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
        assert all(started - 5 <= entry["t"] <= time.time() for entry in log["requests"])
        _, _, counts = call(f"{base}/_stats")
        assert counts["/jwks.json"] == 2 and counts["/_control"] == 2
        call(f"{base}/_control", b'{"reset_stats": true}', method="POST")
        assert call(f"{base}/_log")[2] == {"requests": []}
        code, _, payload = call(f"{base}/_control", b'{"down": "yes"}', method="POST")
        assert code == 400 and "down" in payload["error"]
