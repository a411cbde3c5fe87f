"""The test signing keys (tests/keys/*.pem) and their public JWKs."""

import base64
import functools
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

REPO_ROOT = Path(__file__).resolve().parent.parent
KEYS_DIR = REPO_ROOT / "tests" / "keys"


@dataclass(frozen=True)
class TestKey:
    name: str  # file stem, e.g. "rsa-1"
    kid: str
    alg: str  # the algorithm this key signs with by default

    @property
    def private_key(self):
        return _load_private_key(self.name)

    @property
    def public_key(self):
        return self.private_key.public_key()

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_jwk(self) -> dict:
        return {**public_jwk_fields(self.public_key), "kid": self.kid, "alg": self.alg, "use": "sig"}


TEST_KEYS = {
    "rsa-1": TestKey("rsa-1", "test-rsa-1", "RS256"),
    "rsa-2": TestKey("rsa-2", "test-rsa-2", "RS256"),
    "ec-1": TestKey("ec-1", "test-ec-1", "ES256"),
    "ec-384": TestKey("ec-384", "test-ec-384", "ES384"),
    "ed-1": TestKey("ed-1", "test-ed-1", "EdDSA"),
    # Never published: tokens signed with it must always be refused.
    "attacker-rsa": TestKey("attacker-rsa", "attacker-rsa", "RS256"),
    # The fake Databricks workspace's signing key (devstack/workspace.py): published only at the
    # workspace's /oidc/v1/keys, never by the fake IdP, so IdP-trusting configs refuse its tokens.
    "dbx-1": TestKey("dbx-1", "test-dbx-1", "RS256"),
}


@functools.cache
def _load_private_key(name: str):
    pem = (KEYS_DIR / f"{name}.pem").read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint_b64(value: int, length: int | None = None) -> str:
    length = length or (value.bit_length() + 7) // 8
    return b64url(value.to_bytes(length, "big"))


_EC_CURVES = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48)}


def public_jwk_fields(public_key) -> dict:
    """kty-specific JWK members of a public key (no kid/alg/use)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _uint_b64(numbers.n), "e": _uint_b64(numbers.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        if public_key.curve.name not in _EC_CURVES:
            raise ValueError(f"unsupported curve {public_key.curve.name}")
        crv, size = _EC_CURVES[public_key.curve.name]
        return {"kty": "EC", "crv": crv, "x": _uint_b64(numbers.x, size), "y": _uint_b64(numbers.y, size)}
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    raise TypeError(f"unsupported key type {type(public_key).__name__}")


def jwks(*key_names: str) -> dict:
    return {"keys": [TEST_KEYS[name].public_jwk() for name in key_names]}


def oct_jwk(secret: bytes, kid: str, alg: str = "HS256") -> dict:
    return {"kty": "oct", "k": b64url(secret), "kid": kid, "alg": alg, "use": "sig"}
