"""deploy/envoy-gateway/native/: brickgate's native form as Envoy Gateway v1.8.3 renders its
`dynamicModules` registry (EnvoyProxy) and `dynamicModule` filter (EnvoyExtensionPolicy), run in a real
Envoy: the module fetched over HTTP and checked by its SHA-256, the filter disabled on the listener and
enabled per route, its JSON config as a StringValue, the secret from Envoy's environment, the audit record
in the JSON access log. Ported from envoyproxy/gateway 94850d4323922cba7c67b5b5ad23de9c715f8048
(v1.8.3) internal/xds/translator/dynamicmodule.go. The manifests' schemas are test_deploy_schemas.py's."""

import functools
import hashlib
import http.server
import json
import threading

import pytest
import yaml

from databricks_support import wait_until_decided
from devstack.httpbase import running
from devstack.workspace import SERVICE_PRINCIPALS, dev_policy, make_workspace
from envoy_harness import NATIVE, NATIVE_DIR, EnvoyProcess
from gateway_client import send
from mesh_render import (ROUTER, STRING_VALUE, documents, eg_access_log, eg_routes, listener_with, loopback_cluster, only,
                         proto_merge, EG_STATS_CONFIG, bootstrap)
from plugin_configs import VM_ENV
from test_deploy import for_loopback

pytestmark = pytest.mark.skipif(not NATIVE, reason="the native manifests load libbrickgate.so: run with BRICKGATE_FORM=native")

FILES = ("envoy-gateway/native/extension-policy.yaml", "envoy-gateway/native/envoy-proxy.yaml", "envoy-gateway/example/gateway.yaml")
DYNAMIC_MODULE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
SP = SERVICE_PRINCIPALS[0]
USER = "alice@example.com"
SECRET_VARIABLE = "BRICKGATE_CLIENT_SECRET"


def eg_dynamic_module_filter(policy: dict, proxy: dict, index: int, plugin_config: dict, module_url: str, module_sha256: str) -> dict:
    """dynamicmodule.go `buildHCMDynamicModuleFilter` / `dynamicModuleConfig` / `dynamicModuleSource`:
    filter `envoy.filters.http.dynamic_modules/envoyextensionpolicy/<ns>/<name>/dynamic-module/<i>`,
    disabled; the registered module's source (Remote: a RemoteDataSource, here the loopback server),
    do_not_close and load_globally; filter_name; the config as a JSON StringValue."""
    entry, meta = policy["spec"]["dynamicModule"][index], policy["metadata"]
    (registered,) = [m for m in proxy["spec"]["dynamicModules"] if m["name"] == entry["name"]]
    assert registered["source"]["type"] == "Remote", registered
    module_config = {"module": {"remote": {"http_uri": {"uri": module_url, "cluster": "module_server", "timeout": "10s"},
                                           "sha256": module_sha256}}}
    for field, proto in (("doNotClose", "do_not_close"), ("loadGlobally", "load_globally")):
        if registered.get(field):
            module_config[proto] = True
    typed_config = {"@type": DYNAMIC_MODULE, "dynamic_module_config": module_config, "filter_name": entry.get("filterName", ""),
                    "filter_config": {"@type": STRING_VALUE, "value": json.dumps(plugin_config)}}
    name = f"envoy.filters.http.dynamic_modules/envoyextensionpolicy/{meta['namespace']}/{meta['name']}/dynamic-module/{index}"
    return {"name": name, "disabled": True, "typed_config": typed_config}


@pytest.fixture
def module_server():
    """libbrickgate.so over HTTP on loopback, as the registry's Remote URL serves it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=NATIVE_DIR)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def render(plugin_config: dict, callout_ports: dict[str, int], upstream_port: int, module_port: int, work_dir) -> dict:
    docs = documents(*FILES)
    policy, proxy = only(docs, "EnvoyExtensionPolicy"), only(docs, "EnvoyProxy")
    with open(f"{NATIVE_DIR}/libbrickgate.so", "rb") as module:
        digest = hashlib.sha256(module.read()).hexdigest()
    (dm,) = [eg_dynamic_module_filter(policy, proxy, i, plugin_config, f"http://127.0.0.1:{module_port}/libbrickgate.so", digest)
             for i in range(len(policy["spec"]["dynamicModule"]))]
    enable = {dm["name"]: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}}  # `patchRoute`
    targeted = {ref["name"] for ref in policy["spec"]["targetRefs"]}
    gateway_routes = []
    for route in sorted((d for d in docs if d["kind"] == "HTTPRoute"), key=lambda r: r["metadata"]["name"] != "databricks-serving"):
        gateway_routes += eg_routes(route, enable if route["metadata"]["name"] in targeted else {}, lambda _backend: "upstream")
    listener = listener_with("eg-native", [dm, ROUTER], gateway_routes, eg_access_log(proxy, work_dir / "access.log"))
    merged = proto_merge({"stats_config": EG_STATS_CONFIG, "static_resources": {"clusters": []}},
                         yaml.safe_load(proxy["spec"]["bootstrap"]["value"]))
    names = [c["name"] for c in merged["static_resources"]["clusters"]]
    clusters = [loopback_cluster("upstream", upstream_port), loopback_cluster("module_server", module_port),
                *(loopback_cluster(n, callout_ports[n]) for n in names)]
    return bootstrap(listener, clusters, merged["stats_config"])


def test_native_manifests_run_as_envoy_gateway_renders_them(envoy_bin, tmp_path, idp, tokens, upstream, module_server, monkeypatch):
    docs = documents(*FILES)
    proxy = only(docs, "EnvoyProxy")
    assert "hostKeys" not in json.dumps(only(docs, "EnvoyExtensionPolicy")), "the native module reads Envoy's own environment"
    assert [e["name"] for e in proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"]] == [SECRET_VARIABLE]
    plugin_config = only(docs, "EnvoyExtensionPolicy")["spec"]["dynamicModule"][0]["config"]
    assert "body_rules" not in plugin_config, "no buffer filter: the native form holds bodies itself"
    with running(make_workspace(0, policies=[dev_policy(idp.issuer, "brickgate-e2e")], users={USER: ["all-apis"]})) as workspace:
        loopback_config, ports = for_loopback(plugin_config, idp, workspace)
        config = render(loopback_config, ports, upstream.port, module_server, tmp_path)
        # The module comes only from the registry's URL: no search path.
        envoy = EnvoyProcess(envoy_bin, config, tmp_path, env={**VM_ENV, SECRET_VARIABLE: SP.secret})
        envoy.env.pop("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", None)
        envoy.start()
        try:
            envoy.wait_ready()
            (port,) = envoy.listener_ports().values()
            reply = send(port, "GET", "/api/2.0/clusters/list")
            assert (reply.status, reply.header("x-brickgate-reason")) == (401, "missing_token"), reply.headers
            reply = wait_until_decided(port, lambda p: send(p, "GET", "/api/2.0/clusters/list", tokens.idp(subject=USER, scope="nothing")))
            assert (reply.status, reply.header("x-brickgate-reason")) == (403, "insufficient_scope"), (reply.status, reply.headers)
            reply = send(port, "GET", "/api/2.0/clusters/list", tokens.idp(subject=USER, scope="all-apis"))
            assert reply.status == 200, (reply.status, reply.body[:300])
            (authorization,) = reply.forwarded["authorization"]
            assert workspace.verify_access_token(authorization.removeprefix("Bearer "))["sub"] == USER
        finally:
            envoy.stop()
    assert "Dynamic module ABI version v0.2.0 matched." in envoy.log_text()
    records = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    decisions = [json.loads(r["brickgate"])["decision"] for r in records if r["brickgate"] not in (None, "-")]
    assert decisions[-1] == "allow" and "deny" in decisions, records
