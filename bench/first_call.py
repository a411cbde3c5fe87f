"""What the first request of a new caller costs in exchange mode, over the workspace's own answer
time (issue 16 point 8): starts the fake IdP and workspace (devstack) and one Envoy with brickgate,
then for each of N distinct callers measures

  first   the caller's first request through Envoy (token exchange + API call),
  warm    the same caller's next request (cached Databricks token: Envoy + brickgate + API call),
  token   one exchange sent straight to the workspace's /oidc/v1/token, just before,

and reports the median and 90th percentile of  added = first - warm - token : what brickgate adds
beyond the workspace's own exchange time. A figure, not a test: nothing here asserts a time.

  make build && .venv/bin/python bench/first_call.py [--callers 40] [--wasm dist/brickgate.wasm]
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests" / "e2e")]

from databricks_support import bootstrap_with, routed_listener, wait_until_decided  # noqa: E402
from devstack.httpbase import JsonHandler, running  # noqa: E402
from devstack.idp import make_idp  # noqa: E402
from devstack.workspace import dev_policy, exchange_token, make_workspace  # noqa: E402
from envoy_harness import EnvoyProcess  # noqa: E402
from gateway_client import send  # noqa: E402
from plugin_configs import AUDIENCE, REALM, idp_provider  # noqa: E402
from token_factory import TokenFactory  # noqa: E402

PATH = "/api/2.1/clusters/list"
SCOPE = "clusters:read"


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return (time.perf_counter() - started) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=40)
    parser.add_argument("--wasm", default=str(REPO_ROOT / "dist" / "brickgate.wasm"))
    parser.add_argument("--envoy", default=os.environ.get("ENVOY_BIN", str(REPO_ROOT / ".venv" / "bin" / "envoy")))
    args = parser.parse_args()
    args.wasm = str(Path(args.wasm).resolve())
    # The fake servers write headers and body separately: with Nagle's algorithm and Envoy's delayed
    # ACK that costs ~40 ms on a kept-alive connection, noise that would drown the figure.
    JsonHandler.disable_nagle_algorithm = True
    subjects = [f"first-{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(args.callers)]
    users = {"probe": ["all-apis"], **{subject: ["all-apis"] for subject in subjects}}
    with (running(make_idp(0, audience=AUDIENCE)) as idp,
          running(make_workspace(0, policies=[dev_policy(idp.issuer, AUDIENCE)], users=users)) as workspace):
        url = f"http://127.0.0.1:{workspace.port}"
        provider = idp_provider(idp.issuer, idp.port,
                                upstream={"mode": "exchange", "cluster": "workspace", "workspace_url": url})
        config = {"realm": REALM, "providers": {"p": provider}, "rules": [], "databricks": {"route_catalogue": True}}
        bootstrap = bootstrap_with([routed_listener("first", args.wasm, config, "workspace")],
                                   {"workspace": workspace.port, "idp": idp.port})
        envoy = EnvoyProcess(args.envoy, bootstrap, Path(tempfile.mkdtemp(prefix="first-call-")), concurrency=1).start()
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["first"]
            tokens = TokenFactory(idp.issuer)
            probe = tokens.idp(subject="probe", scope=SCOPE)
            wait_until_decided(port, lambda p: send(p, "GET", PATH, probe))
            rows = []
            for subject in subjects:
                # Random phase: a loop in step with brickgate's 100 ms root tick would hide a wait for it.
                time.sleep(random.uniform(0, 0.1))
                token = tokens.idp(subject=subject, scope=SCOPE)
                token_ms, (status, _) = timed(lambda: exchange_token(url, token, SCOPE))
                first_ms, first = timed(lambda: send(port, "GET", PATH, token))
                warm_ms, warm = timed(lambda: send(port, "GET", PATH, token))
                assert status == 200 and first.status == 200 and warm.status == 200, (status, first.status, warm.status)
                rows.append((first_ms, warm_ms, token_ms, first_ms - warm_ms - token_ms))
        finally:
            envoy.stop()
    added = sorted(row[3] for row in rows)
    median = lambda column: statistics.median(row[column] for row in rows)  # noqa: E731
    print(f"wasm {args.wasm}, {len(rows)} new callers, one Envoy worker")
    print(f"median first {median(0):.2f} ms, warm {median(1):.2f} ms, workspace token call {median(2):.2f} ms")
    print(f"added by brickgate to a first request (first - warm - token): "
          f"median {statistics.median(added):.2f} ms, p90 {added[int(0.9 * (len(added) - 1))]:.2f} ms")


if __name__ == "__main__":
    main()
