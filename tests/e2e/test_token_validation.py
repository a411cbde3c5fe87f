"""Which tokens brickgate accepts, and the exact refusal for every way a token can be wrong."""

import pytest

from devstack import tokens as raw
from devstack.keys import TEST_KEYS
from gateway_client import assert_refused, claim_time, invalid_request, invalid_token, send
from plugin_configs import AUDIENCE, HMAC_ISSUER, HMAC_KID, HMAC_SECRET, LOCAL_ISSUER

IDP_ROUTE = "/api/2.0/clusters/list"  # rule clusters-read: provider idp, scopes_any clusters:read...
LOCAL_ROUTE = "/local/reports"  # rule local-reports: provider local (inline ES256, require_typ)
HMAC_ROUTE = "/hmac/reports"  # rule hmac-reports: provider hmac (inline oct key, HS256)
READ = "clusters:read"


ACCEPTED = [
    pytest.param(IDP_ROUTE, lambda t: t.from_idp("demo-reader"), "idp", id="rs256-from-idp-token-endpoint"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ), "idp", id="rs256-minted"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(key="ec-1", scope=READ), "idp", id="es256-idp-jwks"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, omit_header=("kid",)), "idp", id="rs256-without-kid"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(key="ec-1", scope=READ, omit_header=("kid",)), "idp", id="es256-without-kid"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, omit_header=("typ",)), "idp", id="no-typ-when-not-required"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, aud=["someone-else", AUDIENCE]), "idp", id="aud-array-containing-ours"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=None, scp=[READ]), "idp", id="scopes-in-scp-array"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, exp=t.now - 30), "idp", id="expired-within-clock-skew"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, nbf=t.now + 30), "idp", id="nbf-within-clock-skew"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, header={"jku": "https://evil.test/jwks", "x5u": "https://evil.test/x5u"}),
                 "idp", id="jku-x5u-ignored"),
    pytest.param(LOCAL_ROUTE, lambda t: t.local(), "local", id="local-inline-es256-typ-at+jwt"),
    pytest.param(LOCAL_ROUTE, lambda t: t.local(header={"typ": "application/at+jwt"}), "local", id="local-typ-application-at+jwt"),
    pytest.param(HMAC_ROUTE, lambda t: t.hmac(), "hmac", id="hs256-inline-oct-key"),
]


@pytest.mark.parametrize(("path", "make_token", "provider"), ACCEPTED)
def test_valid_token_is_forwarded(gateway, tokens, path, make_token, provider):
    reply = send(gateway.main_port, "GET", path, make_token(tokens))
    assert reply.status == 200, reply.body
    assert reply.forwarded["x-brickgate-provider"] == [provider]


def _idp_claims(t, **fields):
    return t.idp_claims(scope=READ, **fields)


REFUSED = [
    # alg: the allow-list is checked before any key is touched
    pytest.param(IDP_ROUTE, lambda t: raw.hs256_with_public_key(_idp_claims(t)),
                 invalid_token("alg_not_allowed", "HS256"), id="hs256-signed-with-rsa-public-key"),
    pytest.param(IDP_ROUTE, lambda t: raw.alg_none(_idp_claims(t)), invalid_token("alg_not_allowed", "none"), id="alg-none"),
    pytest.param(IDP_ROUTE, lambda t: raw.alg_none(_idp_claims(t), alg="None"), invalid_token("alg_not_allowed", "None"), id="alg-None-capitalised"),
    pytest.param(IDP_ROUTE, lambda t: raw.alg_none(_idp_claims(t)) + "c2lnbmF0dXJl", invalid_token("alg_not_allowed", "none"),
                 id="alg-none-with-a-signature"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(alg="RS384", scope=READ), invalid_token("alg_not_allowed", "RS384"), id="rs384-not-in-algorithms"),
    pytest.param(HMAC_ROUTE, lambda t: raw.mint(raw.claims(HMAC_ISSUER, AUDIENCE), HMAC_SECRET, "HS384", header={"kid": HMAC_KID}),
                 invalid_token("alg_not_allowed", "HS384"), id="hs384-on-hs256-provider"),
    # time
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, iat=t.now - 7200, nbf=t.now - 7200, exp=t.now - 3600),
                 invalid_token("expired", claim_time("exp")), id="expired"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, exp=t.now - 120), invalid_token("expired", claim_time("exp")), id="expired-beyond-skew"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, exp=None), invalid_token("expired", "exp"), id="no-exp"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, nbf=t.now + 600), invalid_token("not_yet_valid", claim_time("nbf")), id="nbf-in-future"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, iat=t.now + 600, nbf=None), invalid_token("issued_in_future", claim_time("iat")), id="iat-in-future"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, exp=t.now + 2 * 86400), invalid_token("lifetime_too_long", "86400"), id="lifetime-too-long"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, iat=None, nbf=None), invalid_token("lifetime_too_long"), id="neither-iat-nor-nbf"),
    # issuer and audience
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, aud="other-api"),
                 invalid_token("audience_mismatch", "other-api", AUDIENCE), id="wrong-audience"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, aud=None), invalid_token("audience_mismatch", AUDIENCE), id="no-audience"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, iss="https://evil.test"),
                 invalid_token("issuer_not_accepted", "https://evil.test"), id="wrong-issuer"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, iss=t.idp_issuer + "/"), invalid_token("issuer_not_accepted"), id="issuer-trailing-slash"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, iss=None), invalid_token("issuer_not_accepted"), id="no-issuer"),
    pytest.param(IDP_ROUTE, lambda t: t.local(scope=READ), invalid_token("issuer_not_accepted", LOCAL_ISSUER), id="other-providers-issuer"),
    # keys and signatures
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, header={"kid": "no-such-kid"}), invalid_token("unknown_kid", "no-such-kid"), id="unknown-kid"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(key="rsa-2", scope=READ), invalid_token("unknown_kid", "test-rsa-2"), id="unpublished-key"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, header={"kid": "test-ec-1"}), invalid_token("key_mismatch", "test-ec-1"), id="rs256-with-ec-kid"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(key="ec-1", scope=READ, header={"kid": "test-rsa-1"}),
                 invalid_token("key_mismatch", "test-rsa-1"), id="es256-with-rsa-kid"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(key="attacker-rsa", scope=READ, header={"kid": "test-rsa-1"}),
                 invalid_token("bad_signature"), id="attacker-key-with-known-kid"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(key="attacker-rsa", scope=READ,
                                            header={"kid": "test-rsa-1", "jwk": TEST_KEYS["attacker-rsa"].public_jwk()}),
                 invalid_token("bad_signature"), id="attacker-key-embedded-as-jwk"),
    pytest.param(IDP_ROUTE, lambda t: raw.bad_signature(t.idp(scope=READ)), invalid_token("bad_signature"), id="rs256-signature-changed"),
    pytest.param(IDP_ROUTE, lambda t: raw.bad_signature(t.idp(key="ec-1", scope=READ)), invalid_token("bad_signature"), id="es256-signature-changed"),
    pytest.param(IDP_ROUTE, lambda t: raw.tampered_payload(t.idp(scope=READ), scope="all-apis"), invalid_token("bad_signature"), id="payload-tampered"),
    pytest.param(HMAC_ROUTE, lambda t: raw.mint(raw.claims(HMAC_ISSUER, AUDIENCE), b"not-the-configured-secret-at-all!", header={"kid": HMAC_KID}),
                 invalid_token("bad_signature"), id="hs256-wrong-secret"),
    # JOSE header
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, header={"crit": ["exp"]}), invalid_token("unsupported_header", "crit"), id="crit-header"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, header={"cty": "JWT"}), invalid_token("unsupported_header", "cty"), id="nested-jwt-cty"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, header={"zip": "DEF"}), invalid_token("unsupported_header", "zip"), id="zip-header"),
    pytest.param(LOCAL_ROUTE, lambda t: t.local(omit_header=("typ",)), invalid_token("typ_mismatch", "typ"), id="local-without-typ"),
    pytest.param(LOCAL_ROUTE, lambda t: t.local(header={"typ": "JWT"}), invalid_token("typ_mismatch", "typ"), id="local-typ-JWT"),
    # structure
    pytest.param(IDP_ROUTE, lambda t: raw.two_segments(t.idp(scope=READ)), invalid_token("malformed_token"), id="two-segments"),
    pytest.param(IDP_ROUTE, lambda t: raw.four_segments(t.idp(scope=READ)), invalid_token("malformed_token"), id="four-segments"),
    pytest.param(IDP_ROUTE, lambda t: raw.padded(t.idp(scope=READ)), invalid_token("malformed_token"), id="padded-signature"),
    # "=" before the last segment is not even an RFC 6750 b64token: refused when the credential is read
    pytest.param(IDP_ROUTE, lambda t: raw.padded(t.idp(scope=READ), segment=0), invalid_request("malformed_credential"), id="padded-header"),
    pytest.param(IDP_ROUTE, lambda t: raw.non_canonical_signature(t.idp(scope=READ)), invalid_token("malformed_token"), id="non-canonical-base64url"),
    pytest.param(IDP_ROUTE, lambda t: "not-a-jwt", invalid_token("malformed_token"), id="one-segment"),
    pytest.param(IDP_ROUTE, lambda t: raw.raw("[]", _idp_claims(t)), invalid_token("malformed_token"), id="header-not-an-object"),
    pytest.param(IDP_ROUTE, lambda t: raw.raw({"alg": "RS256", "kid": "test-rsa-1"}, "not json"), invalid_token("malformed_token"), id="payload-not-json"),
    pytest.param(IDP_ROUTE, lambda t: raw.raw('{"alg":"RS256","kid":"test-ec-1","kid":"test-rsa-1","typ":"at+jwt"}', _idp_claims(t)),
                 invalid_token("malformed_token"), id="duplicate-header-keys"),
    pytest.param(IDP_ROUTE, lambda t: t.idp(scope=READ, exp=str(t.now + 600)), invalid_token("malformed_token"), id="exp-is-a-string"),
]


@pytest.mark.parametrize(("path", "make_token", "expected"), REFUSED)
def test_invalid_token_is_refused(gateway, tokens, upstream, path, make_token, expected):
    token = make_token(tokens)
    forwarded_before = upstream.snapshot_counts().get(path, 0)
    reply = send(gateway.main_port, "GET", path, token)
    assert_refused(reply, expected, token)
    assert upstream.snapshot_counts().get(path, 0) == forwarded_before, "a refused request reached the upstream"
