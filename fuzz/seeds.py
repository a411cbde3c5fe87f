"""Writes the seed corpus of every fuzz target (fuzz/corpus/<target>/seed-*), from hand-made
inputs and the vector files. Findings are kept next to them as regression-* files.

    .venv/bin/python fuzz/seeds.py
"""

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT))


def write(target: str, name: str, data: bytes):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data)


def credential():
    cases = {
        "bearer": b"\x00authorization:Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
        "bearer-and-query": b"\x01authorization:Bearer abc\n?access_token=abc",
        "two-tokens": b"\x01authorization:Bearer abc\n?access_token=xyz",
        "bearer-and-basic": b"\x00authorization:Bearer a, Basic dXNlcjpwYXNzd29yZA==",
        "api-token-spellings": b"\x02x-api-token:tok\nx_api_token:tok2",
        "proxy-authorization": b"\x03authorization:bearer  tok==\nproxy-authorization:Basic dXNlcjpwYXNz",
        "too-long": b"\x80authorization:Bearer " + b"a" * 100,
        "empty": b"\x00authorization:",
        "scheme-only": b"\x00authorization:Bearer",
        "query-escapes": b"\x01?access_token=a%2Bb%2Fc%3D&x=1",
        "none": b"\x00accept:*/*",
    }
    for name, data in cases.items():
        write("credential", name, data)


def vector_files():
    return sorted((ROOT / "tests" / "vectors" / "jws").glob("*.json"))


def jws():
    for path in vector_files():
        family = json.loads(path.read_text())
        for index, case in enumerate(family["cases"]):
            write("jws", f"{path.stem}-{index:03d}", case["token"].encode())


def jwks():
    for path in vector_files():
        write("jwks", f"vectors-{path.stem}", json.dumps(json.loads(path.read_text())["jwks"]).encode())
    for idp in sorted((ROOT / "tests" / "vectors" / "idp").iterdir()):
        write("jwks", f"idp-{idp.name}", (idp / "jwks.json").read_bytes())
    write("jwks", "not-a-jwks", b'{"kids": []}')


ISSUERS = [
    "https://idp.example/oauth2/default",
    "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
    "http://127.0.0.1:8080",
    "https://adb-1.azuredatabricks.net/oidc",
]


def discovery():
    uris = [
        "https://idp.example/oauth2/default/v1/keys",
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/discovery/v2.0/keys",
        "http://127.0.0.1:8080/keys",
        "https://adb-1.azuredatabricks.net/oidc/jwks.json",
    ]
    for index, (issuer, uri) in enumerate(zip(ISSUERS, uris)):
        write("discovery", f"issuer-{index}", bytes([index]) + json.dumps({"issuer": issuer, "jwks_uri": uri}).encode())
    write("discovery", "http-remote", b"\x00" + json.dumps({"issuer": ISSUERS[0], "jwks_uri": "http://idp.example/keys"}).encode())
    write("discovery", "userinfo", b"\x00" + json.dumps({"issuer": ISSUERS[0], "jwks_uri": "https://u:p@idp.example/keys#x"}).encode())
    for idp in sorted((ROOT / "tests" / "vectors" / "idp").iterdir()):
        write("discovery", f"idp-{idp.name}", b"\x00" + (idp / "discovery.json").read_bytes())


def path():
    paths = ["/api/2.1/jobs/list", "/serving-endpoints/x/invocations?x=1", "/a/../b", "/a/%2e%2e/b", "/a//b/",
             "/%41%42", "/a;b", "/a\\b", "/caf\u00e9", "/a/./b/.", "/%C0%AE", "/a%2Fb", "/..%2F", "/ a", "/a.",
             "/api/2.0/clusters/list/", "/%7euser", "/a/%25", "/?", "/api/2.1/jobs/../../serving-endpoints/x"]
    for index, raw in enumerate(paths):
        write("path", f"{index:02d}", raw.encode())


def serving_body():
    bodies = [b'{"model": "churn", "messages": []}', b'{"model": "a", "model": "b"}', b'{"\\u006dodel": "x"}',
              b'{"model": 7}', b'{"model": "x"} trailing', b'\xef\xbb\xbf{"model": "x"}', b'{"input": {"model": "x"}}',
              b'{"model": "../x"}', b'[{"model": "x"}]', b'{"model": "x", "stream": true, "max_tokens": 10}']
    for index, body in enumerate(bodies):
        write("serving_body", f"{index:02d}", bytes([index % 2]) + body)


def token_response():
    # First byte: status (200, 400, 401, 403, 404, 429, 500, 502, 503, 0, 302); second: exchange or not.
    cases = {
        "ok": b"\x00\x00" + b'{"access_token": "dbx-abc", "token_type": "Bearer", "expires_in": 3600}',
        "ok-no-token": b"\x00\x00" + b'{"token_type": "Bearer"}',
        "ok-echo": b"\x00\x00" + b'{"access_token": "$T"}',
        "rejected-echo": b"\x02\x00" + b'{"error": "invalid_request", "error_description": "subject token $T rejected: $P"}',
        "bad-gateway-html": b"\x07\x00" + b"<html>upstream $T</html>",
        "reset": b"\x09\x00",
        "redirect": b"\x0a\x01" + b"Location: https://evil",
        "rate-limited": b"\x05\x00" + b'{"error": "slow_down"}',
    }
    for name, data in cases.items():
        write("token_response", name, data)


def config():
    from plugin_configs import identity_config, main_config  # noqa: E402

    write("config", "e2e-main", json.dumps(main_config("http://127.0.0.1:9999", 9999)).encode())
    write("config", "e2e-identity", json.dumps(identity_config("http://127.0.0.1:9999", 9999)).encode())
    hs = json.loads((ROOT / "tests" / "vectors" / "jws" / "hs.json").read_text())["jwks"]
    write("config", "inline-hmac", json.dumps({
        "providers": {"p": {"issuer": "https://i", "audiences": ["a"], "algorithms": ["HS256"], "jwks": {"inline": hs}}},
        "rules": [{"match": {"prefix": "/"}, "providers": ["p"]}]}).encode())
    write("config", "exchange-secret", json.dumps({
        "providers": {"p": {"issuer": "https://i", "audiences": ["a"],
                            "jwks": {"remote": {"cluster": "idp", "uri": "https://i/keys"}},
                            "upstream": {"mode": "service_principal", "cluster": "ws", "workspace_url": "https://adb-1.azuredatabricks.net",
                                         "client_id": "sp", "client_secret": "very-secret-value-123", "scopes": ["all-apis"]}}},
        "rules": [{"match": {"serving_endpoint": "{name}"}, "providers": ["p"], "require": {"scopes_any": ["serving:{name}"]}}],
        "databricks": {"route_catalogue": True}}).encode())
    write("config", "empty", b"{}")


def lifecycle():
    rng = random.Random(12)
    for index in range(40):
        write("lifecycle", f"random-{index:02d}", bytes(rng.randrange(256) for _ in range(rng.randrange(16, 200))))
    # setup, then ops (see core/src/fuzz_properties/lifecycle.rs: `check` and `World::start`).
    write("lifecycle", "remote-cold-start", bytes([1, 0, 0, 0, 0, 0, 4, 0, 5, 0, 0, 2, 0]))
    write("lifecycle", "exchange-allow", bytes([2, 0, 0, 0, 0, 0, 4, 0, 5, 0, 0, 4, 0, 9, 0, 0]))
    write("lifecycle", "rotation", bytes([1, 0, 1, 1, 0, 1, 0, 0, 4, 0, 5, 0, 0, 7, 7, 8, 2, 4, 0, 5, 0, 0, 2, 0]))


def map_bytes(pairs):
    """A header map as the proxy-wasm ABI serialises it (see core/src/header_map.rs)."""
    head = len(pairs).to_bytes(4, "little") + b"".join(
        len(n).to_bytes(4, "little") + len(v).to_bytes(4, "little") for n, v in pairs)
    return head + b"".join(n + b"\0" + v + b"\0" for n, v in pairs)


def header_map():
    write("header_map", "empty", b"")
    write("header_map", "none", map_bytes([]))
    write("header_map", "request", map_bytes([(b":method", b"GET"), (b":path", b"/api/2.0/clusters/list"),
                                              (b"authorization", b"Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")]))
    write("header_map", "obs-text-value", map_bytes([(b":path", b"/x"), (b"x-note", b"caf\xe9")]))
    write("header_map", "not-utf8-name", map_bytes([(b"x-\xc0\xafbrickgate", b"1")]))
    write("header_map", "count-too-large", (1000).to_bytes(4, "little") + b"\0" * 12)
    write("header_map", "missing-nul", map_bytes([(b"a", b"b")])[:-1] + b"x")


def regressions():
    """Findings of the lifecycle fuzzer, as inputs that replay them (the unit tests beside the
    fixes in core/src/stream/tests/host_failures.rs pin the same behaviour)."""
    # jwks: an inline symmetric key too short for any HMAC algorithm was kept.
    (CORPUS / "jwks" / "regression-short-secret").write_bytes(b'{"keys": [{"kty": "oct", "k": "c2hvcnQ", "kid": "s"}]}')
    # token_response: a service-principal refusal quoted brickgate's own secret, as a 401.
    (CORPUS / "token_response" / "regression-sp-secret-echo").write_bytes(
        b"\x03\x01" + b'{"error_code": "PERMISSION_DENIED", "message": "no $S"}')
    folder = CORPUS / "lifecycle"
    # Refused at the trailers while the trailer strip fails: the client was left unanswered.
    (folder / "regression-refusal-at-trailers-strip-fails").write_bytes(bytes([0, 0, 0, 0, 1, 2, 0, 0, 11, 2, 0, 2, 0]))
    # Allowed at the headers, then the trailer strip fails: a second (deny) record was written.
    (folder / "regression-allowed-then-trailer-strip-fails").write_bytes(bytes([0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 11, 2, 0]))
    # Exchange: the token arrives and carrying out the allow fails: refused, recorded once.
    (folder / "seed-exchange-allow-fails").write_bytes(bytes([2, 0, 0, 0, 0, 0, 4, 0, 5, 0, 0, 4, 0, 11, 9, 0, 0]))


if __name__ == "__main__":
    for make in (credential, jws, jwks, discovery, path, serving_body, token_response, config, lifecycle, header_map,
                 regressions):
        make()
    for target in sorted(CORPUS.iterdir()):
        print(f"{target.name}: {len(list(target.iterdir()))} inputs")
