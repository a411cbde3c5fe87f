"""deploy/: every manifest against the JSON schemas generated from the pinned upstream CRDs
(tools/deploy/generate_schemas.py, deploy/schemas/VERSIONS.md), plus the few CEL rules of those CRDs
that bear on our manifests, ported by hand because a JSON Schema validator cannot evaluate CEL.

The oracle is upstream's: the schemas are derived data from istio/api, envoyproxy/gateway and
kubernetes-sigs/gateway-api at the commits VERSIONS.md names; each refusal below is one the API
server makes (strict field validation, the OpenAPI constraint or the CEL rule named)."""

import copy
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

import pytest
import yaml
from jsonschema import Draft202012Validator

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCHEMAS = DEPLOY / "schemas"
MANIFEST_DOCUMENTS = [
    pytest.param(path, index, doc, id=f"{path.relative_to(DEPLOY)}#{index}:{doc['kind']}/{doc['metadata']['name']}")
    for path in sorted(DEPLOY.rglob("*.yaml"))
    for index, doc in enumerate(yaml.safe_load_all(path.read_text()))
    if doc
]


@cache
def validator(kind: str) -> Draft202012Validator:
    path = SCHEMAS / f"{kind}.json"
    assert path.is_file(), f"no schema for kind {kind}: add it to tools/deploy/generate_schemas.py SOURCES"
    return Draft202012Validator(json.loads(path.read_text()))


def violations(doc: dict) -> list[str]:
    """Every schema violation, as `path: message (schema rule)`, innermost first for anyOf/oneOf."""
    found = []
    for error in sorted(validator(doc["kind"]).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        leaves = [leaf for leaf in error.context or []] or [error]
        for leaf in leaves:
            where = ".".join(map(str, leaf.absolute_path)) or "(document)"
            found.append(f"{where}: {leaf.message} ({'/'.join(map(str, leaf.schema_path))})")
    return found + cel_violations(doc)


# --- CEL rules, ported by hand -------------------------------------------------------------------
@dataclass(frozen=True)
class CelRule:
    kind: str
    path: str  # dotted, `[]` for every item of a list
    message: str  # the rule's message in the CRD, verbatim: ties the port to its upstream rule
    holds: Callable[[dict], bool]


def _count(node: dict, *fields: str) -> int:
    return sum(field in node for field in fields)


CEL_RULES = [
    # istio/api 1.29.6 kubernetes/customresourcedefinitions.gen.yaml
    CelRule("WasmPlugin", "spec", "only one of targetRefs or selector can be set",
            lambda spec: _count(spec, "selector", "targetRef", "targetRefs") <= 1),
    CelRule("WasmPlugin", "spec.vmConfig.env[]", "value may only be set when valueFrom is INLINE",
            lambda env: env.get("valueFrom", "") != "HOST" or "value" not in env),
    CelRule("WasmPlugin", "spec.url", "url must have schema one of [http, https, file, oci]",
            lambda url: "://" not in url or url.split("://", 1)[0] in ("http", "https", "oci", "file")),
    CelRule("EnvoyFilter", "spec", "only one of targetRefs or workloadSelector can be set",
            lambda spec: _count(spec, "workloadSelector", "targetRefs") <= 1),
    CelRule("ServiceEntry", "spec.hosts[]", "hostname cannot be wildcard", lambda host: host != "*"),
    CelRule("ServiceEntry", "spec", "NONE mode cannot set endpoints",
            lambda spec: spec.get("resolution", "NONE") != "NONE" or "endpoints" not in spec),
    # envoyproxy/gateway v1.8.3 charts/gateway-helm/charts/crds/crds/generated/*.yaml
    CelRule("EnvoyExtensionPolicy", "spec", "either targetRef or targetRefs must be used",
            lambda spec: _count(spec, "targetRef", "targetRefs") == 1 or bool(spec.get("targetSelectors"))),
    CelRule("EnvoyExtensionPolicy", "spec",
            "this policy can only have a targetRefs[*].kind of Gateway/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute",
            lambda spec: all(ref["kind"] in ("Gateway", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute")
                             for ref in spec.get("targetRefs", []))),
    CelRule("EnvoyExtensionPolicy", "spec.wasm[].code", "If type is Image, image field needs to be set.",
            lambda code: (code["type"] == "Image") == ("image" in code)),
    CelRule("EnvoyExtensionPolicy", "spec.wasm[].code", "If type is HTTP, http field needs to be set.",
            lambda code: (code["type"] == "HTTP") == ("http" in code)),
    CelRule("Backend", "spec.endpoints[]", "one of fqdn, ip or unix must be specified",
            lambda endpoint: _count(endpoint, "fqdn", "ip", "unix") >= 1),
    CelRule("Backend", "spec.endpoints[]", "only one of fqdn, ip or unix can be specified",
            lambda endpoint: _count(endpoint, "fqdn", "ip", "unix") <= 1),
    CelRule("Backend", "spec.tls", "must not contain both CACertificateRefs and WellKnownCACertificates",
            lambda tls: not (tls.get("caCertificateRefs") and "wellKnownCACertificates" in tls)),
    # kubernetes-sigs/gateway-api v1.5.1 config/crd/standard/*.yaml
    CelRule("HTTPRoute", "spec.rules[].matches[].path",
            "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
            lambda path: path.get("type", "PathPrefix") not in ("Exact", "PathPrefix") or path.get("value", "/").startswith("/")),
    CelRule("HTTPRoute", "spec.rules[].backendRefs[]", "Must have port for Service reference",
            lambda ref: not (ref.get("group", "") == "" and ref.get("kind", "Service") == "Service") or "port" in ref),
    CelRule("BackendTLSPolicy", "spec.validation", "must specify either CACertificateRefs or WellKnownCACertificates",
            lambda validation: bool(validation.get("caCertificateRefs")) or "wellKnownCACertificates" in validation),
    CelRule("BackendTLSPolicy", "spec.validation", "must not contain both CACertificateRefs and WellKnownCACertificates",
            lambda validation: not (validation.get("caCertificateRefs") and "wellKnownCACertificates" in validation)),
]


def nodes(value, path: str):
    """The values at a dotted path (`[]` stepping into every list item), with their concrete paths."""
    found = [("", value)]
    for step in path.split("."):
        field, into_items = step.removesuffix("[]"), step.endswith("[]")
        found = [(f"{where}.{field}".lstrip("."), node[field]) for where, node in found if isinstance(node, dict) and field in node]
        if into_items:
            found = [(f"{where}.{index}", item) for where, items in found for index, item in enumerate(items)]
    return found


def cel_violations(doc: dict) -> list[str]:
    return [f"{where}: {rule.message} (CEL rule, ported)"
            for rule in CEL_RULES if rule.kind == doc["kind"]
            for where, node in nodes(doc, rule.path) if not rule.holds(node)]


# --- The manifests -------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "index", "doc"), MANIFEST_DOCUMENTS)
def test_every_manifest_document_is_one_the_api_server_accepts(path, index, doc):
    assert violations(doc) == []


# --- The schemas themselves ----------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_schemas_are_valid_json_schemas_with_patterns_python_compiles(path):
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    patterns = []

    def collect(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)
    collect(schema)
    for pattern in patterns:
        re.compile(pattern)
    assert "Generated by tools/deploy/generate_schemas.py" in schema["description"]


def schema_node(kind: str, api_version: str, path: str) -> dict:
    schema = json.loads((SCHEMAS / f"{kind}.json").read_text())
    branch = next(b for b in schema["allOf"] if b["if"]["properties"]["apiVersion"]["const"] == api_version)
    node = schema["$defs"][branch["then"]["$ref"].rsplit("/", 1)[-1]]
    for step in path.split("."):
        node = node["properties"][step.removesuffix("[]")]
        if step.endswith("[]"):
            node = node["items"]
    return node


@pytest.mark.parametrize("rule", CEL_RULES, ids=lambda r: f"{r.kind}:{r.message[:40]}")
def test_every_ported_cel_rule_is_in_the_generated_crd_schema(rule):
    """A regenerated schema whose CRD dropped or reworded a rule makes its port stale: fail then."""
    api_version = json.loads((SCHEMAS / f"{rule.kind}.json").read_text())["properties"]["apiVersion"]["enum"][0]
    node = schema_node(rule.kind, api_version, rule.path)
    assert rule.message in [v.get("message") for v in node.get("x-kubernetes-validations", [])]


# --- What the CRDs refuse and accept -------------------------------------------------------------
# Minimal valid documents of each kind, independent of the shipped manifests (which the mesh work
# rewrites); each case changes one thing.
BASE = {
    "WasmPlugin": {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
                   "metadata": {"name": "brickgate", "namespace": "gw"},
                   "spec": {"selector": {"matchLabels": {"app": "gw"}}, "url": "oci://registry.example.com/brickgate:0.1.0",
                            "phase": "AUTHN", "failStrategy": "FAIL_CLOSE", "pluginConfig": {"realm": "databricks"},
                            "vmConfig": {"env": [{"name": "BRICKGATE_CLIENT_SECRET", "valueFrom": "HOST"}]}}},
    "EnvoyExtensionPolicy": {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy",
                             "metadata": {"name": "brickgate", "namespace": "gw"},
                             "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "databricks"}],
                                      "wasm": [{"name": "brickgate", "rootID": "brickgate", "failOpen": False,
                                                "code": {"type": "Image", "image": {"url": "registry.example.com/brickgate:0.1.0"}},
                                                "config": {"realm": "databricks"}, "env": {"hostKeys": ["BRICKGATE_CLIENT_SECRET"]}}]}},
    "Backend": {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "Backend", "metadata": {"name": "idp", "namespace": "gw"},
                "spec": {"endpoints": [{"fqdn": {"hostname": "idp.example.com", "port": 443}}]}},
    "HTTPRoute": {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "databricks", "namespace": "gw"},
                  "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["databricks.example.com"],
                           "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                                      "backendRefs": [{"name": "workspace", "port": 443}]}]}},
    "ServiceEntry": {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "idp", "namespace": "gw"},
                     "spec": {"hosts": ["idp.example.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                              "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}},
    "DestinationRule": {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "idp", "namespace": "gw"},
                        "spec": {"host": "idp.example.com", "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "idp.example.com"}}}},
    "ClientTrafficPolicy": {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "ClientTrafficPolicy",
                            "metadata": {"name": "buffers", "namespace": "gw"},
                            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
                                     "connection": {"bufferLimit": "17Mi"}}},
    "BackendTLSPolicy": {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy", "metadata": {"name": "idp", "namespace": "gw"},
                         "spec": {"targetRefs": [{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": "idp"}],
                                  "validation": {"hostname": "idp.example.com", "wellKnownCACertificates": "System"}}},
}


def change(base: str | dict, path: str, value=None, delete: bool = False) -> dict:
    """A copy of `base` (a kind's BASE document, or a document) with one field set or deleted."""
    doc = copy.deepcopy(BASE[base] if isinstance(base, str) else base)
    *parents, leaf = path.split(".")
    target = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    key = int(leaf) if isinstance(target, list) else leaf
    if delete:
        del target[key]
    else:
        target[key] = value
    return doc


# (document, where the refusal is, the rule refusing it). "old accepted": the hand-written schemas
# these replace let it through.
REFUSED = [
    pytest.param(change("WasmPlugin", "spec.allowOnHeadersStopIteration", True), "spec", "additionalProperties", id="wasmplugin-allow-on-headers-stop-iteration"),
    pytest.param(change("WasmPlugin", "spec.phase", "AUTHENTICATION"), "spec.phase", "enum", id="wasmplugin-bad-phase"),
    pytest.param(change("WasmPlugin", "spec.failStrategy", "FAIL_CLOSED"), "spec.failStrategy", "enum", id="wasmplugin-bad-fail-strategy"),
    pytest.param(change("WasmPlugin", "spec.vmConfig.env.0.valueFrom", "SECRET"), "spec.vmConfig.env.0.valueFrom", "enum", id="wasmplugin-bad-env-source"),
    pytest.param(change(change("WasmPlugin", "spec.selector", delete=True), "spec.targetRef", {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw", "sectionName": "https"}),
                 "spec.targetRef", "additionalProperties", id="wasmplugin-targetref-section-name-old-accepted"),
    pytest.param(change("WasmPlugin", "spec.vmConfig.env.0.value", "inline"), "spec.vmConfig.env.0", "value may only be set when valueFrom is INLINE", id="wasmplugin-cel-host-env-with-value"),
    pytest.param(change("WasmPlugin", "apiVersion", "extensions.istio.io/v1"), "apiVersion", "enum", id="wasmplugin-unserved-version"),
    pytest.param(change("WasmPlugin", "metadata.name", "Brickgate"), "metadata.name", "pattern", id="metadata-name-not-dns-subdomain-old-accepted"),
    pytest.param(change("WasmPlugin", "metadata.uid", "1234"), "metadata", "additionalProperties", id="metadata-generated-field"),
    pytest.param(change("EnvoyExtensionPolicy", "spec.wasm.0.allowOnHeadersStopIteration", True), "spec.wasm.0", "additionalProperties", id="eep-allow-on-headers-stop-iteration"),
    pytest.param(change("EnvoyExtensionPolicy", "spec.wasm.0.failopen", False), "spec.wasm.0", "additionalProperties", id="eep-unknown-field"),
    pytest.param(change(change("EnvoyExtensionPolicy", "spec.wasm.0.code.image", delete=True), "spec.wasm.0.code.type", "ConfigMap"), "spec.wasm.0.code.type", "enum", id="eep-code-type-not-served-old-accepted"),
    pytest.param(change("EnvoyExtensionPolicy", "spec.targetRefs", delete=True), "spec", "either targetRef or targetRefs must be used", id="eep-cel-no-target"),
    pytest.param(change("Backend", "spec.endpoints.0.fqdn.port", "443"), "spec.endpoints.0.fqdn.port", "type", id="backend-port-not-integer"),
    pytest.param(change("Backend", "spec.endpoints.0.ip", {"address": "10.0.0.1", "port": 443}), "spec.endpoints.0", "only one of fqdn, ip or unix can be specified", id="backend-cel-two-addresses"),
    pytest.param(change("HTTPRoute", "spec.rules.0.retry", {"attempts": 2}), "spec.rules.0", "additionalProperties", id="httproute-retry-experimental-only-old-accepted"),
    pytest.param(change("HTTPRoute", "spec.rules.0.matches.0.path.type", "Prefix"), "spec.rules.0.matches.0.path.type", "enum", id="httproute-bad-path-type-old-accepted"),
    pytest.param(change("HTTPRoute", "spec.rules.0.matches.0.path.value", "api"), "spec.rules.0.matches.0.path", "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']", id="httproute-cel-relative-path"),
    pytest.param(change("ServiceEntry", "spec.resolution", "DNS_ROUNDROBIN"), "spec.resolution", "enum", id="serviceentry-bad-resolution"),
    pytest.param(change("DestinationRule", "spec.trafficPolicy.tls.mode", "TLS"), "spec.trafficPolicy.tls.mode", "enum", id="destinationrule-bad-tls-mode"),
    pytest.param(change("ClientTrafficPolicy", "spec.connection.bufferLimit", "17 MiB"), "spec.connection.bufferLimit", "pattern", id="ctp-buffer-limit-not-a-quantity"),
    pytest.param(change("BackendTLSPolicy", "spec.validation.wellKnownCACertificates", delete=True), "spec.validation", "must specify either CACertificateRefs or WellKnownCACertificates", id="backendtlspolicy-cel-no-ca"),
]


@pytest.mark.parametrize(("doc", "where", "rule"), REFUSED)
def test_schemas_refuse_what_the_crds_refuse(doc, where, rule):
    """Refused, and only for the expected reason: at `where`, by the schema keyword or CEL rule `rule`."""
    found = violations(doc)
    assert found, "accepted"
    for violation in found:
        assert violation.startswith(f"{where}: "), found
        assert violation.endswith(f"/{rule})") or violation == f"{where}: {rule} (CEL rule, ported)", found


# Valid documents the hand-written schemas refused, and the fields the mesh work needs.
ACCEPTED = [
    pytest.param(change("Backend", "spec.endpoints.0.hostname", "idp.example.com"), id="backend-endpoint-hostname-old-refused"),
    pytest.param(change("ServiceEntry", "spec.resolution", "DYNAMIC_DNS"), id="serviceentry-dynamic-dns-old-refused"),
    pytest.param(change("DestinationRule", "spec.trafficPolicy.tls.caCrl", "/etc/ssl/crl.pem"), id="destinationrule-ca-crl-old-refused"),
    pytest.param(change("DestinationRule", "spec.trafficPolicy.proxyProtocol", {"version": "V2"}), id="destinationrule-proxy-protocol-old-refused"),
    pytest.param(change("DestinationRule", "spec.trafficPolicy.tls.caCertificates", "/etc/ssl/certs/ca-certificates.crt"), id="destinationrule-ca-certificates"),
    pytest.param(change("DestinationRule", "spec.exportTo", ["."]), id="destinationrule-export-to"),
    pytest.param(change("WasmPlugin", "metadata", {"generateName": "brickgate-"}), id="metadata-generate-name-old-refused"),
    pytest.param(change("WasmPlugin", "spec.priority", None), id="wasmplugin-nullable-priority-old-refused"),
    pytest.param(change("EnvoyExtensionPolicy", "spec.wasm.0.code.image.sha256", "a" * 64), id="eep-image-sha256"),
    pytest.param(change("Backend", "spec.tls", {"wellKnownCACertificates": "System", "sni": "idp.example.com"}), id="backend-tls-system-cas"),
    pytest.param(change("ClientTrafficPolicy", "spec.connection.bufferLimit", 17825792), id="ctp-buffer-limit-integer"),
    pytest.param(BASE["BackendTLSPolicy"], id="backendtlspolicy-system-cas"),
]


@pytest.mark.parametrize("doc", ACCEPTED)
def test_schemas_accept_what_the_crds_accept(doc):
    assert violations(doc) == []


@pytest.mark.parametrize("kind", sorted(BASE))
def test_base_documents_are_valid(kind):
    assert violations(BASE[kind]) == []
