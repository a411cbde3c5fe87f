"""The fake Databricks workspace's mutable state (devstack/workspace.py): what POST /_control may
change, the counts GET /_stats shows, and the federated issuers' key cache."""

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from devstack.idp import OAuthError
from devstack.workspace_federation import (
    DEFAULT_SCOPE,
    FederationPolicy,
    JWKS_CACHE_TTL_S,
    JWKS_FETCH_TIMEOUT_S,
    ServicePrincipal,
    TOKEN_ENDPOINT_FAULTS,
)


@dataclass
class Control:
    """Everything POST /_control may change. Guarded by `lock`: handlers run on many threads."""

    policies: list[FederationPolicy]
    users: dict[str, tuple[str, ...]]
    service_principals: tuple[ServicePrincipal, ...]
    token_endpoint_fault: str = "none"
    delay_s: float = 3.0  # for token_endpoint_fault "slow"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def public(self) -> dict:
        return {
            "policies": [policy.public() for policy in self.policies],
            "users": {name: list(scopes) for name, scopes in self.users.items()},
            "service_principals": [sp.public() for sp in self.service_principals],
            "token_endpoint_fault": self.token_endpoint_fault,
            "delay_s": self.delay_s,
        }

    def service_principal(self, client_id: str) -> ServicePrincipal | None:
        return next((sp for sp in self.service_principals if client_id in (sp.application_id, sp.name)), None)

    def apply(self, changes: dict) -> None:
        """Validate everything first, so a bad request changes nothing.

        policy: one policy object (replaces all policies); policies: a list of them;
        users: {"name": ["scope", ...] | null (= all-apis)} or ["name", ...] (each all-apis);
        token_endpoint_fault: none | 404 | 500 | slow | reset | garbage | oversized; delay_s: seconds
        for "slow" (0..60).
        """
        new = {}
        for name, value in changes.items():
            if name == "policy":
                new["policies"] = [FederationPolicy.from_json(value, self.service_principals)]
            elif name == "policies":
                if not isinstance(value, list):
                    raise ValueError("policies must be a list")
                new["policies"] = [FederationPolicy.from_json(item, self.service_principals) for item in value]
            elif name == "users":
                new["users"] = parse_users(value)
            elif name == "token_endpoint_fault":
                if value not in TOKEN_ENDPOINT_FAULTS:
                    raise ValueError(f"token_endpoint_fault must be one of {', '.join(TOKEN_ENDPOINT_FAULTS)}")
                new[name] = value
            elif name == "delay_s":
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 60:
                    raise ValueError("delay_s must be a number of seconds in 0..60")
                new[name] = float(value)
            else:
                raise ValueError(f"unknown control field {name!r}")
        if "policy" in changes and "policies" in changes:
            raise ValueError("send policy or policies, not both")
        for name, value in new.items():
            setattr(self, name, value)


def parse_users(value) -> dict[str, tuple[str, ...]]:
    if isinstance(value, list):
        value = {name: None for name in value}
    if not isinstance(value, dict):
        raise ValueError("users must be a list of usernames or an object {username: [scopes] | null}")
    users = {}
    for name, scopes in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError("usernames must be non-empty strings")
        if scopes is None:
            scopes = [DEFAULT_SCOPE]
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s for s in scopes):
            raise ValueError(f"scopes of user {name!r} must be a list of strings")
        users[name] = tuple(scopes)
    return users


class Stats:
    """Token-endpoint and API counts (GET /_stats). Thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.token_requests = 0
            self.by_grant_type: Counter = Counter()
            self.issued_by_grant_type: Counter = Counter()
            self.errors: Counter = Counter()
            self.by_subject_scope: dict[tuple[str, str, str], Counter] = {}
            self.jwks_fetches: Counter = Counter()
            self.api_by_status: Counter = Counter()

    def token_request(self, grant_type: str) -> None:
        with self.lock:
            self.token_requests += 1
            self.by_grant_type[grant_type] += 1

    def token_outcome(self, grant_type: str, subject: str | None, scope: str | None, error: str | None) -> None:
        with self.lock:
            entry = self.by_subject_scope.setdefault((grant_type, subject or "", scope or ""), Counter())
            entry["requests"] += 1
            if error is None:
                entry["issued"] += 1
                self.issued_by_grant_type[grant_type] += 1
            else:
                self.errors[error] += 1

    def fault(self, name: str) -> None:
        with self.lock:
            self.errors[f"fault_{name}"] += 1

    def jwks_fetch(self, url: str) -> None:
        with self.lock:
            self.jwks_fetches[url] += 1

    def api(self, status: int) -> None:
        with self.lock:
            self.api_by_status[str(status)] += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "token_requests": self.token_requests,
                "by_grant_type": dict(self.by_grant_type),
                "issued_by_grant_type": dict(self.issued_by_grant_type),
                "errors": dict(self.errors),
                "by_subject_scope": [
                    {"grant_type": grant, "subject": subject, "scope": scope,
                     "requests": counts["requests"], "issued": counts["issued"]}
                    for (grant, subject, scope), counts in sorted(self.by_subject_scope.items())
                ],
                "jwks_fetches": dict(self.jwks_fetches),
                "api_requests_by_status": dict(self.api_by_status),
            }


class KeyCache:
    """Federated issuers' signing keys by source URL: cached JWKS_CACHE_TTL_S, refetched on a kid miss."""

    def __init__(self, stats: Stats):
        self.stats = stats
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, dict]] = {}

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()

    def jwks(self, policy: FederationPolicy, refresh: bool = False) -> dict:
        if policy.jwks_json is not None:
            return policy.jwks_json
        source = policy.jwks_uri or _discovery_url(policy.issuer)
        with self.lock:
            cached = self.entries.get(source)
        if cached and not refresh and time.monotonic() - cached[0] < JWKS_CACHE_TTL_S:
            return cached[1]
        jwks_uri = policy.jwks_uri or self._jwks_uri_from_discovery(source)
        document = self._fetch_json(jwks_uri)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise OAuthError("temporarily_unavailable", f"The JWKS at {jwks_uri} is not a JWK set", 503)
        with self.lock:
            self.entries[source] = (time.monotonic(), document)
        return document

    def _jwks_uri_from_discovery(self, discovery_url: str) -> str:
        document = self._fetch_json(discovery_url)
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str):
            raise OAuthError("temporarily_unavailable", f"No jwks_uri in the issuer's discovery document {discovery_url}", 503)
        return jwks_uri

    def _fetch_json(self, url: str):
        self.stats.jwks_fetch(url)
        try:
            with urllib.request.urlopen(url, timeout=JWKS_FETCH_TIMEOUT_S) as response:
                return json.loads(response.read(1_000_000))
        except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts, bad JSON
            reason = f"HTTP {err.code}" if isinstance(err, urllib.error.HTTPError) else type(err).__name__
            raise OAuthError("temporarily_unavailable", f"Could not fetch the issuer's signing keys from {url} ({reason})", 503) from None


def _discovery_url(issuer: str) -> str:
    return f"{issuer.rstrip('/')}/.well-known/openid-configuration"
