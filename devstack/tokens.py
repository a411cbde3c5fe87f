"""Test-only token minting: valid tokens, and every way to get one wrong.

`mint()` signs exactly the header and claims it is given, so a test can build tokens that no
well-behaved library would produce (HS256 with an RSA public key, `crit`, no `kid`, ...). The
raw helpers at the bottom construct malformed tokens from a valid one.
"""

import base64
import json
import time
import uuid

import jwt  # PyJWT: only its algorithm objects, for the signature primitives

from devstack.keys import TEST_KEYS, b64url

DEFAULT_LIFETIME_S = 3600
SAME_AS_SUBJECT = "<same as subject>"


def claims(
    issuer: str,
    audience,
    *,
    subject: str = "e2e-client",
    client_id: str | None = SAME_AS_SUBJECT,
    scope: str | None = "",
    lifetime_s: int = DEFAULT_LIFETIME_S,
    now: int | None = None,
    **extra,
) -> dict:
    """The claims of an RFC 9068 access token; `extra` adds or overrides; None removes a claim."""
    now = int(time.time()) if now is None else now
    base = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "client_id": subject if client_id == SAME_AS_SUBJECT else client_id,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "jti": uuid.uuid4().hex,
    }
    base.update(extra)
    return {name: value for name, value in base.items() if value is not None}


def databricks_claims(
    issuer: str,
    subject: str,
    scope: str,
    *,
    client_id: str | None = SAME_AS_SUBJECT,
    lifetime_s: int = DEFAULT_LIFETIME_S,
    now: int | None = None,
    **extra,
) -> dict:
    """The claims of a Databricks-issued OAuth access token as the fake workspace mints them.

    `issuer` is `<workspace host>/oidc`; no `aud` (Databricks' is not established: see
    shared/design/databricks-facts.md §1.5). `extra` adds or overrides; None removes a claim.
    Sign with `mint(payload, "dbx-1", header={"typ": "JWT"})`.
    """
    now = int(time.time()) if now is None else now
    base = {
        "iss": issuer,
        "sub": subject,
        "client_id": subject if client_id == SAME_AS_SUBJECT else client_id,
        "scope": scope,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": uuid.uuid4().hex,
    }
    base.update(extra)
    return {name: value for name, value in base.items() if value is not None}


def mint(
    payload: dict,
    key: str | bytes = "rsa-1",
    alg: str | None = None,
    *,
    header: dict | None = None,
    omit_header: tuple[str, ...] = (),
) -> str:
    """Sign `payload` with a test key name ("rsa-1", "ec-1", "attacker-rsa", ...) or an HMAC secret.

    The header defaults to {alg, typ: at+jwt, kid of the key}; `header` overrides or adds fields,
    `omit_header` removes them (e.g. ("kid",) or ("typ",)).
    """
    if isinstance(key, bytes):
        alg = alg or "HS256"
        kid = None
    else:
        test_key = TEST_KEYS[key]
        alg = alg or test_key.alg
        kid = test_key.kid
    jose = {"alg": alg, "typ": "at+jwt", "kid": kid}
    jose.update(header or {})
    jose = {name: value for name, value in jose.items() if value is not None and name not in omit_header}
    return sign_segments(encode_json(jose), encode_json(payload), key, alg)


def encode_json(value) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def signing_key(key: str | bytes):
    """A test key's private key; bytes are used as-is (HMAC secrets, key confusion)."""
    return key if isinstance(key, bytes) else TEST_KEYS[key].private_key


def sign_segments(header_b64: str, payload_b64: str, key: str | bytes, alg: str) -> str:
    """Sign two already-encoded segments exactly as given."""
    signing_input = f"{header_b64}.{payload_b64}".encode()
    algorithm = jwt.get_algorithm_by_name(alg)
    signature = algorithm.sign(signing_input, signing_key(key))
    return f"{header_b64}.{payload_b64}.{b64url(signature)}"


def hs256_with_public_key(payload: dict, key_name: str = "rsa-1", **header_fields) -> str:
    """Key-confusion attack: HS256 whose HMAC secret is the RSA *public* key PEM."""
    public_pem = TEST_KEYS[key_name].public_pem()
    header = {"kid": TEST_KEYS[key_name].kid, **header_fields}
    return mint(payload, public_pem, "HS256", header=header)


# --- raw construction of malformed tokens -------------------------------------------------


def segments(token: str) -> list[str]:
    return token.split(".")


def signature_of(token: str) -> str:
    return segments(token)[-1]


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def payload_of(token: str) -> dict:
    """The claims of a token, unverified."""
    return json.loads(_b64url_decode(segments(token)[1]))


def header_of(token: str) -> dict:
    """The JOSE header of a token, unverified."""
    return json.loads(_b64url_decode(segments(token)[0]))


def bad_signature(token: str) -> str:
    """Same header and payload, signature bytes changed at the end (still canonical base64url)."""
    header_b64, payload_b64, signature_b64 = segments(token)
    signature = bytearray(_b64url_decode(signature_b64))
    signature[-1] ^= 0x01
    signature[-2] ^= 0x80
    return f"{header_b64}.{payload_b64}.{b64url(bytes(signature))}"


def tampered_payload(token: str, **changes) -> str:
    """New claims spliced in, original signature kept."""
    header_b64, _, signature_b64 = segments(token)
    payload = payload_of(token)
    payload.update(changes)
    return f"{header_b64}.{encode_json(payload)}.{signature_b64}"


def alg_none(payload: dict, **header_fields) -> str:
    """Unsecured JWS (RFC 7519 §6): alg none, empty signature."""
    header = {"alg": "none", "typ": "at+jwt", **header_fields}
    return f"{encode_json(header)}.{encode_json(payload)}."


def two_segments(token: str) -> str:
    return ".".join(segments(token)[:2])


def four_segments(token: str) -> str:
    return f"{token}.{segments(token)[-1]}"


def padded(token: str, segment: int = 2) -> str:
    """Standard base64 padding added to one segment (JWS forbids it).

    Padding the signature (segment 2, the default) keeps the token a valid RFC 6750 b64token, so
    it reaches the JWT parser; padding segment 0 or 1 puts "=" mid-token, which b64token forbids.
    """
    parts = segments(token)
    padding = "=" * (-len(parts[segment]) % 4)
    if not padding:
        raise ValueError("this segment needs no padding; pick another token")
    parts[segment] += padding
    return ".".join(parts)


_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def non_canonical_signature(token: str) -> str:
    """Signature whose last character sets a bit that decoding ignores: same bytes, non-canonical text."""
    header_b64, payload_b64, signature_b64 = segments(token)
    if len(signature_b64) % 4 not in (2, 3):
        raise ValueError("this signature's length leaves no unused bits")
    last_value = _B64URL_ALPHABET.index(signature_b64[-1])
    changed = signature_b64[:-1] + _B64URL_ALPHABET[last_value ^ 0x01]
    assert _b64url_decode(changed) == _b64url_decode(signature_b64)
    return f"{header_b64}.{payload_b64}.{changed}"


def raw(header: dict | str, payload: dict | str, key: str | bytes = "rsa-1", alg: str = "RS256") -> str:
    """Sign a header and payload given as dicts or as exact JSON text (e.g. duplicate keys)."""

    def encode(part) -> str:
        return b64url(part.encode()) if isinstance(part, str) else encode_json(part)

    return sign_segments(encode(header), encode(payload), key, alg)
