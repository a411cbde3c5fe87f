"""Send requests through the gateway and check refusals against docs/ERRORS.md."""

import http.client
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from devstack.tokens import payload_of, segments
from plugin_configs import REALM

NO_CHALLENGE = "no challenge"  # the response must carry no WWW-Authenticate at all
BARE_CHALLENGE = "bare challenge"  # exactly `Bearer realm="..."` (RFC 6750 §3.1, no credential sent)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)

    @property
    def forwarded(self) -> dict[str, list[str]]:
        """Headers the echo upstream received (lower-case name → values)."""
        assert self.status == 200, f"expected the upstream's echo, got {self.status}: {self.body[:500]!r}"
        return self.json()["headers"]

    @property
    def forwarded_path(self) -> str:
        return self.json()["path"]


def send(port: int, method: str = "GET", path: str = "/", token: str | None = None,
         headers: list[tuple[str, str]] = (), timeout_s: float = 10.0) -> Reply:
    """One request on a fresh connection; `headers` may repeat a name (sent as separate lines)."""
    all_headers = list(headers)
    if token is not None:
        all_headers.append(("Authorization", f"Bearer {token}"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in all_headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z_]+)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x", error="y"` → ("Bearer", {"realm": "x", "error": "y"}); strict about syntax."""
    scheme, _, rest = value.partition(" ")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _CHALLENGE_PARAM.match(rest, position)
        assert match, f"unparseable challenge parameters at {rest[position:]!r} in {value!r}"
        name, quoted = match.groups()
        assert name not in params, f"parameter {name} repeated in {value!r}"
        params[name] = re.sub(r"\\(.)", r"\1", quoted)
        position = match.end()
    return scheme, params


@dataclass(frozen=True)
class Refusal:
    """What docs/ERRORS.md says a refusal looks like."""

    status: int
    reason: str
    error_code: str
    challenge: str  # the `error` attribute, or NO_CHALLENGE / BARE_CHALLENGE
    scope: str | None = None  # the exact `scope=` attribute of an insufficient_scope challenge
    # each item: a text the message must contain, a tuple of alternatives, or claims → one of those
    message_contains: tuple = field(default=())
    message_equals: str | None = None


def invalid_token(reason: str, *message_contains: str) -> Refusal:
    return Refusal(401, reason, "UNAUTHENTICATED", "invalid_token", message_contains=message_contains)


def invalid_request(reason: str, *message_contains: str) -> Refusal:
    return Refusal(400, reason, "BAD_REQUEST", "invalid_request", message_contains=message_contains)


def insufficient_scope(scope: str, *message_contains: str, message_equals: str | None = None) -> Refusal:
    return Refusal(403, "insufficient_scope", "PERMISSION_DENIED", "insufficient_scope", scope, message_contains, message_equals)


MISSING_TOKEN = Refusal(401, "missing_token", "UNAUTHENTICATED", BARE_CHALLENGE)


def assert_refused(reply: Reply, expected: Refusal, token: str | None = None) -> None:
    context = f"status {reply.status}, headers {reply.headers}, body {reply.body[:800]!r}"
    assert reply.status == expected.status, context
    assert reply.header("x-brickgate-reason") == expected.reason, context
    assert (reply.header("content-type") or "").startswith("application/json"), context
    body = reply.json()
    assert body["error_code"] == expected.error_code, context
    assert body["details"] == [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": expected.reason, "domain": "brickgate"}], context
    message = body["message"]
    assert isinstance(message, str) and message.strip(), context
    for fragment in expected.message_contains:
        if callable(fragment):
            fragment = fragment(payload_of(token))
        alternatives = fragment if isinstance(fragment, tuple) else (fragment,)
        assert any(text in message for text in alternatives), f"message {message!r} should name {' or '.join(alternatives)}"
    if expected.message_equals is not None:
        assert message == expected.message_equals
    assert_challenge(reply.header("www-authenticate"), expected, context)
    if expected.reason == "keys_unavailable":
        assert reply.header("retry-after") == "5", context
    if token:
        assert_no_secret_leak(reply, token)


def claim_time(claim: str):
    """Message fragment: the claim's time, as ISO 8601 UTC or as the raw number."""
    def fragment(claims: dict) -> tuple[str, str]:
        value = claims[claim]
        iso = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (iso, str(value))
    return fragment


def assert_challenge(challenge: str | None, expected: Refusal, context: str) -> None:
    if expected.challenge == NO_CHALLENGE:
        assert challenge is None, context
        return
    if expected.challenge == BARE_CHALLENGE:
        assert challenge == f'Bearer realm="{REALM}"', context
        return
    assert challenge is not None, context
    scheme, params = parse_challenge(challenge)
    assert scheme == "Bearer", context
    expected_names = {"realm", "error", "error_description"} | ({"scope"} if expected.scope is not None else set())
    assert set(params) == expected_names, context
    assert params["realm"] == REALM, context
    assert params["error"] == expected.challenge, context
    assert params["error_description"].strip(), context
    if expected.scope is not None:
        assert params["scope"] == expected.scope, context


def assert_no_secret_leak(reply: Reply, token: str) -> None:
    """Neither the token nor its signature or payload segment may be echoed back to the client."""
    secrets = [token] + [part for part in segments(token)[1:] if len(part) >= 16]
    exposed = reply.body.decode(errors="replace") + "\n".join(value for _, value in reply.headers)
    for secret in secrets:
        assert secret not in exposed, "the refusal echoes (part of) the token"
