"""tools/deploy/generate_schemas.py's translation of a CRD's structural schema into JSON Schema, on
small synthetic nodes (the upstream CRD files are not committed). The expected meanings are the
Kubernetes API server's, from the Kubernetes documentation "Extend the Kubernetes API with
CustomResourceDefinitions" (sections "Specifying a structural schema", "Field pruning",
"IntOrString", "Defaulting and Nullable", "Validation") and the strict field validation of
`kubectl apply --validate=strict` (the default since Kubernetes 1.27)."""

import importlib.util
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "deploy" / "generate_schemas.py"
spec = importlib.util.spec_from_file_location("generate_schemas", SCRIPT)
generate_schemas = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate_schemas)

OBJECT = {"type": "object", "properties": {"a": {"type": "string"}}}
CASES = [
    # (CRD node, value, accepted by the API server)
    pytest.param(OBJECT, {"a": "x"}, True, id="known-field"),
    pytest.param(OBJECT, {"b": "x"}, False, id="unknown-field-is-an-error"),
    pytest.param({"type": "object"}, {"b": "x"}, False, id="object-without-properties-prunes-everything"),
    pytest.param({**OBJECT, "x-kubernetes-preserve-unknown-fields": True}, {"b": {"c": 1}}, True, id="preserve-unknown-fields"),
    pytest.param({**OBJECT, "x-kubernetes-preserve-unknown-fields": True}, {"a": 1}, False, id="preserve-unknown-still-checks-known"),
    pytest.param({"type": "object", "additionalProperties": {"type": "string"}}, {"k": "v"}, True, id="map"),
    pytest.param({"type": "object", "additionalProperties": {"type": "string"}}, {"k": 1}, False, id="map-value-type"),
    pytest.param({"x-kubernetes-int-or-string": True}, 8080, True, id="int-or-string-int"),
    pytest.param({"x-kubernetes-int-or-string": True}, "http", True, id="int-or-string-string"),
    pytest.param({"x-kubernetes-int-or-string": True}, 1.5, False, id="int-or-string-not-a-float"),
    pytest.param({"type": "string", "nullable": True, "enum": ["A"]}, None, True, id="nullable-enum-null"),
    pytest.param({"type": "string", "enum": ["A"]}, None, False, id="not-nullable-null-refused-here"),
    pytest.param({"type": "integer", "minimum": 0, "exclusiveMinimum": True}, 0, False, id="openapi3-exclusive-minimum"),
    pytest.param({"type": "integer", "minimum": 0}, 0, True, id="inclusive-minimum"),
    pytest.param({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}, ["a", "a"], False, id="set-list-duplicate"),
    pytest.param({"type": "object", "required": ["a"], "properties": {"a": {"type": "string", "default": "x"}}}, {}, True, id="required-with-default-is-defaulted"),
    pytest.param({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}, {}, False, id="required-missing"),
    pytest.param({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                  "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"a": "x", "b": "y"}, False, id="oneof-value-validation"),
    pytest.param({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                  "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"b": "y"}, True, id="oneof-branch-no-pruning"),
    pytest.param({"type": "string", "x-kubernetes-validations": [{"rule": "self != 'x'"}]}, "x", True, id="cel-not-evaluated"),
]


@pytest.mark.parametrize(("node", "value", "accepted"), CASES)
def test_converted_node_accepts_what_the_api_server_accepts(node, value, accepted):
    schema = generate_schemas.convert(node)
    Draft202012Validator.check_schema(schema)
    assert Draft202012Validator(schema).is_valid(value) == accepted


def test_a_kind_dispatches_on_api_version_and_fixes_kind_and_metadata():
    root = {"type": "object", "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                             "metadata": {"type": "object"}, "spec": OBJECT, "status": {"type": "object"}}}
    version = generate_schemas.version_schema("Thing", root)
    schema = generate_schemas.kind_schema("Thing", [("a.io/v1", version, "x"), ("a.io/v1beta1", version, "x")])
    validator = Draft202012Validator(schema)
    good = {"apiVersion": "a.io/v1beta1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"a": "x"}}
    assert validator.is_valid(good)
    assert len(schema["$defs"]) == 2, "versions with one schema share its definition (plus ObjectMeta)"
    for bad in ({**good, "apiVersion": "a.io/v2"}, {**good, "kind": "Other"}, {**good, "spec": {"b": 1}},
                {**good, "status": {}}, {**good, "metadata": {"name": "T"}}, {**good, "metadata": {}}):
        assert not validator.is_valid(bad), bad
