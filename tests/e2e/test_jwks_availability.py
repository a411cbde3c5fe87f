"""Before the first JWKS arrives requests get 503 keys_unavailable; once the IdP recovers they pass."""

import json
import time
import urllib.request

from devstack import tokens as raw
from devstack.httpbase import running
from devstack.idp import make_idp
from envoy_harness import bootstrap, brickgate_listener
from gateway_client import NO_CHALLENGE, Refusal, assert_refused, send
from plugin_configs import AUDIENCE, main_config

KEYS_UNAVAILABLE = Refusal(503, "keys_unavailable", "TEMPORARILY_UNAVAILABLE", NO_CHALLENGE)
RECOVERY_TIMEOUT_S = 20.0  # brickgate retries a failed fetch after min(refresh interval, 5 s)


def set_jwks_fault(idp, fault: str) -> None:
    request = urllib.request.Request(f"{idp.issuer}/_control", data=json.dumps({"jwks_fault": fault}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def wait_for_failed_fetch(envoy, timeout_s: float = 10.0) -> None:
    name = "wasmcustom.brickgate.jwks.fetch_failed"
    deadline = time.monotonic() + timeout_s
    while envoy.stats(f"^{name}$").get(name, 0) < 1:
        assert time.monotonic() < deadline, f"no failed JWKS fetch counted within {timeout_s}s"
        time.sleep(0.1)


def test_keys_unavailable_until_jwks_fetched(start_envoy, wasm_path, upstream):
    with running(make_idp(0, audience=AUDIENCE)) as failing_idp:
        set_jwks_fault(failing_idp, "status_500")
        listener = brickgate_listener("jwks", str(wasm_path), main_config(failing_idp.issuer, failing_idp.port))
        envoy = start_envoy(bootstrap([listener], upstream.port, failing_idp.port), "jwks-down")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["jwks"]
            token = raw.mint(raw.claims(failing_idp.issuer, AUDIENCE, scope="clusters:read"))

            wait_for_failed_fetch(envoy)
            assert_refused(send(port, "GET", "/api/2.0/clusters/list", token, timeout_s=15), KEYS_UNAVAILABLE, token)

            set_jwks_fault(failing_idp, "none")
            deadline, status = time.monotonic() + RECOVERY_TIMEOUT_S, None
            while time.monotonic() < deadline and status != 200:
                status = send(port, "GET", "/api/2.0/clusters/list", token, timeout_s=15).status
                time.sleep(0.25)
            assert status == 200, "keys never arrived after the IdP recovered"
        finally:
            envoy.stop()  # before this IdP goes away
