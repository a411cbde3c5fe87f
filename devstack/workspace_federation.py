"""The fake Databricks workspace's OAuth server (devstack/workspace.py): its identities (service
principals, users, federation policies), the token endpoint `POST /oidc/v1/token` with
client_credentials and RFC 8693 token exchange (shared/design/databricks-facts.md §1, §2), and the
helpers those answers use. `TokenEndpoint` is mixed into the workspace's request handler."""

import hmac
import json
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable

import jwt

from devstack.idp import DEMO_CLIENTS, OAuthError
from devstack.keys import TEST_KEYS


TOKEN_LIFETIME_S = 3600
SIGNING_KEY = TEST_KEYS["dbx-1"]
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
FEDERATED_ALGORITHMS = ("RS256", "ES256")  # what Databricks accepts on federated tokens (§2)
DEFAULT_SCOPE = "all-apis"  # the SDK/CLI default, also used when `scope` is absent
# OIDC-only scopes: no API access of their own, always grantable.
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})

# Fake identifiers: clearly not real ones.
ACCOUNT_ID = "11111111-2222-4333-8444-555555555555"
WORKSPACE_ID = "1234567890123456"
CLOUD = "aws"
# `client_id` claim of tokens minted under an *account* federation policy. What Databricks puts
# there is not established (facts §6 q2); this placeholder only has to be recognisable.
FEDERATION_CLIENT_ID = "databricks-token-federation"

JWKS_CACHE_TTL_S = 300.0
JWKS_FETCH_TIMEOUT_S = 5.0
TOKEN_ENDPOINT_FAULTS = ("none", "404", "500", "slow", "reset", "garbage", "oversized")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_ECHOED_CLAIM_CHARS = 200


@dataclass(frozen=True)
class ServicePrincipal:
    name: str  # display name; accepted as an alias of the application id in `client_id`
    application_id: str  # the OAuth client id of a Databricks SP (a UUID), and `sub` of its tokens
    secret: str
    scopes: tuple[str, ...] = (DEFAULT_SCOPE,)

    def public(self) -> dict:
        return {"name": self.name, "application_id": self.application_id, "scopes": list(self.scopes)}


SERVICE_PRINCIPALS = (
    ServicePrincipal("sp-gateway", "5a1c0d6e-0000-4000-8000-000000000001", "sp-gateway-secret", ("all-apis",)),
    ServicePrincipal("sp-reader", "5a1c0d6e-0000-4000-8000-000000000002", "sp-reader-secret",
                     ("clusters:read", "jobs:read", "sql:read")),
)

# Workspace users (username → scopes they may be granted). An account federation policy maps the
# token's subject claim to one of these. "Allowed scopes per user" is this fake's stand-in for
# Databricks permissions: a user allowed `all-apis` may be granted any scope, one allowed `S` may be
# granted `S` and `S:<modifier>`.
DEFAULT_USERS = {
    **{client_id: (DEFAULT_SCOPE,) for client_id in DEMO_CLIENTS},  # demo-reader, demo-admin, demo-ml
    "alice@example.com": (DEFAULT_SCOPE,),
    "bob@example.com": ("clusters:read", "sql"),
}


@dataclass(frozen=True)
class FederationPolicy:
    """A Databricks `oidc_policy` (§2). `subject` set ⇒ a service-principal policy for `service_principal`."""

    issuer: str
    audiences: tuple[str, ...] | None = None  # None: Databricks' default, the account id
    subject_claim: str = "sub"
    subject: str | None = None
    service_principal: str | None = None  # SP name or application id; required iff `subject` is set
    jwks_uri: str | None = None
    jwks_json: dict | None = field(default=None, hash=False)  # neither: discover from the issuer

    FIELDS = ("issuer", "audiences", "subject_claim", "subject", "service_principal", "jwks_uri", "jwks_json")

    @property
    def effective_audiences(self) -> tuple[str, ...]:
        return self.audiences if self.audiences is not None else (ACCOUNT_ID,)

    @property
    def is_service_principal_policy(self) -> bool:
        return self.subject is not None

    def public(self) -> dict:
        return {
            "issuer": self.issuer,
            "audiences": list(self.audiences) if self.audiences is not None else None,
            "subject_claim": self.subject_claim,
            "subject": self.subject,
            "service_principal": self.service_principal,
            "jwks_uri": self.jwks_uri,
            "jwks_json": self.jwks_json,
        }

    @classmethod
    def from_json(cls, value, service_principals: Iterable[ServicePrincipal]) -> "FederationPolicy":
        if not isinstance(value, dict):
            raise ValueError("a federation policy is a JSON object")
        unknown = set(value) - set(cls.FIELDS)
        if unknown:
            raise ValueError(f"unknown federation policy field(s): {', '.join(sorted(unknown))}")

        def optional_str(name):
            item = value.get(name)
            if item is not None and (not isinstance(item, str) or not item):
                raise ValueError(f"policy {name} must be a non-empty string")
            return item

        issuer = optional_str("issuer")
        if issuer is None:
            raise ValueError("policy issuer is required")
        audiences = value.get("audiences")
        if audiences is not None:
            if not isinstance(audiences, list) or not audiences or not all(isinstance(a, str) and a for a in audiences):
                raise ValueError("policy audiences must be a non-empty list of strings (or null for the account id)")
            audiences = tuple(audiences)
        subject_claim = optional_str("subject_claim") or "sub"
        subject, principal = optional_str("subject"), optional_str("service_principal")
        if (subject is None) != (principal is None):
            raise ValueError("subject and service_principal go together: set both (SP policy) or neither (account policy)")
        if principal is not None and not any(principal in (sp.name, sp.application_id) for sp in service_principals):
            raise ValueError(f"unknown service principal {principal!r}")
        jwks_json = value.get("jwks_json")
        if isinstance(jwks_json, str):  # Databricks' API carries it as a JSON string
            jwks_json = json.loads(jwks_json)
        if jwks_json is not None and not (isinstance(jwks_json, dict) and isinstance(jwks_json.get("keys"), list)):
            raise ValueError("policy jwks_json must be a JWKS object {\"keys\": [...]}")
        return cls(issuer, audiences, subject_claim, subject, principal, optional_str("jwks_uri"), jwks_json)


def dev_policy(idp_issuer: str = "http://127.0.0.1:9400", audience: str = "brickgate-demo") -> FederationPolicy:
    """The account federation policy of the dev stack: trust the fake IdP's tokens for `audience`."""
    return FederationPolicy(issuer=idp_issuer, audiences=(audience,), subject_claim="sub")


def scope_grantable(requested: str, allowed: Iterable[str]) -> bool:
    allowed = set(allowed)
    if requested in OIDC_SCOPES or requested in allowed or DEFAULT_SCOPE in allowed:
        return True
    return any(requested.startswith(f"{scope}:") for scope in allowed)  # a narrower modifier (S:read ...)


def _shown(value) -> str:
    """A claim value for an error description (claims only: never the token itself)."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_ECHOED_CLAIM_CHARS else text[:MAX_ECHOED_CLAIM_CHARS] + "…"


def _policy_rejection(description: str) -> OAuthError:
    # RFC 8693 §2.2.2 names invalid_request for an unacceptable subject_token; Databricks answers
    # policy rejections with 401 (facts §2, failure mode 6). Exact Databricks wording is unverified.
    return OAuthError("invalid_request", description, 401)


class TokenEndpoint:
    """POST /oidc/v1/token for `WorkspaceHandler` (devstack/workspace.py), whose server holds the
    control state, the key cache and the stats."""

    def serve_token(self) -> None:
        control = self.server.control
        with control.lock:
            fault, delay_s = control.token_endpoint_fault, control.delay_s
        try:
            form = self.read_form()
        except OAuthError as err:
            form, form_error = {}, err
        else:
            form_error = None
        grant_type = form.get("grant_type", "")
        grant_label = grant_type or "(none)"
        self.server.stats.token_request(grant_label)
        if fault == "404":  # federation / the OAuth endpoint not available on this workspace (§2 failure mode 6)
            self.server.stats.fault("404")
            self.send_json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found for 'POST /oidc/v1/token'"})
            return
        if fault == "500":
            self.server.stats.fault("500")
            self.send_json(500, {"error_code": "INTERNAL_ERROR", "message": "The token service failed; retry later"})
            return
        if fault == "slow":
            time.sleep(delay_s)
        if fault == "reset":  # no answer: the connection is closed with a TCP RST
            self.server.stats.fault("reset")
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if fault == "garbage":  # a proxy's error page, with a success status
            self.server.stats.fault("garbage")
            self.send_bytes(200, b"<html><body>Service Unavailable</body></html>", "text/html")
            return
        if fault == "oversized":  # a token answer far beyond what a token answer can be (1 MiB)
            self.server.stats.fault("oversized")
            padding = "x" * (1 << 20)
            self.send_json(200, {"access_token": "dapi-oversized", "expires_in": 3600, "padding": padding})
            return

        # Stats key: (grant type, subject, requested scope). The subject is, for client_credentials,
        # the SP's application id (or the client id as presented when unknown); for an exchange, the
        # subject token's `sub` read without verification (the IdP identity, success or not).
        subject, scope = None, form.get("scope", DEFAULT_SCOPE)
        try:
            if form_error is not None:
                raise form_error
            if not grant_type:
                raise OAuthError("invalid_request", "grant_type is required")
            if grant_type == GRANT_CLIENT_CREDENTIALS:
                client_id, secret = self.client_authentication(form)
                with control.lock:
                    principal = control.service_principal(client_id)
                subject = principal.application_id if principal else client_id
                scopes = self.client_credentials(principal, secret, form)
                body = self.server.issue(principal.application_id, principal.application_id, scopes)
            elif grant_type == GRANT_TOKEN_EXCHANGE:
                subject = _unverified_subject(form.get("subject_token"))
                self.subject_exp = None
                principal_sub, client_id, scopes = self.token_exchange(form)
                # Databricks derives the exchanged token's lifetime from the federated token's
                # (oauth-federation-exchange page): never longer than the subject token lives.
                lifetime = TOKEN_LIFETIME_S
                if self.subject_exp is not None:
                    lifetime = max(1, min(TOKEN_LIFETIME_S, int(self.subject_exp - time.time())))
                body = self.server.issue(principal_sub, client_id, scopes, lifetime)
            else:
                raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {_shown(grant_type)}")
        except OAuthError as err:
            self.server.stats.token_outcome(grant_label, subject, scope, err.error)
            headers = dict(NO_STORE)
            if err.status == 401 and err.error == "invalid_client":
                headers["WWW-Authenticate"] = 'Basic realm="databricks"'
            # error_id: the handle Databricks support asks for (oauth-federation-exchange page)
            self.send_json(err.status, {"error": err.error, "error_description": err.description,
                                        "error_id": new_error_id()}, headers)
            return
        except Exception:  # never let a traceback (which could quote request data) reach stderr
            self.server.stats.token_outcome(grant_label, subject, scope, "server_error")
            self.send_json(500, {"error": "server_error", "error_description": "internal error"}, NO_STORE)
            return
        self.server.stats.token_outcome(grant_type, subject, scope, None)
        self.send_json(200, body, NO_STORE)

    def client_credentials(self, principal: ServicePrincipal | None, secret: str, form: dict) -> list[str]:
        if principal is None or not hmac.compare_digest(principal.secret.encode(), secret.encode()):
            raise OAuthError("invalid_client", "Client authentication failed", 401)
        return self.granted_scopes(form, principal.scopes, f"service principal {principal.application_id}")

    def granted_scopes(self, form: dict, allowed: Iterable[str], who: str) -> list[str]:
        requested = form.get("scope", DEFAULT_SCOPE).split()
        if not requested:
            raise OAuthError("invalid_scope", "scope is empty")
        refused = [scope for scope in requested if not scope_grantable(scope, allowed)]
        if refused:
            raise OAuthError("invalid_scope", f"Scope {_shown(' '.join(refused))} is not allowed for {who}")
        return list(dict.fromkeys(requested))

    def token_exchange(self, form: dict) -> tuple[str, str, list[str]]:
        """RFC 8693 under the federation policies (facts §2). Returns (sub, client_id, scopes) to mint."""
        subject_token = form.get("subject_token")
        if not subject_token:
            raise OAuthError("invalid_request", "subject_token is required")
        if form.get("subject_token_type") != TOKEN_TYPE_JWT:
            raise OAuthError("invalid_request", f"subject_token_type must be {TOKEN_TYPE_JWT}")
        try:
            header = jwt.get_unverified_header(subject_token)
            claims = jwt.decode(subject_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_request", "subject_token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in FEDERATED_ALGORITHMS:
            raise OAuthError("invalid_request", f"Unsupported token signing algorithm {_shown(alg)}: federated tokens must be signed with RS256 or ES256")

        control = self.server.control
        client_id = form.get("client_id")
        with control.lock:
            principal = control.service_principal(client_id) if client_id else None
            users = dict(control.users)
            service_principals = control.service_principals
            if client_id and principal is None:
                raise OAuthError("invalid_client", f"Service principal {_shown(client_id)} does not exist in this workspace", 401)
            if principal is None:
                candidates = [p for p in control.policies if not p.is_service_principal_policy]
                kind = "account federation policy"
            else:
                candidates = [p for p in control.policies if p.is_service_principal_policy
                              and control.service_principal(p.service_principal) == principal]
                kind = f"federation policy of service principal {principal.application_id}"
            sp_policy_exists = any(p.is_service_principal_policy for p in control.policies)

        issuer = claims.get("iss")
        matching = [policy for policy in candidates if policy.issuer == issuer]
        if not matching:
            hint = " (service principal federation needs client_id)" if principal is None and sp_policy_exists else ""
            raise _policy_rejection(f"Token issuer {_shown(issuer)} does not match the issuer of any {kind}{hint}")
        first_error = None
        for policy in matching:
            try:
                verified = self.verify_subject_token(subject_token, header, policy)
                subject = self.check_claims(verified, policy, principal, users, service_principals)
                self.subject_exp = verified.get("exp")
            except OAuthError as err:
                if err.status >= 500:
                    raise
                first_error = first_error or err
                continue
            if principal is not None:
                return principal.application_id, principal.application_id, self.granted_scopes(
                    form, principal.scopes, f"service principal {principal.application_id}")
            user_principal = None if subject in users else next((sp for sp in service_principals if sp.application_id == subject), None)
            if user_principal is not None:  # account policies also cover the account's SPs
                return subject, FEDERATION_CLIENT_ID, self.granted_scopes(form, user_principal.scopes, f"service principal {subject}")
            return subject, FEDERATION_CLIENT_ID, self.granted_scopes(form, users[subject], f"user {_shown(subject)}")
        raise first_error

    def verify_subject_token(self, token: str, header: dict, policy: FederationPolicy) -> dict:
        cache = self.server.key_cache
        key = _select_key(cache.jwks(policy), header)
        if key is None and header.get("kid") is not None and policy.jwks_json is None:
            key = _select_key(cache.jwks(policy, refresh=True), header)  # rotated keys: refetch once
        if key is None:
            raise _policy_rejection(f"Token signing key {_shown(header.get('kid'))} is not in the issuer's JWKS")
        try:
            return jwt.decode(token, key, algorithms=[header["alg"]], options={
                "verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                "verify_aud": False, "verify_iss": False,
            })
        except jwt.PyJWTError:
            raise _policy_rejection("Token signature verification failed") from None

    @staticmethod
    def check_claims(claims: dict, policy: FederationPolicy, principal, users: dict, service_principals) -> str:
        """exp, nbf, aud (any-of), subject claim; returns the subject value."""
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise _policy_rejection("Token has no valid exp claim")
        if exp <= now:
            raise _policy_rejection("Token has expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and nbf > now:
            raise _policy_rejection("Token is not yet valid (nbf)")
        audience = claims.get("aud")
        token_audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        if not set(policy.effective_audiences) & {a for a in token_audiences if isinstance(a, str)}:
            default = " (policy audiences unset: the account id)" if policy.audiences is None else ""
            raise _policy_rejection(
                f"Token audience {_shown(audience)} does not match any audience of the federation policy "
                f"{_shown(list(policy.effective_audiences))}{default}"
            )
        subject = claims.get(policy.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise _policy_rejection(f"Token has no string {_shown(policy.subject_claim)} claim (the policy's subject_claim)")
        if principal is not None:
            if subject != policy.subject:
                raise _policy_rejection(
                    f"Token subject {_shown(subject)} (claim {_shown(policy.subject_claim)}) does not match the subject of "
                    f"the federation policy of service principal {principal.application_id}"
                )
        elif subject not in users and not any(subject == sp.application_id for sp in service_principals):
            raise _policy_rejection(f"Token subject {_shown(subject)} (claim {_shown(policy.subject_claim)}) is not a user of this workspace")
        return subject


def new_error_id() -> str:
    return str(uuid.uuid4())


def _select_key(jwks: dict, header: dict):
    """The JWK for the token's kid (or, without a kid, the only key that fits its alg)."""
    kid, alg = header.get("kid"), header["alg"]
    kty = {"RS256": "RSA", "ES256": "EC"}[alg]
    usable = []
    for jwk in jwks.get("keys", []):
        if not isinstance(jwk, dict) or jwk.get("kty") != kty or jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg:
            continue
        if kid is not None and jwk.get("kid") != kid:
            continue
        try:
            usable.append(jwt.PyJWK(jwk, algorithm=alg))
        except jwt.PyJWTError:
            continue
    return usable[0] if len(usable) == 1 or (usable and kid is not None) else None


def _unverified_subject(subject_token: str | None) -> str | None:
    """`sub` for the stats, read without verification; None if unreadable."""
    try:
        value = jwt.decode(subject_token or "", options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return value if isinstance(value, str) else None
