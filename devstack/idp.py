"""Fake OAuth 2.0 / OIDC identity provider for local runs and e2e tests.

`python -m devstack.idp --port 9400 [--issuer URL] [--audience brickgate-demo]`

  GET  /.well-known/openid-configuration   OIDC discovery document
  GET  /.well-known/oauth-authorization-server   RFC 8414 metadata (same content)
  GET  /jwks.json, /oauth2/v1/keys         public keys (test-rsa-1 RS256, test-ec-1 ES256)
  POST /oauth2/token                       client_credentials grant (RFC 6749 §4.4)
  GET  /_stats                             request counts per path
  GET  /_log                               the requests received, with arrival times (Unix seconds)
  POST /_control                           switch behaviour at run time (see ControlState)

`--down` starts it unreachable: every endpoint but the `/_` ones resets the connection until
`POST /_control {"down": false}`.

Tokens are RFC 9068 JWT access tokens signed with the public test keys in tests/keys/.
"""

import argparse
import base64
import binascii
import hmac
import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote_plus

import jwt

from devstack.httpbase import DevServer, JsonHandler, serve_until_interrupted
from devstack.keys import TEST_KEYS, jwks as test_jwks

TOKEN_LIFETIME_S = 3600


@dataclass(frozen=True)
class DemoClient:
    secret: str
    scopes: tuple[str, ...]


DEMO_CLIENTS = {
    "demo-reader": DemoClient("demo-reader-secret", ("clusters:read",)),
    "demo-admin": DemoClient("demo-admin-secret", ("all-apis", "clusters", "clusters:read", "serving:demo-model")),
    "demo-ml": DemoClient("demo-ml-secret", ("serving:demo-model", "clusters:read")),
}

# JWKS faults a test can switch on; each names how a real IdP misbehaves.
JWKS_FAULTS = ("none", "status_500", "garbage", "oversized", "slow", "reset")
OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"
OAUTH_METADATA_PATH = "/.well-known/oauth-authorization-server"  # RFC 8414
# Where the JWKS is served; the second lets a test point a provider (or jwks_uri) elsewhere.
JWKS_PATHS = ("/jwks.json", "/oauth2/v1/keys")


@dataclass
class ControlState:
    """Everything POST /_control may change. Guarded by `lock`: handlers run on many threads."""

    signing_key: str = "rsa-1"
    jwks_keys: list[str] = field(default_factory=lambda: ["rsa-1", "ec-1"])
    jwks_fault: str = "none"
    delay_s: float = 3.0  # for jwks_fault "slow"
    oversized_bytes: int = 300_000  # for jwks_fault "oversized" (brickgate's default cap is 262144)
    down: bool = False  # every endpoint except the /_ ones resets the connection
    jwks_max_age: int | None = 300  # Cache-Control max-age of the JWKS response; None: no Cache-Control
    # HTTP status of each discovery document: 200 serves it, anything else answers that status
    openid_configuration_status: int = 200
    oauth_metadata_status: int = 200
    discovery_issuer: str | None = None  # the `issuer` the documents name; None: the real one
    discovery_jwks_uri: str | None = None  # their `jwks_uri`; None: <issuer>/jwks.json
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    FIELDS = ("signing_key", "jwks_keys", "jwks_fault", "delay_s", "oversized_bytes", "down", "jwks_max_age",
              "openid_configuration_status", "oauth_metadata_status", "discovery_issuer", "discovery_jwks_uri")

    def public(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def apply(self, changes: dict) -> None:
        """Validate everything first, so a bad request changes nothing."""
        checks = {
            "signing_key": lambda v: v in TEST_KEYS,
            "jwks_keys": lambda v: isinstance(v, list) and all(k in TEST_KEYS for k in v),
            "jwks_fault": lambda v: v in JWKS_FAULTS,
            "delay_s": lambda v: isinstance(v, (int, float)) and 0 <= v <= 60,
            "oversized_bytes": lambda v: isinstance(v, int) and 0 < v <= 16_000_000,
            "down": lambda v: isinstance(v, bool),
            "jwks_max_age": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 86_400),
            "openid_configuration_status": lambda v: isinstance(v, int) and 200 <= v <= 599,
            "oauth_metadata_status": lambda v: isinstance(v, int) and 200 <= v <= 599,
            "discovery_issuer": lambda v: v is None or isinstance(v, str),
            "discovery_jwks_uri": lambda v: v is None or isinstance(v, str),
        }
        for name, value in changes.items():
            if name not in checks or not checks[name](value):
                raise ValueError(f"bad control field {name}={value!r}")
        for name, value in changes.items():
            setattr(self, name, value)


class IdpServer(DevServer):
    def __init__(self, address, issuer: str | None, audience: str):
        super().__init__(address, IdpHandler)
        self.issuer = issuer or f"http://127.0.0.1:{self.port}"
        self.audience = audience
        self.clients = DEMO_CLIENTS
        self.control = ControlState()

    def discovery(self) -> dict:
        """The discovery document (OIDC and RFC 8414 alike), with the overrides of ControlState."""
        with self.control.lock:
            named_issuer = self.control.discovery_issuer or self.issuer
            jwks_uri = self.control.discovery_jwks_uri or f"{self.issuer}/jwks.json"
        return {
            "issuer": named_issuer,
            "jwks_uri": jwks_uri,
            "token_endpoint": f"{self.issuer}/oauth2/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "scopes_supported": sorted({s for c in self.clients.values() for s in c.scopes}),
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }

    def issue_token(self, client_id: str, scopes: list[str]) -> str:
        with self.control.lock:
            key = TEST_KEYS[self.control.signing_key]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": self.audience,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": key.kid, "typ": "at+jwt"}
        return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=headers)


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


class IdpHandler(JsonHandler):
    server: IdpServer

    def is_down(self, path: str) -> bool:
        """Counts the request; when the IdP is switched `down`, resets the connection instead."""
        self.server.count(path, self.command)
        if path.startswith("/_"):
            return False
        with self.server.control.lock:
            down = self.server.control.down
        if down:
            self.reset_connection()
        return down

    def reset_connection(self) -> None:
        """Answer nothing and close with a TCP RST (SO_LINGER 0): the caller sees a transport failure."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if self.is_down(path):
            return
        if path in (OIDC_DISCOVERY_PATH, OAUTH_METADATA_PATH):
            self.serve_discovery(path)
        elif path in JWKS_PATHS:
            self.serve_jwks()
        elif path == "/_stats":
            self.send_json(200, self.server.snapshot_counts())
        elif path == "/_log":
            self.send_json(200, {"requests": self.server.snapshot_log()})
        else:
            self.send_json(404, {"error": "not_found"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if self.is_down(path):
            return
        if path == "/oauth2/token":
            self.serve_token()
        elif path == "/_control":
            self.serve_control()
        else:
            self.read_body()
            self.send_json(404, {"error": "not_found"})

    # --- discovery ------------------------------------------------------------------------

    def serve_discovery(self, path: str) -> None:
        with self.server.control.lock:
            status = (self.server.control.openid_configuration_status if path == OIDC_DISCOVERY_PATH
                      else self.server.control.oauth_metadata_status)
        if status == 200:
            self.send_json(200, self.server.discovery())
        else:
            self.send_json(status, {"error": "not_found" if status == 404 else "unavailable"})

    # --- JWKS -----------------------------------------------------------------------------

    def serve_jwks(self) -> None:
        with self.server.control.lock:
            control = self.server.control.public()
        jwks = test_jwks(*control["jwks_keys"])
        fault = control["jwks_fault"]
        if fault == "status_500":
            self.send_json(500, {"error": "internal_error"})
        elif fault == "garbage":
            self.send_bytes(200, b"<html>this is not a JWKS", "application/json")
        elif fault == "oversized":
            jwks["padding"] = "x" * control["oversized_bytes"]
            self.send_json(200, jwks)
        elif fault == "reset":
            self.reset_connection()
        else:
            if fault == "slow":
                time.sleep(control["delay_s"])
            max_age = control["jwks_max_age"]
            self.send_json(200, jwks, {} if max_age is None else {"Cache-Control": f"max-age={max_age}"})

    # --- token endpoint ---------------------------------------------------------------------

    def serve_token(self) -> None:
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            client_id, scopes = self.authorize_client_credentials()
        except OAuthError as err:
            headers = dict(no_store)
            if err.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="fake-idp"'
            self.send_json(err.status, {"error": err.error, "error_description": err.description}, headers)
            return
        token = self.server.issue_token(client_id, scopes)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S, "scope": " ".join(scopes)}
        self.send_json(200, body, no_store)

    def authorize_client_credentials(self) -> tuple[str, list[str]]:
        form = self.read_form()
        if "grant_type" not in form:
            raise OAuthError("invalid_request", "grant_type is required")
        if form["grant_type"] != "client_credentials":
            raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
        client_id, secret = self.client_authentication(form)
        client = self.server.clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        if "scope" not in form:
            return client_id, list(client.scopes)
        requested = form["scope"].split()
        if not requested or not set(requested) <= set(client.scopes):
            raise OAuthError("invalid_scope", f"allowed scopes: {' '.join(client.scopes)}")
        return client_id, list(dict.fromkeys(requested))

    def read_form(self) -> dict[str, str]:
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        try:
            body = self.read_body()
        except ValueError as err:
            raise OAuthError("invalid_request", str(err)) from None
        if content_type != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "body must be application/x-www-form-urlencoded")
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        repeated = [name for name, values in parsed.items() if len(values) > 1]
        if repeated:  # RFC 6749 §3.2: parameters must not be repeated
            raise OAuthError("invalid_request", f"repeated parameter: {repeated[0]}")
        return {name: values[0] for name, values in parsed.items()}

    def client_authentication(self, form: dict[str, str]) -> tuple[str, str]:
        authorization = self.headers.get("Authorization")
        in_form = "client_id" in form or "client_secret" in form
        if authorization and in_form:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise OAuthError("invalid_client", "unsupported authentication scheme", 401)
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
            client_id, sep, secret = decoded.partition(":")
            if not sep:
                raise OAuthError("invalid_client", "malformed Basic credentials", 401)
            # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            return unquote_plus(client_id), unquote_plus(secret)
        if "client_id" in form and "client_secret" in form:
            return form["client_id"], form["client_secret"]
        raise OAuthError("invalid_client", "client authentication required", 401)

    # --- control ----------------------------------------------------------------------------

    def serve_control(self) -> None:
        try:
            changes = json.loads(self.read_body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object")
            if changes.pop("reset_stats", False):
                self.server.reset_counts()
            with self.server.control.lock:
                self.server.control.apply(changes)
                state = self.server.control.public()
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            self.send_json(400, {"error": str(err)})
            return
        self.send_json(200, state)


def make_idp(port: int = 0, issuer: str | None = None, audience: str = "brickgate-demo", host: str = "127.0.0.1",
             **control) -> IdpServer:
    """`control`: initial ControlState fields, e.g. down=True to start unreachable."""
    server = IdpServer((host, port), issuer, audience)
    try:
        server.control.apply(control)
    except ValueError:
        server.server_close()
        raise
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OAuth 2.0 identity provider (test keys only).")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--issuer", help="default: http://127.0.0.1:<port>")
    parser.add_argument("--audience", default="brickgate-demo")
    parser.add_argument("--down", action="store_true", help="start unreachable (POST /_control {\"down\": false} to bring it up)")
    args = parser.parse_args()
    server = make_idp(args.port, args.issuer, args.audience, down=args.down)
    serve_until_interrupted(server, f"fake IdP listening on http://127.0.0.1:{server.port} (issuer {server.issuer})")


if __name__ == "__main__":
    main()
