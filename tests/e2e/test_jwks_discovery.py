"""A provider without `jwks.remote.uri` discovers its JWKS: `<issuer>/.well-known/openid-configuration`,
else (any non-200) RFC 8414's `<issuer>/.well-known/oauth-authorization-server`; the document must
name the configured issuer exactly, and its `jwks_uri` must be https or loopback http."""

import time

import pytest

from devstack.idp import JWKS_PATHS, OAUTH_METADATA_PATH, OIDC_DISCOVERY_PATH
from gateway_client import assert_refused
from jwks_support import (
    KEYS_UNAVAILABLE, fresh_idp, idp_control, idp_counts, record, remote_provider, scenario, single_provider_config, timed_send,
    token, wait_until_accepted,
)

DISCOVERED_PATH = "/oauth2/v1/keys"  # not the /jwks.json a guess would try: proves jwks_uri is followed


def discovering(idp, **remote) -> dict:
    return {"main": single_provider_config(remote_provider(idp, jwks_path=None, refresh_interval_s=60, **remote))}


def requested(idp) -> dict[str, int]:
    counts = idp_counts(idp)
    return {path: counts.get(path, 0) for path in (OIDC_DISCOVERY_PATH, OAUTH_METADATA_PATH, *JWKS_PATHS)}


@pytest.mark.parametrize(("oidc_status", "expected"), [
    pytest.param(200, {OIDC_DISCOVERY_PATH: 1, OAUTH_METADATA_PATH: 0, "/jwks.json": 0, DISCOVERED_PATH: 1}, id="openid-configuration"),
    pytest.param(404, {OIDC_DISCOVERY_PATH: 1, OAUTH_METADATA_PATH: 1, "/jwks.json": 0, DISCOVERED_PATH: 1}, id="rfc8414-after-404"),
    pytest.param(500, {OIDC_DISCOVERY_PATH: 1, OAUTH_METADATA_PATH: 1, "/jwks.json": 0, DISCOVERED_PATH: 1}, id="rfc8414-after-500"),
])
def test_discovery_finds_the_jwks(start_envoy, wasm_path, upstream, oidc_status, expected):
    with fresh_idp(openid_configuration_status=oidc_status) as idp:
        idp_control(idp, discovery_jwks_uri=f"{idp.issuer}{DISCOVERED_PATH}", reset_stats=True)
        with scenario(start_envoy, wasm_path, upstream, idp, f"discovery-{oidc_status}", discovering(idp)) as gw:
            wait_until_accepted(gw.port, idp, timeout_s=10)
            time.sleep(0.5)
            counts = requested(idp)
            record(f"discovery_{oidc_status}", idp_requests=counts)
            assert counts == expected
            assert timed_send(gw.port, token(idp, "ec-1")).reply.status == 200


WRONG_ISSUER_CASES = [
    pytest.param({"discovery_issuer": "https://wrong-issuer.example"}, ('names issuer "https://wrong-issuer.example"',),
                 id="other-issuer"),
    pytest.param({"discovery_issuer": "{issuer}/"}, ('names issuer "{issuer}/"',), id="issuer-with-trailing-slash"),
    pytest.param({"discovery_jwks_uri": "http://idp.example.com/jwks.json"}, ("jwks_uri",), id="jwks-uri-plain-http"),
]


@pytest.mark.parametrize(("control", "warning"), WRONG_ISSUER_CASES)
def test_untrustworthy_discovery_never_loads_keys(start_envoy, wasm_path, upstream, control, warning):
    with fresh_idp() as idp:
        idp_control(idp, reset_stats=True, **{name: value.format(issuer=idp.issuer) for name, value in control.items()})
        config = discovering(idp, wait_for_keys_ms=2000)
        with scenario(start_envoy, wasm_path, upstream, idp, "discovery-refused", config) as gw:
            line = gw.wait_for_log("warning", "provider idp JWKS fetch failed", timeout_s=5)
            bearer = token(idp)
            answer = timed_send(gw.port, bearer)
            time.sleep(0.3)
            counts = requested(idp)
            record("discovery_refused", control=control, idp_requests=counts, warning=line.split("wasm log ", 1)[-1],
                   answer=(answer.reply.status, answer.reason, round(answer.seconds, 2)))
            assert_refused(answer.reply, KEYS_UNAVAILABLE, bearer)
            for fragment in warning:
                assert fragment.format(issuer=idp.issuer) in line, line
            if "discovery_issuer" in control:
                assert f'expected "{idp.issuer}"' in line, line
            assert counts["/jwks.json"] == counts[DISCOVERED_PATH] == 0, f"keys fetched anyway: {counts}"
            assert gw.counter("jwks.fetch_success") == 0
