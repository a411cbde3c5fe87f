"""Tokens for the e2e providers, built when a test runs (times are relative to now)."""

import time

from devstack import tokens
from devstack.idp import DEMO_CLIENTS
from devstack.token import fetch_token
from plugin_configs import AUDIENCE, HMAC_ISSUER, HMAC_KID, HMAC_SECRET, LOCAL_ISSUER


class TokenFactory:
    def __init__(self, idp_issuer: str):
        self.idp_issuer = idp_issuer

    @property
    def now(self) -> int:
        return int(time.time())

    def idp_claims(self, **claim_fields) -> dict:
        """claim_fields: tokens.claims() keywords (scope, subject, ...) and extra claims; None removes one."""
        return tokens.claims(self.idp_issuer, AUDIENCE, **claim_fields)

    def idp(self, key="rsa-1", alg=None, header=None, omit_header=(), **claim_fields) -> str:
        return tokens.mint(self.idp_claims(**claim_fields), key, alg, header=header, omit_header=omit_header)

    def local(self, header=None, omit_header=(), **claim_fields) -> str:
        payload = tokens.claims(LOCAL_ISSUER, AUDIENCE, **claim_fields)
        return tokens.mint(payload, "ec-1", header=header, omit_header=omit_header)

    def hmac(self, header=None, omit_header=(), **claim_fields) -> str:
        payload = tokens.claims(HMAC_ISSUER, AUDIENCE, **claim_fields)
        return tokens.mint(payload, HMAC_SECRET, "HS256", header={"kid": HMAC_KID, **(header or {})}, omit_header=omit_header)

    def shaped(self, published: dict, key="rsa-1", header=None, omit_header=()) -> str:
        """A token with exactly the claims of an IdP's published example (`iss` and `aud` included),
        its times moved to now with the example's lifetime kept: the shape, not the age."""
        lifetime = published["exp"] - published["iat"]
        now = self.now
        times = {"iat": now, "exp": now + lifetime, **({"nbf": now} if "nbf" in published else {})}
        return tokens.mint({**published, **times}, key, header=header, omit_header=omit_header)

    def from_idp(self, client_id: str, scope: str | None = None) -> str:
        """A real token from the fake IdP's token endpoint (client_credentials)."""
        return fetch_token(self.idp_issuer, client_id, DEMO_CLIENTS[client_id].secret, scope)
