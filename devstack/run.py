"""`make run`: the fake IdP, the echo upstream, the fake Databricks workspace and Envoy with brickgate, until Ctrl-C.

`python -m devstack.run --port 10000 --wasm dist/brickgate.wasm --envoy .venv/bin/envoy`
The IdP (127.0.0.1:9400), the echo upstream (127.0.0.1:9500), the fake workspace (127.0.0.1:9600)
and the admin port (127.0.0.1:9901) are fixed by envoy/envoy.yaml. brickgate's filter configuration
(the plugin JSON included) is the watched file envoy/ecds/brickgate.yaml, delivered by extension config
discovery: replace it atomically (`mv`) and the new policy applies without a restart. A different --port
or --wasm renders copies of both under .run/ (then .run/ecds/brickgate.yaml is the file to edit).

The whole flow: a client's IdP token is verified by brickgate, checked against the Databricks route
catalogue (envoy/ecds/brickgate.yaml), exchanged at the workspace's /oidc/v1/token (its federation policy
trusts the fake IdP, audience brickgate-demo; the demo clients are workspace users with all-apis),
and the Databricks token goes upstream to the workspace, which answers with the principal it saw.
GET /healthz is anonymous and goes to the echo upstream.
"""

import argparse
import json
import re
import shutil
import textwrap
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.httpbase import start_in_thread
from devstack.idp import DEMO_CLIENTS, make_idp
from devstack.keys import REPO_ROOT
from devstack.token import fetch_token
from devstack.upstream import make_upstream
from devstack.workspace import dev_policy, make_workspace

IDP_PORT, UPSTREAM_PORT, ADMIN_PORT, DEFAULT_PORT = 9400, 9500, 9901, 10000
WORKSPACE_PORT = 9600
DEV_CONFIG = REPO_ROOT / "envoy" / "envoy.yaml"
DEV_FILTER = REPO_ROOT / "envoy" / "ecds" / "brickgate.yaml"  # the one copy of the plugin configuration
RUN_DIR = REPO_ROOT / ".run"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def _replace_once(text: str, replacements, source: Path) -> str:
    for old, new in replacements:
        if text.count(old) != 1:
            raise SystemExit(f"{source.relative_to(REPO_ROOT)} changed: expected exactly one `{old}`")
        text = text.replace(old, new)
    return text


def envoy_config(port: int, wasm: Path) -> tuple[Path, Path]:
    """(Envoy config, watched filter config): envoy/envoy.yaml and envoy/ecds/brickgate.yaml themselves,
    or copies under .run/ with the listener port and the wasm path replaced (the copy of envoy.yaml
    watches the copied filter file, so that one is the file to edit live)."""
    if port == DEFAULT_PORT and wasm == REPO_ROOT / "dist" / "brickgate.wasm":
        return DEV_CONFIG, DEV_FILTER
    ecds_dir = RUN_DIR / "ecds"
    ecds_dir.mkdir(parents=True, exist_ok=True)
    rendered_filter = ecds_dir / DEV_FILTER.name
    rendered_filter.write_text(_replace_once(DEV_FILTER.read_text(), (("filename: dist/brickgate.wasm", f"filename: {wasm}"),), DEV_FILTER))
    rendered = RUN_DIR / "envoy.yaml"
    rendered.write_text(_replace_once(DEV_CONFIG.read_text(), (
        (f"port_value: {DEFAULT_PORT} ", f"port_value: {port} "),
        ("path: envoy/ecds/brickgate.yaml", f"path: {rendered_filter}"),
        ("watched_directory: { path: envoy/ecds }", f"watched_directory: {{ path: {ecds_dir} }}"),
    ), DEV_CONFIG))
    return rendered, rendered_filter


def plugin_config_text(filter_yaml: str) -> str:
    """The brickgate plugin configuration in a filter config YAML (the block under `value: |`)."""
    lines = filter_yaml.splitlines()
    for at, line in enumerate(lines):
        if line.strip() == "value: |":
            indent = len(line) - len(line.lstrip())
            block = []
            for following in lines[at + 1:]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following)
            text = textwrap.dedent("\n".join(block))
            json.loads(text)  # the plugin's configuration is JSON
            return text
    raise SystemExit("no plugin configuration (`value: |`) in the filter config")


def access_log_location(envoy_yaml: str, log_path: Path) -> str:
    """Where the dev config writes its access log: a file logger's path, else Envoy's stdout."""
    match = re.search(r"envoy\.access_loggers\.file[\s\S]*?\bpath:\s*\"?([^\s\"]+)", envoy_yaml)
    if match:
        return match.group(1)
    return f"{log_path.relative_to(REPO_ROOT)} (Envoy's stdout: the lines next to the application log)"


def _shown(path: Path) -> Path:
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def where_to_look(port: int, log_path: Path, envoy_yaml: str, plugin_config: Path, cli: str, filter_config: Path = DEV_FILTER) -> str:
    """The pointers `make run` prints: the live-editable filter config, access log, Prometheus metrics,
    and `brickgate explain` for the refused demo request (POST /api/2.1/clusters/create with
    demo-reader's clusters:read). `plugin_config` is the plugin JSON as the stack started."""
    config, live = _shown(plugin_config), _shown(filter_config)
    return f"""Where to look:
  policy:     {live}, watched by Envoy: edit a copy in the same directory, then `mv` it over the original;
              the new policy applies without a restart (a refused version is logged, the old one keeps serving)
  access log: {access_log_location(envoy_yaml, log_path)}
  metrics:    curl -s http://127.0.0.1:{ADMIN_PORT}/stats/prometheus | grep brickgate
  why was it refused? the plugin's decision, check by check (the token is read from stdin, never printed):
    make -s token | {cli} explain --config {config} --token - --method POST /api/2.1/clusters/create
  after editing the policy, refresh that JSON (and `{cli} check {config}` it):
    {sys.executable} -m devstack.run --print-plugin-config {live} > {config}
"""


def http_status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def wait_until_serving(envoy: subprocess.Popen, port: int, log_path: Path) -> None:
    """Admin says LIVE, then a demo token is accepted (the JWKS has been fetched)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    token = fetch_token(f"http://127.0.0.1:{IDP_PORT}", "demo-reader", DEMO_CLIENTS["demo-reader"].secret)
    probes = (f"http://127.0.0.1:{ADMIN_PORT}/ready", None), (f"http://127.0.0.1:{port}/api/2.0/clusters/list", token)
    for url, probe_token in probes:
        while True:
            if envoy.poll() is not None:
                raise SystemExit(f"Envoy exited with {envoy.returncode}; last log lines:\n{tail(log_path)}")
            try:
                if http_status(url, probe_token) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"not ready after {READY_TIMEOUT_S:.0f}s ({url}); last log lines:\n{tail(log_path)}")
            time.sleep(0.2)


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def banner(port: int, log_path: Path, filter_config: Path = DEV_FILTER) -> str:
    base = f"http://127.0.0.1:{port}"
    workspace = f"http://127.0.0.1:{WORKSPACE_PORT}"
    return f"""
brickgate dev stack is up. Envoy on {base} checks every request with the brickgate wasm filter
(its configuration, delivered live from {_shown(filter_config)}: the Databricks route catalogue, a per-endpoint
serving rule, token exchange).
Tokens come from the fake IdP at http://127.0.0.1:{IDP_PORT} (client_credentials; clients {", ".join(DEMO_CLIENTS)},
secret = <client>-secret; `make -s token` prints one for demo-reader, whose only scope is clusters:read).
Allowed requests have their IdP token exchanged (RFC 8693) at the fake Databricks workspace
{workspace} and reach it with the Databricks token; it answers with the principal and
User-Agent it saw. GET /healthz needs no token and reaches the echo upstream on 127.0.0.1:{UPSTREAM_PORT}.
Envoy admin: http://127.0.0.1:{ADMIN_PORT} (try /stats?filter=brickgate); Envoy log: {log_path.relative_to(REPO_ROOT)}.
Ctrl-C stops everything.

Allowed (the catalogue lets clusters:read list clusters; the workspace sees principal demo-reader, with a
Databricks token scoped clusters:read, the caller's own scope, not upstream.scopes' all-apis):
  curl -s -H "Authorization: Bearer $(make -s token)" {base}/api/2.1/clusters/list
Refused by brickgate (403 insufficient_scope: creating a cluster needs `clusters` or `all-apis`):
  curl -s -i -X POST -H "Authorization: Bearer $(make -s token)" {base}/api/2.1/clusters/create
A serving endpoint (rule `serving`: scope serving:<endpoint>, model-serving or all-apis; demo-ml has serving:demo-model):
  curl -s -X POST -H "Authorization: Bearer $({sys.executable} -m devstack.token --client demo-ml)" \\
    -H "Content-Type: application/json" -d '{{"inputs": [[1, 2]]}}' {base}/serving-endpoints/demo-model/invocations

The workspace's federation policy trusts the fake IdP's tokens for audience brickgate-demo (users
{", ".join(DEMO_CLIENTS)}, each with all-apis). Exchange an IdP token by hand:
  curl -s {workspace}/oidc/v1/token -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\
    -d subject_token_type=urn:ietf:params:oauth:token-type:jwt -d scope=all-apis -d "subject_token=$(make -s token)"
Counts of its token endpoint: curl -s {workspace}/_stats
"""


def stop(envoy: subprocess.Popen | None, servers) -> None:
    if envoy is not None and envoy.poll() is None:
        envoy.send_signal(signal.SIGTERM)
        try:
            envoy.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            envoy.kill()
            envoy.wait(timeout=STOP_TIMEOUT_S)
    for server in servers:
        server.shutdown()
        server.server_close()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the brickgate dev stack until Ctrl-C.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="Envoy listener port on 127.0.0.1")
    parser.add_argument("--wasm", type=Path, default=Path("dist/brickgate.wasm"))
    parser.add_argument("--envoy", default="envoy", help="Envoy binary (path or name on PATH)")
    parser.add_argument("--cli", default="target/release/brickgate", help="the brickgate command-line tool (make cli)")
    parser.add_argument("--print-plugin-config", type=Path, metavar="FILTER_YAML",
                        help="print the plugin JSON of a filter config (envoy/ecds/brickgate.yaml) and exit")
    args = parser.parse_args()
    if args.print_plugin_config is not None:
        print(plugin_config_text(args.print_plugin_config.read_text()), end="")
        return 0

    wasm = (args.wasm if args.wasm.is_absolute() else Path.cwd() / args.wasm).resolve()
    envoy_bin = shutil.which(args.envoy)
    if not wasm.is_file():
        print(f"no wasm at {wasm}: run `make build` first", file=sys.stderr)
        return 1
    if envoy_bin is None:
        print(f"no Envoy binary `{args.envoy}`", file=sys.stderr)
        return 1
    RUN_DIR.mkdir(exist_ok=True)
    log_path = RUN_DIR / "envoy.log"
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # `kill` stops cleanly too

    servers, envoy = [], None
    try:
        make_servers = (
            lambda: make_idp(IDP_PORT, audience="brickgate-demo"),
            lambda: make_upstream(UPSTREAM_PORT),
            lambda: make_workspace(
                WORKSPACE_PORT,
                policies=[dev_policy(f"http://127.0.0.1:{IDP_PORT}", "brickgate-demo")],
                users={client_id: ["all-apis"] for client_id in DEMO_CLIENTS},
            ),
        )
        for make_server in make_servers:
            servers.append(make_server())
            start_in_thread(servers[-1])
        config_path, filter_path = envoy_config(args.port, wasm)
        command = [envoy_bin, "-c", str(config_path), "--use-dynamic-base-id", "--log-level", "info"]
        with log_path.open("wb") as log:
            # Own session: a terminal Ctrl-C reaches only us, and we stop Envoy in order.
            envoy = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_serving(envoy, args.port, log_path)
        envoy_yaml = config_path.read_text()
        plugin_config = RUN_DIR / "brickgate.json"
        plugin_config.write_text(plugin_config_text(filter_path.read_text()))
        print(banner(args.port, log_path, filter_path), flush=True)
        print(where_to_look(args.port, log_path, envoy_yaml, plugin_config, args.cli, filter_path), flush=True)
        envoy.wait()  # until Ctrl-C, or Envoy dies
        print(f"Envoy exited with {envoy.returncode}; last log lines:\n{tail(log_path)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    except OSError as err:  # typically a port already in use
        print(f"cannot start the dev stack: {err}", file=sys.stderr)
        return 1
    finally:
        stop(envoy, servers)


if __name__ == "__main__":
    sys.exit(main())
