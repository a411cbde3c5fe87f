"""The benchmark Envoy: one process, one worker, one listener per contender, all in front of the
same `direct_response` route, and helpers to start it, find its ports, read its stats and stop it.
"""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
DYNAMIC_MODULE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
JWT_AUTHN = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"

PATH = "/api/2.0/clusters/list"
PREFIX = "/api/2.0/clusters/"
SCOPE = "clusters:read"
UPSTREAM_BODY = '{"clusters":[]}\n'


def route_config() -> dict:
    """GET /api/2.0/clusters/list answers 200 at once; anything else 404."""
    get = [{"name": ":method", "string_match": {"exact": "GET"}}]
    return {
        "name": "bench",
        "virtual_hosts": [{
            "name": "bench",
            "domains": ["*"],
            "routes": [
                {"match": {"path": PATH, "headers": get},
                 "direct_response": {"status": 200, "body": {"inline_string": UPSTREAM_BODY}}},
                {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
            ],
        }],
    }


def jwt_authn_filters(issuer: str, audience: str, jwks: dict) -> list[dict]:
    """Native jwt_authn (local JWKS, JWT cache, payload in metadata) + RBAC on the scope claim."""
    provider = {
        "issuer": issuer,
        "audiences": [audience],
        "local_jwks": {"inline_string": json.dumps(jwks)},
        "forward": True,
        "payload_in_metadata": "jwt_payload",
        "normalize_payload_in_metadata": {"space_delimited_claims": ["scope"]},
        "jwt_cache_config": {"jwt_cache_size": 100},
    }
    jwt_authn = {"providers": {"bench": provider},
                 "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}
    has_scope = {"sourced_metadata": {"metadata_matcher": {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "jwt_payload"}, {"key": "scope"}],
        "value": {"list_match": {"one_of": {"string_match": {"exact": SCOPE}}}},
    }}}
    permission = {"and_rules": {"rules": [
        {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
        {"url_path": {"path": {"prefix": PREFIX}}},
    ]}}
    rbac = {"rules": {"action": "ALLOW",
                      "policies": {"clusters-read": {"permissions": [permission], "principals": [has_scope]}}}}
    return [{"name": "envoy.filters.http.jwt_authn", "typed_config": {"@type": JWT_AUTHN, **jwt_authn}},
            {"name": "envoy.filters.http.rbac", "typed_config": {"@type": RBAC, **rbac}}]


def brickgate_plugin_config(issuer: str, audience: str, jwks: dict, performance: dict | None) -> dict:
    config = {
        "providers": {"bench": {
            "issuer": issuer,
            "audiences": [audience],
            "jwks": {"inline": jwks},
            "algorithms": ["RS256", "ES256"],
        }},
        "rules": [{"name": "clusters-read", "match": {"prefix": PREFIX, "methods": ["GET"]},
                   "providers": ["bench"], "require": {"scopes_any": [SCOPE]}}],
    }
    if performance is not None:
        config["performance"] = performance
    return config


def brickgate_anonymous_config() -> dict:
    """brickgate admitting the route without a token: its cost without any token work."""
    return {
        "providers": {"unused": {"issuer": "https://unused.invalid", "allow_any_audience": True,
                                 "jwks": {"inline": {"keys": [{"kty": "oct", "kid": "x", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}},
                                 "algorithms": ["HS256"]}},
        "rules": [{"name": "anonymous", "match": {"prefix": PREFIX, "methods": ["GET"]}, "allow_anonymous": True}],
        "allow_inline_secrets": True,  # a placeholder key that verifies nothing
    }


def wasm_filter(name: str, wasm_path: str, plugin_config: dict, root_id: str = "brickgate") -> list[dict]:
    """A wasm filter in its own VM (vm_id = listener name), so each listener has its own caches."""
    config = {
        "name": name,
        "root_id": root_id,
        "failure_policy": "FAIL_CLOSED",
        "allow_on_headers_stop_iteration": True,
        "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": wasm_path}}},
        "configuration": {"@type": STRING_VALUE, "value": json.dumps(plugin_config)},
    }
    return [{"name": "envoy.filters.http.wasm", "typed_config": {"@type": WASM, "config": config}}]


def native_filter(module: str, filter_config: str, filter_name: str = "brickgate") -> list[dict]:
    """A dynamic module filter (the native form): Envoy loads `lib<module>.so` from
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH ([`native_search_path`]), once per process, and hands it
    `filter_config` as a StringValue, as tests/e2e/envoy_harness.py `brickgate_filter` does. One
    filter config per listener, so each listener has its own key store and caches, as each Wasm
    listener has its own VM."""
    return [{"name": "envoy.filters.http.dynamic_modules", "typed_config": {
        "@type": DYNAMIC_MODULE,
        "dynamic_module_config": {"name": module},
        "filter_name": filter_name,
        "filter_config": {"@type": STRING_VALUE, "value": filter_config},
    }}]


def native_search_path(work_dir: Path, modules: dict[str, str]) -> Path:
    """A directory holding `lib<name>.so` → each module's file, for ENVOY_DYNAMIC_MODULES_SEARCH_PATH:
    Envoy finds a module by name only, so two builds of libbrickgate.so (brickgate and the
    ABI-probe floor) need two names in one directory."""
    directory = work_dir / "dynamic-modules"
    directory.mkdir(exist_ok=True)
    for name, path in modules.items():
        (directory / f"lib{name}.so").symlink_to(Path(path).resolve())
    return directory


def listener(name: str, auth_filters: list[dict]) -> dict:
    """Loopback, port chosen by the kernel (read back from the admin API). No access log."""
    hcm = {
        "@type": HCM,
        "stat_prefix": f"bench_{name}",
        # As every shipped config: header names with `_` are refused (look-alikes of stripped headers).
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
        "use_remote_address": True,
        "route_config": route_config(),
        "http_filters": [*auth_filters, {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {"name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": hcm}]}]}


def bootstrap(listeners: list[dict]) -> dict:
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": listeners}}


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Envoy:
    """One Envoy process with `--concurrency 1` (or `concurrency` workers); config, admin address
    and log in `work_dir`."""

    def __init__(self, envoy_bin: str, config: dict, work_dir: Path, log_level: str, concurrency: int = 1,
                 env: dict[str, str] | None = None):
        self.work_dir = work_dir
        self.env = {**os.environ, **(env or {})}
        self.log_path = work_dir / "envoy.log"
        self.admin_address_path = work_dir / "admin-address.txt"
        config_path = work_dir / "envoy.json"
        config_path.write_text(json.dumps(config, indent=1))
        # Hot-restart shared memory is keyed by base id: derive it from our pid so runs never clash.
        base_id = os.getpid() * 16 + 11
        self.command = [envoy_bin, "-c", str(config_path), "--concurrency", str(concurrency), "--base-id", str(base_id),
                        "--admin-address-path", str(self.admin_address_path), "-l", log_level]
        self.process: subprocess.Popen | None = None
        self.admin_url = ""

    def start(self, ready_timeout_s: float = 60.0) -> "Envoy":
        with self.log_path.open("wb") as log:
            # Own session: a Ctrl-C reaches us, and we stop Envoy ourselves (after reading its log).
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.work_dir, env=self.env, start_new_session=True)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EnvoyError(f"Envoy exited with status {self.process.returncode} during start-up")
            if not self.admin_url and self.admin_address_path.exists():
                address = self.admin_address_path.read_text().strip()
                self.admin_url = f"http://{address}" if address else ""
            if self.admin_url:
                try:
                    if http_get(f"{self.admin_url}/ready", 1.0) == (200, "LIVE\n"):
                        return self
                except OSError:
                    pass
            time.sleep(0.1)
        raise EnvoyError(f"Envoy not ready after {ready_timeout_s:.0f}s")

    def worker_cpu_ns(self) -> int:
        """On-CPU time of Envoy's worker threads so far (`/proc/<pid>/task/*/schedstat`, in ns):
        what the worker spent, whatever else ran on the machine meanwhile (unlike req/s, which
        drops when the worker waits for a CPU)."""
        total = 0
        if self.process is None:
            return 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                if not (task / "comm").read_text().startswith("wrk:worker"):
                    continue
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return total

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no Envoy log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def listener_ports(self) -> dict[str, int]:
        _, body = http_get(f"{self.admin_url}/listeners?format=json")
        return {entry["name"]: entry["local_address"]["socket_address"]["port_value"]
                for entry in json.loads(body)["listener_statuses"]}

    def counters(self, pattern: str) -> dict[str, int]:
        """Counters whose name matches the regex `pattern` (admin /stats, text format)."""
        status, body = http_get(f"{self.admin_url}/stats?filter={urllib.parse.quote(pattern)}", 5.0)
        if status != 200:
            raise EnvoyError(f"admin /stats answered {status}")
        values = {}
        for line in body.splitlines():
            name, sep, value = line.partition(": ")
            if sep and value.strip().isdigit():
                values[name] = int(value)
        return values

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)


class EnvoyError(RuntimeError):
    pass


def version(envoy_bin: str) -> str:
    """`envoy --version` → e.g. "1.40.0/Clean/RELEASE/BoringSSL (9e55809)"."""
    out = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True, timeout=30).stdout
    text = out.split("version:", 1)[-1].strip()
    commit, _, rest = text.partition("/")
    return f"{rest} ({commit[:7]})" if rest else text or "unknown"
