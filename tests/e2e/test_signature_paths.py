"""`performance.host_signatures`: Envoy's native verify_signature (RS256/384/512, ES256/384, after a
start-up self-test) and `ring` inside wasm must give the same verdict on every token.

One Envoy, two listeners identical except for `host_signatures`, a provider with inline keys
(tests/keys/public-jwks.json) accepting every asymmetric algorithm. Each listener's plugin has its
own root id, so its log lines can be told apart (`wasm log <root_id> <vm_id>: ...`).
"""

import base64
import json

import jwt
import pytest

from envoy_harness import NATIVE
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils

from devstack import tokens as raw
from devstack.keys import KEYS_DIR, TEST_KEYS, b64url
from gateway_client import assert_refused, invalid_token
from jwks_support import fresh_idp, record, scenario, timed_send
from plugin_configs import AUDIENCE, REALM

ISSUER = "https://multi-alg.test"
# alg → (test key, kid the token names); test-rsa-1 has no `alg` in the JWKS, so it serves all RSA algorithms.
ALGORITHMS = {
    "RS256": "rsa-1", "RS384": "rsa-1", "RS512": "rsa-1",
    "PS256": "rsa-1", "PS384": "rsa-1", "PS512": "rsa-1",
    "ES256": "ec-1", "ES384": "ec-384", "EdDSA": "ed-1",
}
HOST_ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384"}  # the rest always runs in wasm
CURVE_ORDERS = {  # for the high-S variant of ECDSA signatures
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16),
}


def plugin_config(host_signatures: bool) -> dict:
    jwks = json.loads((KEYS_DIR / "public-jwks.json").read_text())
    return {
        "realm": REALM,
        "providers": {"multi": {"issuer": ISSUER, "audiences": [AUDIENCE], "jwks": {"inline": jwks},
                                "algorithms": list(ALGORITHMS)}},
        "rules": [{"name": "everything", "match": {"template": "/**"}, "providers": ["multi"]}],
        "performance": {"host_signatures": host_signatures},
    }


def other_private_key(key_name: str):
    """A key of the same type as `key_name` that no JWKS publishes."""
    private = TEST_KEYS[key_name].private_key
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return ec.generate_private_key(private.curve)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return ed25519.Ed25519PrivateKey.generate()
    return TEST_KEYS["attacker-rsa"].private_key


def sign(alg: str, private_key, kid: str, **claims) -> str:
    header = raw.encode_json({"alg": alg, "typ": "at+jwt", "kid": kid})
    payload = raw.encode_json(raw.claims(ISSUER, AUDIENCE, scope="read", **claims))
    signature = jwt.get_algorithm_by_name(alg).sign(f"{header}.{payload}".encode(), private_key)
    return f"{header}.{payload}.{b64url(signature)}"


def with_signature(token: str, signature: bytes) -> str:
    header, payload, _ = raw.segments(token)
    return f"{header}.{payload}.{b64url(signature)}"


def signature_bytes(token: str) -> bytes:
    segment = raw.signature_of(token)
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def high_s(alg: str, token: str) -> str:
    """The same ECDSA signature with s replaced by n − s (mathematically valid too)."""
    signature = signature_bytes(token)
    half = len(signature) // 2
    r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    return with_signature(token, r.to_bytes(half, "big") + (CURVE_ORDERS[alg] - s).to_bytes(half, "big"))


def variants(alg: str) -> dict[str, str]:
    """Token variants; all but `valid` (and `high-s`, see below) must be refused."""
    key_name = ALGORITHMS[alg]
    kid = TEST_KEYS[key_name].kid
    valid = sign(alg, TEST_KEYS[key_name].private_key, kid)
    length = len(signature_bytes(valid))
    table = {
        "valid": valid,
        "tampered-payload": raw.tampered_payload(sign(alg, TEST_KEYS[key_name].private_key, kid), sub="someone-else"),
        "flipped-signature": raw.bad_signature(sign(alg, TEST_KEYS[key_name].private_key, kid)),
        "wrong-key": sign(alg, other_private_key(key_name), kid),
        "zero-signature": with_signature(sign(alg, TEST_KEYS[key_name].private_key, kid), bytes(length)),
        "truncated-signature": with_signature(sign(alg, TEST_KEYS[key_name].private_key, kid), signature_bytes(valid)[: length // 2]),
        "extended-signature": with_signature(sign(alg, TEST_KEYS[key_name].private_key, kid), signature_bytes(valid) + b"\0"),
    }
    if alg in CURVE_ORDERS:
        table["high-s"] = high_s(alg, sign(alg, TEST_KEYS[key_name].private_key, kid))
    if alg.startswith("ES"):  # the DER form some libraries produce by mistake (JWS wants raw r||s)
        r_s = signature_bytes(valid)
        half = len(r_s) // 2
        der = utils.encode_dss_signature(int.from_bytes(r_s[:half], "big"), int.from_bytes(r_s[half:], "big"))
        table["der-signature"] = with_signature(sign(alg, TEST_KEYS[key_name].private_key, kid), der)
    return table


MUST_BE_BAD_SIGNATURE = ("tampered-payload", "flipped-signature", "wrong-key", "zero-signature")


@pytest.fixture(scope="module")
def both_paths(start_envoy, wasm_path, upstream):
    listeners = {"host": plugin_config(True), "wasm": plugin_config(False)}
    with fresh_idp() as idp:  # not used by these inline keys; the bootstrap wants an `idp` cluster
        with scenario(start_envoy, wasm_path, upstream, idp, "signature-paths", listeners,
                      root_ids={"host": "brickgate-host", "wasm": "brickgate-wasm"}) as gw:
            yield gw


@pytest.mark.parametrize("alg", list(ALGORITHMS))
def test_host_and_wasm_signatures_agree(both_paths, alg):
    answers = {}
    for name, bearer in variants(alg).items():
        host = timed_send(both_paths.ports["host"], bearer).reply
        in_wasm = timed_send(both_paths.ports["wasm"], bearer).reply
        answers[name] = ((host.status, host.header("x-brickgate-reason")), (in_wasm.status, in_wasm.header("x-brickgate-reason")))
        if name in MUST_BE_BAD_SIGNATURE:
            for reply in (host, in_wasm):
                assert_refused(reply, invalid_token("bad_signature"), bearer)
    record(f"signature_paths_{alg}", answers={name: f"host {h} / wasm {w}" for name, (h, w) in answers.items()})
    disagreements = {name: pair for name, pair in answers.items() if pair[0] != pair[1]}
    assert not disagreements, f"{alg}: host and wasm verdicts differ (host, wasm): {disagreements}"
    assert answers["valid"][0] == (200, None), answers["valid"]
    for name in ("truncated-signature", "extended-signature", "der-signature"):
        if name in answers:
            assert answers[name][0][0] != 200, f"{alg} {name} accepted: {answers[name]}"


@pytest.mark.skipif(NATIVE, reason="the native form has one signature path: natively, in the module (ring); "
                    "performance.host_signatures chooses between the host's and the module's only in Wasm")
def test_log_names_the_signature_path_of_each_plugin(both_paths):
    log = both_paths.envoy.log_text().splitlines()
    host_lines = [line for line in log if "wasm log brickgate-host " in line]
    wasm_lines = [line for line in log if "wasm log brickgate-wasm " in line]
    assert any("signatures verified by the host" in line for line in host_lines), host_lines[:10]
    assert not any("host_signatures is off" in line or "signatures verified in wasm" in line for line in host_lines)
    assert any("host_signatures is off" in line for line in wasm_lines), wasm_lines[:10]
    assert not any("signatures verified by the host" in line for line in wasm_lines)
