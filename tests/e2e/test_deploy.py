"""deploy/: the Istio and Envoy Gateway deployments as their control planes render them (mesh_render.py,
ported from istio/istio 1.29.6 and envoyproxy/gateway v1.8.3), run in a real Envoy: the serving,
catalogue and refusal cases, the service principal's secret, the labelled metrics and the access log.
The manifests' CRD schemas are test_deploy_schemas.py's."""

import copy
import json
import os
import re
import subprocess
import time

import pytest

from conftest import RUNNING_ENVOYS
from databricks_support import make_body_echo, send_body, send_json, wait_until_decided
from devstack.httpbase import running
from devstack.workspace import SERVICE_PRINCIPALS, dev_policy, make_workspace
from envoy_harness import EnvoyProcess, http_get
from gateway_client import send
from h2_client import h2_request
from mesh_render import (BUFFER_FILTER, DEPLOY, EG_FILES, ISTIO_FILES, documents, http_filters, only, render_envoy_gateway,
                         render_istio, routes)
from plugin_configs import AUDIENCE, VM_ENV
from token_factory import TokenFactory

ENVOY_START_TIMEOUT_S = 20.0
SP = SERVICE_PRINCIPALS[0]  # a service principal the fake workspace knows, with its OAuth secret
USER = "alice@example.com"
ENDPOINT = "chat-model"
SECRET_VARIABLE = "BRICKGATE_CLIENT_SECRET"
PLATFORMS = {
    "istio": (render_istio, lambda: only(documents(*ISTIO_FILES), "WasmPlugin")["spec"]["pluginConfig"]),
    "envoy-gateway": (render_envoy_gateway, lambda: only(documents(*EG_FILES), "EnvoyExtensionPolicy")["spec"]["wasm"][0]["config"]),
}
# The paths whose body brickgate reads (docs/DATABRICKS.md): each must reach a route the buffer holds.
BODY_PATHS = ["/serving-endpoints/chat/completions", "/serving-endpoints/chat/completions/", "/serving-endpoints/completions",
              "/serving-endpoints/embeddings", "/serving-endpoints/responses", "/serving-endpoints/e/invocations",
              "/serving-endpoints/e/served-models/m/invocations", "/ai-gateway/v1/chat", "/ai-gateway/mlflow/v1/chat/completions"]
# Paths brickgate reads as a body-form serving path but a route may match as something else (Envoy routes on
# the path as sent): brickgate refuses them at their headers in body_rules: buffer_filter, so none may reach
# the upstream, whichever route they took.
BODY_PATH_ALIASES = ["//serving-endpoints/chat/completions", "/x/../serving-endpoints/chat/completions",
                     "/%73erving-endpoints/chat/completions", "/./ai-gateway/mlflow/v1/chat/completions",
                     "//ai-gateway/mlflow/v1/chat/completions"]


def keys(node) -> set[str]:
    """Every mapping key anywhere in a document (parsed YAML, or JSON strings inside it)."""
    if isinstance(node, dict):
        return set(node) | {k for value in node.values() for k in keys(value)}
    if isinstance(node, list):
        return {k for item in node for k in keys(item)}
    if isinstance(node, str) and node.lstrip().startswith("{\n"):  # a JSON file in a ConfigMap
        return keys(json.loads(node))
    return set()


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


def callout_clusters(plugin_config: dict) -> set[str]:
    return {cluster for provider in plugin_config["providers"].values()
            for cluster in (provider["jwks"]["remote"]["cluster"], provider.get("upstream", {}).get("cluster")) if cluster}


def for_loopback(plugin_config: dict, idp, workspace) -> tuple[dict, dict[str, int]]:
    """The manifest's plugin config with the fakes' URLs: issuers and JWKS URIs the fake IdP's, workspace
    URLs and the service principal's client id the fake workspace's. Returns it and the callout
    cluster → fake port map; everything else is the manifest's."""
    plugin_config = copy.deepcopy(plugin_config)
    ports = {}
    for index, provider in enumerate(plugin_config["providers"].values()):
        # Issuers are distinct per provider; the fake IdP signs for the first one.
        provider.update(issuer=idp.issuer if index == 0 else f"{idp.issuer}/provider-{index}", audiences=[AUDIENCE])
        provider["jwks"]["remote"]["uri"] = f"http://127.0.0.1:{idp.port}/jwks.json"
        ports[provider["jwks"]["remote"]["cluster"]] = idp.port
        if "upstream" in provider:
            ports[provider["upstream"]["cluster"]] = workspace.port
            provider["upstream"]["workspace_url"] = f"http://127.0.0.1:{workspace.port}"
            if provider["upstream"]["mode"] == "service_principal":
                provider["upstream"]["client_id"] = SP.application_id
    return plugin_config, ports


@pytest.fixture
def start_rendered(envoy_bin, tmp_path):
    """Start an Envoy for a rendering, with Istio's bootstrap override as `--config-yaml` (what the
    pilot-agent does); stopped at the end of the test."""
    started = []

    def start(rendered: dict, name: str) -> EnvoyProcess:
        (tmp_path / name).mkdir()
        envoy = EnvoyProcess(envoy_bin, rendered["bootstrap"], tmp_path / name, env=VM_ENV)
        if rendered["config_yaml"]:
            envoy.command += ["--config-yaml", rendered["config_yaml"]]
        started.append(envoy.start())
        RUNNING_ENVOYS.append(envoy)
        return envoy

    yield start
    for envoy in started:
        envoy.stop()


# --- The manifests, wired together -----------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_shipped_plugin_config_uses_buffer_filter_body_rules_and_secrets_from_the_environment(platform):
    plugin_config = PLATFORMS[platform][1]()
    assert plugin_config["body_rules"] == "buffer_filter"
    assert secret_variables(plugin_config) == [SECRET_VARIABLE]
    assert any("serving_endpoint" in rule["match"] for rule in plugin_config["rules"]), "the body-decided rule is shipped"
    files = ISTIO_FILES if platform == "istio" else EG_FILES
    assert "allow_on_headers_stop_iteration" not in keys(documents(*files)), "neither control plane can render it"


def test_istio_plugin_is_rendered_fail_closed_with_its_own_name_and_the_host_secret(tmp_path, wasm_path):
    docs = documents(*ISTIO_FILES)
    plugin = only(docs, "WasmPlugin")["spec"]
    assert plugin["phase"] == "AUTHN" and plugin["url"].startswith("oci://")
    rendered = render_istio(plugin["pluginConfig"], wasm_path, tmp_path, {c: 1 for c in callout_clusters(plugin["pluginConfig"])}, 1)
    (extension,) = json.loads((tmp_path / "istio-ecds.json").read_text())["resources"]
    config = extension["typed_config"]["config"]
    assert extension["name"] == rendered["filter_name"] == "extensions.istio.io/wasmplugin/databricks-gateway.brickgate"
    assert config["name"] == "databricks-gateway.brickgate"
    assert config["failure_policy"] == "FAIL_CLOSED" and config["root_id"] == "brickgate"
    assert "vm_id" not in config["vm_config"] and "allow_on_headers_stop_iteration" not in config
    assert config["vm_config"]["environment_variables"]["host_env_keys"] == [SECRET_VARIABLE]
    # The secret reaches the gateway's Envoy from the Kubernetes Secret, never from a manifest.
    options = only(docs, "ConfigMap", "databricks-gateway-options")["data"]["deployment"]
    assert re.search(rf"name: {SECRET_VARIABLE}\s+valueFrom:\s+secretKeyRef: {{ name: brickgate-oauth, key: client-secret }}", options)


def test_istio_callouts_originate_tls_on_port_80_in_this_namespace_only(tmp_path, wasm_path):
    docs = documents(*ISTIO_FILES)
    plugin_config = only(docs, "WasmPlugin")["spec"]["pluginConfig"]
    rendered = render_istio(plugin_config, wasm_path, tmp_path, {c: 1 for c in callout_clusters(plugin_config)}, 1)
    clusters = rendered["callout_clusters"]
    assert callout_clusters(plugin_config) == set(clusters)
    for name, cluster in clusters.items():
        host = name.split("|")[3]
        tls = cluster["transport_socket"]["typed_config"]
        assert name.startswith("outbound|80||")
        assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {"address": host, "port_value": 443}
        assert tls["sni"] == host
        assert tls["common_tls_context"]["validation_context"] == {
            "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}, "match_subject_alt_names": [{"exact": host}]}
    for doc in docs:
        if doc["kind"] in ("ServiceEntry", "DestinationRule"):
            assert doc["spec"]["exportTo"] == ["."], doc["metadata"]["name"]


def test_envoy_gateway_plugin_is_rendered_fail_closed_and_calls_out_over_tls_without_a_route(tmp_path, wasm_path):
    docs = documents(*EG_FILES)
    policy = only(docs, "EnvoyExtensionPolicy")
    plugin_config = policy["spec"]["wasm"][0]["config"]
    rendered = render_envoy_gateway(plugin_config, wasm_path, tmp_path, {c: 1 for c in callout_clusters(plugin_config)}, 1)
    (wasm,) = [f for f in http_filters(rendered["listener"]) if f["name"] == rendered["filter_name"]]
    config = wasm["typed_config"]["config"]
    assert wasm["name"] == "envoy.filters.http.wasm/envoyextensionpolicy/databricks-gateway/brickgate/wasm/0" and wasm["disabled"]
    assert config["vm_config"]["vm_id"] == "envoyextensionpolicy/databricks-gateway/brickgate/wasm/0"
    assert config["fail_open"] is False and config["name"] == config["root_id"] == "brickgate"
    assert config["vm_config"]["environment_variables"]["host_env_keys"] == [SECRET_VARIABLE]
    # The callout clusters are the bootstrap's, with TLS; no route reaches them.
    assert callout_clusters(plugin_config) == set(rendered["callout_clusters"])
    for name, cluster in rendered["callout_clusters"].items():
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        tls = cluster["transport_socket"]["typed_config"]
        assert address["port_value"] == 443 and tls["sni"] == address["address"]
        assert tls["common_tls_context"]["validation_context"] == {
            "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": address["address"]}}]}
        assert all(route["route"]["cluster"] != name for route in routes(rendered["listener"]))
    assert not [d for d in docs if d["kind"] == "HTTPRoute" and any(h.endswith(".invalid") for h in d["spec"]["hostnames"])]
    container = only(docs, "EnvoyProxy")["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
    assert container["env"] == [{"name": SECRET_VARIABLE, "valueFrom": {"secretKeyRef": {"name": "brickgate-oauth", "key": "client-secret"}}}]
    (backend,) = [d for d in docs if d["kind"] == "Backend"]
    assert backend["spec"]["tls"] == {"wellKnownCACertificates": "System", "sni": backend["spec"]["endpoints"][0]["fqdn"]["hostname"]}


def enabled_filters(listener: dict, route: dict) -> list[str]:
    """The filters a request on `route` passes through, in order (a disabled filter runs only where the
    route's typed_per_filter_config names it)."""
    per_route = route.get("typed_per_filter_config", {})
    return [f["name"] for f in http_filters(listener) if not f.get("disabled") or f["name"] in per_route]


def route_for(listener: dict, path: str) -> dict:
    for route in routes(listener):
        match = route["match"]
        if "prefix" in match and path.startswith(match["prefix"]):
            return route
        prefix = match.get("path_separated_prefix")
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            return route
    raise AssertionError(f"no route for {path}")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_body_read_passes_brickgate_then_the_buffer_filter_then_the_router(platform, tmp_path, wasm_path):
    """What body_rules: buffer_filter needs (docs/LIFECYCLE.md, "Meshes"): the buffer filter right after
    brickgate on every path whose body brickgate reads; other paths stream past no buffer."""
    render, plugin_config = PLATFORMS[platform][0], PLATFORMS[platform][1]()
    rendered = render(plugin_config, wasm_path, tmp_path, {c: 1 for c in callout_clusters(plugin_config)}, 1)
    listener = rendered["listener"]
    for path in BODY_PATHS:
        chain = enabled_filters(listener, route_for(listener, path))
        brickgate = chain.index(rendered["filter_name"])
        assert chain[brickgate + 1:] == [BUFFER_FILTER, "envoy.filters.http.router"], (path, chain)
    chain = enabled_filters(listener, route_for(listener, "/api/2.0/fs/files/Volumes/big.bin"))
    assert rendered["filter_name"] in chain and BUFFER_FILTER not in chain, chain
    assert listener["per_connection_buffer_limit_bytes"] == 17 * 1024 * 1024
    (buffer,) = [f for f in http_filters(listener) if f["name"] == BUFFER_FILTER]
    assert buffer["typed_config"]["max_request_bytes"] == 17 * 1024 * 1024


# --- The rendered gateways, in Envoy 1.40 ------------------------------------------------------------


def start_gateway(start_rendered, platform, wasm_path, tmp_path, idp, workspace, echo, name):
    plugin_config, ports = for_loopback(PLATFORMS[platform][1](), idp, workspace)
    rendered = PLATFORMS[platform][0](plugin_config, wasm_path, tmp_path, ports, echo.port)
    return start_rendered(rendered, name), rendered, plugin_config


def serving_request(port: int, token: str, http2: bool):
    document = {"model": ENDPOINT, "messages": [{"role": "user", "content": "hello " * 2000}]}
    if http2:
        body = json.dumps(document).encode()
        return h2_request(port, "POST", "/serving-endpoints/chat/completions",
                          [("authorization", f"Bearer {token}"), ("content-type", "application/json")], [body[:5000], body[5000:]])
    return send_json(port, "/serving-endpoints/chat/completions", token, document)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rendered_gateway_refuses_to_start_without_the_client_secret(platform, start_rendered, wasm_path, tmp_path, idp, monkeypatch):
    """Envoy Gateway's filter is in the listener: Envoy exits. Istio's comes by ECDS, which blocks the
    proxy's initialisation until it loads: the update is refused and Envoy never becomes ready (never
    serves). Either way the log names the variable, not a value."""
    monkeypatch.delenv(SECRET_VARIABLE, raising=False)
    refusal = rf"brickgate: invalid configuration: providers\.\w+\.upstream\.client_secret_env: .*{SECRET_VARIABLE}"
    with running(make_workspace(0)) as workspace, running(make_body_echo()) as echo:
        envoy, _, _ = start_gateway(start_rendered, platform, wasm_path, tmp_path, idp, workspace, echo, "no-secret")
        if platform == "envoy-gateway":
            assert envoy.wait_exit(ENVOY_START_TIMEOUT_S) not in (None, 0), "a missing client secret must stop Envoy"
        else:
            wait_for_log(envoy, "Filesystem config update rejected: Unable to create Wasm plugin databricks-gateway.brickgate")
            envoy.wait_ready()
            (port,) = envoy.listener_ports().values()
            reply = send(port, "GET", "/api/2.0/clusters/list")
            assert reply.status == 500 and echo.snapshot_counts() == {}, (reply.status, reply.headers, reply.body[:300])
    assert re.search(refusal, envoy.log_text()), envoy.log_text()[-2000:]


def wait_for_log(envoy, text: str) -> None:
    deadline = time.monotonic() + ENVOY_START_TIMEOUT_S
    while text not in envoy.log_text():
        assert time.monotonic() < deadline and envoy.process.poll() is None, envoy.log_text()[-2000:]
        time.sleep(0.1)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_rendered_gateway_decides_serving_catalogue_and_refusals(platform, start_rendered, wasm_path, tmp_path, idp, tokens, monkeypatch):
    monkeypatch.setenv(SECRET_VARIABLE, SP.secret)
    with (running(make_workspace(0, policies=[dev_policy(idp.issuer, AUDIENCE)], users={USER: ["all-apis"]})) as workspace,
          running(make_body_echo()) as echo):
        envoy, rendered, plugin_config = start_gateway(start_rendered, platform, wasm_path, tmp_path, idp, workspace, echo, platform)
        envoy.wait_ready()
        (port,) = envoy.listener_ports().values()
        # Refusals: no token (401), then a token without the scope, decided once the keys came in
        # through the manifest's cluster (403).
        reply = send(port, "GET", "/api/2.0/clusters/list")
        assert (reply.status, reply.header("x-brickgate-reason")) == (401, "missing_token"), reply.headers
        assert reply.header("www-authenticate") == f'Bearer realm="{plugin_config["realm"]}"'

        reply = wait_until_decided(port, lambda port: send(port, "GET", "/api/2.0/clusters/list", tokens.idp(subject=USER, scope="nothing")))
        assert (reply.status, reply.header("x-brickgate-reason")) == (403, "insufficient_scope"), (reply.status, reply.headers)
        # The catalogue: the route goes upstream with the workspace's token for the user (exchange).
        reply = send(port, "GET", "/api/2.0/clusters/list", tokens.idp(subject=USER, scope="all-apis"))
        (authorization,) = reply.forwarded["authorization"]
        assert workspace.verify_access_token(authorization.removeprefix("Bearer "))["sub"] == USER
        enforcing_check_passes(port, tokens)
        # Serving, decided on the body's `model`: allowed whole, over HTTP/1.1 and HTTP/2 ...
        for http2 in (False, True):
            reply = serving_request(port, tokens.idp(subject=USER, scope=f"serving:{ENDPOINT}"), http2)
            assert reply.status == 200, (reply.status, reply.body[:500])
            assert reply.json()["body_length"] > 12000 and reply.header("x-brickgate-reason") is None
        # ... and refused for another endpoint's scope: the upstream receives nothing of it.
        before = echo.snapshot_counts().get("/serving-endpoints/chat/completions", 0)
        for http2 in (False, True):
            reply = serving_request(port, tokens.idp(subject=USER, scope="serving:other-model"), http2)
            assert reply.status == 403 and reply.header("x-brickgate-reason") == "insufficient_scope", (reply.status, reply.headers)
        assert echo.snapshot_counts().get("/serving-endpoints/chat/completions", 0) == before
        reaches_nothing_through_a_path_alias(port, tokens.idp(subject=USER, scope="serving:other-model"), echo)
        goes_upstream_as_the_service_principal(port, plugin_config, idp, workspace)
        _, config_dump = http_get(f"{envoy.admin_url}/config_dump")
        has_labelled_metrics_and_audit_records(envoy, rendered)
    assert SP.secret not in config_dump + envoy.log_text(), "the secret stays out of /config_dump and the log"


def reaches_nothing_through_a_path_alias(port: int, token: str, echo) -> None:
    """A body-form serving request on a path the gateway's routes read otherwise than brickgate (so it
    may take a route without the buffer filter) is refused before its headers go on: the upstream
    receives nothing, over HTTP/1.1 and HTTP/2."""
    document = json.dumps({"model": "other-model", "messages": []}).encode()
    before = sum(echo.snapshot_counts().values())
    for path in BODY_PATH_ALIASES:
        for http2 in (False, True):
            if http2:
                reply = h2_request(port, "POST", path, [("authorization", f"Bearer {token}")], [document[:10], document[10:]])
            else:
                reply = send_body(port, "POST", path, token, [document[:10], document[10:]], chunk_delay_s=0.05)
            assert (reply.status, reply.header("x-brickgate-reason")) == (400, "bad_path"), (path, http2, reply.status, reply.body[:300])
    assert sum(echo.snapshot_counts().values()) == before, echo.snapshot_counts()


def enforcing_check_passes(port: int, tokens) -> None:
    """deploy/check-enforcing.sh, the examples' "is it enforcing?" check: 401, 403, 200."""
    narrow, wide = tokens.idp(subject=USER, scope="nothing"), tokens.idp(subject=USER, scope="all-apis")
    check = subprocess.run(["sh", str(DEPLOY / "check-enforcing.sh")], capture_output=True, text=True, timeout=60,
                           env={"PATH": os.environ["PATH"], "GATEWAY": f"http://127.0.0.1:{port}", "NARROW_TOKEN": narrow, "TOKEN": wide})
    assert check.returncode == 0 and check.stdout.count("ok ") == 3, check.stdout + check.stderr
    assert narrow not in check.stdout + check.stderr and wide not in check.stdout + check.stderr


def goes_upstream_as_the_service_principal(port, plugin_config: dict, idp, workspace) -> None:
    """A caller of the manifest's service-principal provider, on its rule, reaches the upstream with
    a Databricks token the workspace issued to the service principal: brickgate authenticated with
    the secret from BRICKGATE_CLIENT_SECRET (the fake workspace refuses any other)."""
    names = list(plugin_config["providers"])
    (sp_name,) = [name for name in names if plugin_config["providers"][name].get("upstream", {}).get("mode") == "service_principal"]
    (rule,) = [rule for rule in plugin_config["rules"] if rule.get("providers") == [sp_name]]
    # for_loopback gave provider i > 0 the issuer <fake IdP>/provider-i; the IdP's keys sign for it.
    caller = TokenFactory(f"{idp.issuer}/provider-{names.index(sp_name)}").idp(scope=rule["require"]["scopes_any"][0])
    reply = send(port, rule["match"]["methods"][0], rule["match"]["prefix"], caller)
    (authorization,) = reply.forwarded["authorization"]
    assert workspace.verify_access_token(authorization.removeprefix("Bearer "))["sub"] == SP.application_id


def has_labelled_metrics_and_audit_records(envoy, rendered: dict) -> None:
    """The shipped stats tags turn brickgate's counter into labels in /stats/prometheus (Istio's through
    the bootstrap override, Envoy Gateway's through the bootstrap merge), and the shipped access log
    carries the audit record (Envoy flushes it at stop)."""
    _, prometheus = http_get(f"{envoy.admin_url}/stats/prometheus")
    assert re.search(r'^brickgate_requests_total\{decision="deny",reason="insufficient_scope",rule="[^"]+"\} [1-9]', prometheus, re.M), \
        [line for line in prometheus.splitlines() if "brickgate_requests" in line]
    assert re.search(r'^brickgate_requests_total\{decision="allow",reason="none",rule="serving"\} [1-9]', prometheus, re.M)
    envoy.stop()
    records = [json.loads(line) for line in rendered["access_log"].read_text().splitlines()]
    refused = [r for r in records if r["status"] == 403 and r["path"] == "/serving-endpoints/chat/completions"]
    assert refused and all(r["brickgate"]["value"]["reason"] == "insufficient_scope" for r in refused), records[-3:]
