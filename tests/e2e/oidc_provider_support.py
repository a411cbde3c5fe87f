"""A real, certified OpenID provider for the interop tests: panva/node-oidc-provider 8.8.1
(tests/interop/oidc-provider/server.mjs) run by Node.js on a loopback port of the kernel's choosing.

The test hands it its configuration (signing keys, clients, resources) as one JSON line on stdin,
and can hand it another at any time: the provider is replaced in place on the same port (a key
rotation without a moment where nothing listens). Every wait is bounded; `stop()` always ends the
process (closing stdin, then SIGKILL); its output is in `log_path`, printed when a test fails.
"""

import base64
import contextlib
import json
import queue
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from devstack.keys import KEYS_DIR

PROVIDER_DIR = Path(__file__).resolve().parents[1] / "interop" / "oidc-provider"
SERVER = PROVIDER_DIR / "server.mjs"
READY_TIMEOUT_S = 20.0
PROTOCOL_PREFIX = "oidc-interop: "  # server.mjs: the lines meant for the test


def signing_key(name: str, kid: str) -> dict:
    """A test key (tests/keys/<name>.pem) under the `kid` the provider publishes it with."""
    return {"kid": kid, "pem": (KEYS_DIR / f"{name}.pem").read_text()}


def _basic(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: form-urlencode each part before joining them.
    pair = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


class OidcProvider:
    def __init__(self, work_dir: Path):
        self.log_path = work_dir / "oidc-provider.log"
        self.issuer = ""
        self.port = 0
        self._lines: queue.Queue[str] = queue.Queue()
        self._log = self.log_path.open("ab")
        node = shutil.which("node")
        if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"Node.js and {PROVIDER_DIR}/node_modules are needed: run `make e2e` (npm ci there)")
        self.process = subprocess.Popen([node, str(SERVER)], cwd=PROVIDER_DIR, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._log)
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        for raw in self.process.stdout:
            with contextlib.suppress(ValueError):  # the log is closed once stop() ran
                self._log.write(b"[stdout] " + raw)
                self._log.flush()
            line = raw.decode(errors="replace")
            if line.startswith(PROTOCOL_PREFIX):  # not one of oidc-provider's own notices
                self._lines.put(line[len(PROTOCOL_PREFIX):])

    def configure(self, config: dict, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Applies `config` (see server.mjs); returns once the provider serves it."""
        self.process.stdin.write(json.dumps(config).encode() + b"\n")
        self.process.stdin.flush()
        try:
            answer = json.loads(self._lines.get(timeout=timeout_s))
        except queue.Empty:
            raise RuntimeError(f"oidc-provider did not answer within {timeout_s}s:\n{self.log_text()}") from None
        if "error" in answer:
            raise RuntimeError(f"oidc-provider refused the configuration: {answer['error']}")
        self.issuer = answer["issuer"]
        self.port = int(self.issuer.rsplit(":", 1)[1])

    def token(self, client_id: str, secret: str, scope: str, resource: str) -> dict:
        """The token endpoint's JSON answer to a client_credentials request (RFC 6749 §4.4, RFC 8707)."""
        status, body = self.token_response(client_id, secret, scope, resource)
        assert status == 200, f"token endpoint answered {status}: {body}"
        return body

    def token_response(self, client_id: str, secret: str, scope: str, resource: str) -> tuple[int, dict]:
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope, "resource": resource})
        request = urllib.request.Request(f"{self.issuer}/token", data=form.encode(), method="POST", headers={
            "Authorization": _basic(client_id, secret), "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def requested_paths(self) -> list[str]:
        """The paths the provider was asked for, in order (server.mjs logs `request METHOD PATH`)."""
        return [line.split(" ", 2)[2] for line in self.log_text().splitlines() if line.startswith("request ")]

    def wait_for_request(self, path: str, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.requested_paths().count(path) < count:
            assert time.monotonic() < deadline, f"{path} requested {self.requested_paths().count(path)} times, not {count}, within {timeout_s}s"
            time.sleep(0.05)

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # server.mjs exits when its stdin closes
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout_s)
        self._log.close()


@contextlib.contextmanager
def running_provider(work_dir: Path, config: dict):
    provider = OidcProvider(work_dir)
    try:
        provider.configure(config)
        yield provider
    finally:
        provider.stop()
