"""deploy/: the Istio and Envoy Gateway manifests (their CRD schemas: test_deploy_schemas.py), and the
Envoy filter each amounts to (as Istio or Envoy Gateway renders it) run in a real Envoy."""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from devstack.httpbase import running
from devstack.workspace import SERVICE_PRINCIPALS, make_workspace
from envoy_harness import HCM, ROUTER, STRING_VALUE, WASM, http_get, loopback, static_cluster
from gateway_client import send
from plugin_configs import AUDIENCE
from token_factory import TokenFactory

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENVOY_START_TIMEOUT_S = 20.0
SP = SERVICE_PRINCIPALS[0]  # a service principal the fake workspace knows, with its OAuth secret


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest(path: str, kind: str) -> dict:
    return next(doc for doc in documents(DEPLOY / path) if doc["kind"] == kind)


def test_istio_plugin_fails_closed_in_authn_and_reaches_its_hosts():
    plugin = manifest("istio/wasmplugin.yaml", "WasmPlugin")["spec"]
    assert plugin["phase"] == "AUTHN" and plugin["failStrategy"] == "FAIL_CLOSE"
    assert plugin["url"].startswith("oci://")
    env = [e["name"] for e in plugin["vmConfig"]["env"] if e.get("valueFrom") == "HOST"]
    assert secret_variables(plugin["pluginConfig"]) == env == ["BRICKGATE_CLIENT_SECRET"], "secrets go through vmConfig.env"
    external = documents(DEPLOY / "istio" / "external-services.yaml")
    hosts = {host for doc in external if doc["kind"] == "ServiceEntry" for host in doc["spec"]["hosts"]}
    tls = {doc["spec"]["host"] for doc in external if doc["kind"] == "DestinationRule" and doc["spec"]["trafficPolicy"]["tls"]["mode"] == "SIMPLE"}
    for cluster in plugin_clusters(plugin["pluginConfig"]):
        direction, port, _, host = cluster.split("|")
        assert (direction, port) == ("outbound", "443") and host in hosts and host in tls, cluster


def test_envoy_gateway_plugin_fails_closed_and_reaches_its_backends():
    policy = manifest("envoy-gateway/extension-policy.yaml", "EnvoyExtensionPolicy")["spec"]["wasm"][0]
    assert policy["failOpen"] is False and policy["code"]["type"] == "Image"
    assert secret_variables(policy["config"]) == policy["env"]["hostKeys"] == ["BRICKGATE_CLIENT_SECRET"], "secrets go through env"
    route = manifest("envoy-gateway/extension-policy.yaml", "HTTPRoute")
    backends = {doc["metadata"]["name"] for doc in documents(DEPLOY / "envoy-gateway" / "extension-policy.yaml") if doc["kind"] == "Backend"}
    for cluster in plugin_clusters(policy["config"]):
        _, namespace, name, _, index = cluster.split("/")
        assert (namespace, name) == (route["metadata"]["namespace"], route["metadata"]["name"]), cluster
        assert route["spec"]["rules"][int(index)]["backendRefs"][0]["name"] in backends


def secret_variables(plugin_config: dict) -> list[str]:
    """The VM environment variables the plugin config reads secrets from; an inline secret fails."""
    variables = []
    for name, provider in plugin_config["providers"].items():
        upstream = provider.get("upstream", {})
        assert "client_secret" not in upstream and "inline" not in provider["jwks"], f"{name}: a secret in the configuration"
        if "client_secret_env" in upstream:
            variables.append(upstream["client_secret_env"])
    assert "allow_inline_secrets" not in plugin_config
    return variables


def plugin_clusters(plugin_config: dict) -> list[str]:
    clusters = []
    for provider in plugin_config["providers"].values():
        clusters.append(provider["jwks"]["remote"]["cluster"])
        if "upstream" in provider:
            clusters.append(provider["upstream"]["cluster"])
    return clusters


def rendered_filter(plugin_config: dict, wasm_path: Path, env_keys: list[str]) -> dict:
    """The wasm filter as Istio (WasmPlugin) and Envoy Gateway (EnvoyExtensionPolicy) render it: the
    plugin config as a JSON string value, one shared vm_id, fail closed, the proxy's environment
    variables handed to the VM, and allow_on_headers_stop_iteration (brickgate holds bodies)."""
    return {"name": "envoy.filters.http.wasm", "typed_config": {"@type": WASM, "config": {
        "name": "brickgate", "root_id": "brickgate", "failure_policy": "FAIL_CLOSED",
        "allow_on_headers_stop_iteration": True,
        "vm_config": {"vm_id": "brickgate", "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(wasm_path)}},
                      "environment_variables": {"host_env_keys": env_keys}},
        "configuration": {"@type": STRING_VALUE, "value": json.dumps(plugin_config)},
    }}}


def run_rendered(start_envoy, wasm_path, plugin_config, env_keys, idp, upstream, name, ready=True, workspace=None):
    """Runs the rendered filter with the manifest's cluster names pointed at the fake IdP (and the
    fake workspace, if given); the issuer and JWKS URI become the fake IdP's, the workspace URL and
    the service principal's client id the fake workspace's, everything else is the manifest's."""
    plugin_config = copy.deepcopy(plugin_config)
    callouts = {}  # cluster name → port; providers of one IdP or workspace share its cluster
    for index, provider in enumerate(plugin_config["providers"].values()):
        # Issuers are distinct per provider; the fake IdP signs for the first one.
        provider.update(issuer=idp.issuer if index == 0 else f"{idp.issuer}/provider-{index}", audiences=[AUDIENCE])
        provider["jwks"]["remote"]["uri"] = f"http://127.0.0.1:{idp.port}/jwks.json"
        callouts[provider["jwks"]["remote"]["cluster"]] = idp.port
        if "upstream" in provider:
            callouts[provider["upstream"]["cluster"]] = workspace.port if workspace else upstream.port
        if "upstream" in provider and workspace:
            provider["upstream"]["workspace_url"] = f"http://127.0.0.1:{workspace.port}"
            if provider["upstream"]["mode"] == "service_principal":
                provider["upstream"]["client_id"] = SP.application_id
    hcm = {"@type": HCM, "stat_prefix": name, "codec_type": "AUTO",
           "route_config": {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "10s"}}]}]},
           "http_filters": [rendered_filter(plugin_config, wasm_path, env_keys), {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    # The stats tags deploy/istio/stats-tags.yaml adds to the proxies' bootstrap.
    (stats_tags,) = documents(DEPLOY / "istio" / "stats-tags.yaml")
    config = {"admin": {"address": loopback(0)}, "stats_config": stats_tags["spec"]["configPatches"][0]["patch"]["value"]["stats_config"],
              "static_resources": {
        "listeners": [{"name": name, "address": loopback(0), "filter_chains": [{"filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
        "clusters": [static_cluster("upstream", upstream.port),
                     *(static_cluster(cluster, port) for cluster, port in callouts.items())]}}
    envoy = start_envoy(config, name)
    if not ready:
        return envoy, None
    envoy.wait_ready()
    return envoy, envoy.listener_ports()[name]


def config_dump(envoy) -> str:
    status, dump = http_get(f"{envoy.admin_url}/config_dump?include_eds", timeout_s=5.0)
    assert status == 200
    return dump


def refuses_for_the_right_reasons(envoy, port, tokens) -> None:
    import time
    assert send(port, "GET", "/api/2.0/clusters/list").status == 401
    # Insufficient scope is decided after the signature: the keys came through the manifest's cluster.
    token = tokens.idp(scope="nothing-useful")
    deadline = time.monotonic() + 20
    while (reply := send(port, "GET", "/api/2.0/clusters/list", token)).header("x-brickgate-reason") != "insufficient_scope":
        assert time.monotonic() < deadline, (reply.status, reply.headers)
        time.sleep(0.2)
    assert reply.status == 403


def goes_upstream_as_the_service_principal(port, plugin_config: dict, idp, workspace) -> None:
    """A caller of the manifest's service-principal provider, on its rule, reaches the upstream with
    a Databricks token the workspace issued to the service principal: brickgate authenticated with
    the secret from BRICKGATE_CLIENT_SECRET (the fake workspace refuses any other)."""
    names = list(plugin_config["providers"])
    (sp_name,) = [name for name in names if plugin_config["providers"][name].get("upstream", {}).get("mode") == "service_principal"]
    (rule,) = [rule for rule in plugin_config["rules"] if rule.get("providers") == [sp_name]]
    # run_rendered gave provider i > 0 the issuer <fake IdP>/provider-i; the IdP's keys sign for it.
    caller = TokenFactory(f"{idp.issuer}/provider-{names.index(sp_name)}").idp(scope=rule["require"]["scopes_any"][0])
    reply = send(port, rule["match"]["methods"][0], rule["match"]["prefix"], caller)
    (authorization,) = reply.forwarded["authorization"]
    claims = workspace.verify_access_token(authorization.removeprefix("Bearer "))
    assert claims["sub"] == SP.application_id, claims


def counts_each_key_fetch_once(envoy, plugin_config: dict) -> None:
    """`wasmcustom.brickgate.jwks.fetch_success` counts the key fetches this Envoy made: one per
    provider (each has its own key record, even when two share an IdP cluster), counted by the VM
    that fetched (the main thread's, at its first tick, ~100 ms after Envoy reports ready: read
    earlier it is still 0), never once more per worker that loads the keys from shared data. The
    shipped stats_tags (run_rendered applies Istio's) are anchored at `wasmcustom.brickgate.requests_total`,
    so they leave this counter's name alone, in /stats and in /stats/prometheus."""
    import time
    providers = len(plugin_config["providers"])
    clusters = {provider["jwks"]["remote"]["cluster"] for provider in plugin_config["providers"].values()}
    deadline = time.monotonic() + 20
    while (stats := envoy.stats(r"^(wasmcustom\.brickgate\.jwks\.|cluster\.)"))["wasmcustom.brickgate.jwks.fetch_success"] < providers:
        assert time.monotonic() < deadline, {name: value for name, value in stats.items() if "jwks" in name}
        time.sleep(0.1)
    served = sum(stats[f"cluster.{cluster}.upstream_rq_200"] for cluster in clusters)
    assert stats["wasmcustom.brickgate.jwks.fetch_success"] == served == providers
    assert stats["wasmcustom.brickgate.jwks.fetch_failed"] == 0
    _, prometheus = http_get(f"{envoy.admin_url}/stats/prometheus")
    assert f"brickgate_jwks_fetch_success{{}} {providers}" in prometheus.splitlines()


@pytest.mark.parametrize(("path", "kind"), [("istio/wasmplugin.yaml", "WasmPlugin"), ("envoy-gateway/extension-policy.yaml", "EnvoyExtensionPolicy")])
def test_rendered_filter_runs_in_envoy(start_envoy, wasm_path, idp, upstream, tokens, monkeypatch, path, kind):
    spec = manifest(path, kind)["spec"]
    if kind == "WasmPlugin":
        plugin_config, env_keys = spec["pluginConfig"], [e["name"] for e in spec["vmConfig"]["env"] if e.get("valueFrom") == "HOST"]
    else:
        plugin_config, env_keys = spec["wasm"][0]["config"], spec["wasm"][0]["env"]["hostKeys"]
    # The manifest's service-principal provider reads its OAuth secret from the variable the manifest
    # hands to the VM: without it brickgate refuses to start, naming the variable (not a value).
    monkeypatch.delenv("BRICKGATE_CLIENT_SECRET", raising=False)
    unset, _ = run_rendered(start_envoy, wasm_path, plugin_config, env_keys, idp, upstream, kind.lower() + "-no-secret", ready=False)
    assert unset.wait_exit(ENVOY_START_TIMEOUT_S) not in (None, 0), "a missing client secret must stop Envoy"
    assert re.search(r"brickgate: invalid configuration: providers\.\w+\.upstream\.client_secret_env: .*BRICKGATE_CLIENT_SECRET",
                     unset.log_text()), unset.log_text()[-2000:]
    monkeypatch.setenv("BRICKGATE_CLIENT_SECRET", SP.secret)
    with running(make_workspace(0)) as workspace:
        envoy, port = run_rendered(start_envoy, wasm_path, plugin_config, env_keys, idp, upstream, kind.lower(), workspace=workspace)
        refuses_for_the_right_reasons(envoy, port, tokens)
        counts_each_key_fetch_once(envoy, plugin_config)
        goes_upstream_as_the_service_principal(port, plugin_config, idp, workspace)
    assert SP.secret not in config_dump(envoy) + envoy.log_text(), "the secret stays out of /config_dump and the log"
