"""Interop with a real identity provider (issue 18, "A real identity provider beside the fake one").

The provider is panva/node-oidc-provider 8.8.1, an OpenID Certified implementation
(tests/interop/oidc-provider, oidc_provider_support.py), started per test on its own loopback
port with the signing keys, client and resources the test gives it. What each test relies on,
in https://github.com/panva/node-oidc-provider at tag v8.8.1 (c44aa538bf6e5e3587fc2bcb8e358f87379d7dbf):
- discovery at `<issuer>/.well-known/openid-configuration` naming `jwks_uri` `<issuer>/jwks`
  (lib/helpers/defaults.js `routes`, lib/actions/discovery.js);
- `features.clientCredentials` and `features.resourceIndicators` (docs/README.md): a resource
  server with `accessTokenFormat: 'jwt'` gets RFC 9068 tokens: header `typ: at+jwt`, `sub` the
  client id when no end-user is involved, `aud` the resource, `client_id`, `scope`, `jti`
  (lib/models/formats/jwt.js `getValueAndPayload`);
- the first key of `jwks` that fits the algorithm signs (lib/models/formats/jwt.js
  `keystore.selectForVerify`), and docs/README.md "jwks" recommends rotating by appending the new
  key, then moving it to the front, then dropping the old one: what test 4 does.

What brickgate must do is docs/CONFIG.md (discovery, `require_typ`, identity headers, key refresh
and kid-miss refetch) and docs/ERRORS.md (`audience_mismatch`, `unknown_kid`).
"""

import json
import threading
import time
import urllib.request

import pytest

from devstack.keys import TEST_KEYS
from devstack.tokens import header_of, mint, payload_of
from envoy_harness import bootstrap, brickgate_listener
from gateway_client import Reply, assert_refused, invalid_token, send
from h2_client import h2_request
from jwks_support import Background, scenario, single_provider_config
from oidc_provider_support import running_provider, signing_key
from plugin_configs import REALM
from token_factory import TokenFactory

RESOURCE = "api://brickgate-interop"
OTHER_RESOURCE = "api://another-api"
CLIENT_ID, CLIENT_SECRET = "brickgate-interop-service", "interop-secret-long-enough-for-basic-auth"
KEY_A, KEY_B = signing_key("rsa-1", "op-key-a"), signing_key("rsa-2", "op-key-b")
PATH = "/api/2.0/clusters/list"
DISCOVERY, JWKS = "/.well-known/openid-configuration", "/jwks"


def provider_config(*keys: dict) -> dict:
    return {
        "keys": list(keys),
        "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scope": "clusters:read all-apis"}],
        "resources": {RESOURCE: {"scope": "clusters:read all-apis"}, OTHER_RESOURCE: {"scope": "clusters:read"}},
    }


@pytest.fixture
def oidc_provider(request, tmp_path):
    with running_provider(tmp_path, provider_config(KEY_A)) as provider:
        yield provider
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(f"\n===== oidc-provider log ({provider.log_path}) =====\n{provider.log_text()[-20_000:]}")


def gateway_config(provider, **remote) -> dict:
    """brickgate against the provider: keys discovered from its issuer (no `uri`), RFC 9068 `typ` required."""
    oidc = {"issuer": provider.issuer, "audiences": [RESOURCE], "jwks": {"remote": {"cluster": "idp", **remote}},
            "algorithms": ["RS256"], "require_typ": True}
    return {"main": single_provider_config(oidc, name="oidc")}


def provider_token(provider, scope: str = "clusters:read", resource: str = RESOURCE) -> str:
    return provider.token(CLIENT_ID, CLIENT_SECRET, scope, resource)["access_token"]


def identity_headers(reply: Reply) -> dict[str, list[str]]:
    return {name.removeprefix("x-brickgate-"): values for name, values in reply.forwarded.items()
            if name.startswith("x-brickgate-")}


def wait_until_accepted(port: int, provider, timeout_s: float = 15.0) -> None:
    """Until a fresh token from the provider is accepted (brickgate has its keys)."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        last = send(port, "GET", PATH, provider_token(provider), timeout_s=10)
        if last.status == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"no provider token accepted within {timeout_s}s; last answer {last.status} "
                         f"{last.header('x-brickgate-reason')}: {last.body[:300]!r}")


# --- 1. discovery ------------------------------------------------------------------------------


def test_discovery_finds_the_jwks_at_the_providers_jwks_uri(start_envoy, wasm_path, upstream, oidc_provider):
    with scenario(start_envoy, wasm_path, upstream, oidc_provider, "oidc-discovery", gateway_config(oidc_provider)) as gw:
        wait_until_accepted(gw.port, oidc_provider)
        asked = [path for path in oidc_provider.requested_paths() if path != "/token"]
        assert asked[:2] == [DISCOVERY, JWKS], f"brickgate asked the provider for {asked}"
        assert "/.well-known/oauth-authorization-server" not in asked  # the OIDC document answered 200
    with urllib.request.urlopen(f"{oidc_provider.issuer}{DISCOVERY}", timeout=5) as response:
        document = json.loads(response.read())
    assert (document["issuer"], document["jwks_uri"]) == (oidc_provider.issuer, f"{oidc_provider.issuer}{JWKS}")


# --- 2. a client-credentials RFC 9068 token, HTTP/1.1 and HTTP/2 -------------------------------


def send_h1(port: int, token: str) -> Reply:
    return send(port, "GET", PATH, token)


def send_h2(port: int, token: str) -> Reply:
    return h2_request(port, "GET", PATH, [("authorization", f"Bearer {token}")])


@pytest.mark.parametrize("send_with", [send_h1, send_h2], ids=["http1", "http2"])
def test_client_credentials_jwt_access_token_accepted(start_envoy, wasm_path, upstream, oidc_provider, send_with):
    with scenario(start_envoy, wasm_path, upstream, oidc_provider, "oidc-accept", gateway_config(oidc_provider)) as gw:
        wait_until_accepted(gw.port, oidc_provider)
        token = provider_token(oidc_provider)
        claims = payload_of(token)
        # What the provider issued is an RFC 9068 token; brickgate's require_typ is then satisfied by it.
        assert header_of(token) == {"alg": "RS256", "typ": "at+jwt", "kid": "op-key-a"}
        assert (claims["sub"], claims["client_id"], claims["aud"]) == (CLIENT_ID, CLIENT_ID, RESOURCE)

        reply = send_with(gw.port, token)
        assert identity_headers(reply) == {
            "subject": [CLIENT_ID],  # RFC 9068 §2.2: the client's own id when no resource owner is involved
            "issuer": [oidc_provider.issuer],
            "provider": ["oidc"],
            "client-id": [CLIENT_ID],
            "scopes": ["clusters:read"],
            "principal-kind": ["service_principal"],  # generic idp: sub equals the client id
            "token-id": [claims["jti"]],
            "rule": ["everything"],
        }
        assert reply.forwarded["authorization"] == [f"Bearer {token}"]


# --- 3. a token for another resource -----------------------------------------------------------


def test_token_for_another_resource_refused_naming_both_audiences(start_envoy, wasm_path, upstream, oidc_provider):
    with scenario(start_envoy, wasm_path, upstream, oidc_provider, "oidc-audience", gateway_config(oidc_provider)) as gw:
        wait_until_accepted(gw.port, oidc_provider)
        token = provider_token(oidc_provider, resource=OTHER_RESOURCE)
        assert payload_of(token)["aud"] == OTHER_RESOURCE
        expected = invalid_token("audience_mismatch", f"token has [{OTHER_RESOURCE}]", f"accepts [{RESOURCE}]")
        for send_with in (send_h1, send_h2):
            assert_refused(send_with(gw.port, token), expected, token)
        # The provider itself refuses a resource it does not serve (RFC 8707 §2: invalid_target).
        status, body = oidc_provider.token_response(CLIENT_ID, CLIENT_SECRET, "clusters:read", "api://unknown")
        assert (status, body.get("error")) == (400, "invalid_target")


def test_same_claims_and_key_without_at_jwt_typ_refused(start_envoy, wasm_path, upstream, oidc_provider):
    """require_typ is what admits the provider's tokens above: the same claims signed with the same
    key under `typ: JWT` are refused (docs/ERRORS.md typ_mismatch)."""
    with scenario(start_envoy, wasm_path, upstream, oidc_provider, "oidc-typ", gateway_config(oidc_provider)) as gw:
        wait_until_accepted(gw.port, oidc_provider)
        token = mint(payload_of(provider_token(oidc_provider)), "rsa-1", header={"typ": "JWT", "kid": KEY_A["kid"]})
        assert_refused(send(gw.port, "GET", PATH, token), invalid_token("typ_mismatch"), token)


# --- 4. signing key rotation -------------------------------------------------------------------


class SteadyClients:
    """Clients sending the given tokens on fresh connections until stopped; every answer recorded."""

    def __init__(self, port: int, tokens: list[str], clients: int = 3):
        self.port, self.tokens, self.answers = port, tokens, []
        self._stop = threading.Event()
        self._threads = [Background(self._run, index) for index in range(clients)]

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            token = self.tokens[index % len(self.tokens)]
            index += 1
            self.answers.append((header_of(token)["kid"], send(self.port, "GET", PATH, token).status))

    def count(self, kid: str) -> int:
        return sum(1 for answer_kid, _ in self.answers if answer_kid == kid)

    def stop(self) -> list[tuple[str, int]]:
        self._stop.set()
        for thread in self._threads:
            thread.result(timeout_s=30)
        return self.answers


def wait_for(condition, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(0.05)


def test_rotation_new_key_accepted_without_dropping_traffic_then_removed_key_refused(
        start_envoy, wasm_path, upstream, oidc_provider):
    """The rotation docs/README.md "jwks" of oidc-provider recommends: A; A+B (A signs); B+A (B signs);
    B. Traffic with A and then B tokens never fails; once the provider stops publishing A, A's tokens
    are refused `unknown_kid` after brickgate's next refresh (docs/CONFIG.md refresh_interval_s,
    docs/ERRORS.md unknown_kid), cached ones included."""
    config = gateway_config(oidc_provider, refresh_interval_s=5, refetch_min_interval_s=1, wait_for_keys_ms=5000)
    with scenario(start_envoy, wasm_path, upstream, oidc_provider, "oidc-rotation", config) as gw:
        wait_until_accepted(gw.port, oidc_provider)
        token_a = provider_token(oidc_provider)
        clients = SteadyClients(gw.port, [token_a])
        try:
            wait_for(lambda: clients.count("op-key-a") >= 6, "A tokens answered before the rotation", 15)
            oidc_provider.configure(provider_config(KEY_A, KEY_B))
            assert header_of(provider_token(oidc_provider))["kid"] == "op-key-a"
            oidc_provider.configure(provider_config(KEY_B, KEY_A))
            token_b = provider_token(oidc_provider)
            assert header_of(token_b)["kid"] == "op-key-b"
            first_b = send(gw.port, "GET", PATH, token_b)  # may wait for the kid-miss refetch
            assert first_b.status == 200, (first_b.status, first_b.header("x-brickgate-reason"), first_b.body[:300])
            clients.tokens.append(token_b)
            wait_for(lambda: clients.count("op-key-b") >= 6, "B tokens answered after the rotation", 15)
        finally:
            answers = clients.stop()
        failed = [answer for answer in answers if answer[1] != 200]
        assert not failed, f"{len(failed)} of {len(answers)} requests failed during the rotation: {failed[:10]}"

        log_offset = gw.envoy.log_size()
        oidc_provider.configure(provider_config(KEY_B))  # A is no longer published
        gw.wait_for_log("info", "provider oidc key set changed: added [], removed [op-key-a]", timeout_s=10,
                        since=log_offset)
        # Every VM adopts the new key set within its next tick: until then an A token may still pass.
        wait_for(lambda: send(gw.port, "GET", PATH, token_a).status == 401, "A token refused after the removal", 3)
        for _ in range(6):  # fresh connections: every worker, each of which had A's token cached
            assert_refused(send(gw.port, "GET", PATH, token_a), invalid_token("unknown_kid", "op-key-a"), token_a)
            assert send(gw.port, "GET", PATH, token_b).status == 200
            assert send(gw.port, "GET", PATH, provider_token(oidc_provider)).status == 200


# --- 5. Entra ID and Okta token shapes, from their published examples --------------------------
#
# Entra ID: the v1.0 and v2.0 example tokens of https://learn.microsoft.com/en-us/entra/identity-platform/access-tokens
# ("Token formats"; MicrosoftDocs/entra-docs docs/identity-platform/access-tokens.md at
# 0bbfa8a3b9832cfcf180599b762231b4296c6d3d), decoded as published. What varies by token kind is from
# https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference
# (docs/identity-platform/access-token-claims-reference.md at 003f1aad061e882b17e07cfa8c7ec008d0385c3e):
# `scp` (space-separated string) only in user tokens, `roles` (array) in app tokens from the client
# credential flow, `idtyp` (app or user, optional claim), `groups` as object ids, `upn` a v1.0 claim
# "if applicable", `idp` differing from `iss` for guests (the published v1.0 example is such a token:
# no `upn`), `appid` (v1.0) replaced by `azp` (v2.0), no `jti` (`uti` instead).
# Okta: the "Access token payload" example and reserved claims of
# https://developer.okta.com/docs/api/openapi/okta-oauth/guides/overview/#access-token-payload
# (okta/okta-developer-docs packages/@okta/vuepress-site/docs/reference/api/oidc/index.md at
# 021698357fb257730fc891afb602ecb455b75fb2; `{yourOktaDomain}` filled in): `scp` an array, `cid` the
# client, `uid` the user ("isn't included in the access token if there is no user bound to it"),
# `sub` "a name for the user or a unique identifier for the client", `ver` 1, an optional custom
# `groups` claim. Times are moved to now; every other claim is as published.

ENTRA_V1 = {
    "aud": "ef1da9d4-ff77-4c3e-a005-840c3f830745",
    "iss": "https://sts.windows.net/fa15d692-e9c7-4460-a743-29f29522229/",
    "iat": 1537233106, "nbf": 1537233106, "exp": 1537237006,
    "acr": "1",
    "aio": "AXQAi/8IAAAAFm+E/QTG+gFnVxLjWdw8K+61AGrSOuMMF6ebaMj7XO3IbmD3fGmrOyD+NvZyGn2VaT/kDKXw4MIhrgGVq6Bn8wLXoT1LkIZ"
           "+FzQVkJPPLQOV4KcXqSlCVPDS/DiCDgE222TImMvWNaEMaUOTsIGvTQ==",
    "amr": ["wia"],
    "appid": "75dbe77f-10a3-4e59-85fd-8c127544f17c", "appidacr": "0",
    "email": "AbeLi@microsoft.com", "family_name": "Lincoln", "given_name": "Abe (MSFT)",
    "idp": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd0122247/",
    "ipaddr": "222.222.222.22", "name": "abeli",
    "oid": "02223b6b-aa1d-42d4-9ec0-1b2bb9194438", "rh": "I",
    "scp": "user_impersonation",
    "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
    "tid": "fa15d692-e9c7-4460-a743-29f2956fd429",
    "unique_name": "abeli@microsoft.com", "uti": "FVsGxYXI30-TuikuuUoFAA", "ver": "1.0",
}
ENTRA_V2 = {
    "aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3",
    "iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
    "iat": 1537231048, "nbf": 1537231048, "exp": 1537234948,
    "aio": "AXQAi/8IAAAAtAaZLo3ChMif6KOnttRB7eBq4/DccQzjcJGxPYy/C3jDaNGxXd6wNIIVGRghNRnwJ1lOcAnNZcjvkoyrFxCttv33140RioOFJ4b"
           "CCGVuoCag1uOTT22222gHwLPYQ/uf79QX+0KIijdrmp69RctzmQ==",
    "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "0",
    "name": "Abe Lincoln", "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
    "preferred_username": "abeli@microsoft.com", "rh": "I",
    "scp": "access_as_user",
    "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
    "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0",
}
OKTA = {
    "ver": 1,
    "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE",
    "iss": "https://example.okta.com/oauth2/0oacqf8qaJw56czJi0g4",
    "aud": "https://api.example.com",
    "sub": "00ujmkLgagxeRrAg20g3",
    "iat": 1467145094, "exp": 1467148694,
    "cid": "nmdP1fcyvdVO11AL7ECm", "uid": "00ujmkLgagxeRrAg20g3",
    "scp": ["openid", "email", "flights", "custom"],
    "auth_time": 1467142021, "custom_claim": "CustomValue",
}
ENTRA_GROUP = "3c1e0f6b-2a4d-4e5f-9a8b-7c6d5e4f3a2b"  # Entra puts group object ids in `groups`
ENTRA_USER_ONLY = ("scp", "amr", "acr", "email", "family_name", "given_name", "idp", "ipaddr", "name",
                   "unique_name", "preferred_username")


def without(claims: dict, names) -> dict:
    return {name: value for name, value in claims.items() if name not in names}


def app_only(claims: dict, acr_claim: str) -> dict:
    """The same token from the client credential flow: no user claims, `roles`, `idtyp: app`, a
    secret-authenticated client, and the service principal's object id as subject."""
    return {**without(claims, ENTRA_USER_ONLY), "roles": ["Databricks.Reader"], "idtyp": "app", acr_claim: "1",
            "sub": claims["oid"]}


def shapes_config() -> dict:
    inline = {"inline": {"keys": [TEST_KEYS["rsa-1"].public_jwk()]}}
    providers = {
        # As README's Entra ID example: subject `unique_name` (guests have no `upn`), grants from a
        # group, an app role and a scope.
        "entra-v1": {"issuer": ENTRA_V1["iss"], "audiences": [ENTRA_V1["aud"]], "jwks": inline, "idp": "entra",
                     "claims": {"subject": "unique_name"},
                     "grants": {f"group:{ENTRA_GROUP}": ["model-serving", "mlflow"],
                                "role:Databricks.Reader": ["all-apis:read"],
                                "scope:user_impersonation": ["sql:restricted-query"]}},
        # `oid`, the stable alternative README names; app roles read as scopes (docs/CONFIG.md claims.scopes).
        "entra-v2": {"issuer": ENTRA_V2["iss"], "audiences": [ENTRA_V2["aud"]], "jwks": inline, "idp": "entra",
                     "claims": {"subject": "oid", "scopes": ["scp", "roles"]}},
        # As README's Okta example.
        "okta": {"issuer": OKTA["iss"], "audiences": [OKTA["aud"]], "jwks": inline, "idp": "okta",
                 "claims": {"scopes": ["scp"]}},
    }
    return {"realm": REALM, "providers": providers,
            "rules": [{"name": "everything", "match": {"template": "/**"}, "providers": list(providers)}]}


@pytest.fixture(scope="module")
def shapes_port(start_envoy, wasm_path, upstream) -> int:
    listener = brickgate_listener("shapes", str(wasm_path), shapes_config())
    # No remote keys: the `idp` cluster every bootstrap has is never called.
    envoy = start_envoy(bootstrap([listener], upstream.port, upstream.port), "oidc-shapes")
    envoy.wait_ready()
    return envoy.listener_ports()["shapes"]


ENTRA_HEADER = {"typ": "JWT"}  # Entra's tokens are `typ: JWT`, not RFC 9068's at+jwt
OKTA_OMITS = ("typ",)  # Okta's header is {alg, kid}

# (published claims, header fields, header fields left out) → identity headers brickgate sends.
# docs/CONFIG.md "Identity": subject = claims.subject, client-id = client_id, else azp, else appid
# (Okta's `cid` is none of them), scopes space-separated with grants joined, groups comma-separated,
# token-id = jti; a header whose claim is absent is not sent. "Principal kind": entra → service
# principal when idtyp is app (else no scp); okta → when sub equals cid.
SHAPES = [
    pytest.param(ENTRA_V1, ENTRA_HEADER, (), {
        "subject": ENTRA_V1["unique_name"], "issuer": ENTRA_V1["iss"], "provider": "entra-v1", "client-id": ENTRA_V1["appid"],
        "scopes": {"user_impersonation", "sql:restricted-query"}, "principal-kind": "user"}, id="entra-v1-guest-as-published"),
    pytest.param({**without(ENTRA_V1, ("idp",)), "upn": "abeli@microsoft.com", "groups": [ENTRA_GROUP]}, ENTRA_HEADER, (), {
        "subject": "abeli@microsoft.com", "issuer": ENTRA_V1["iss"], "provider": "entra-v1", "client-id": ENTRA_V1["appid"],
        "scopes": {"user_impersonation", "sql:restricted-query", "model-serving", "mlflow"}, "groups": ENTRA_GROUP,
        "principal-kind": "user"}, id="entra-v1-member-with-upn-and-group"),
    pytest.param(app_only(ENTRA_V1, "appidacr"), ENTRA_HEADER, (), {
        "issuer": ENTRA_V1["iss"], "provider": "entra-v1", "client-id": ENTRA_V1["appid"],
        "scopes": {"all-apis:read"}, "principal-kind": "service_principal"}, id="entra-v1-app-only"),
    pytest.param(ENTRA_V2, ENTRA_HEADER, (), {
        "subject": ENTRA_V2["oid"], "issuer": ENTRA_V2["iss"], "provider": "entra-v2", "client-id": ENTRA_V2["azp"],
        "scopes": {"access_as_user"}, "principal-kind": "user"}, id="entra-v2-user-as-published"),
    pytest.param(app_only(ENTRA_V2, "azpacr"), ENTRA_HEADER, (), {
        "subject": ENTRA_V2["oid"], "issuer": ENTRA_V2["iss"], "provider": "entra-v2", "client-id": ENTRA_V2["azp"],
        "scopes": {"Databricks.Reader"}, "principal-kind": "service_principal"}, id="entra-v2-app-only"),
    pytest.param(OKTA, {}, OKTA_OMITS, {
        "subject": OKTA["sub"], "issuer": OKTA["iss"], "provider": "okta", "scopes": {"openid", "email", "flights", "custom"},
        "principal-kind": "user", "token-id": OKTA["jti"]}, id="okta-user-as-published"),
    pytest.param({**OKTA, "groups": ["Everyone", "Admin"]}, {}, OKTA_OMITS, {
        "subject": OKTA["sub"], "issuer": OKTA["iss"], "provider": "okta", "scopes": {"openid", "email", "flights", "custom"},
        "groups": "Everyone,Admin", "principal-kind": "user", "token-id": OKTA["jti"]}, id="okta-user-with-groups-claim"),
    pytest.param({**without(OKTA, ("uid", "auth_time", "custom_claim")), "sub": OKTA["cid"], "scp": ["clusters:read"]}, {},
                 OKTA_OMITS, {
        "subject": OKTA["cid"], "issuer": OKTA["iss"], "provider": "okta", "scopes": {"clusters:read"},
        "principal-kind": "service_principal", "token-id": OKTA["jti"]}, id="okta-client-credentials"),
]


@pytest.mark.parametrize(("published", "header", "omit_header", "expected"), SHAPES)
def test_published_token_shape_gives_documented_identity(shapes_port, published, header, omit_header, expected):
    token = TokenFactory(published["iss"]).shaped(published, header=header, omit_header=omit_header)
    forwarded = {name: values[0] for name, values in identity_headers(send(shapes_port, "GET", PATH, token)).items()}
    forwarded["scopes"] = set(forwarded["scopes"].split(" ")) if "scopes" in forwarded else set()
    assert forwarded == {**expected, "rule": "everything"}
