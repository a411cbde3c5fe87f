"""The Envoy configuration Istio and Envoy Gateway produce from deploy/'s manifests, ported rule by rule
from their source at the releases deploy/schemas/VERSIONS.md pins (each rule cites file and function):

- ISTIO: istio/istio 1.29.6 (7019d6d3608e4995e9a36d2977cfec3a341431cd)
- EG: envoyproxy/gateway v1.8.3 (94850d4323922cba7c67b5b5ad23de9c715f8048)

Only the parts that bear on brickgate are rendered: its filter (name, vm_id, root_id, failure policy,
configuration, environment), its place in the HTTP filter chain with the buffer filter and the router,
the routes' per-filter configuration, the listener's buffer limit, the callout clusters (with their
TLS), the stats tags and the access log. Anything in a manifest this module does not know how to render
is an error, not silently skipped: a changed manifest must change the rendering too.

What cannot run against the loopback fakes is substituted, and only that (see `for_loopback`): the
clusters' addresses and TLS (the fakes speak plain HTTP on 127.0.0.1; the rendered TLS is asserted as
configuration), the Wasm module's location (both control planes fetch the OCI image and hand Envoy a
file: Istio's agent rewrites the remote source to a local file, Envoy Gateway serves it from its cache),
the IdP and workspace URLs and client id, and the access log's path."""

import copy
import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
BUFFER_FILTER = "envoy.filters.http.buffer"
ROUTER_FILTER = "envoy.filters.http.router"
ROUTER = {"name": ROUTER_FILTER, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
FILE_ACCESS_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
V8 = "envoy.wasm.runtime.v8"


def documents(*paths: str) -> list[dict]:
    return [doc for path in paths for doc in yaml.safe_load_all((DEPLOY / path).read_text()) if doc]


def only(docs: list[dict], kind: str, name: str | None = None) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


def proto_merge(base, patch):
    """Protobuf MergeFrom on JSON-shaped messages: messages merge field by field, repeated fields
    append, scalars replace. What Envoy does with `--config-yaml`, Envoy Gateway with a `Merge`
    bootstrap, and Istio with an EnvoyFilter MERGE."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = proto_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list):
        return base + copy.deepcopy(patch)
    return copy.deepcopy(patch)


def quantity_bytes(quantity) -> int:
    """A Kubernetes resource quantity as Envoy Gateway reads a buffer limit (`17Mi`, or an integer)."""
    if isinstance(quantity, int):
        return quantity
    number, suffix = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()
    return int(number) * {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[suffix]


def wasm_filter_config(name: str, root_id: str, plugin_config: dict, vm: dict, **policy) -> dict:
    return {"@type": WASM_FILTER, "config": {
        "name": name, "root_id": root_id, "vm_config": vm, **policy,
        "configuration": {"@type": STRING_VALUE, "value": json.dumps(plugin_config)},
    }}


def path_routes(rule: dict) -> list[dict]:
    """Gateway API matches as both control planes render a PathPrefix: Envoy's `path_separated_prefix`
    (`/a` matches `/a` and `/a/...`, not `/ab`), `/` as `prefix: /`; no matches means `/`."""
    matches = []
    for match in rule.get("matches", [{"path": {"type": "PathPrefix", "value": "/"}}]):
        path = match["path"]
        assert set(match) == {"path"} and path["type"] == "PathPrefix", f"not rendered here: {match}"
        matches.append({"prefix": "/"} if path["value"] == "/" else {"path_separated_prefix": path["value"]})
    return matches


def route_action(rule: dict, cluster: str) -> dict:
    action = {"cluster": cluster}
    for route_filter in rule.get("filters", []):
        assert route_filter["type"] == "URLRewrite" and set(route_filter["urlRewrite"]) == {"hostname"}, route_filter
        action["host_rewrite_literal"] = route_filter["urlRewrite"]["hostname"]
    if "timeouts" in rule:
        action["timeout"] = rule["timeouts"]["request"]
    return action


# --- Istio ---------------------------------------------------------------------------------------

ISTIO_FILES = ("istio/wasmplugin.yaml", "istio/external-services.yaml", "istio/buffer.yaml", "istio/telemetry.yaml",
               "istio/bootstrap.yaml", "istio/example/gateway.yaml")
ISTIO_RBAC_FILTER = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def istio_extension_config(plugin: dict, wasm_path: Path, plugin_config: dict) -> dict:
    """The ECDS resource for a WasmPlugin as Envoy receives it: pilot/pkg/model/extensions.go
    `buildPluginConfig` and `buildVMConfig` (name `<namespace>.<name>`, root_id the pluginName,
    runtime v8, no vm_id, FAIL_CLOSE → FAIL_CLOSED, vmConfig.env HOST entries as host_env_keys,
    INLINE ones as key_values), pilot/pkg/networking/core/extension/wasmplugin.go
    `InsertedExtensionConfigurations` (the TypedExtensionConfig's name), then the agent's
    pkg/wasm/convert.go `rewriteVMConfig`: the module fetched to a local file, and the
    ISTIO_META_* variables (pull secret, pull policy, resource version) stripped before Envoy."""
    spec, meta = plugin["spec"], plugin["metadata"]
    # The plugin's name is `<namespace>.<name>` (`buildPluginConfig`, `resourceName`); the ECDS
    # resource and the HTTP filter carry the WasmPlugin's ResourceName,
    # `extensions.istio.io/wasmplugin/<namespace>.<name>` (extensions.go `WasmPluginResourceNamePrefix`,
    # line 271 at 1.29.6; wasmplugin.go `InsertedExtensionConfigurations` and `toEnvoyHTTPFilter`).
    name = f"{meta['namespace']}.{meta['name']}"
    resource_name = f"extensions.istio.io/wasmplugin/{name}"
    env = spec.get("vmConfig", {}).get("env", [])
    variables = {e["name"]: e["value"] for e in env if e.get("valueFrom", "INLINE") == "INLINE"}
    vm = {"runtime": V8, "code": {"local": {"filename": str(wasm_path)}},
          "environment_variables": {**({"key_values": variables} if variables else {}),
                                    "host_env_keys": [e["name"] for e in env if e.get("valueFrom") == "HOST"]}}
    policy = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED", "FAIL_RELOAD": "FAIL_RELOAD"}[spec["failStrategy"]]
    return {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", "name": resource_name,
            "typed_config": wasm_filter_config(name, spec["pluginName"], plugin_config, vm, failure_policy=policy)}


def istio_ecds_filter(name: str, ecds_path: Path) -> dict:
    """extension/wasmplugin.go `toEnvoyHTTPFilter` and `defaultConfigSource`: the filter by name, its
    config by discovery, no default, proxy init blocked until it is loaded (initial_fetch_timeout 0:
    "they might be critical for security"). Istio's source is ADS; a watched file delivers the same
    resource here."""
    source = {"path_config_source": {"path": str(ecds_path)}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}
    return {"name": name, "config_discovery": {"config_source": source, "type_urls": [WASM_FILTER, ISTIO_RBAC_FILTER]}}


def istio_cluster_name(port: dict, host: str) -> str:
    return f"outbound|{port['number']}||{host}"  # pilot/pkg/model/service.go BuildSubsetKey(TrafficDirectionOutbound, "", host, port)


def istio_callout_clusters(docs: list[dict]) -> dict[str, dict]:
    """A ServiceEntry's cluster per port (STRICT_DNS for `resolution: DNS`, endpoints on targetPort)
    with the TLS its DestinationRule's port-level SIMPLE mode originates (pilot/pkg/networking/core/
    cluster_tls.go `buildUpstreamTLSSettings`: sni, the CA, the subject alt names; Istio serves the CA
    file to Envoy through its agent's SDS, which reads the same file)."""
    clusters = {}
    for entry in (d for d in docs if d["kind"] == "ServiceEntry"):
        (host,) = entry["spec"]["hosts"]
        rule = only(docs, "DestinationRule", entry["metadata"]["name"])["spec"]
        for port in entry["spec"]["ports"]:
            (settings,) = [s for s in rule["trafficPolicy"]["portLevelSettings"] if s["port"]["number"] == port["number"]]
            tls = settings["tls"]
            assert tls["mode"] == "SIMPLE", tls
            name = istio_cluster_name(port, host)
            clusters[name] = {
                "name": name, "type": {"DNS": "STRICT_DNS"}[entry["spec"]["resolution"]],
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": host, "port_value": port.get("targetPort", port["number"])}}}}]}]},
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": UPSTREAM_TLS, "sni": tls["sni"], "common_tls_context": {"validation_context": {
                        "trusted_ca": {"filename": tls["caCertificates"]},
                        "match_subject_alt_names": [{"exact": san} for san in tls["subjectAltNames"]]}}}},
            }
    return clusters


def istio_routes(route: dict, cluster_of) -> list[dict]:
    """pilot/pkg/config/kube/gateway/conversion.go `convertHTTPRoute`: the route is named after the rule
    (`name`, else `<namespace>.<route>.<index>`), and route/route.go keeps that name per match."""
    routes = []
    for index, rule in enumerate(route["spec"]["rules"]):
        name = rule.get("name", f"{route['metadata']['namespace']}.{route['metadata']['name']}.{index}")
        (backend,) = rule["backendRefs"]
        assert (backend["group"], backend["kind"]) == ("networking.istio.io", "Hostname"), backend
        cluster = cluster_of(istio_cluster_name({"number": backend["port"]}, backend["name"]))
        routes += [{"name": name, "match": match, "route": route_action(rule, cluster)} for match in path_routes(rule)]
    return routes


def apply_envoy_filter(envoy_filter: dict, listener: dict) -> dict:
    """The patches deploy/istio/buffer.yaml uses, as pilot/pkg/networking/core/envoyfilter/listener_patch.go
    applies them to a gateway listener (anything else is refused here)."""
    listener = copy.deepcopy(listener)
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for patch in envoy_filter["spec"]["configPatches"]:
        applies, match, operation, value = patch["applyTo"], patch["match"], patch["patch"]["operation"], patch["patch"]["value"]
        assert match["context"] == "GATEWAY", match
        if (applies, operation) == ("HTTP_FILTER", "INSERT_BEFORE"):
            target = match["listener"]["filterChain"]["filter"]["subFilter"]["name"]
            index = [f["name"] for f in hcm["http_filters"]].index(target)
            hcm["http_filters"].insert(index, copy.deepcopy(value))
        elif (applies, operation) == ("HTTP_ROUTE", "MERGE"):
            name = match["routeConfiguration"]["vhost"]["route"]["name"]
            routes = [r for host in hcm["route_config"]["virtual_hosts"] for r in host["routes"]]
            assert any(r["name"] == name for r in routes), f"no route {name}"
            for host in hcm["route_config"]["virtual_hosts"]:
                host["routes"] = [proto_merge(r, value) if r["name"] == name else r for r in host["routes"]]
        elif (applies, operation) == ("LISTENER", "MERGE"):
            listener = proto_merge(listener, value)
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        else:
            raise AssertionError(f"EnvoyFilter patch not rendered here: {applies} {operation}")
    return listener


def istio_access_log(docs: list[dict], path: Path) -> list[dict]:
    """Telemetry → the MeshConfig extension provider it names (written in deploy/istio/telemetry.yaml's
    comment, as an operator copies it into the mesh config) → pilot/pkg/model/telemetry_logging.go
    `fileAccessLogFromTelemetry` / `buildFileAccessJSONLogFormat`: `labels` become `json_format`."""
    (logging,) = only(docs, "Telemetry")["spec"]["accessLogging"]
    (provider_ref,) = logging["providers"]
    comment = "\n".join(line[4:] for line in (DEPLOY / "istio/telemetry.yaml").read_text().splitlines() if line.startswith("#   "))
    (provider,) = [p for p in yaml.safe_load(comment)["extensionProviders"] if p["name"] == provider_ref["name"]]
    labels = provider["envoyFileAccessLog"]["logFormat"]["labels"]
    return [{"name": "envoy.access_loggers.file", "typed_config": {"@type": FILE_ACCESS_LOG, "path": str(path), "log_format": {
        "json_format": labels, "json_format_options": {"sort_properties": False}}}}]


# Istio's gateway bootstrap stats_config with no extra tags or inclusions: tools/packaging/common/
# envoy_bootstrap.json (`stats_config`) and pkg/bootstrap/config.go (the required inclusions).
ISTIO_STATS_CONFIG = {
    "use_all_default_tags": False,
    "stats_tags": [
        {"tag_name": "cluster_name", "regex": "^cluster(\\.(.+);)"},
        {"tag_name": "http_conn_manager_prefix", "regex": "^http\\.(((?:[_.[:digit:]\\w]*|[_\\[\\]aAbBcCdDeEfF[:digit:]\\w\\:]*));\\.)"},
        {"tag_name": "thread_name", "regex": "^server(\\.(.+))\\.watchdog"},
        {"tag_name": "tcp_prefix", "regex": "^tcp\\.((.*?)\\.)\\w+?$"},
        {"tag_name": "response_code", "regex": "_rq(_(\\d{3}))$"},
        {"tag_name": "response_code_class", "regex": "_rq(_(\\dxx))$"},
        {"tag_name": "http_conn_manager_listener_prefix", "regex": "^listener(?=\\.).*?\\.http\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"},
        {"tag_name": "listener_address", "regex": "^listener\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)"},
        {"tag_name": "mongo_prefix", "regex": "^mongo\\.(.+?)\\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$"},
        {"tag_name": "cache", "regex": "(cache\\.(.+?)\\.)"},
        {"tag_name": "component", "regex": "(component\\.(.+?)\\.)"},
        {"tag_name": "tag", "regex": "(tag\\.(.+?);\\.)"},
        {"tag_name": "wasm_filter", "regex": "(wasm_filter\\.(.+?)\\.)"},
        {"tag_name": "authz_enforce_result", "regex": "rbac(\\.(allowed|denied))"},
        {"tag_name": "authz_dry_run_action", "regex": "(\\.istio_dry_run_(allow|deny)_)"},
        {"tag_name": "authz_dry_run_result", "regex": "(\\.shadow_(allowed|denied))"},
    ],
    "stats_matcher": {"inclusion_list": {"patterns": [
        *({"prefix": p} for p in ("reporter=", "cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm")),
        *({"suffix": s} for s in ("rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied", "downstream_cx_active")),
        {"safe_regex": {"regex": "vhost\\..*\\.route\\..*"}},
        {"prefix": "component"}, {"prefix": "istio"},
    ]}},
}


def istio_bootstrap_override(docs: list[dict]) -> str:
    """The JSON the pilot-agent passes as `--config-yaml` (pkg/envoy/proxy.go `readBootstrapToJSON`):
    the bootstrap ConfigMap the gateway options mount at ISTIO_BOOTSTRAP_OVERRIDE."""
    options = yaml.safe_load(only(docs, "ConfigMap", "databricks-gateway-options")["data"]["deployment"])
    pod = options["spec"]["template"]["spec"]
    (proxy,) = pod["containers"]
    (override,) = [e["value"] for e in proxy["env"] if e["name"] == "ISTIO_BOOTSTRAP_OVERRIDE"]
    (mount,) = [m for m in proxy["volumeMounts"] if override.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    data = only(docs, "ConfigMap", volume["configMap"]["name"])["data"]
    return data[override.removeprefix(mount["mountPath"] + "/")]


# --- Envoy Gateway -------------------------------------------------------------------------------

EG_FILES = ("envoy-gateway/extension-policy.yaml", "envoy-gateway/envoy-proxy.yaml", "envoy-gateway/traffic-policies.yaml",
            "envoy-gateway/example/gateway.yaml")
# internal/xds/translator/httpfilters.go `newOrderedHTTPFilter`: the default order of the filters used here.
EG_FILTER_ORDER = {"envoy.filters.http.buffer": 11, "envoy.filters.http.wasm": 200, ROUTER_FILTER: 310}


def eg_filter_type(name: str) -> str:
    return next(kind for kind in EG_FILTER_ORDER if name.startswith(kind))  # httpfilters.go `isFilterType`: a prefix


def eg_sort_filters(filters: list[dict], filter_order: list[dict]) -> list[dict]:
    """httpfilters.go `sortHTTPFilters`: by default order (wasm: 200 + its index), ties by name, then
    each `filterOrder` entry moves its filters before the first / after the last of another type."""
    def order(f):
        kind = eg_filter_type(f["name"])
        return EG_FILTER_ORDER[kind] + (int(f["name"].rsplit("/", 1)[1]) if kind == "envoy.filters.http.wasm" else 0), f["name"]
    filters = sorted(filters, key=order)
    for position in filter_order:
        moving = [f for f in filters if eg_filter_type(f["name"]) == position["name"]]
        rest = [f for f in filters if f not in moving]
        if not moving:
            continue
        if "before" in position:
            anchor = next((i for i, f in enumerate(rest) if eg_filter_type(f["name"]) == position["before"]), None)
        else:
            anchor = max((i + 1 for i, f in enumerate(rest) if eg_filter_type(f["name"]) == position["after"]), default=None)
        if anchor is not None:
            filters = rest[:anchor] + moving + rest[anchor:]
    return filters


def eg_wasm_filter(policy: dict, index: int, wasm_path: Path, plugin_config: dict) -> dict:
    """internal/gatewayapi/envoyextensionpolicy.go `buildWasm` and `irConfigNameForWasm`, and
    internal/xds/translator/wasm.go `buildHCMWasmFilter` / `wasmConfig`: filter
    `envoy.filters.http.wasm/envoyextensionpolicy/<ns>/<name>/wasm/<i>`, disabled on the listener;
    vm_id the IR name ("Do not share VMs across different filters"); plugin name the wasm entry's
    `name`; fail_open as given (default false); host_env_keys from env.hostKeys."""
    wasm, meta = policy["spec"]["wasm"][index], policy["metadata"]
    ir_name = f"envoyextensionpolicy/{meta['namespace']}/{meta['name']}/wasm/{index}"
    vm = {"vm_id": ir_name, "runtime": V8, "code": {"local": {"filename": str(wasm_path)}}}
    if wasm.get("env", {}).get("hostKeys"):
        vm["environment_variables"] = {"host_env_keys": wasm["env"]["hostKeys"]}
    config = wasm_filter_config(wasm.get("name", ir_name), wasm["rootID"], plugin_config, vm, fail_open=wasm.get("failOpen", False))
    return {"name": f"envoy.filters.http.wasm/{ir_name}", "disabled": True, "typed_config": config}


def eg_request_buffer(policy: dict) -> tuple[dict, dict]:
    """internal/xds/translator/request_buffer.go: the listener's buffer filter (disabled) and the
    BufferPerRoute that enables it on the policy's routes."""
    limit = quantity_bytes(policy["spec"]["requestBuffer"]["limit"])
    listener_filter = {"name": BUFFER_FILTER, "disabled": True, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": limit}}
    per_route = {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
                 "buffer": {"max_request_bytes": limit}}
    return listener_filter, per_route


def eg_routes(route: dict, per_filter: dict, cluster_of) -> list[dict]:
    """One Envoy route per match, named after the IR route `httproute/<ns>/<name>/rule/<i>/match/<j>`
    (internal/gatewayapi/helpers.go `irRouteName`), to cluster `httproute/<ns>/<name>/rule/<i>`
    (`irRouteDestinationName`), with the per-route filter configs."""
    meta = route["metadata"]
    routes = []
    for i, rule in enumerate(route["spec"]["rules"]):
        cluster = cluster_of(f"httproute/{meta['namespace']}/{meta['name']}/rule/{i}")
        for j, match in enumerate(path_routes(rule)):
            routes.append({"name": f"httproute/{meta['namespace']}/{meta['name']}/rule/{i}/match/{j}", "match": match,
                           "route": route_action(rule, cluster), "typed_per_filter_config": copy.deepcopy(per_filter)})
    return routes


# internal/xds/bootstrap/bootstrap.yaml.tpl: Envoy Gateway's own stats_config, into which a Merge goes.
EG_STATS_CONFIG = {
    "use_all_default_tags": True,
    "stats_tags": [
        {"regex": "\\.zone(\\.(([^\\.]+)\\.))", "tag_name": "from_zone"},
        {"regex": "\\.zone\\.[^\\.]+\\.(([^\\.]+)\\.)", "tag_name": "to_zone"},
        {"regex": "^cluster(\\..+\\.(.+))\\.total_match_count$", "tag_name": "socket_match_name"},
        {"regex": "circuit_breakers\\.((.+?)\\.).+", "tag_name": "priority"},
    ],
}


def eg_access_log(proxy: dict, path: Path) -> list[dict]:
    """internal/xds/translator/accesslog.go: a JSON format with a File sink is a file access log with
    that `json_format`."""
    (setting,) = proxy["spec"]["telemetry"]["accessLog"]["settings"]
    (sink,) = setting["sinks"]
    assert setting["format"]["type"] == "JSON" and sink["type"] == "File", setting
    return [{"name": "envoy.access_loggers.file", "typed_config": {"@type": FILE_ACCESS_LOG, "path": str(path),
                                                                   "log_format": {"json_format": setting["format"]["json"]}}}]


# --- Whole configurations, pointed at the loopback fakes --------------------------------------------


def loopback_cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s", "load_assignment": {"cluster_name": name, "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def listener_with(name: str, http_filters: list[dict], routes: list[dict], access_log: list[dict], **fields) -> dict:
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": name, "codec_type": "AUTO", "access_log": access_log, "http_filters": http_filters,
           "route_config": {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]}}
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}, **fields,
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}


def bootstrap(listener: dict, clusters: list[dict], stats_config: dict) -> dict:
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}, "stats_config": stats_config,
            "static_resources": {"listeners": [listener], "clusters": clusters}}


def http_filters(listener: dict) -> list[dict]:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def routes(listener: dict) -> list[dict]:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]


def render_istio(plugin_config: dict, wasm_path: Path, work_dir: Path, callout_ports: dict[str, int], upstream_port: int) -> dict:
    """The Istio gateway's Envoy for deploy/istio: returns the bootstrap, the `--config-yaml` override,
    the ECDS file (written), and the callout clusters as rendered (with TLS) for inspection.
    `plugin_config` is the manifest's with the loopback URLs; the HTTPRoute's workspace is the
    recording upstream (`upstream_port`), the callout clusters' hosts the fakes in `callout_ports`."""
    docs = documents(*ISTIO_FILES)
    plugin = only(docs, "WasmPlugin")
    ecds_path = work_dir / "istio-ecds.json"
    extension = istio_extension_config(plugin, wasm_path, plugin_config)
    ecds_path.write_text(json.dumps({"version_info": "1", "resources": [extension]}))
    rendered_clusters = istio_callout_clusters(docs)
    gateway_routes = istio_routes(only(docs, "HTTPRoute"), lambda _workspace: "upstream")
    listener = listener_with("istio-gateway", [istio_ecds_filter(extension["name"], ecds_path), ROUTER], gateway_routes,
                             istio_access_log(docs, work_dir / "access.log"))
    listener = apply_envoy_filter(only(docs, "EnvoyFilter"), listener)
    clusters = [loopback_cluster("upstream", upstream_port), *(loopback_cluster(n, callout_ports[n]) for n in rendered_clusters)]
    config = bootstrap(listener, clusters, ISTIO_STATS_CONFIG)
    # The node a gateway pod's agent announces (envoy_bootstrap.json `node`; pkg/model/proxy.go ServiceNode):
    # ECDS needs one.
    config["node"] = {"id": "router~127.0.0.1~databricks-gateway-istio-0.databricks-gateway~databricks-gateway.svc.cluster.local",
                      "cluster": "databricks-gateway-istio.databricks-gateway"}
    return {"bootstrap": config, "config_yaml": istio_bootstrap_override(docs),
            "callout_clusters": rendered_clusters, "listener": listener, "filter_name": extension["name"],
            "access_log": work_dir / "access.log"}


def render_envoy_gateway(plugin_config: dict, wasm_path: Path, work_dir: Path, callout_ports: dict[str, int], upstream_port: int) -> dict:
    """The Envoy Gateway proxy's Envoy for deploy/envoy-gateway, like `render_istio`."""
    docs = documents(*EG_FILES)
    policy, proxy = only(docs, "EnvoyExtensionPolicy"), only(docs, "EnvoyProxy")
    (wasm,) = [eg_wasm_filter(policy, index, wasm_path, plugin_config) for index in range(len(policy["spec"]["wasm"]))]
    buffer_policy = only(docs, "BackendTrafficPolicy")
    buffer_filter, buffer_per_route = eg_request_buffer(buffer_policy)
    buffered = {ref["name"] for ref in buffer_policy["spec"]["targetRefs"]}
    enable_wasm = {wasm["name"]: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}}  # wasm.go `patchRoute`
    wasm_routes = {ref["name"] for ref in policy["spec"]["targetRefs"]}
    gateway_routes = []
    for route in sorted((d for d in docs if d["kind"] == "HTTPRoute"), key=lambda r: r["metadata"]["name"] != "databricks-serving"):
        per_filter = {**(enable_wasm if route["metadata"]["name"] in wasm_routes else {}),
                      **({BUFFER_FILTER: buffer_per_route} if route["metadata"]["name"] in buffered else {})}
        gateway_routes += eg_routes(route, per_filter, lambda _backend: "upstream")
    filters = eg_sort_filters([wasm, buffer_filter, ROUTER], proxy["spec"].get("filterOrder", []))
    (client_policy,) = [d for d in docs if d["kind"] == "ClientTrafficPolicy"]
    listener = listener_with("eg-gateway", filters, gateway_routes, eg_access_log(proxy, work_dir / "access.log"),
                             per_connection_buffer_limit_bytes=quantity_bytes(client_policy["spec"]["connection"]["bufferLimit"]))
    assert proxy["spec"]["bootstrap"]["type"] == "Merge"
    merged = proto_merge({"stats_config": EG_STATS_CONFIG, "static_resources": {"clusters": []}},
                         yaml.safe_load(proxy["spec"]["bootstrap"]["value"]))
    rendered_clusters = {c["name"]: c for c in merged["static_resources"]["clusters"]}
    clusters = [loopback_cluster("upstream", upstream_port), *(loopback_cluster(n, callout_ports[n]) for n in rendered_clusters)]
    return {"bootstrap": bootstrap(listener, clusters, merged["stats_config"]), "config_yaml": None,
            "callout_clusters": rendered_clusters, "listener": listener, "filter_name": wasm["name"],
            "access_log": work_dir / "access.log"}
