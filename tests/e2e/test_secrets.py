"""Secrets stay out of the plugin configuration (README "Secrets", docs/CONFIG.md `client_secret_env`):
a `client_secret` written into the configuration is refused at start-up (the plugin fails closed and
says which field, never the value) unless `allow_inline_secrets` says it is a development setup; a
variable the VM was not handed is refused naming the variable. The service principal that really
authenticates with a secret from `vm_config.environment_variables`, and /config_dump and the logs
free of it, are in test_databricks_upstream.py.
"""

import pytest

from envoy_harness import bootstrap, brickgate_listener
from gateway_client import send
from plugin_configs import idp_provider

INLINE_SECRET = "inline-secret-3f9a7c1e5b"


def sp_config(idp, **secret) -> dict:
    upstream = {"mode": "service_principal", "cluster": "upstream", "workspace_url": "http://127.0.0.1:9",
                "client_id": "sp-gateway", "scopes": ["all-apis"], **secret}
    return {"providers": {"idp": idp_provider(idp.issuer, idp.port, upstream=upstream)},
            "rules": [{"name": "health", "match": {"path": "/healthz"}, "allow_anonymous": True}]}


@pytest.mark.parametrize("secret, allow_inline, message", [
    ({"client_secret": INLINE_SECRET}, False,
     "providers.idp.upstream.client_secret: a secret in the plugin configuration is shown by Envoy's /config_dump"),
    ({"client_secret_env": "BRICKGATE_E2E_UNSET"}, False,
     "providers.idp.upstream.client_secret_env: environment variable BRICKGATE_E2E_UNSET is not set"),
    ({"client_secret": INLINE_SECRET}, True, None),
], ids=["inline-refused", "variable-unset", "inline-allowed-for-development"])
def test_an_inline_secret_is_refused_unless_allowed_for_development(start_envoy, wasm_path, idp, upstream,
                                                                    secret, allow_inline, message):
    config = {**sp_config(idp, **secret), "allow_inline_secrets": allow_inline}
    envoy = start_envoy(bootstrap([brickgate_listener("sp", str(wasm_path), config)], upstream.port, idp.port), "secrets")
    if message is None:
        envoy.wait_ready()
        assert send(envoy.listener_ports()["sp"], "GET", "/healthz").status == 200
        return
    assert envoy.wait_exit(30) not in (None, 0), "a fail-closed plugin that refuses its configuration stops Envoy"
    log = envoy.log_text()
    assert message in log, log[-3000:]
    assert INLINE_SECRET not in log, "the refusal never quotes it"
