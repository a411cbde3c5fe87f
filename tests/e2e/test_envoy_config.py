"""The dev configs (Wasm: envoy/envoy.yaml; native: envoy/native.yaml) validate; an invalid plugin
configuration stops Envoy with a precise log line."""

import json
import re
from pathlib import Path

import pytest

from envoy_harness import CONFIG_REFUSED, NATIVE, bootstrap, brickgate_listener, run_validate
from plugin_configs import main_config

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVOY_START_TIMEOUT_S = 20.0


def test_dev_config_validates(envoy_bin, wasm_path, tmp_path):
    """envoy/envoy.yaml as shipped (brickgate's filter by ECDS from envoy/ecds/brickgate.yaml) validates;
    so does the same bootstrap with that filter config inlined, which also runs the plugin's own
    configuration check on the shipped plugin JSON."""
    import yaml
    from shipped_config import shipped_hcm

    result = run_validate(envoy_bin, REPO_ROOT / "envoy" / "envoy.yaml", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr

    config = yaml.safe_load((REPO_ROOT / "envoy" / "envoy.yaml").read_text())
    filters = shipped_hcm(config)["http_filters"]
    (at,) = [index for index, entry in enumerate(filters) if "config_discovery" in entry]
    assert filters[at]["config_discovery"]["config_source"]["path_config_source"]["path"] == "envoy/ecds/brickgate.yaml"
    ecds = yaml.safe_load(_with_wasm((REPO_ROOT / "envoy" / "ecds" / "brickgate.yaml").read_text(), wasm_path))
    (resource,) = ecds["resources"]
    assert resource["name"] == filters[at]["name"] == "brickgate"
    filters[at] = {"name": "brickgate", "typed_config": resource["typed_config"]}
    inlined = tmp_path / "envoy-inlined.json"
    inlined.write_text(json.dumps(config))
    result = run_validate(envoy_bin, inlined, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _parent_and_key(config: dict, dotted_path: str):
    """`rules.3.require` → (config["rules"][3], "require")."""
    *parents, leaf = dotted_path.split(".")
    target = config
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    return target, int(leaf) if isinstance(target, list) else leaf


def _without(dotted_path: str):
    def mutate(config: dict) -> None:
        parent, key = _parent_and_key(config, dotted_path)
        del parent[key]
    return mutate


def _set(dotted_path: str, value):
    def mutate(config: dict) -> None:
        parent, key = _parent_and_key(config, dotted_path)
        parent[key] = value
    return mutate


# mutation of the valid main config → regex the `<field path>: <problem>` part of the log line must match
INDEX = r"(\[{}\]|\.{})"
BAD_CONFIGS = [
    pytest.param(_without("providers.idp.issuer"), r"providers\.idp(\.issuer)?: .*issuer", id="provider-without-issuer"),
    pytest.param(_set("rulez", []), r".*rulez", id="unknown-top-level-field"),
    pytest.param(_set("providers.idp.audience", ["x"]), r"providers\.idp(\.audience)?: .*audience", id="unknown-provider-field"),
    pytest.param(_set("providers.idp.algorithms", ["RS256", "none"]), r"providers\.idp\.algorithms\S*: ", id="alg-none-configured"),
    pytest.param(_set("providers.idp.algorithms", ["HS256"]), r"providers\.idp(\.algorithms\S*)?: ", id="hs256-with-remote-jwks"),
    pytest.param(_set("providers.idp.jwks.remote.uri", "http://idp.example.com/jwks.json"),
                 r"providers\.idp\.jwks\.remote\.uri: ", id="plain-http-jwks-not-loopback"),
    pytest.param(_set("rules.0.providers", ["idp"]), r"rules" + INDEX.format(0, 0) + r"\S*: ", id="anonymous-rule-with-providers"),
    pytest.param(_set("rules.3.require", {"scopes_any": ["serving:{model}"]}), r"rules" + INDEX.format(3, 3) + r"\S*: .*model",
                 id="unbound-scope-variable"),
    pytest.param(_set("rules.1.providers", ["nobody"]), r"rules" + INDEX.format(1, 1) + r"\S*: .*nobody", id="rule-names-unknown-provider"),
    pytest.param(_set("identity", {"header_prefix": "X-Bad-"}), r"identity\.header_prefix: ", id="header-prefix-upper-case"),
    pytest.param(_set("max_token_bytes", 100), r"max_token_bytes: ", id="max-token-bytes-too-small"),
    pytest.param(_set("realm", 'bad"realm'), r"realm: ", id="realm-with-quote"),
    pytest.param(_set("providers", {}), r"providers: ", id="no-providers"),
]


@pytest.mark.parametrize(("mutate", "expected_detail"), BAD_CONFIGS)
def test_invalid_plugin_config_stops_envoy(start_envoy, wasm_path, idp, upstream, mutate, expected_detail):
    plugin_config = main_config(idp.issuer, idp.port)
    mutate(plugin_config)
    listener = brickgate_listener("bad", str(wasm_path), plugin_config)
    envoy = start_envoy(bootstrap([listener], upstream.port, idp.port), "bad-config")

    exit_code = envoy.wait_exit(ENVOY_START_TIMEOUT_S)

    log = envoy.log_text()
    assert exit_code not in (None, 0), "Envoy must refuse to start (and so never serve) with an invalid plugin config"
    problems = re.findall(r"brickgate: invalid configuration: (.*)", log)
    assert problems, "no `brickgate: invalid configuration:` line in the log"
    assert any(re.match(expected_detail, problem) for problem in problems), problems
    assert CONFIG_REFUSED in log


def test_config_that_is_not_json_stops_envoy(start_envoy, wasm_path, idp, upstream):
    listener = brickgate_listener("bad", str(wasm_path), "{ this is not json")
    envoy = start_envoy(bootstrap([listener], upstream.port, idp.port), "not-json")
    assert envoy.wait_exit(ENVOY_START_TIMEOUT_S) not in (None, 0)
    assert "brickgate: invalid configuration:" in envoy.log_text()


def test_invalid_plugin_config_fails_validate_mode(envoy_bin, wasm_path, idp, upstream, tmp_path):
    plugin_config = main_config(idp.issuer, idp.port)
    del plugin_config["providers"]["idp"]["issuer"]
    config_path = tmp_path / "envoy.json"
    config_path.write_text(json.dumps(bootstrap([brickgate_listener("bad", str(wasm_path), plugin_config)], upstream.port, idp.port)))
    result = run_validate(envoy_bin, config_path, cwd=tmp_path)
    assert result.returncode != 0
    assert "brickgate: invalid configuration:" in result.stdout + result.stderr


def test_dev_config_fits_databricks_serving_limits():
    """Issue 9 point 6: the listener buffers a whole 16 MiB serving body (Databricks' payload limit,
    brickgate's default databricks.max_body_bytes) with headers to spare, and serving routes wait
    out Databricks' longest model execution (297 s)."""
    text = (REPO_ROOT / "envoy" / "envoy.yaml").read_text()
    filter_text = (REPO_ROOT / "envoy" / "ecds" / "brickgate.yaml").read_text()
    (limit,) = re.findall(r"per_connection_buffer_limit_bytes:\s*(\d+)", text)
    assert int(limit) > 16 * 1024 * 1024
    assert "\"max_body_bytes\"" not in filter_text, "the dev config relies on the 16 MiB default"
    for prefix in ("/serving-endpoints/", "/ai-gateway/"):
        route = re.search(r'prefix: "' + re.escape(prefix) + r'" \}\s*\n\s*route: \{([^}]*)\}', text)
        assert route, prefix
        timeouts = dict(re.findall(r"(timeout|idle_timeout): (\d+)s", route.group(1)))
        assert int(timeouts["timeout"]) >= 297 and int(timeouts["idle_timeout"]) >= 297, (prefix, timeouts)


def _with_wasm(text: str, wasm_path: Path) -> str:
    return text.replace("filename: dist/brickgate.wasm", f"filename: {wasm_path}")


def test_otel_access_log_validates(envoy_bin, wasm_path, tmp_path):
    """The OpenTelemetry access log of envoy/otel-access-log.yaml, spliced into envoy/envoy.yaml."""
    result = _validate_spliced_with_otel(envoy_bin, _with_wasm((REPO_ROOT / "envoy" / "envoy.yaml").read_text(), wasm_path),
                                         "otel-access-log.yaml", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _validate_spliced_with_otel(envoy_bin: str, config_text: str, otel_name: str, tmp_path: Path):
    """`envoy --mode validate` on a dev config whose access log and clusters take the OpenTelemetry
    log and collector cluster of envoy/<otel_name>, as that file's header tells users to."""
    import yaml
    from shipped_config import shipped_hcm

    config = yaml.safe_load(config_text)
    otel = yaml.safe_load((REPO_ROOT / "envoy" / otel_name).read_text())
    shipped_hcm(config)["access_log"] = otel["access_log"]
    config["static_resources"]["clusters"] += otel["clusters"]
    path = tmp_path / "envoy-otel.json"
    path.write_text(json.dumps(config))
    return run_validate(envoy_bin, path, cwd=REPO_ROOT)


def test_every_shipped_config_sets_the_same_stats_tags():
    import yaml

    tags = yaml.safe_load((REPO_ROOT / "envoy" / "envoy.yaml").read_text())["stats_config"]["stats_tags"]
    assert {tag["tag_name"] for tag in tags} == {"decision", "reason", "rule"}
    # Istio: the bootstrap override's JSON; Envoy Gateway: the EnvoyProxy's bootstrap merge.
    (istio,) = yaml.safe_load_all((REPO_ROOT / "deploy" / "istio" / "bootstrap.yaml").read_text())
    assert json.loads(istio["data"]["custom_bootstrap.json"])["stats_config"]["stats_tags"] == tags
    (proxy,) = yaml.safe_load_all((REPO_ROOT / "deploy" / "envoy-gateway" / "envoy-proxy.yaml").read_text())
    assert yaml.safe_load(proxy["spec"]["bootstrap"]["value"])["stats_config"]["stats_tags"] == tags
    operations = (REPO_ROOT / "docs" / "OPERATIONS.md").read_text()
    for tag in tags:
        assert tag["regex"] in operations, "docs/OPERATIONS.md shows the shipped regexes"


def test_make_run_with_another_port_or_wasm_watches_its_rendered_filter(envoy_bin, wasm_path, tmp_path, monkeypatch):
    """`PORT=… make run` (or another --wasm) runs copies under .run/: the copy of envoy/envoy.yaml
    watches the copied filter file, which loads the wasm asked for; the default runs the shipped
    files themselves, so editing envoy/ecds/brickgate.yaml changes the running policy."""
    import yaml
    from devstack import run as devstack_run
    from shipped_config import shipped_hcm

    assert devstack_run.envoy_config(10000, REPO_ROOT / "dist" / "brickgate.wasm") == (devstack_run.DEV_CONFIG, devstack_run.DEV_FILTER)
    monkeypatch.setattr(devstack_run, "RUN_DIR", tmp_path)
    config_path, filter_path = devstack_run.envoy_config(18080, wasm_path)
    config = yaml.safe_load(config_path.read_text())
    assert config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] == 18080
    (discovery,) = [entry for entry in shipped_hcm(config)["http_filters"] if "config_discovery" in entry]
    source = discovery["config_discovery"]["config_source"]["path_config_source"]
    assert (source["path"], source["watched_directory"]["path"]) == (str(filter_path), str(filter_path.parent))
    rendered = yaml.safe_load(filter_path.read_text())["resources"][0]["typed_config"]["config"]
    assert rendered["vm_config"]["code"]["local"]["filename"] == str(wasm_path)
    assert devstack_run.plugin_config_text(filter_path.read_text()) == devstack_run.plugin_config_text(devstack_run.DEV_FILTER.read_text())
    result = run_validate(envoy_bin, config_path, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# The native config loads dist/libbrickgate.so (BRICKGATE_NATIVE_DIR), which `make e2e-native` builds
# and `make e2e` does not: Envoy runs it only in the native pass. The static checks run in both.
NEEDS_NATIVE_MODULE = pytest.mark.skipif(not NATIVE, reason="loads libbrickgate.so, built for the native pass (make e2e-native)")


def _without_form(config: dict) -> dict:
    """A dev config without what its form decides: brickgate's filter, the record's access-log field
    and the stats tags (the Wasm form's counter names carry the labels, the native counter has them)."""
    config = json.loads(json.dumps(config))
    config.pop("stats_config", None)
    hcm = _hcm(config)
    del hcm["http_filters"][0]
    for entry in hcm["access_log"]:
        del entry["typed_config"]["log_format"]["json_format"]["brickgate"]
    return config


def _hcm(config: dict) -> dict:
    from shipped_config import shipped_hcm
    return shipped_hcm(config)


def test_native_dev_config_is_the_wasm_one_in_the_native_form():
    """envoy/native.yaml is envoy/envoy.yaml (listener, routes, clusters, access log) with brickgate
    as the dynamic module, the plugin JSON of envoy/ecds/brickgate.yaml, the record read from the
    filter state `brickgate` and no stats tags."""
    import yaml
    from devstack.run import plugin_config_text

    wasm = yaml.safe_load((REPO_ROOT / "envoy" / "envoy.yaml").read_text())
    native = yaml.safe_load((REPO_ROOT / "envoy" / "native.yaml").read_text())
    assert _without_form(native) == _without_form(wasm)
    assert "stats_config" not in native
    (log,) = _hcm(native)["access_log"]
    assert log["typed_config"]["log_format"]["json_format"]["brickgate"] == "%FILTER_STATE(brickgate:PLAIN)%"
    module = _hcm(native)["http_filters"][0]
    assert module["name"] == "envoy.filters.http.dynamic_modules"
    typed = module["typed_config"]
    assert (typed["dynamic_module_config"]["name"], typed["filter_name"]) == ("brickgate", "brickgate")
    ecds_plugin = plugin_config_text((REPO_ROOT / "envoy" / "ecds" / "brickgate.yaml").read_text())
    assert json.loads(typed["filter_config"]["value"]) == json.loads(ecds_plugin)


def test_native_otel_access_log_differs_only_in_the_record_attribute():
    import yaml

    wasm = yaml.safe_load((REPO_ROOT / "envoy" / "otel-access-log.yaml").read_text())
    native = yaml.safe_load((REPO_ROOT / "envoy" / "otel-access-log-native.yaml").read_text())

    def record_attribute(otel: dict) -> dict:
        (attribute,) = [entry for entry in otel["access_log"][0]["typed_config"]["attributes"]["values"] if entry["key"] == "brickgate"]
        return attribute["value"]

    assert record_attribute(wasm) == {"string_value": "%FILTER_STATE(wasm.brickgate)%"}
    assert record_attribute(native) == {"string_value": "%FILTER_STATE(brickgate:PLAIN)%"}
    record_attribute(native)["string_value"] = record_attribute(wasm)["string_value"]
    assert native == wasm


@NEEDS_NATIVE_MODULE
def test_native_dev_config_validates(envoy_bin):
    """envoy/native.yaml as shipped validates, which loads the module and runs its configuration
    check on the shipped plugin JSON."""
    result = run_validate(envoy_bin, REPO_ROOT / "envoy" / "native.yaml", cwd=REPO_ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "OK" in output and "configured (native)" in output, output


@NEEDS_NATIVE_MODULE
def test_native_otel_access_log_validates(envoy_bin, tmp_path):
    """envoy/otel-access-log-native.yaml, spliced into envoy/native.yaml."""
    result = _validate_spliced_with_otel(envoy_bin, (REPO_ROOT / "envoy" / "native.yaml").read_text(),
                                         "otel-access-log-native.yaml", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
