"""The CEL rules (`x-kubernetes-validations`) of the pinned CRDs that our manifests reach, ported by
hand: a JSON Schema validator cannot evaluate CEL, and no CEL library is installed here.

Each port names its CRD rule by its message, verbatim, and test_deploy_schemas.py checks that the
message is still on that node of the generated schema, so a regenerated schema that drops or
rewords a rule makes its port fail instead of going stale. A port reads the document after the
API server's defaulting (absent fields take the CRD's `default`).

Sources (deploy/schemas/VERSIONS.md has the commits): istio/api 1.29.6
`kubernetes/customresourcedefinitions.gen.yaml`; envoyproxy/gateway v1.8.3
`charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_*.yaml`; kubernetes-sigs/gateway-api
v1.5.1 `config/crd/standard/gateway.networking.k8s.io_*.yaml`."""

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class CelRule:
    kind: str
    path: str  # dotted; `[]` steps into every list item, `{}` into every map value
    message: str  # the CRD rule's message, verbatim
    holds: Callable


def present(node: dict, *fields: str) -> int:
    return sum(field in node for field in fields)


ROUTE_KINDS = ("Gateway", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute")
GATEWAY_API = "gateway.networking.k8s.io"
EXACT_OR_PREFIX = "when type one of ['Exact', 'PathPrefix']"
PATH_CHARACTERS = r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"
DEFAULT_MATCHES = [{"path": {"type": "PathPrefix", "value": "/"}}]


def exact_or_prefix(check: Callable[[str], bool]) -> Callable[[dict], bool]:
    """An HTTPRoute path rule that applies to Exact and PathPrefix values only (type defaults to PathPrefix)."""
    return lambda path: path.get("type", "PathPrefix") not in ("Exact", "PathPrefix") or check(path.get("value", "/"))


def parent_key(ref: dict) -> tuple:
    return ref.get("group", GATEWAY_API), ref.get("kind", "Gateway"), ref["name"], ref.get("namespace", "")


def one_prefix_match_if(rewrites: Callable[[dict], int]) -> Callable[[dict], bool]:
    """HTTPRoute: exactly one filter with a ReplacePrefixMatch path (CEL exists_one) requires
    exactly one match, of type PathPrefix."""
    def holds(rule: dict) -> bool:
        matches = rule.get("matches", DEFAULT_MATCHES)
        return rewrites(rule) != 1 or (len(matches) == 1 and matches[0].get("path", {}).get("type", "PathPrefix") == "PathPrefix"
                                       and "path" in matches[0])
    return holds


def replace_prefix(filters: list, action: str) -> int:
    return sum(1 for f in filters if f.get(action, {}).get("path", {}).get("type") == "ReplacePrefixMatch"
               and "replacePrefixMatch" in f[action]["path"])


def backend_replace_prefix(rule: dict, action: str) -> int:
    return sum(1 for ref in rule.get("backendRefs", []) if replace_prefix(ref.get("filters", []), action) == 1)


FILTER_FIELDS = (("CORS", "cors"), ("ExtensionRef", "extensionRef"), ("RequestHeaderModifier", "requestHeaderModifier"),
                 ("RequestMirror", "requestMirror"), ("RequestRedirect", "requestRedirect"),
                 ("ResponseHeaderModifier", "responseHeaderModifier"), ("URLRewrite", "urlRewrite"))


def seconds(duration: str) -> float:
    """A Gateway API duration (`1h30m`, `300s`, `500ms`) in seconds, as CEL's duration() reads it."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(value) * units[unit] for value, unit in re.findall(r"(\d+)(ms|h|m|s)", duration))


def tls_version(version: str | None, absent: int) -> int:
    """Backend tls min/maxVersion as the CEL rule orders them ("Auto" is lowest as a minimum, highest as a maximum)."""
    return absent if version is None else {"Auto": 0 if absent == 3 else 5, "1.0": 1, "1.1": 2, "1.2": 3, "1.3": 4}[version]


def policy_target_rules(kind: str, kinds_text: str, kinds: tuple) -> list:
    """The targetRef/targetRefs rules Envoy Gateway's policies share (group and kind of what they target)."""
    return [
        CelRule(kind, "spec", "either targetRef or targetRefs must be used",
                lambda spec: present(spec, "targetRef", "targetRefs") == 1 or bool(spec.get("targetSelectors"))),
        CelRule(kind, "spec", "this policy can only have a targetRef.group of gateway.networking.k8s.io",
                lambda spec: spec.get("targetRef", {}).get("group", GATEWAY_API) == GATEWAY_API),
        CelRule(kind, "spec", f"this policy can only have a targetRef.kind of {kinds_text}",
                lambda spec: spec.get("targetRef", {}).get("kind", kinds[0]) in kinds),
        CelRule(kind, "spec", "this policy can only have a targetRefs[*].group of gateway.networking.k8s.io",
                lambda spec: all(ref["group"] == GATEWAY_API for ref in spec.get("targetRefs", []))),
        CelRule(kind, "spec", f"this policy can only have a targetRefs[*].kind of {kinds_text}",
                lambda spec: all(ref["kind"] in kinds for ref in spec.get("targetRefs", []))),
    ]


CEL_RULES = [
    # istio/api
    CelRule("WasmPlugin", "spec", "only one of targetRefs or selector can be set",
            lambda spec: present(spec, "selector", "targetRef", "targetRefs") <= 1),
    CelRule("WasmPlugin", "spec.selector.matchLabels", "wildcard not allowed in label key match",
            lambda labels: all("*" not in key for key in labels)),
    CelRule("WasmPlugin", "spec.selector.matchLabels", "key must not be empty", lambda labels: all(key for key in labels)),
    CelRule("WasmPlugin", "spec.selector.matchLabels{}", "wildcard not allowed in label value match", lambda value: "*" not in value),
    CelRule("WasmPlugin", "spec.vmConfig.env[]", "value may only be set when valueFrom is INLINE",
            lambda env: env.get("valueFrom", "") != "HOST" or "value" not in env),
    CelRule("WasmPlugin", "spec.url", "url must have schema one of [http, https, file, oci]",
            lambda url: "://" not in url or url.split("://", 1)[0] in ("http", "https", "oci", "file")),
    CelRule("EnvoyFilter", "spec", "only one of targetRefs or workloadSelector can be set",
            lambda spec: present(spec, "workloadSelector", "targetRefs") <= 1),
    CelRule("EnvoyFilter", "spec.workloadSelector.labels{}", "wildcard is not supported in selector", lambda value: "*" not in value),
    CelRule("EnvoyFilter", "spec.configPatches[].match", "only support waypointMatch when context is WAYPOINT",
            lambda match: ("waypoint" in match) == (match.get("context") == "WAYPOINT")),
    CelRule("ServiceEntry", "spec", "only one of WorkloadSelector or Endpoints can be set",
            lambda spec: present(spec, "workloadSelector", "endpoints") <= 1),
    CelRule("ServiceEntry", "spec", "CIDR addresses are allowed only for NONE/STATIC resolution types",
            lambda spec: not any("/" in a for a in spec.get("addresses", [])) or spec.get("resolution", "NONE") in ("STATIC", "NONE")),
    CelRule("ServiceEntry", "spec", "NONE mode cannot set endpoints",
            lambda spec: spec.get("resolution", "NONE") != "NONE" or "endpoints" not in spec),
    CelRule("ServiceEntry", "spec", "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
            lambda spec: spec.get("resolution") != "DNS_ROUND_ROBIN" or len(spec.get("endpoints", [])) <= 1),
    CelRule("ServiceEntry", "spec.hosts[]", "hostname cannot be wildcard", lambda host: host != "*"),
    CelRule("ServiceEntry", "spec.ports", "port number cannot be duplicated",
            lambda ports: max(Counter(port["number"] for port in ports).values(), default=1) == 1),
    CelRule("ServiceEntry", "spec.ports[].number", "port must be between 1-65535", lambda number: 0 < number <= 65535),
    CelRule("ServiceEntry", "spec.ports[].targetPort", "port must be between 1-65535", lambda number: 0 < number <= 65535),
    CelRule("Telemetry", "spec", "only one of targetRefs or selector can be set",
            lambda spec: present(spec, "selector", "targetRef", "targetRefs") <= 1),
    CelRule("Telemetry", "spec.selector.matchLabels", "key must not be empty", lambda labels: all(key for key in labels)),
    CelRule("Telemetry", "spec.selector.matchLabels", "wildcard not allowed in label key match",
            lambda labels: all("*" not in key for key in labels)),
    CelRule("Telemetry", "spec.selector.matchLabels{}", "wildcard not allowed in label value match", lambda value: "*" not in value),
    # envoyproxy/gateway
    CelRule("EnvoyExtensionPolicy", "spec", "either targetRef or targetRefs must be used",
            lambda spec: present(spec, "targetRef", "targetRefs") == 1 or bool(spec.get("targetSelectors"))),
    CelRule("EnvoyExtensionPolicy", "spec", "this policy can only have a targetRef.group of gateway.networking.k8s.io",
            lambda spec: spec.get("targetRef", {}).get("group", GATEWAY_API) == GATEWAY_API),
    CelRule("EnvoyExtensionPolicy", "spec", "this policy can only have a targetRef.kind of Gateway/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute",
            lambda spec: spec.get("targetRef", {}).get("kind", "Gateway") in ROUTE_KINDS),
    CelRule("EnvoyExtensionPolicy", "spec", "this policy can only have a targetRefs[*].group of gateway.networking.k8s.io",
            lambda spec: all(ref["group"] == GATEWAY_API for ref in spec.get("targetRefs", []))),
    CelRule("EnvoyExtensionPolicy", "spec", "this policy can only have a targetRefs[*].kind of Gateway/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute",
            lambda spec: all(ref["kind"] in ROUTE_KINDS for ref in spec.get("targetRefs", []))),
    CelRule("EnvoyExtensionPolicy", "spec.wasm[].code", "If type is Image, image field needs to be set.",
            lambda code: (code["type"] == "Image") == ("image" in code)),
    CelRule("EnvoyExtensionPolicy", "spec.wasm[].code", "If type is HTTP, http field needs to be set.",
            lambda code: (code["type"] == "HTTP") == ("http" in code)),
    CelRule("Backend", "spec", "DynamicResolver type cannot have endpoints specified",
            lambda spec: spec.get("type") != "DynamicResolver" or "endpoints" not in spec),
    CelRule("Backend", "spec.endpoints", "fqdn addresses cannot be mixed with other address types",
            lambda endpoints: len({"fqdn" in endpoint for endpoint in endpoints}) <= 1),
    CelRule("Backend", "spec.endpoints[]", "one of fqdn, ip or unix must be specified",
            lambda endpoint: present(endpoint, "fqdn", "ip", "unix") >= 1),
    CelRule("Backend", "spec.endpoints[]", "only one of fqdn, ip or unix can be specified",
            lambda endpoint: present(endpoint, "fqdn", "ip", "unix") <= 1),
    CelRule("Backend", "spec.tls", "must not contain both CACertificateRefs and WellKnownCACertificates",
            lambda tls: not (tls.get("caCertificateRefs") and "wellKnownCACertificates" in tls)),
    CelRule("EnvoyExtensionPolicy", "spec.wasm[].code.image.pullSecretRef", "only support Secret kind.",
            lambda ref: ref.get("kind", "Secret") == "Secret"),
    CelRule("Backend", "spec.tls", "minVersion must be smaller or equal to maxVersion",
            lambda tls: tls_version(tls.get("minVersion"), 3) <= tls_version(tls.get("maxVersion"), 5)),
    CelRule("Backend", "spec.tls", "must not contain either CACertificateRefs or WellKnownCACertificates when InsecureSkipVerify is enabled",
            lambda tls: not (tls.get("insecureSkipVerify") and (tls.get("caCertificateRefs") or tls.get("wellKnownCACertificates")))),
    CelRule("Backend", "spec.tls", "setting ciphers has no effect if the minimum possible TLS version is 1.3",
            lambda tls: tls.get("minVersion") != "1.3" or "ciphers" not in tls),
    CelRule("EnvoyProxy", "spec.bootstrap", "provided bootstrap patch doesn't match the configured patch type",
            lambda b: bool(b.get("jsonPatches")) if b.get("type") == "JSONPatch" else "value" in b),
    CelRule("EnvoyProxy", "spec.filterOrder[]", "one of before or after must be specified", lambda f: present(f, "before", "after") >= 1),
    CelRule("EnvoyProxy", "spec.filterOrder[]", "only one of before or after can be specified", lambda f: present(f, "before", "after") == 1),
    CelRule("EnvoyProxy", "spec.provider.kubernetes", "cannot use envoyHpa if envoyDaemonSet is used",
            lambda k: present(k, "envoyHpa", "envoyDaemonSet") <= 1),
    CelRule("EnvoyProxy", "spec.provider.kubernetes", "only one of envoyDeployment or envoyDaemonSet can be specified",
            lambda k: present(k, "envoyDeployment", "envoyDaemonSet") <= 1),
    CelRule("EnvoyProxy", "spec.provider.kubernetes.envoyDeployment.container", "Either image or imageRepository can be set.",
            lambda c: present(c, "image", "imageRepository") <= 1),
    CelRule("EnvoyProxy", "spec.provider.kubernetes.envoyDeployment.container.image",
            "Image must include a tag and allowed characters only (e.g., 'repo:tag').",
            lambda image: re.fullmatch(r"[a-zA-Z0-9._-]+(:[0-9]+)?(/[a-zA-Z0-9._/-]+)?(:[a-zA-Z0-9._-]+)?(@sha256:[a-z0-9]+)?", image) is not None),
    # A dynamic module's source; `type` defaults to Local.
    *(CelRule("EnvoyProxy", "spec.dynamicModules[].source", message, holds) for message, holds in (
        ("If type is Remote, remote field needs to be set.",
         lambda s: ("remote" in s) if s.get("type", "Local") == "Remote" else "remote" not in s),
        ("If type is Local, local field needs to be set.", lambda s: s.get("type", "Local") != "Local" or "local" in s),
        ("If type is Remote, local field must not be set.", lambda s: s.get("type", "Local") != "Remote" or "local" not in s),
    )),
    *(CelRule("EnvoyProxy", "spec.telemetry.accessLog.settings[].format", message, holds) for message, holds in (
        ("If AccessLogFormat type is JSON, json field needs to be set.", lambda f: f.get("type") != "JSON" or "json" in f),
        ("If AccessLogFormat type is JSON, text field must not be set.", lambda f: f.get("type") != "JSON" or "text" not in f),
        ("If AccessLogFormat type is Text, json field must not be set.", lambda f: f.get("type") != "Text" or "json" not in f),
        ("If AccessLogFormat type is Text, text field needs to be set.", lambda f: f.get("type") != "Text" or "text" in f),
        ("If AccessLogFormat type is unset, at least one of text or json must be set.", lambda f: "type" in f or present(f, "text", "json") >= 1))),
    *(CelRule("EnvoyProxy", "spec.telemetry.accessLog.settings[].sinks[]", f"If AccessLogSink type is {kind}, {field} field needs to be set.",
              lambda sink, kind=kind, field=field: (sink["type"] == kind) == (field in sink))
      for kind, field in (("ALS", "als"), ("File", "file"), ("OpenTelemetry", "openTelemetry"))),
    *(rule for kind, kinds_text, kinds in (
        ("ClientTrafficPolicy", "Gateway", ("Gateway",)),
        ("BackendTrafficPolicy", "Gateway/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute", ROUTE_KINDS))
      for rule in policy_target_rules(kind, kinds_text, kinds)),
    CelRule("BackendTrafficPolicy", "spec", "admissionControl can only be used with HTTPRoute, GRPCRoute, or Gateway targets",
            lambda spec: "admissionControl" not in spec or all(ref["kind"] in ("Gateway", "HTTPRoute", "GRPCRoute")
                                                               for ref in [spec.get("targetRef", {"kind": "Gateway"}), *spec.get("targetRefs", [])])),
    CelRule("BackendTrafficPolicy", "spec", "either compression or compressor can be set, not both",
            lambda spec: present(spec, "compression", "compressor") <= 1),
    CelRule("BackendTrafficPolicy", "spec", "predictivePercent in preconnect policy only works with RoundRobin or Random load balancers",
            lambda spec: "predictivePercent" not in spec.get("connection", {}).get("preconnect", {})
            or spec.get("loadBalancer", {}).get("type") in ("Random", "RoundRobin")),
    CelRule("BackendTrafficPolicy", "spec", "requestBuffer cannot be used together with httpUpgrade",
            lambda spec: "requestBuffer" not in spec or not spec.get("httpUpgrade")),
    # kubernetes-sigs/gateway-api
    CelRule("HTTPRoute", "spec.parentRefs", "sectionName must be specified when parentRefs includes 2 or more references to the same parent",
            lambda refs: all(bool(a.get("sectionName")) == bool(b.get("sectionName"))
                             for a in refs for b in refs if parent_key(a) == parent_key(b))),
    CelRule("HTTPRoute", "spec.parentRefs", "sectionName must be unique when parentRefs includes 2 or more references to the same parent",
            lambda refs: max(Counter((parent_key(r), r.get("sectionName", "")) for r in refs).values(), default=1) == 1),
    CelRule("HTTPRoute", "spec.rules",
            "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128",
            lambda rules: sum(len(rule.get("matches", DEFAULT_MATCHES)) for rule in rules[:16]) <= 128),
    CelRule("HTTPRoute", "spec.rules[]", "RequestRedirect filter must not be used together with backendRefs",
            lambda rule: not rule.get("backendRefs") or all("requestRedirect" not in f for f in rule.get("filters", []))),
    CelRule("HTTPRoute", "spec.rules[]", "When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
            one_prefix_match_if(lambda rule: replace_prefix(rule.get("filters", []), "requestRedirect"))),
    CelRule("HTTPRoute", "spec.rules[]", "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
            one_prefix_match_if(lambda rule: replace_prefix(rule.get("filters", []), "urlRewrite"))),
    CelRule("HTTPRoute", "spec.rules[]", "Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
            one_prefix_match_if(lambda rule: backend_replace_prefix(rule, "requestRedirect"))),
    CelRule("HTTPRoute", "spec.rules[]", "Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
            one_prefix_match_if(lambda rule: backend_replace_prefix(rule, "urlRewrite"))),
    CelRule("HTTPRoute", "spec.rules[].matches[].path", f"value must be an absolute path and start with '/' {EXACT_OR_PREFIX}",
            exact_or_prefix(lambda value: value.startswith("/"))),
    *(CelRule("HTTPRoute", "spec.rules[].matches[].path", f"must not contain '{part}' {EXACT_OR_PREFIX}",
              exact_or_prefix(lambda value, part=part: part not in value)) for part in ("//", "/./", "/../", "%2f", "%2F", "#")),
    *(CelRule("HTTPRoute", "spec.rules[].matches[].path", f"must not end with '{end}' {EXACT_OR_PREFIX}",
              exact_or_prefix(lambda value, end=end: not value.endswith(end))) for end in ("/..", "/.")),
    CelRule("HTTPRoute", "spec.rules[].matches[].path", "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']",
            lambda path: path.get("type", "PathPrefix") in ("Exact", "PathPrefix", "RegularExpression")),
    CelRule("HTTPRoute", "spec.rules[].matches[].path", f"must only contain valid characters (matching {PATH_CHARACTERS}) for types ['Exact', 'PathPrefix']",
            exact_or_prefix(lambda value: re.match(PATH_CHARACTERS, value) is not None)),
    CelRule("HTTPRoute", "spec.rules[].backendRefs[]", "Must have port for Service reference",
            lambda ref: not (ref.get("group", "") == "" and ref.get("kind", "Service") == "Service") or "port" in ref),
    *(CelRule("HTTPRoute", "spec.rules[].filters", f"{kind} filter cannot be repeated",
              lambda filters, kind=kind: sum(f["type"] == kind for f in filters) <= 1)
      for kind in ("CORS", "RequestHeaderModifier", "RequestRedirect", "ResponseHeaderModifier", "URLRewrite")),
    CelRule("HTTPRoute", "spec.rules[].filters", "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
            lambda filters: not ({"RequestRedirect", "URLRewrite"} <= {f["type"] for f in filters})),
    *(rule for kind, field in FILTER_FIELDS for rule in (
        CelRule("HTTPRoute", "spec.rules[].filters[]", f"filter.{field} must be nil if the filter.type is not {kind}",
                lambda f, kind=kind, field=field: not (field in f and f["type"] != kind)),
        CelRule("HTTPRoute", "spec.rules[].filters[]", f"filter.{field} must be specified for {kind} filter.type",
                lambda f, kind=kind, field=field: not (field not in f and f["type"] == kind)))),
    CelRule("HTTPRoute", "spec.rules[].timeouts", "backendRequest timeout cannot be longer than request timeout",
            lambda t: not ("request" in t and "backendRequest" in t and seconds(t["request"]) != 0
                           and seconds(t["backendRequest"]) > seconds(t["request"]))),
    CelRule("Gateway", "spec.listeners", "Combination of port, protocol and hostname must be unique for each listener",
            lambda listeners: max(Counter((l["port"], l["protocol"], l.get("hostname")) for l in listeners).values(), default=1) == 1),
    CelRule("Gateway", "spec.listeners", "Listener name must be unique within the Gateway",
            lambda listeners: max(Counter(l["name"] for l in listeners).values(), default=1) == 1),
    CelRule("Gateway", "spec.listeners", "hostname must not be specified for protocols ['TCP', 'UDP']",
            lambda listeners: all(l["protocol"] not in ("TCP", "UDP") or not l.get("hostname") for l in listeners)),
    CelRule("Gateway", "spec.listeners", "tls mode must be Terminate for protocol HTTPS",
            lambda listeners: all(l["protocol"] != "HTTPS" or "tls" not in l or l["tls"].get("mode", "Terminate") in ("", "Terminate")
                                  for l in listeners)),
    CelRule("Gateway", "spec.listeners", "tls mode must be set for protocol TLS",
            lambda listeners: all(l["protocol"] != "TLS" or l.get("tls", {}).get("mode", "Terminate") != "" for l in listeners)),
    CelRule("Gateway", "spec.listeners", "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
            lambda listeners: all(l["protocol"] not in ("HTTP", "TCP", "UDP") or "tls" not in l for l in listeners)),
    CelRule("Gateway", "spec.listeners[].tls", "certificateRefs or options must be specified when mode is Terminate",
            lambda tls: tls.get("mode", "Terminate") != "Terminate" or bool(tls.get("certificateRefs")) or bool(tls.get("options"))),
    CelRule("BackendTLSPolicy", "spec.validation", "must specify either CACertificateRefs or WellKnownCACertificates",
            lambda validation: bool(validation.get("caCertificateRefs")) or "wellKnownCACertificates" in validation),
    CelRule("BackendTLSPolicy", "spec.validation", "must not contain both CACertificateRefs and WellKnownCACertificates",
            lambda validation: not (validation.get("caCertificateRefs") and "wellKnownCACertificates" in validation)),
]


def nodes(value, path: str) -> list[tuple[str, object]]:
    """The values at a dotted path, with their concrete dotted paths."""
    found = [("", value)]
    for step in path.split("."):
        field = step.removesuffix("[]").removesuffix("{}")
        found = [(f"{where}.{field}".lstrip("."), node[field]) for where, node in found if isinstance(node, dict) and field in node]
        if step.endswith("[]"):
            found = [(f"{where}.{index}", item) for where, items in found for index, item in enumerate(items)]
        elif step.endswith("{}"):
            found = [(f"{where}.{key}", item) for where, items in found for key, item in items.items()]
    return found


def cel_violations(doc: dict) -> list[str]:
    return [f"{where}: {rule.message} (CEL rule, ported)"
            for rule in CEL_RULES if rule.kind == doc["kind"]
            for where, node in nodes(doc, rule.path) if not rule.holds(node)]


def reached_cel_rules(doc, schema: dict, node: dict | None = None, path: str = "") -> set[tuple[str, str]]:
    """(abstract path, message) of every CEL rule on a schema node that `doc` has a value for."""
    node = schema if node is None else node
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    if "allOf" in node and "if" in node["allOf"][0]:  # the kind's apiVersion dispatch
        branch = next(b for b in node["allOf"] if b["if"]["properties"]["apiVersion"]["const"] == doc["apiVersion"])
        return reached_cel_rules(doc, schema, branch["then"], path)
    reached = {(path, rule["message"]) for rule in node.get("x-kubernetes-validations", [])}
    if isinstance(doc, dict):
        extra = node.get("additionalProperties")
        for key, value in doc.items():
            if key in node.get("properties", {}):
                reached |= reached_cel_rules(value, schema, node["properties"][key], f"{path}.{key}".lstrip("."))
            elif isinstance(extra, dict):
                reached |= reached_cel_rules(value, schema, extra, f"{path}{{}}")
    elif isinstance(doc, list) and "items" in node:
        for item in doc:
            reached |= reached_cel_rules(item, schema, node["items"], f"{path}[]")
    return reached
