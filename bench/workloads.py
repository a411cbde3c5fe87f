"""The workloads and their token pools (one compact JWS per line, cached under bench/.cache/).

Tokens are signed with the TEST-ONLY keys of tests/keys (via devstack.keys). Minting is done
here with `cryptography` directly (twice as fast as going through PyJWT) and spread over all CPUs.
"""

import hashlib
import json
import os
import secrets
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from devstack.keys import TEST_KEYS, b64url  # noqa: E402

ISSUER = "https://idp.bench.brickgate.test"
AUDIENCE = "brickgate-bench"
# Long enough for cached pools to be reused for a few hours, well under brickgate's
# default max_lifetime_s (86400). Token lifetime has no effect on verification cost.
LIFETIME_S = 4 * 3600
FORMAT = 1  # bump when the token layout changes: invalidates every cached pool


@dataclass(frozen=True)
class Workload:
    name: str
    key: str  # test key name in tests/keys
    scope: str
    forged: bool  # signature replaced by a random value below the RSA modulus
    distinct: bool  # a new token for every request (else one token reused)
    expect: int  # HTTP status every request must get
    reason: str | None  # brickgate's x-brickgate-reason for refusals
    description: str


WORKLOADS = {w.name: w for w in [
    Workload("warm", "rsa-1", "clusters:read", False, False, 200, None, "one valid RS256 token, reused"),
    Workload("cold_rs256", "rsa-1", "clusters:read", False, True, 200, None, "a new valid RS256 token per request"),
    Workload("cold_es256", "ec-1", "clusters:read", False, True, 200, None, "a new valid ES256 token per request"),
    Workload("forged", "rsa-1", "clusters:read", True, True, 401, "bad_signature",
             "a new RS256 token per request, valid header and claims, bad signature"),
    Workload("denied", "rsa-1", "jobs", False, True, 403, "insufficient_scope",
             "a new valid RS256 token per request, without the required scope"),
]}


def public_jwks() -> dict:
    """The JWKS both filters trust: test-rsa-1 (RS256) and test-ec-1 (ES256)."""
    return {"keys": [TEST_KEYS["rsa-1"].public_jwk(), TEST_KEYS["ec-1"].public_jwk()]}


def _segment(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _mint_range(workload: Workload, seed: str, now: int, start: int, end: int) -> list[str]:
    test_key = TEST_KEYS[workload.key]
    private_key = test_key.private_key
    header = _segment({"alg": test_key.alg, "typ": "at+jwt", "kid": test_key.kid})
    modulus = private_key.public_key().public_numbers().n if workload.forged else 0
    tokens = []
    for index in range(start, end):
        claims = {"iss": ISSUER, "sub": "bench-client", "aud": AUDIENCE, "client_id": "bench-client",
                  "scope": workload.scope, "iat": now, "nbf": now, "exp": now + LIFETIME_S,
                  "jti": f"{seed}-{workload.name}-{now}-{index}"}
        signing_input = f"{header}.{_segment(claims)}"
        if workload.forged:
            # Below the modulus, so a verifier must do the full RSA operation to refuse it.
            value = 2 + secrets.randbelow(modulus - 3)
            signature = value.to_bytes((modulus.bit_length() + 7) // 8, "big")
        elif test_key.alg == "RS256":
            signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:  # ES256: JWS carries raw r||s, not DER
            r, s = decode_dss_signature(private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        tokens.append(f"{signing_input}.{b64url(signature)}")
    return tokens


def mint(workload: Workload, count: int, seed: str, now: int) -> list[str]:
    workers = min(len(os.sched_getaffinity(0)), max(1, count // 2000))
    if workers <= 1:
        return _mint_range(workload, seed, now, 0, count)
    bounds = [count * i // workers for i in range(workers + 1)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(_mint_range, [workload] * workers, [seed] * workers, [now] * workers,
                         bounds[:-1], bounds[1:])
        return [token for part in parts for token in part]


def token_pool(workload: Workload, count: int, cache_dir: Path, min_remaining_s: int,
               seed: str = "bench") -> tuple[Path, bool]:
    """A file of `count` tokens (1 for a non-distinct workload); returns (path, reused from cache).

    A cached pool is reused while every token in it stays valid for `min_remaining_s` more seconds.
    """
    count = count if workload.distinct else 1
    identity = json.dumps({"format": FORMAT, "workload": asdict(workload), "count": count, "seed": seed,
                           "issuer": ISSUER, "audience": AUDIENCE, "jwks": public_jwks()}, sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    path = cache_dir / f"{seed}-{workload.name}-{count}-{digest}.tokens"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("exp", 0) - time.time() >= min_remaining_s and meta.get("count") == count:
            return path, True
    now = int(time.time())
    tokens = mint(workload, count, seed, now)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens) + "\n")
    meta_path.write_text(json.dumps({"minted_at": now, "exp": now + LIFETIME_S, "count": count}))
    return path, False


def prune_expired(cache_dir: Path) -> None:
    """Remove cached pools whose tokens have expired."""
    for meta_path in cache_dir.glob("*.json"):
        try:
            expired = json.loads(meta_path.read_text()).get("exp", 0) < time.time()
        except (OSError, ValueError):
            expired = True
        if expired:
            meta_path.with_suffix(".tokens").unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)


def first_and_last(path: Path) -> tuple[str, str]:
    lines = path.read_text().split()
    return lines[0], lines[-1]
