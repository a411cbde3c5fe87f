"""`brickgate`, the command-line tool (cli/), run as a binary against the dev stack's fake IdP: `check`
validates as the plugin does, `route` names a request's rule and scopes, `explain` fetches the keys
from the IdP as the plugin does (discovery off: the configured JWKS URI) and replays a request
through the plugin's decision code. Exit codes: 0 allowed, 1 refused, 2 bad input. No Envoy here:
the tool runs the same core; its agreement with the plugin is the core's own tests' business.
"""

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from devstack.httpbase import running
from devstack.idp import DEMO_CLIENTS, make_idp
from devstack.token import fetch_token
from plugin_configs import AUDIENCE, VM_ENV, idp_provider, main_config
from token_factory import TokenFactory

REPO = Path(__file__).resolve().parents[2]
CLI = os.environ.get("BRICKGATE_CLI", str(REPO / "target" / "release" / "brickgate"))


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    # Secrets named by `*_env` fields (the HMAC provider's JWKS) come from the tool's environment.
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=stdin, timeout=30,
                          env={**os.environ, **VM_ENV})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not Path(CLI).is_file():
        pytest.fail(f"no brickgate binary at {CLI}: run `make cli` (or set BRICKGATE_CLI)")
    with running(make_idp(0, audience=AUDIENCE)) as idp:
        config = tmp_path_factory.mktemp("cli") / "brickgate.json"
        config.write_text(json.dumps(main_config(idp.issuer, idp.port)))
        yield idp, config


def test_check_prints_the_compiled_table_and_refuses_a_bad_field_by_its_path(stack, tmp_path):
    _, config = stack
    checked = run("check", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "clusters-read  GET prefix /api/2.0/clusters/  -> token from [idp], requires any of scopes" in checked.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(config.read_text()), "rules": [{"match": {"prefix": "/"}, "providers": ["nope"]}]}))
    refused = run("check", str(bad))
    assert refused.returncode == 2 and "rules[0].providers" in refused.stderr, refused.stderr
    assert run("check").returncode == 2, "a missing argument is bad input"


@pytest.mark.parametrize("method, path, code, expected", [
    ("GET", "/api/2.0/clusters/list", 0, "rule: clusters-read"),
    ("POST", "/serving-endpoints/fraud/invocations", 0, "with any of scopes: serving:fraud all-apis"),
    ("GET", "/elsewhere", 1, "no rule matches GET /elsewhere"),
])
def test_route_names_the_rule_and_the_scopes(stack, method, path, code, expected):
    _, config = stack
    result = run("route", "--config", str(config), method, path)
    assert result.returncode == code and expected in result.stdout, result.stdout


def test_route_without_a_configuration_answers_from_the_databricks_catalogue():
    result = run("route", "POST", "/api/2.1/clusters/create")
    assert result.returncode == 0 and "databricks:clusters" in result.stdout and "clusters all-apis" in result.stdout


def test_explain_fetches_the_keys_and_allows_a_token_from_the_idp(stack):
    idp, config = stack
    token = fetch_token(idp.issuer, "demo-reader", DEMO_CLIENTS["demo-reader"].secret)
    result = run("explain", "--config", str(config), "--token", "-", "/api/2.0/clusters/list", stdin=token)
    assert result.returncode == 0, result.stdout + result.stderr
    for line in ("keys: provider idp: fetched", "ok    signature", "ok    requirement", "allowed: forwarded upstream",
                 '"decision":"allow"'):
        assert line in result.stdout, result.stdout
    assert token not in result.stdout + result.stderr, "the token is never printed"


def test_explain_shows_the_audience_mismatch_and_the_exact_refusal(stack):
    idp, config = stack
    token = TokenFactory(idp.issuer).idp(subject="alice", scope="clusters:read", aud="someone-else")
    result = run("explain", "--config", str(config), "--token", token, "/api/2.0/clusters/list")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  audience" in result.stdout and "expected one of [brickgate-e2e]" in result.stdout
    assert "refused: HTTP 401" in result.stdout and "x-brickgate-reason: audience_mismatch" in result.stdout
    assert 'www-authenticate: Bearer realm="brickgate-e2e", error="invalid_token"' in result.stdout
    assert token not in result.stdout + result.stderr, "the token is never printed"


def test_explain_offline_with_a_jwks_file_and_bad_input(stack, tmp_path):
    idp, config = stack
    token = TokenFactory(idp.issuer).idp(subject="bob", scope="clusters:read")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))
    refused = run("explain", "--config", str(config), "--jwks", str(jwks), "--token", token, "/api/2.0/clusters/list")
    assert refused.returncode == 1 and "unknown_kid" in refused.stdout, refused.stdout
    assert run("explain", "--config", str(config), "/api/2.0/clusters/list").returncode == 2, "no token: bad input"
    assert run("explain", "--config", str(config), "--token", token, "--bogus", "x", "/").returncode == 2


def test_make_run_points_at_the_access_log_the_metrics_and_a_working_explain_line(tmp_path):
    """The dev stack's plugin configuration, as `make run` writes it to .run/brickgate.json, passes
    `brickgate check`; the printed pointers name the admin's /stats/prometheus and an explain line."""
    from devstack import run as devstack_run

    envoy_yaml = devstack_run.DEV_CONFIG.read_text()
    config = tmp_path / "brickgate.json"
    config.write_text(devstack_run.plugin_config_text(devstack_run.DEV_FILTER.read_text()))
    assert run("check", str(config)).returncode == 0
    pointers = devstack_run.where_to_look(10000, devstack_run.RUN_DIR / "envoy.log", envoy_yaml, config, CLI)
    assert "http://127.0.0.1:9901/stats/prometheus" in pointers
    assert "access log: " in pointers
    assert "policy:     envoy/ecds/brickgate.yaml, watched by Envoy" in pointers, "make run names the live-editable file"
    refresh = next(line for line in pointers.splitlines() if "--print-plugin-config" in line)
    command, target = (part.split() for part in refresh.split(">"))
    assert target == [str(config)]
    refreshed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert json.loads(refreshed.stdout) == json.loads(config.read_text()), "the refresh line prints the live policy's JSON"
    explain_line = next(line for line in pointers.splitlines() if " explain " in line)
    assert f"{CLI} explain --config {config} --token - --method POST /api/2.1/clusters/create" in explain_line


def query_token_config(idp, tmp_path, jwks_uri: str | None = None) -> Path:
    """One provider that reads tokens from the query only, so `explain` places the token there."""
    provider = idp_provider(idp.issuer, idp.port, token_sources=[{"query": "access_token"}])
    if jwks_uri:
        provider["jwks"] = {"remote": {"cluster": "idp", "uri": jwks_uri}}
    config = tmp_path / "query.json"
    config.write_text(json.dumps({"realm": "cli", "providers": {"idp": provider},
                                  "rules": [{"name": "all", "match": {"template": "/**"}, "providers": ["idp"]}]}))
    return config


@pytest.mark.parametrize("path", ["/api/2.0/clusters//list", "/api/2.0/clusters/li%73t?x=1",
                                  "/api/2.0/clusters//list?access_token=eyJvdGhlciJ9.e30.c2ln"])
def test_explain_never_prints_a_token_carried_in_the_query(stack, tmp_path, path):
    """The token rides in the query and the plugin rewrites the path: `path becomes …` used to hold
    the whole token. Neither it nor a token written into PATH is printed, on stdout or stderr."""
    idp, _ = stack
    token = TokenFactory(idp.issuer).idp(subject="alice", scope="clusters:read")
    result = run("explain", "--config", str(query_token_config(idp, tmp_path)), "--token", "-", path, stdin=token)
    printed = result.stdout + result.stderr
    assert "sent in query parameter access_token" in printed, printed
    assert token not in printed and "eyJvdGhlciJ9.e30.c2ln" not in printed, printed
    if "access_token=" not in path:
        assert result.returncode == 0 and "path becomes /api/2.0/clusters/list" in printed, printed
        assert "access_token=[redacted]" in printed, printed


class _Counting(HTTPServer):
    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.requests = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_explain_never_follows_a_key_fetch_redirect(stack, tmp_path):
    """The JWKS URL answers 302 to another server (plain http, a token-looking query): the tool, like
    the plugin, does not follow it, names the Location's host only, and the target sees nothing."""
    idp, _ = stack

    class Target(BaseHTTPRequestHandler):
        def do_GET(self):
            self.server.requests += 1
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    target = _Counting(Target)
    target_host = f"127.0.0.1:{target.server_port}"

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.server.requests += 1
            self.send_response(302)
            self.send_header("Location", f"http://{target_host}/jwks.json?token=sekrit")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    redirect = _Counting(Redirect)
    try:
        config = query_token_config(idp, tmp_path, f"http://127.0.0.1:{redirect.server_port}/jwks.json")
        token = TokenFactory(idp.issuer).idp(subject="alice", scope="clusters:read")
        result = run("explain", "--config", str(config), "--token", "-", "/api/2.0/clusters/list", stdin=token)
        printed = result.stdout + result.stderr
        assert result.returncode == 3, "keys that could not be fetched are not a policy refusal: " + printed
        assert f"answered HTTP 302, a redirect to host {target_host}: not followed" in printed, printed
        assert "JWKS endpoint answered HTTP 302" in printed, printed
        assert "sekrit" not in printed
        assert redirect.requests >= 1 and target.requests == 0
    finally:
        target.shutdown()
        redirect.shutdown()


# The files operators deploy, read as the control plane renders them (issue 18, finding 6).
SHIPPED = [
    ("envoy/ecds/brickgate.yaml", "brickgate-demo"),
    ("envoy/envoy.yaml", "brickgate-demo"),
    ("deploy/istio/wasmplugin.yaml", "databricks"),
    ("deploy/envoy-gateway/extension-policy.yaml", "databricks"),
]


def run_in_repo(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    # The mesh manifests hand the VM BRICKGATE_CLIENT_SECRET from Envoy's environment (HOST).
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=stdin, timeout=30, cwd=REPO,
                          env={**os.environ, "BRICKGATE_CLIENT_SECRET": "e2e-not-a-secret"})


@pytest.mark.parametrize("path, realm", SHIPPED)
def test_check_reads_the_shipped_deployment_files_and_prints_json(path, realm):
    human = run_in_repo("check", path)
    assert human.returncode == 0 and f"configuration {path} is valid" in human.stdout, human.stdout + human.stderr
    document = run_in_repo("check", "--json", path)
    assert document.returncode == 0, document.stderr
    checked = json.loads(document.stdout)
    assert checked["schema"] == "brickgate.check/v1" and checked["valid"] is True
    assert checked["realm"] == realm and checked["mode"] == "enforce"
    # The only warning a shipped file may carry: its service-principal provider asks Databricks
    # for each caller's own scopes, which the secret must allow (docs/DATABRICKS.md).
    assert all("service_principal" in warning for warning in checked["warnings"]), checked["warnings"]
    assert checked["providers"] and checked["rules"] and checked["route_catalogue"] is True


def test_a_mesh_manifest_sees_only_the_variables_its_vm_gets(tmp_path):
    """The WasmPlugin passes BRICKGATE_CLIENT_SECRET from Envoy's environment: without it in the
    tool's environment, check says so (exit 2), as the plugin would refuse to start."""
    env = {k: v for k, v in os.environ.items() if k != "BRICKGATE_CLIENT_SECRET"}
    result = subprocess.run([CLI, "check", "--json", "deploy/istio/wasmplugin.yaml"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "BRICKGATE_CLIENT_SECRET" in result.stderr, result.stderr
    assert json.loads(result.stdout) == {"schema": "brickgate.check/v1", "valid": False,
                                         "error": result.stderr.removeprefix("brickgate: ").strip()}


def test_several_filters_are_refused_with_their_names_until_one_is_chosen(tmp_path):
    ecds = (REPO / "envoy/ecds/brickgate.yaml").read_text()
    both = tmp_path / "two.yaml"
    both.write_text(ecds + "\n---\n" + ecds.replace("name: brickgate\n", "name: brickgate-canary\n", 1))
    refused = run_in_repo("check", str(both))
    assert refused.returncode == 2 and "[brickgate, brickgate-canary]: choose one with --filter NAME" in refused.stderr
    chosen = run_in_repo("check", "--filter", "brickgate-canary", str(both))
    assert chosen.returncode == 0, chosen.stderr


def test_explain_json_is_one_document_without_the_token(stack):
    idp, config = stack
    token = fetch_token(idp.issuer, "demo-reader", DEMO_CLIENTS["demo-reader"].secret)
    result = run("explain", "--json", "--config", str(config), "--token", "-", "/api/2.0/clusters/list", stdin=token)
    assert result.returncode == 0, result.stdout + result.stderr
    assert token not in result.stdout + result.stderr, "the token is never printed"
    explained = json.loads(result.stdout)
    assert explained["schema"] == "brickgate.explain/v1" and explained["exit_code"] == 0
    checks = {c["check"]: c for c in explained["checks"]}
    assert checks["signature"]["result"] == "ok" and checks["requirement"]["result"] == "ok", checks
    assert explained["decision"]["decision"] == "allowed" and explained["audit"]["decision"] == "allow"
    assert explained["audit"]["rule"] == "clusters-read"


def test_explain_replays_the_operators_headers(stack):
    """A second credential given with --header reaches the decision: refused as the plugin refuses it."""
    idp, config = stack
    token = fetch_token(idp.issuer, "demo-reader", DEMO_CLIENTS["demo-reader"].secret)
    args = ("explain", "--json", "--config", str(config), "--token", "-", "--header", "Origin: https://app.example")
    alone = run(*args, "/api/2.0/clusters/list", stdin=token)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert json.loads(alone.stdout)["request"]["headers"] == [["origin", "https://app.example"]]
    other = TokenFactory(idp.issuer).idp(subject="mallory", scope="clusters:read")
    doubled = run(*args, "--header", f"Authorization: Bearer {other}", "/api/2.0/clusters/list", stdin=token)
    assert doubled.returncode == 1, doubled.stdout + doubled.stderr
    assert token not in doubled.stdout + doubled.stderr and other not in doubled.stdout + doubled.stderr, \
        "a credential given as a header is hidden as the token is"
    assert json.loads(doubled.stdout)["decision"]["decision"] == "refused"


def test_route_json_names_rule_scopes_and_class():
    result = run("route", "--json", "POST", "/api/2.0/token/create")
    assert result.returncode == 1, result.stdout
    answer = json.loads(result.stdout)
    assert answer["class"] == "personal_access_tokens" and answer["reason"] == "route_disabled"
    allowed = json.loads(run("route", "--json", "POST", "/api/2.1/clusters/create").stdout)
    assert allowed["outcome"] == "allowed" and "all-apis" in allowed["needs"]["scopes_any"], allowed


@pytest.mark.parametrize(("method", "path", "reason"), [
    ("Post", "/api/2.1/clusters/create", "bad_method"),
    ("POST ", "/api/2.1/clusters/create", "bad_method"),
    ("POST", "/api/2.0/preview/preview/token/create", "bad_path"),
    ("POST", "/api/2.0/2.1/token/create", "bad_path"),
    ("POST", "/api/2.0/serving-endpoints/fraud/invocations", "bad_path"),
])
def test_route_refuses_what_the_plugin_refuses_before_any_rule(method, path, reason):
    """Review R1: the tool answered `Post` as `POST` and stacked versions as the all-apis
    default; the plugin refuses both before a rule decides, and so does `route`."""
    result = run("route", "--json", method, path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert json.loads(result.stdout)["reason"] == reason, result.stdout


def test_version_help_and_exit_codes_are_documented():
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("brickgate "), version.stdout
    for command in ("check", "explain", "route"):
        for asked in (("help", command), (command, "--help"), (command, "-h")):
            helped = run(*asked)
            assert helped.returncode == 0 and helped.stdout.startswith(f"usage: brickgate {command}"), asked
            assert "3    the signing keys could not be fetched" in helped.stdout
    assert "[--header NAME:VALUE]..." in run("explain", "--help").stdout
    assert run("check", "--json=yes", "x").returncode == 2


def test_a_closed_pipe_stops_the_tool_quietly_with_141(tmp_path):
    """`brickgate check big.json | head -1`: the tool used to panic (exit 134). Its output here is far
    larger than a pipe's buffer, so it is still writing when head exits."""
    config = {"providers": {"p": {"issuer": "https://idp.example", "allow_any_audience": True,
                                  "jwks": {"remote": {"cluster": "idp", "uri": "https://idp.example/keys"}}}},
              "rules": [{"name": f"rule-{i}", "match": {"path": f"/api/2.0/r{i}"}, "providers": ["p"]}
                        for i in range(4000)]}
    big = tmp_path / "big.json"
    big.write_text(json.dumps(config))
    result = subprocess.run(["bash", "-c", f'"{CLI}" check "{big}" | head -1; echo "status ${{PIPESTATUS[0]}}" >&2'],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout == f"configuration {big} is valid\n", result.stdout
    assert result.stderr.strip() == "status 141", result.stderr


# Issue 18 follow-up (M7): `check` warns where the `body_rules` mode cannot get the bodies its rules
# need, from what the file shows of the filter around brickgate (docs/LIFECYCLE.md).
BODY_PLUGIN = {
    "providers": {"okta": {"issuer": "https://okta.test", "allow_any_audience": True,
                           "jwks": {"remote": {"cluster": "idp", "uri": "https://okta.test/keys"}}}},
    "rules": [{"name": "serving", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"]}],
}
BUFFER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"


def body_bootstrap(body_rules: str, flag: bool, after: list[dict]) -> dict:
    """A bootstrap whose HCM chain is brickgate's Wasm filter, then `after`, then the router."""
    wasm = {"name": "brickgate", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"root_id": "brickgate", "vm_config": {"runtime": "envoy.wasm.runtime.v8"},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": json.dumps({**BODY_PLUGIN, "body_rules": body_rules})},
                   **({"allow_on_headers_stop_iteration": True} if flag else {})}}}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "http_filters": [wasm, *after, {"name": "envoy.filters.http.router"}]}
    return {"static_resources": {"listeners": [{"name": "main", "filter_chains": [{"filters": [
        {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}]}}


BUFFER = {"name": "envoy.filters.http.buffer", "typed_config": {"@type": BUFFER_TYPE, "max_request_bytes": 17825792}}
RENAMED_BUFFER = {"name": "hold-bodies", "typed_config": {"@type": BUFFER_TYPE, "max_request_bytes": 17825792}}


@pytest.mark.parametrize("name, document, says", [
    ("buffer-missing", body_bootstrap("buffer_filter", False, []),
     ["the filter after it is envoy.filters.http.router, not envoy.filters.http.buffer"]),
    ("buffer-present", body_bootstrap("buffer_filter", False, [BUFFER]), []),
    ("buffer-by-type", body_bootstrap("buffer_filter", False, [RENAMED_BUFFER]), []),
    ("no-flag", body_bootstrap("hold_headers", False, []), ["lacks allow_on_headers_stop_iteration: true"]),
    ("flag", body_bootstrap("hold_headers", True, []), []),
    ("wasmplugin", {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
                    "metadata": {"name": "bg", "namespace": "ns"},
                    "spec": {"url": "oci://r/b:1", "pluginConfig": BODY_PLUGIN}},
     ["which Istio's WasmPlugin cannot set"]),
    ("extension-policy", {"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy",
                          "metadata": {"name": "bg"},
                          "spec": {"wasm": [{"name": "brickgate", "config": BODY_PLUGIN}]}},
     ["which Envoy Gateway's EnvoyExtensionPolicy cannot set"]),
    ("anonymous-first", {**BODY_PLUGIN, "body_rules": "buffer_filter", "rules": [
        {"name": "open", "match": {"serving_endpoint": "public"}, "allow_anonymous": True},
        *BODY_PLUGIN["rules"]]},
     ["rules[1] (serving) needs a token but comes after the anonymous serving-endpoint rule rules[0] (open)",
      "503 internal_error"]),
])
def test_check_warns_where_the_body_mode_cannot_get_the_body(tmp_path, name, document, says):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    checked = run("check", "--json", str(path))
    assert checked.returncode == 0, checked.stderr
    warnings = json.loads(checked.stdout)["warnings"]
    assert len(warnings) == (1 if says else 0), warnings
    for phrase in says:
        assert phrase in warnings[0], warnings
    human = run("check", str(path))
    assert human.returncode == 0 and all(phrase in human.stdout for phrase in says), human.stdout


def test_check_refuses_body_rules_off_with_a_serving_endpoint_rule_by_its_path(tmp_path):
    path = tmp_path / "off.json"
    path.write_text(json.dumps({**BODY_PLUGIN, "body_rules": "off"}))
    refused = run("check", str(path))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "rules[0].match.serving_endpoint" in refused.stderr and "body_rules: off" in refused.stderr, refused.stderr
