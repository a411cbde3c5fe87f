#!/usr/bin/env python3
"""Generates deploy/schemas/<Kind>.json from the pinned upstream CustomResourceDefinitions.

Each CRD version's `openAPIV3Schema` becomes a JSON Schema (draft 2020-12) that refuses what the
Kubernetes API server refuses with strict field validation (kubectl's default since 1.27: an unknown
field is an error), as far as a JSON Schema can say it. What it cannot say (CEL rules, list-map key
uniqueness, formats) is listed in deploy/schemas/VERSIONS.md, which this script also writes.

The upstream files are not committed. Bring the three repositories with the session's `fetch` tool
(bare git directories) or any clone, then:

    python3 tools/deploy/generate_schemas.py \
        --istio-api /work/.mirror/istio+api/repo \
        --envoy-gateway /work/.mirror/envoyproxy+gateway/repo \
        --gateway-api /work/.mirror/kubernetes-sigs+gateway-api/repo

Each argument is a git directory (the pinned tag is read with `git show`, and must resolve to the
pinned commit) or a directory holding the files at their repository paths (an extracted release
tarball; the sha256 in VERSIONS.md then tells whether they are the pinned ones).
"""

import argparse
import copy
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "tools/deploy/generate_schemas.py"
EG_CRDS = "charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_{}.yaml"
GA_CRDS = "config/crd/standard/gateway.networking.k8s.io_{}.yaml"


@dataclass(frozen=True)
class Source:
    option: str  # the command-line option naming this repository's git directory or tree
    repo: str
    tag: str
    commit: str
    paths: tuple[str, ...]
    kinds: frozenset[str]  # the kinds taken from these files (the ones brickgate's manifests use or will use)


SOURCES = (
    Source("istio_api", "istio/api", "1.29.6", "1092f7f897896b437df36d8d0df85728706022f2",
           ("kubernetes/customresourcedefinitions.gen.yaml",),
           frozenset({"WasmPlugin", "EnvoyFilter", "ServiceEntry", "DestinationRule", "Sidecar", "Telemetry",
                      "VirtualService", "Gateway", "ProxyConfig"})),
    Source("envoy_gateway", "envoyproxy/gateway", "v1.8.3", "94850d4323922cba7c67b5b5ad23de9c715f8048",
           tuple(EG_CRDS.format(name) for name in ("envoyextensionpolicies", "backends", "envoyproxies",
                                                   "clienttrafficpolicies", "backendtrafficpolicies",
                                                   "envoypatchpolicies")),
           frozenset({"EnvoyExtensionPolicy", "Backend", "EnvoyProxy", "ClientTrafficPolicy",
                      "BackendTrafficPolicy", "EnvoyPatchPolicy"})),
    Source("gateway_api", "kubernetes-sigs/gateway-api", "v1.5.1", "e7677b70ae75d14a4448fba94870e7deea6cf0ad",
           tuple(GA_CRDS.format(name) for name in ("httproutes", "gateways", "backendtlspolicies")),
           frozenset({"HTTPRoute", "Gateway", "BackendTLSPolicy"})),
)

# ObjectMeta is validated by the API server itself, not by the CRD's schema (which says only
# `type: object`). Written from kubernetes/apimachinery kubernetes-1.36.3
# (40bf4b2b62f8838b9b37de7b407793f1f17ee225): pkg/util/validation/validation.go (DNS-1123
# subdomain and label), pkg/api/validate/content/kube.go (label keys and values, qualified names),
# pkg/api/validation/objectmeta.go (which fields a client may set; generated ones are refused here).
DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME = f"^({DNS1123_LABEL}(\\.{DNS1123_LABEL})*/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": f"^{DNS1123_LABEL}(\\.{DNS1123_LABEL})*$"},
        "generateName": {"type": "string", "maxLength": 253},
        "namespace": {"type": "string", "maxLength": 63, "pattern": f"^{DNS1123_LABEL}$"},
        "labels": {"type": "object", "propertyNames": {"maxLength": 317, "pattern": QUALIFIED_NAME},
                   "additionalProperties": {"type": "string", "maxLength": 63,
                                            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"}},
        "annotations": {"type": "object", "propertyNames": {"maxLength": 317, "pattern": QUALIFIED_NAME},
                        "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}

# Core kinds are not CRDs: their schemas are the API server's own. The one our manifests use, ConfigMap
# (Istio's gateway `parametersRef` and bootstrap override), is written here from kubernetes/api
# kubernetes-1.36.3 core/v1/types.go (`type ConfigMap struct`: data, binaryData, immutable) and
# kubernetes/apimachinery kubernetes-1.36.3 pkg/util/validation/validation.go (`IsConfigMapKey`: at most
# 253 of `[-._a-zA-Z0-9]`, not `.`, not starting with `..`), in the CRD schema language `convert` reads.
CONFIG_MAP_KEY = {"type": "string", "maxLength": 253, "pattern": "^[-._a-zA-Z0-9]+$",
                  "not": {"anyOf": [{"enum": ["."]}, {"pattern": "^\\.\\."}]}}
CORE_KINDS = {
    "ConfigMap": ("v1", "kubernetes/api@kubernetes-1.36.3 core/v1/types.go (written by hand)", {
        "type": "object",
        "properties": {
            "data": {"type": "object", "additionalProperties": {"type": "string"}},
            "binaryData": {"type": "object", "additionalProperties": {"type": "string"}},
            "immutable": {"type": "boolean"},
        },
    }),
}


# Value constraints copied as they are: OpenAPI 3.0 and JSON Schema 2020-12 mean the same by them.
SAME_MEANING = ("enum", "pattern", "minLength", "maxLength", "minItems", "maxItems", "minProperties",
                "maxProperties", "multipleOf", "uniqueItems")
# Kept in the output for the reader; a JSON Schema validator ignores them (see VERSIONS.md).
NOT_ENFORCED = ("x-kubernetes-validations", "x-kubernetes-list-map-keys")


def convert(node: dict, logic: bool = False) -> dict:
    """One structural-schema node as JSON Schema. `logic` marks the inside of allOf/anyOf/oneOf/not,
    where Kubernetes allows value validations only: no types, no pruning of unknown fields."""
    out: dict = {}
    types = ["integer", "string"] if node.get("x-kubernetes-int-or-string") else [node["type"]] if "type" in node else []
    if types and node.get("nullable"):
        types.append("null")
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    for key in SAME_MEANING:
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if "enum" in out and node.get("nullable"):
        out["enum"].append(None)
    # OpenAPI 3.0's exclusiveMinimum/Maximum are flags on minimum/maximum; 2020-12's are numbers.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if bound in node:
            out[exclusive if node.get(exclusive) else bound] = node[bound]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True  # the API server refuses a duplicate in a set list
    if "items" in node:
        out["items"] = convert(node["items"], logic)
    if "properties" in node:
        out["properties"] = {name: convert(child, logic) for name, child in node["properties"].items()}
    if "required" in node:
        # Defaulting runs before validation, so a required field with a default is never missing.
        defaulted = {name for name, child in node.get("properties", {}).items() if "default" in child}
        required = [name for name in node["required"] if logic or name not in defaulted]
        if required:
            out["required"] = required
    if "additionalProperties" in node:
        extra = node["additionalProperties"]
        out["additionalProperties"] = extra if isinstance(extra, bool) else convert(extra, logic)
    elif not logic and node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False  # strict field validation: an unknown field is an error
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [convert(branch, logic=True) for branch in node[key]]
    if "not" in node:
        out["not"] = convert(node["not"], logic=True)
    for key in NOT_ENFORCED:
        if key in node:
            out[key] = copy.deepcopy(node[key])
    return out


def version_schema(kind: str, root: dict) -> dict:
    """A whole object of one served version: kind fixed, ObjectMeta as the API server validates it,
    `status` left out (the status subresource ignores it on create and update). The kind's schema
    fixes apiVersion, so versions with the same schema share one definition."""
    schema = convert(root)
    properties = schema.setdefault("properties", {})
    properties.pop("status", None)
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"const": kind}
    properties["metadata"] = {"$ref": "#/$defs/ObjectMeta"}
    schema["additionalProperties"] = False
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return schema


def kind_schema(kind: str, versions: list[tuple[str, dict, str]]) -> dict:
    """One file per kind; the document's apiVersion picks the version's schema. A kind in two groups
    (Istio's and Gateway API's Gateway) gets both."""
    defs: dict = {"ObjectMeta": OBJECT_META}
    branches = []
    for api_version, schema, _ in versions:
        name = next((key for key, known in defs.items() if known == schema), None)
        if name is None:
            name = api_version.replace("/", "_")
            defs[name] = schema
        branches.append({"if": {"properties": {"apiVersion": {"const": api_version}}, "required": ["apiVersion"]},
                         "then": {"$ref": f"#/$defs/{name}"}})
    sources = sorted({origin for _, _, origin in versions})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": kind,
        "description": f"Generated by {SCRIPT} from {'; '.join(sources)}. Do not edit.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {"apiVersion": {"enum": [api_version for api_version, _, _ in versions]}, "kind": {"const": kind}},
        "allOf": branches,
        "$defs": defs,
    }


def read_source(location: Path, source: Source, path: str) -> bytes:
    if (location / "HEAD").is_file() and (location / "objects").is_dir():
        git = ["git", f"--git-dir={location}"]
        commit = subprocess.run([*git, "rev-parse", f"{source.tag}^{{commit}}"], check=True, capture_output=True,
                                text=True).stdout.strip()
        if commit != source.commit:
            sys.exit(f"{source.repo}: tag {source.tag} is {commit}, pinned {source.commit}")
        return subprocess.run([*git, "show", f"{source.commit}:{path}"], check=True, capture_output=True).stdout
    return (location / path).read_bytes()


def generate(locations: dict[str, Path], out: Path) -> None:
    by_kind: dict[str, list[tuple[str, dict, str]]] = {}
    digests = []
    for source in SOURCES:
        for path in source.paths:
            text = read_source(locations[source.option], source, path)
            digests.append((source, path, hashlib.sha256(text).hexdigest()))
            for crd in yaml.safe_load_all(text):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                kind, group = crd["spec"]["names"]["kind"], crd["spec"]["group"]
                if kind not in source.kinds:
                    continue
                for version in crd["spec"]["versions"]:
                    if version.get("served"):
                        schema = version_schema(kind, version["schema"]["openAPIV3Schema"])
                        origin = f"{source.repo}@{source.tag} {path}"
                        by_kind.setdefault(kind, []).append((f"{group}/{version['name']}", schema, origin))
    for kind, (api_version, origin, root) in CORE_KINDS.items():
        schema = version_schema(kind, root)
        for field in ("data", "binaryData"):
            schema["properties"][field]["propertyNames"] = CONFIG_MAP_KEY
        by_kind[kind] = [(api_version, schema, origin)]
    wanted = {kind for source in SOURCES for kind in source.kinds} | CORE_KINDS.keys()
    if missing := wanted - by_kind.keys():
        sys.exit(f"no served CRD version for {sorted(missing)}")
    for stale in out.glob("*.json"):
        stale.unlink()
    for kind, versions in sorted(by_kind.items()):
        (out / f"{kind}.json").write_text(json.dumps(kind_schema(kind, versions), indent=1, sort_keys=True) + "\n")
    (out / "VERSIONS.md").write_text(versions_md(by_kind, digests))


def versions_md(by_kind: dict, digests: list) -> str:
    lines = [
        "# deploy/schemas: where they come from",
        "",
        f"Generated by `{SCRIPT}`; do not edit the JSON files by hand. Regenerate with (git directories",
        "from the session's `fetch` tool, or any clone holding the pinned tags):",
        "",
        "```sh",
        f"python3 {SCRIPT} \\",
        "    --istio-api /work/.mirror/istio+api/repo \\",
        "    --envoy-gateway /work/.mirror/envoyproxy+gateway/repo \\",
        "    --gateway-api /work/.mirror/kubernetes-sigs+gateway-api/repo",
        "```",
        "",
        "## Pinned upstream releases",
        "",
        "| repository | tag | commit |",
        "|---|---|---|",
        *(f"| {s.repo} | {s.tag} | {s.commit} |" for s in SOURCES),
        "",
        "## Source files (sha256 of the file at the pinned commit)",
        "",
        "| repository | path | sha256 |",
        "|---|---|---|",
        *(f"| {s.repo} | `{path}` | `{digest}` |" for s, path, digest in digests),
        "",
        "## Kinds and served versions",
        "",
        "| kind | apiVersions |",
        "|---|---|",
        *(f"| {kind} | {', '.join(v for v, _, _ in versions)} |" for kind, versions in sorted(by_kind.items())),
        "",
    ]
    notes = (ROOT / "tools" / "deploy" / "schemas_notes.md").read_text()
    return "\n".join(lines) + "\n" + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for source in SOURCES:
        parser.add_argument(f"--{source.option.replace('_', '-')}", type=Path, required=True,
                            help=f"{source.repo}: git directory or extracted tree")
    parser.add_argument("--out", type=Path, default=ROOT / "deploy" / "schemas")
    args = parser.parse_args()
    generate({source.option: getattr(args, source.option) for source in SOURCES}, args.out)


if __name__ == "__main__":
    main()
