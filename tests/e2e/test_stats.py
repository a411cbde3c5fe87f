"""The plugin's counters in Envoy's admin stats (custom wasm metrics are named `wasmcustom.<name>`)."""

import pytest

from gateway_client import send

PREFIX = "wasmcustom.brickgate."
IDP_ROUTE = "/api/2.0/clusters/list"

# request builder → exact change of each named counter (counters not listed may move freely)
CASES = [
    pytest.param(lambda t: ("GET", IDP_ROUTE, t.idp(scope="clusters:read")), {"allowed": 1, "denied": 0}, id="allowed"),
    pytest.param(lambda t: ("GET", "/healthz", None), {"allowed": 0, "allowed_anonymous": 1, "denied": 0}, id="allowed-anonymous"),
    pytest.param(lambda t: ("GET", IDP_ROUTE, t.idp(scope="clusters:read", iat=t.now - 7200, nbf=t.now - 7200, exp=t.now - 3600)),
                 {"allowed": 0, "denied": 1, "denied.expired": 1}, id="denied-expired"),
    pytest.param(lambda t: ("GET", IDP_ROUTE, None), {"allowed": 0, "denied": 1, "denied.missing_token": 1}, id="denied-missing-token"),
    pytest.param(lambda t: ("POST", "/api/2.0/clusters/create", t.idp(scope="clusters:read")),
                 {"allowed": 0, "denied": 1, "denied.insufficient_scope": 1}, id="denied-insufficient-scope"),
    pytest.param(lambda t: ("GET", "/api/2.0/clusters%2Flist", t.idp(scope="clusters:read")),
                 {"allowed": 0, "denied": 1, "denied.bad_path": 1}, id="denied-bad-path"),
]


@pytest.mark.parametrize(("make_request", "expected_changes"), CASES)
def test_decision_counters_move(gateway, tokens, make_request, expected_changes):
    method, path, token = make_request(tokens)
    before = gateway.envoy.stats(f"^{PREFIX}")
    send(gateway.main_port, method, path, token)
    after = gateway.envoy.stats(f"^{PREFIX}")
    changes = {name: after.get(PREFIX + name, 0) - before.get(PREFIX + name, 0) for name in expected_changes}
    assert changes == expected_changes, f"observed counters: {sorted(after)}"


def test_jwks_fetch_counted(gateway):
    stats = gateway.envoy.stats(f"^{PREFIX}")
    assert stats.get(PREFIX + "jwks.fetch_success", 0) >= 1, f"observed counters: {sorted(stats)}"
