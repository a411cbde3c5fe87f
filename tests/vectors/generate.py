"""Writes the fixed vector files `make test` replays (core/src/fuzz_properties/vectors.rs).

    .venv/bin/python tests/vectors/generate.py [--force]

Without --force it writes only missing files, so committed vectors stay fixed. The keys are
generated here, fresh, and are test fixtures only: they are committed, so never trust them.

- `jws/<family>.json`: per algorithm family (RS, PS, ES, EdDSA, HS) a key set and cases:
  valid, wrong key, wrong alg, truncated, and the non-canonical or malleable signatures that
  apply (ECDSA high-S and DER-encoded signatures, Ed25519 S + L, base64url with stray bits).
- `idp/<name>/`: JWKS and discovery documents shaped like the ones Okta, Entra ID (v1 and v2),
  Auth0, Google, Keycloak and Databricks publish (their structure; our keys), with a token each.
"""

import base64
import json
import sys
from pathlib import Path

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

HERE = Path(__file__).resolve().parent
NOW = 1_800_000_000
AUDIENCE = "api://brickgate"
ISSUER = "https://vectors.test"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_N = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims(issuer=ISSUER, audience=AUDIENCE, **extra):
    base = {"iss": issuer, "aud": audience, "sub": "vector-user", "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 600}
    base.update(extra)
    return base


def public_jwk(key, kid, alg=None, use="sig", extra=None):
    jwk = json.loads(pyjwt.algorithms.get_default_algorithms()[alg or "RS256"].to_jwk(key.public_key()))
    jwk.pop("key_ops", None)
    jwk.update({"kid": kid, "use": use})
    if alg:
        jwk["alg"] = alg
    else:
        jwk.pop("alg", None)
    jwk.update(extra or {})
    return jwk


def sign(key, alg, kid, payload=None, header=None):
    headers = {"kid": kid, **(header or {})}
    return pyjwt.encode(payload or claims(), key, algorithm=alg, headers=headers)


def with_signature(token: str, signature: bytes) -> str:
    head, body, _ = token.split(".")
    return f"{head}.{body}.{b64(signature)}"


def with_header(token: str, **changes) -> str:
    """The same payload and signature under a changed header (so the signature no longer fits)."""
    head, body, sig = token.split(".")
    header = json.loads(unb64(head))
    header.update(changes)
    return f"{b64(json.dumps(header, separators=(',', ':')).encode())}.{body}.{sig}"


def stray_bits(token: str) -> str:
    """The signature's last base64url character with non-zero padding bits (non-canonical)."""
    head, body, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(sig) % 4 == 0:
        return token
    last = alphabet.index(sig[-1])
    return f"{head}.{body}.{sig[:-1]}{alphabet[last | 1]}"


def case(name, token, expect, reasons=None, why=""):
    entry = {"name": name, "token": token, "expect": expect}
    if reasons:
        entry["reasons"] = reasons
    if why:
        entry["why"] = why
    return entry


def common_cases(token, other_token, alg):
    head, body, sig = token.split(".")
    # A signature whose length is a multiple of 3 bytes has no spare bits to set.
    stray = [case(f"{alg} stray base64url bits in the signature", stray_bits(token), "deny", ["malformed_token"])] \
        if len(sig) % 4 else []
    return stray + [
        case(f"{alg} valid", token, "allow"),
        case(f"{alg} wrong key (same kid, another key signed)", other_token, "deny", ["bad_signature"]),
        case(f"{alg} truncated signature", f"{head}.{body}.{sig[: len(sig) // 2]}", "deny",
             ["bad_signature", "malformed_token"]),
        case(f"{alg} truncated token (no signature segment)", f"{head}.{body}", "deny", ["malformed_token"]),
        case(f"{alg} empty signature", f"{head}.{body}.", "deny", ["bad_signature"]),
        case(f"{alg} alg none", with_signature(with_header(token, alg="none"), b""), "deny", ["alg_not_allowed"]),
        case(f"{alg} padded signature", f"{token}==", "deny", ["malformed_token"]),
        case(f"{alg} payload changed", f"{head}.{b64(json.dumps(claims(sub='mallory')).encode())}.{sig}", "deny",
             ["bad_signature"]),
    ]


def rsa_family(prefix):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = f"{prefix.lower()}-key"
    jwks = {"keys": [public_jwk(key, kid)]}
    cases = []
    for bits in (256, 384, 512):
        alg = f"{prefix}{bits}"
        token = sign(key, alg, kid)
        cases += common_cases(token, sign(other, alg, kid), alg)
    rs = sign(key, f"{prefix}256", kid)
    swapped = "PS256" if prefix == "RS" else "RS256"
    cases += [
        case(f"{prefix}256 signature presented as {swapped}", with_header(rs, alg=swapped), "deny", ["bad_signature"]),
        case(f"{prefix}256 presented as HS256 (key confusion)", with_header(rs, alg="HS256"), "deny",
             ["key_mismatch"]),
        case(f"{prefix}256 presented as ES256", with_header(rs, alg="ES256"), "deny", ["key_mismatch"]),
        case(f"{prefix}256 unknown kid", with_header(rs, kid="rotated-away"), "deny", ["unknown_kid"]),
        case(f"{prefix}256 signature one byte short", with_signature(rs, unb64(rs.split(".")[2])[1:]), "deny",
             ["bad_signature"]),
        case(f"{prefix}256 signature with a leading zero byte", with_signature(rs, b"\0" + unb64(rs.split(".")[2])),
             "deny", ["bad_signature"]),
    ]
    return jwks, cases


def ec_family():
    keys = {"ES256": (ec.SECP256R1(), 32, P256_N), "ES384": (ec.SECP384R1(), 48, P384_N)}
    jwks, cases = {"keys": []}, []
    for alg, (curve, size, order) in keys.items():
        key, other = ec.generate_private_key(curve), ec.generate_private_key(curve)
        kid = f"{alg.lower()}-key"
        jwks["keys"].append(public_jwk(key, kid, alg))
        token = sign(key, alg, kid)
        cases += common_cases(token, sign(other, alg, kid), alg)
        raw = unb64(token.split(".")[2])
        r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
        high_s = order - s if s < order // 2 else s
        low_s = order - high_s
        der = encode_dss_signature(r, s)
        cases += [
            case(f"{alg} low-S form of the signature", with_signature(token, r.to_bytes(size, "big") + low_s.to_bytes(size, "big")),
                 "allow", why="ECDSA: (r, s) and (r, n-s) both verify; JWS (RFC 7518) sets no low-S rule"),
            case(f"{alg} high-S form of the signature", with_signature(token, r.to_bytes(size, "big") + high_s.to_bytes(size, "big")),
                 "allow", why="malleable, but the claims are the signed ones: no new token content is admitted"),
            case(f"{alg} DER-encoded signature (not JWS raw r||s)", with_signature(token, der), "deny", ["bad_signature"]),
            case(f"{alg} s = 0", with_signature(token, r.to_bytes(size, "big") + bytes(size)), "deny", ["bad_signature"]),
            case(f"{alg} s = n (out of range)", with_signature(token, r.to_bytes(size, "big") + order.to_bytes(size, "big")),
                 "deny", ["bad_signature"]),
            case(f"{alg} presented as RS256", with_header(token, alg="RS256"), "deny", ["key_mismatch"]),
        ]
    es256 = [c for c in cases if c["name"] == "ES256 valid"][0]["token"]
    cases.append(case("ES256 signature presented as ES384", with_header(es256, alg="ES384"), "deny", ["key_mismatch"]))
    return jwks, cases


def eddsa_family():
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": "ed-key", "alg": "EdDSA", "use": "sig"}]}
    token = sign(key, "EdDSA", "ed-key")
    cases = common_cases(token, sign(other, "EdDSA", "ed-key"), "EdDSA")
    sig = unb64(token.split(".")[2])
    s = int.from_bytes(sig[32:], "little")
    cases += [
        case("EdDSA non-canonical S (S + L)", with_signature(token, sig[:32] + (s + ED25519_L).to_bytes(32, "little")),
             "deny", ["bad_signature"], why="RFC 8032 §5.1.7: S must be below L"),
        case("EdDSA presented as RS256", with_header(token, alg="RS256"), "deny", ["key_mismatch"]),
        case("EdDSA presented as Ed448 name", with_header(token, alg="Ed448"), "deny", ["alg_not_allowed"]),
    ]
    return jwks, cases


def hs_family():
    secrets = {"HS256": b"h" * 32, "HS384": b"i" * 48, "HS512": b"j" * 64}
    jwks = {"keys": [{"kty": "oct", "k": b64(v), "kid": f"{a.lower()}-key", "alg": a, "use": "sig"} for a, v in secrets.items()]}
    cases = []
    for alg, secret in secrets.items():
        kid = f"{alg.lower()}-key"
        token = sign(secret, alg, kid)
        cases += common_cases(token, sign(b"x" * len(secret), alg, kid), alg)
    hs = sign(secrets["HS256"], "HS256", "hs256-key")
    cases += [
        case("HS256 token under the HS384 key", with_header(hs, kid="hs384-key"), "deny", ["key_mismatch"]),
        case("HS256 signed with a 16-byte secret (such a key is refused when the key set is read)",
             sign(b"s" * 16, "HS256", "short-key"), "deny", ["unknown_kid"]),
        case("HS256 MAC truncated to 16 bytes", with_signature(hs, unb64(hs.split(".")[2])[:16]), "deny", ["bad_signature"]),
    ]
    return jwks, cases


# --- IdP documents -------------------------------------------------------------------------


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def x5c(key, name):
    """A self-signed certificate for the key, as Entra ID and Auth0 publish one next to n and e."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(datetime.datetime(2026, 1, 1)).not_valid_after(datetime.datetime(2031, 1, 1))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    thumb = cert.fingerprint(hashes.SHA1())
    return {"x5c": [base64.b64encode(der).decode()], "x5t": b64(thumb)}


def idp_documents():
    """(name, issuer, discovery well-known path, discovery extra, jwks keys, signer, signing kid, skipped kids)."""
    docs = []

    okta = [rsa_key(), rsa_key()]
    docs.append(("okta", "https://dev-000000.okta.com/oauth2/default", ".well-known/openid-configuration",
                 {"authorization_endpoint": "https://dev-000000.okta.com/oauth2/default/v1/authorize",
                  "jwks_uri": "https://dev-000000.okta.com/oauth2/default/v1/keys"},
                 [public_jwk(k, f"okta-kid-{i}", "RS256") for i, k in enumerate(okta)], okta[0], "okta-kid-0", []))

    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    entra = [rsa_key(), rsa_key()]
    entra_keys = [public_jwk(k, f"entra-kid-{i}", None, extra={**x5c(k, "accounts.accesscontrol.windows.net"), "x5t": f"entra-kid-{i}", "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}) for i, k in enumerate(entra)]
    for jwk in entra_keys:
        jwk["x5t"] = jwk["kid"]  # Entra ID publishes kid == x5t
    docs.append(("entra-v2", f"https://login.microsoftonline.com/{tenant}/v2.0", ".well-known/openid-configuration",
                 {"jwks_uri": f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys",
                  "token_endpoint": f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
                  "id_token_signing_alg_values_supported": ["RS256"], "tenant_region_scope": "EU"},
                 entra_keys, entra[0], "entra-kid-0", []))
    entra_v1 = [dict(jwk) for jwk in entra_keys]
    for jwk in entra_v1:
        jwk.pop("issuer")
    docs.append(("entra-v1", f"https://sts.windows.net/{tenant}/", ".well-known/openid-configuration",
                 {"jwks_uri": f"https://login.microsoftonline.com/{tenant}/discovery/keys",
                  "token_endpoint": f"https://login.microsoftonline.com/{tenant}/oauth2/token"},
                 entra_v1, entra[1], "entra-kid-1", []))

    auth0 = [rsa_key(), rsa_key()]
    docs.append(("auth0", "https://brickgate-test.eu.auth0.com/", ".well-known/openid-configuration",
                 {"jwks_uri": "https://brickgate-test.eu.auth0.com/.well-known/jwks.json"},
                 [public_jwk(k, f"auth0-kid-{i}", "RS256", extra=x5c(k, "brickgate-test.eu.auth0.com")) for i, k in enumerate(auth0)],
                 auth0[1], "auth0-kid-1", []))

    google = [rsa_key(), rsa_key()]
    docs.append(("google", "https://accounts.google.com", ".well-known/openid-configuration",
                 {"jwks_uri": "https://www.googleapis.com/oauth2/v3/certs"},
                 [public_jwk(k, f"{i:040x}", "RS256") for i, k in enumerate(google)], google[0], f"{0:040x}", []))

    kc_sig, kc_enc = rsa_key(), rsa_key()
    kc_ec = ec.generate_private_key(ec.SECP256R1())
    keycloak_keys = [
        public_jwk(kc_sig, "kc-rs256", "RS256", extra=x5c(kc_sig, "brickgate")),
        public_jwk(kc_enc, "kc-rsa-oaep", None, use="enc", extra={"alg": "RSA-OAEP", **x5c(kc_enc, "brickgate")}),
        public_jwk(kc_ec, "kc-es256", "ES256"),
    ]
    docs.append(("keycloak", "https://keycloak.example/realms/brickgate", ".well-known/openid-configuration",
                 {"jwks_uri": "https://keycloak.example/realms/brickgate/protocol/openid-connect/certs"},
                 keycloak_keys, kc_ec, "kc-es256", ["kc-rsa-oaep"]))

    dbx = rsa_key()
    docs.append(("databricks", "https://adb-1234567890123456.7.azuredatabricks.net/oidc", ".well-known/oauth-authorization-server",
                 {"jwks_uri": "https://adb-1234567890123456.7.azuredatabricks.net/oidc/jwks.json",
                  "token_endpoint": "https://adb-1234567890123456.7.azuredatabricks.net/oidc/v1/token",
                  "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token",
                                            "urn:ietf:params:oauth:grant-type:token-exchange"]},
                 [public_jwk(dbx, "dbx-kid", "RS256")], dbx, "dbx-kid", []))
    return docs


def write(path: Path, value, force: bool):
    if path.exists() and not force:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1) + "\n")
    print(f"wrote {path.relative_to(HERE.parent.parent)}")


def main():
    force = "--force" in sys.argv
    algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"]
    for family, build in [("rs", lambda: rsa_family("RS")), ("ps", lambda: rsa_family("PS")), ("es", ec_family),
                          ("eddsa", eddsa_family), ("hs", hs_family)]:
        path = HERE / "jws" / f"{family}.json"
        if path.exists() and not force:
            continue
        jwks, cases = build()
        write(path, {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW, "algorithms": algorithms,
                     "jwks": jwks, "cases": cases}, True)
    for name, issuer, well_known, extra, keys, signer, kid, skipped in idp_documents():
        folder = HERE / "idp" / name
        if (folder / "case.json").exists() and not force:
            continue
        discovery = {"issuer": issuer, **extra}
        discovery.setdefault("response_types_supported", ["code", "token"])
        discovery.setdefault("subject_types_supported", ["public"])
        discovery.setdefault("id_token_signing_alg_values_supported", ["RS256"])
        alg = "ES256" if isinstance(signer, ec.EllipticCurvePrivateKey) else "RS256"
        token = pyjwt.encode(claims(issuer=issuer), signer, algorithm=alg, headers={"kid": kid})
        write(folder / "discovery.json", discovery, True)
        write(folder / "jwks.json", {"keys": keys}, True)
        write(folder / "case.json", {"issuer": issuer, "well_known": well_known, "audience": AUDIENCE, "now": NOW,
                                     "token": token, "kids": [k["kid"] for k in keys if k["kid"] not in skipped],
                                     "skipped": skipped}, True)


if __name__ == "__main__":
    main()
