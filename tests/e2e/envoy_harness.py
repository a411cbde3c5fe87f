"""Start a real Envoy with brickgate on loopback, find its ports, read its stats and its log."""

import itertools
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
WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
STDOUT_ACCESS_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
DYNAMIC_MODULE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"

# Which form of brickgate the e2e suite runs against: `wasm` (dist/brickgate.wasm, the default) or
# `native` (the dynamic module libbrickgate.so in BRICKGATE_NATIVE_DIR, default dist/). The tests
# are the same; the harness renders the filter and reads the stats as each form needs.
FORM = os.environ.get("BRICKGATE_FORM", "wasm")
if FORM not in ("wasm", "native"):
    raise SystemExit(f"BRICKGATE_FORM must be wasm or native, not {FORM!r}")
NATIVE = FORM == "native"
# Absolute: Envoy runs in each test's own directory, and reads a relative search path from there.
NATIVE_DIR = str(Path(os.environ.get("BRICKGATE_NATIVE_DIR", Path(__file__).resolve().parents[2] / "dist")).resolve())
# Each form's custom stats prefix: proxy-wasm metrics are `wasmcustom.`, a dynamic module's
# `dynamicmodulescustom.`. `EnvoyProcess.stats` reports both under the Wasm name, so one
# assertion serves both forms.
WASM_STATS_PREFIX = "wasmcustom."
NATIVE_STATS_PREFIX = "dynamicmodulescustom."
# One line per request in the Envoy log (printed when a test fails); the query is left out, tokens can be in it.
ACCESS_LOG_FORMAT = "[access] %REQ(:METHOD)% %PATH(NQ)% -> %RESPONSE_CODE% reason=%RESP(X-BRICKGATE-REASON)%\n"

# Secrets reach the plugin as environment variables of its VM, never in its configuration (which
# /config_dump shows): Envoy hands these over from its own environment (`host_env_keys`). Every
# listener lists the same keys, so all of them keep sharing the one VM `brickgate`.
VM_SECRET_ENV = "BRICKGATE_E2E_SP_SECRET"
VM_HMAC_JWKS_ENV = "BRICKGATE_E2E_HMAC_JWKS"  # an HS256 key is a secret too (jwks.inline_env)
VM_ENVIRONMENT = {"host_env_keys": [VM_SECRET_ENV, VM_HMAC_JWKS_ENV]}

# Hot-restart shared memory is keyed by base id: derive it from our pid so parallel runs never clash.
_base_ids = itertools.count(os.getpid() * 16)


def loopback(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def static_cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": loopback(port)}}]}]},
    }


# As every shipped config: a header name with `_` is refused by Envoy itself (HTTP/1.1: 400; HTTP/2:
# stream reset), since upstreams that read `X_Forwarded_User` as `x-forwarded-user` would see
# look-alikes of headers brickgate strips. brickgate strips the look-alikes too (defence in depth).
REJECT_UNDERSCORES = {"headers_with_underscores_action": "REJECT_REQUEST"}
# Envoy's default: lets them through, so a test can prove brickgate's own stripping.
ALLOW_UNDERSCORES = {"headers_with_underscores_action": "ALLOW"}


def brickgate_filter(name: str, wasm_path: str, configuration: str, root_id: str = "brickgate",
                     hold_body: bool = True) -> dict:
    """brickgate as an HTTP filter in the form under test (`BRICKGATE_FORM`).

    Native: the dynamic module `brickgate` with the same plugin JSON; Envoy holds a paused
    request's body for it without a flag (the Wasm form's `allow_on_headers_stop_iteration`), so
    `hold_body` has no native equivalent, and secrets come from Envoy's own environment.
    """
    if NATIVE:
        return {
            "name": "envoy.filters.http.dynamic_modules",
            "typed_config": {
                "@type": DYNAMIC_MODULE,
                "dynamic_module_config": {"name": "brickgate"},
                "filter_name": "brickgate",
                "filter_config": {"@type": STRING_VALUE, "value": configuration},
            },
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": WASM,
            "config": {
                "name": f"brickgate-{name}",
                "root_id": root_id,
                "failure_policy": "FAIL_CLOSED",
                "allow_on_headers_stop_iteration": hold_body,
                "vm_config": {"vm_id": "brickgate", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm_path}},
                              "environment_variables": VM_ENVIRONMENT},
                "configuration": {"@type": STRING_VALUE, "value": configuration},
            },
        },
    }


def edit_plugin_config(listener: dict, edit) -> dict:
    """Changes the plugin JSON of the listener's brickgate filter (either form) with `edit(config)`."""
    typed = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]
    holder = typed["filter_config"] if NATIVE else typed["config"]["configuration"]
    config = json.loads(holder["value"])
    edit(config)
    holder["value"] = json.dumps(config)
    return listener


# How Envoy says it refused brickgate's configuration (after brickgate's own log line).
CONFIG_REFUSED = "Failed to initialize dynamic module" if NATIVE else "Unable to create Wasm plugin"


def without_held_bodies(listener: dict) -> dict:
    """The Wasm form without `allow_on_headers_stop_iteration` (Envoy then never delivers the body
    of a request paused at its headers). The native form has no such switch: Envoy always
    delivers a held request's body to a dynamic module, so its listener is left as it is."""
    if not NATIVE:
        http_filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        http_filters[0]["typed_config"]["config"]["allow_on_headers_stop_iteration"] = False
    return listener


def brickgate_listener(name: str, wasm_path: str, plugin_config: dict | str, root_id: str = "brickgate",
                       underscores_in_headers: bool = False, hold_body: bool = True) -> dict:
    """A loopback listener on a free port (0): brickgate, then the router to cluster `upstream`.

    The connection manager takes HTTP/1.1 and HTTP/2 (`codec_type: AUTO`, h2c with prior knowledge
    included) and refuses header names with `_` unless `underscores_in_headers`.

    Every listener's plugin runs in the VM `brickgate` (one per worker thread, plus the main
    thread's), so all of them share one proxy-wasm shared-data space. Envoy's log names a
    plugin's root id, not its name (`wasm log <root_id> <vm_id>: ...`): give listeners distinct
    `root_id`s to tell their log lines apart (brickgate ignores the root id).

    `hold_body` sets `allow_on_headers_stop_iteration`, which every shipped config sets: without
    it Envoy never delivers the body of a request paused at its headers.
    """
    configuration = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    wasm_filter = brickgate_filter(name, wasm_path, configuration, root_id, hold_body)
    route_config = {
        "name": name,
        "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "10s"}}]}],
    }
    access_log = {"name": "envoy.access_loggers.stdout",
                  "typed_config": {"@type": STDOUT_ACCESS_LOG, "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}}
    hcm = {"@type": HCM, "stat_prefix": f"e2e_{name}", "codec_type": "AUTO", "route_config": route_config,
           # At the edge, as every shipped config: Envoy replaces a client-sent x-request-id, which
           # brickgate's audit marker names.
           "use_remote_address": True,
           "access_log": [access_log],
           "common_http_protocol_options": ALLOW_UNDERSCORES if underscores_in_headers else REJECT_UNDERSCORES,
           "http_filters": [wasm_filter, {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]}
    return {"name": name, "address": loopback(0),
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}


def bootstrap(listeners: list[dict], upstream_port: int, idp_port: int) -> dict:
    return {
        "admin": {"address": loopback(0)},
        "static_resources": {"listeners": listeners, "clusters": [static_cluster("upstream", upstream_port), static_cluster("idp", idp_port)]},
    }


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


# Longer than brickgate's tick (100 ms), after which a request's counters are in Envoy's stats.


class EnvoyProcess:
    """One Envoy process; its config, admin address file and log live in `work_dir`."""

    def __init__(self, envoy_bin: str, config: dict, work_dir: Path, concurrency: int = 2, env: dict | None = None):
        self.work_dir = work_dir
        self.env = {**os.environ, **(env or {})}
        if NATIVE:
            self.env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = NATIVE_DIR
        self.config_path = work_dir / "envoy.json"
        self.admin_address_path = work_dir / "admin-address.txt"
        self.log_path = work_dir / "envoy.log"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.command = [
            envoy_bin, "-c", str(self.config_path),
            "--base-id", str(next(_base_ids)),
            "--concurrency", str(concurrency),
            "--admin-address-path", str(self.admin_address_path),
            "--log-level", "info", "--component-log-level", "wasm:debug,dynamic_modules:debug",
            # Access logs reach the log file within 0.2 s instead of Envoy's default 10 s.
            "--file-flush-interval-msec", "200",
        ]
        self.process: subprocess.Popen | None = None
        self.admin_url = ""

    def start(self) -> "EnvoyProcess":
        self.admin_address_path.unlink(missing_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir,
                                            env=self.env)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int, limit_bytes: int = 60_000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[offset:][-limit_bytes:].decode(errors="replace")

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Admin address written, then /ready says LIVE; fails fast if Envoy exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Envoy exited with {self.process.returncode}:\n{self.log_text()[-20_000:]}")
            if not self.admin_url and self.admin_address_path.exists():
                address = self.admin_address_path.read_text().strip()
                self.admin_url = f"http://{address}" if address else ""
            if self.admin_url:
                try:
                    if http_get(f"{self.admin_url}/ready", 1.0) == (200, "LIVE\n"):
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"Envoy not ready after {timeout_s}s:\n{self.log_text()[-20_000:]}")

    def listener_ports(self) -> dict[str, int]:
        _, body = http_get(f"{self.admin_url}/listeners?format=json")
        return {entry["name"]: entry["local_address"]["socket_address"]["port_value"] for entry in json.loads(body)["listener_statuses"]}

    def stats(self, pattern: str = r"^wasmcustom\.") -> dict[str, int]:
        """Counters and gauges whose name matches `pattern` (admin /stats, text format); the
        native form's custom stats are matched and named as the Wasm form's."""
        if NATIVE:
            pattern = pattern.replace("wasmcustom", "dynamicmodulescustom")
        status, body = http_get(f"{self.admin_url}/stats?filter={urllib.parse.quote(pattern)}")
        assert status == 200, body
        values = {}
        for line in body.splitlines():
            name, sep, value = line.partition(": ")
            if name.startswith(NATIVE_STATS_PREFIX):
                name = WASM_STATS_PREFIX + name.removeprefix(NATIVE_STATS_PREFIX)
            if sep and value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values

    def wait_exit(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        if self.wait_exit(timeout_s) is None:
            self.process.kill()
            self.process.wait(timeout=timeout_s)


def run_validate(envoy_bin: str, config_path: Path, cwd: Path, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": NATIVE_DIR} if NATIVE else None
    return subprocess.run(
        [envoy_bin, "--mode", "validate", "-c", str(config_path), "--log-level", "info",
         "--component-log-level", "wasm:debug,dynamic_modules:debug"],
        cwd=cwd, capture_output=True, text=True, timeout=timeout_s, env=env,
    )
