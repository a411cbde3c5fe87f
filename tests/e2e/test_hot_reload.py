"""Hot reload through extension config discovery (ECDS) from a watched file, as envoy/envoy.yaml
ships it: a policy change applies without restarting Envoy, under load no request fails or is decided
by a mixture of the old and the new policy, and keys are not fetched again when the providers did
not change."""

import json
import os
import threading
import time
import uuid

import yaml

from envoy_harness import ROUTER, STRING_VALUE, WASM, HCM, bootstrap, loopback
from gateway_client import send
from plugin_configs import idp_provider
from shipped_config import REPO_ROOT, audit_record, with_shipped_observability

PREFIX = "/api/2.0/clusters/"
LOAD_THREADS = 4


def policy(idp, version: str) -> dict:
    """Version `a` lets scope `scope-a` read clusters under rule `policy-a`; version `b` only `scope-b`."""
    return {
        "realm": "brickgate-e2e",
        "providers": {"idp": idp_provider(idp.issuer, idp.port)},
        "rules": [{"name": f"policy-{version}", "match": {"prefix": PREFIX, "methods": ["GET"]},
                   "providers": ["idp"], "require": {"scopes_any": [f"scope-{version}"]}}],
    }


def shipped_discovery(directory) -> dict:
    """The shipped ECDS filter entry, pointed at `directory`."""
    shipped = yaml.safe_load((REPO_ROOT / "envoy" / "envoy.yaml").read_text())
    hcm = shipped["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    entry = next(f for f in hcm["http_filters"] if "config_discovery" in f)
    source = entry["config_discovery"]["config_source"]["path_config_source"]
    source["path"] = str(directory / "brickgate.json")
    source["watched_directory"]["path"] = str(directory)
    return entry


def write_filter_config(directory, wasm_path, plugin_config: dict, version: str) -> None:
    """Writes the ECDS resource next to the watched file, then renames it over (atomically)."""
    resource = {"version_info": version, "resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": "brickgate",
        "typed_config": {"@type": WASM, "config": {
            "name": "brickgate", "root_id": "brickgate", "failure_policy": "FAIL_CLOSED",
            "allow_on_headers_stop_iteration": True,
            "vm_config": {"vm_id": "brickgate", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(wasm_path)}}},
            "configuration": {"@type": STRING_VALUE, "value": json.dumps(plugin_config)},
        }},
    }]}
    staged = directory / f".brickgate.{version}.json"
    staged.write_text(json.dumps(resource))
    os.rename(staged, directory / "brickgate.json")


def jwks_fetches(idp) -> int:
    return sum(count for key, count in idp.snapshot_counts().items() if "jwks" in str(key))


def start_with_ecds(start_envoy, wasm_path, idp, upstream, tmp_path, name: str):
    """An Envoy whose brickgate filter comes from a watched ECDS file (policy `a` to start with)."""
    directory = tmp_path / "ecds"
    directory.mkdir()
    write_filter_config(directory, wasm_path, policy(idp, "a"), "a")
    hcm = {"@type": HCM, "stat_prefix": "reload", "codec_type": "AUTO", "use_remote_address": True,
           "route_config": {"name": "r", "virtual_hosts": [{"name": "r", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "10s"}}]}]},
           "http_filters": [shipped_discovery(directory), {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    listener = {"name": "reload", "address": loopback(0),
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}
    # Its filter is the Wasm form's (the ECDS resource above) in either pass: so is its access log.
    config = with_shipped_observability(bootstrap([listener], upstream.port, idp.port), native=False)
    config["node"] = {"id": "e2e", "cluster": "e2e"}
    envoy = start_envoy(config, name)
    envoy.wait_ready()
    return envoy, envoy.listener_ports()["reload"], directory


def wait_allowed(port, token) -> None:
    deadline = time.monotonic() + 20
    while send(port, "GET", PREFIX + "warm", token).status != 200:
        assert time.monotonic() < deadline, "policy a never served"
        time.sleep(0.2)


def test_policy_change_under_load(start_envoy, wasm_path, idp, upstream, tokens, tmp_path):
    envoy, port, directory = start_with_ecds(start_envoy, wasm_path, idp, upstream, tmp_path, "reload")
    token = {"a": tokens.idp(scope="scope-a"), "b": tokens.idp(scope="scope-b")}
    wait_allowed(port, token["a"])
    fetches_before = jwks_fetches(idp)

    sent: list[tuple[str, str, int]] = []  # (token's scope, path, status)
    failures: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            scope = "ab"[(worker + n) % 2]
            path = f"{PREFIX}{uuid.uuid4().hex}"
            try:
                sent.append((scope, path, send(port, "GET", path, token[scope], timeout_s=5).status))
            except OSError as err:
                failures.append(f"{path}: {err!r}")
            n += 1

    threads = [threading.Thread(target=load, args=(i,)) for i in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    write_filter_config(directory, wasm_path, policy(idp, "b"), "b")
    # Until scope-b is allowed everywhere (every worker took the new version), then a little more.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        recent = [status for scope, _, status in sent[-8:] if scope == "b"]
        if recent and all(status == 200 for status in recent):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()

    assert not failures, failures[:5]
    statuses = {status for _, _, status in sent}
    assert statuses <= {200, 403}, f"statuses other than allow/insufficient_scope: {statuses}"
    assert any(scope == "b" and status == 200 for scope, _, status in sent), "policy b never applied"
    assert any(scope == "a" and status == 200 for scope, _, status in sent), "policy a never served under load"

    # Each request was decided by one version: its rule (from the access log) and its outcome agree.
    time.sleep(0.5)  # access-log flush
    logged = {line["path"]: line for line in access_lines_all(envoy)}
    mixed = []
    for scope, path, status in sent:
        fields = audit_record(logged[path]["brickgate"], native=False)
        version = fields["rule"].removeprefix("policy-")
        if (status == 200) != (version == scope):
            mixed.append((scope, status, fields))
    assert not mixed, f"{len(mixed)} of {len(sent)} requests decided by a mixture: {mixed[:3]}"
    assert any(audit_record(logged[p]["brickgate"], native=False)["rule"] == "policy-b" for _, p, _ in sent)

    assert fetches_before >= 1, idp.snapshot_counts()
    assert jwks_fetches(idp) == fetches_before, "the new configuration fetched keys again"
    print(f"reload under load: {len(sent)} requests, {sum(s == 200 for _, _, s in sent)} allowed, jwks fetches {fetches_before}")
    assert envoy.process.poll() is None


def test_refused_configuration_keeps_the_previous_one(start_envoy, wasm_path, idp, upstream, tokens, tmp_path):
    envoy, port, directory = start_with_ecds(start_envoy, wasm_path, idp, upstream, tmp_path, "reload-bad")
    token = tokens.idp(scope="scope-a")
    wait_allowed(port, token)
    broken = policy(idp, "b")
    broken["rules"][0]["providers"] = ["nobody"]
    offset = envoy.log_size()
    write_filter_config(directory, wasm_path, broken, "broken")
    deadline = time.monotonic() + 10
    while "brickgate: invalid configuration" not in envoy.log_since(offset) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "brickgate: invalid configuration" in envoy.log_since(offset)
    time.sleep(0.5)
    for _ in range(10):
        assert send(port, "GET", PREFIX + uuid.uuid4().hex, token).status == 200, "the previous policy stopped serving"
    assert envoy.process.poll() is None


def access_lines_all(envoy) -> list[dict]:
    return [json.loads(line) for line in envoy.log_text().splitlines() if line.startswith("{")]
