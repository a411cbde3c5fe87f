"""Path normalisation: rules see the normalised path and the upstream receives exactly that path.

The whole policy, form by form, is docs/PATHS.md; test_path_policy.py sends issue 8's attack paths."""

import pytest

from gateway_client import NO_CHALLENGE, Refusal, assert_refused, insufficient_scope, send

BAD_PATH = Refusal(400, "bad_path", "BAD_REQUEST", NO_CHALLENGE)

FORWARDED = [
    pytest.param("GET", "//api//2.0/clusters/list", "demo-reader", "/api/2.0/clusters/list", id="repeated-slashes-merged"),
    pytest.param("GET", "//api//2.0/clusters/get?cluster_id=1&x=%2F", "demo-reader", "/api/2.0/clusters/get?cluster_id=1&x=%2F",
                 id="query-kept-as-sent"),
    pytest.param("GET", "/api/2.0/./clusters/list", "demo-reader", "/api/2.0/clusters/list", id="dot-segment"),
    pytest.param("GET", "/api/2.0/clusters/%6Cist", "demo-reader", "/api/2.0/clusters/list", id="escaped-letter-decoded"),
    pytest.param("GET", "/../api/2.0/clusters/list", "demo-reader", "/api/2.0/clusters/list", id="dotdot-above-root-clamped"),
    pytest.param("GET", "/api/2.0/clusters/../secrets/get", "demo-admin", "/api/2.0/secrets/get", id="dotdot-resolved-for-admin"),
    pytest.param("POST", "/serving-endpoints/demo%2Dmodel/invocations", "demo-ml", "/serving-endpoints/demo-model/invocations",
                 id="template-binds-decoded-segment"),
    pytest.param("GET", "/api/2.0/clusters/list", "demo-reader", "/api/2.0/clusters/list", id="already-normal"),
]


@pytest.mark.parametrize(("method", "path", "client", "upstream_path"), FORWARDED)
def test_upstream_receives_normalised_path(gateway, tokens, method, path, client, upstream_path):
    reply = send(gateway.main_port, method, path, tokens.from_idp(client))
    assert reply.status == 200, reply.body
    assert reply.forwarded_path == upstream_path


REFUSED = [
    pytest.param("/api/2.0/clusters/../secrets/get", insufficient_scope("all-apis"), id="dotdot-escapes-clusters-prefix"),
    # An escaped dot is a dot segment only to servers that decode before resolving: refused (docs/PATHS.md).
    pytest.param("/api/2.0/clusters/%2e%2e/secrets/get", BAD_PATH, id="escaped-dotdot"),
    pytest.param("/api/2.0/clusters/%2E%2E/secrets/get", BAD_PATH, id="escaped-dotdot-upper"),
    pytest.param("/api/2.0/clusters%2Flist", BAD_PATH, id="escaped-slash"),
    pytest.param("/api/2.0/clusters%2flist", BAD_PATH, id="escaped-slash-lower"),
    pytest.param("/api/2.0/clusters/..%2Fsecrets/get", BAD_PATH, id="escaped-slash-after-dotdot"),
    pytest.param("/api/2.0/clusters%5Clist", BAD_PATH, id="escaped-backslash"),
    pytest.param("/api/2.0/clusters/li%00st", BAD_PATH, id="escaped-nul"),
    pytest.param("/api/2.0/clusters/li%0Ast", BAD_PATH, id="escaped-newline"),
    pytest.param("/api/2.0/clusters/%zzlist", BAD_PATH, id="invalid-escape"),
    pytest.param("/api/2.0/clusters/list%", BAD_PATH, id="truncated-escape"),
]


@pytest.mark.parametrize(("path", "expected"), REFUSED)
def test_unsafe_or_escaping_path_refused(gateway, tokens, upstream, path, expected):
    token = tokens.from_idp("demo-reader")  # clusters:read only
    before = upstream.snapshot_counts()
    reply = send(gateway.main_port, "GET", path, token)
    assert_refused(reply, expected, token)
    assert upstream.snapshot_counts() == before, "a refused request reached the upstream"
