"""The verified principal for the filters after brickgate (`identity.publish`): Envoy's own RBAC
filter and its local rate limiter, placed after brickgate, keyed on the brickgate subject, over
HTTP/1.1 and HTTP/2. The Wasm form publishes each field as the read-only string filter state
`wasm.brickgate.<name>` (docs/OPERATIONS.md, "Keying RBAC and rate limits on the brickgate
principal"); the filter configs below are the ones that document shows."""

import copy
import uuid

import pytest

from databricks_support import wait_until_decided
from envoy_harness import ROUTER, bootstrap, brickgate_listener
from gateway_client import send
from h2_client import h2_request
from plugin_configs import main_config

CLUSTERS = "/api/2.0/clusters/list"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
LOCAL_RATE_LIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
EXPR_DESCRIPTOR = "type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor"
SUBJECT_STATE = "wasm.brickgate.sub"
RULE_STATE = "wasm.brickgate.rule"
# Each caller's bucket: three requests an hour. Every test uses its own subjects for the requests
# that pass RBAC, fewer of them than this, except where it means to empty a bucket.
BUCKET = 3


def subject_is(subject: str) -> dict:
    """An RBAC principal: the subject brickgate verified (a string filter-state object)."""
    return {"filter_state": {"key": SUBJECT_STATE, "string_match": {"exact": subject}}}


def cel_subject_is(subject: str) -> dict:
    """The CEL `filter_state['wasm.brickgate.sub'] == subject` as the RBAC `condition` takes it (a
    parsed expression: google.api.expr.v1alpha1.Expr)."""
    def const(text):
        return {"const_expr": {"string_value": text}}
    index = {"call_expr": {"function": "_[_]", "args": [{"ident_expr": {"name": "filter_state"}}, const(SUBJECT_STATE)]}}
    return {"call_expr": {"function": "_==_", "args": [index, const(subject)]}}


# RBAC after brickgate: ALLOW lists who may pass, so a request with no published subject (an
# anonymous rule's, or anything brickgate did not verify) matches no policy and is denied.
RBAC_FILTER = {
    "name": "envoy.filters.http.rbac",
    "typed_config": {
        "@type": RBAC,
        "rules": {
            "action": "ALLOW",
            "policies": {
                # The filter-state matcher: no CEL needed.
                "alice-reads": {
                    "permissions": [{"any": True}],
                    "principals": [{"and_ids": {"ids": [subject_is("alice"), {"filter_state": {
                        "key": RULE_STATE, "string_match": {"exact": "clusters-read"}}}]}}],
                },
                # The same kind of match as a CEL condition.
                "carol-by-cel": {"permissions": [{"any": True}], "principals": [{"any": True}],
                                 "condition": cel_subject_is("carol")},
                # Rate-limit callers (below) all start with `rl-`.
                "rate-limited-callers": {"permissions": [{"any": True}], "principals": [{"filter_state": {
                    "key": SUBJECT_STATE, "string_match": {"prefix": "rl-"}}}]},
            },
        },
    },
}

# The local rate limiter after brickgate: one bucket per subject (an entry with an empty value
# is a bucket per distinct value), the descriptor read by CEL from the filter state.
LOCAL_RATE_LIMIT_FILTER = {
    "name": "envoy.filters.http.local_ratelimit",
    "typed_config": {
        "@type": LOCAL_RATE_LIMIT,
        "stat_prefix": "per_subject",
        "token_bucket": {"max_tokens": 1000, "tokens_per_fill": 1000, "fill_interval": "1s"},
        "filter_enabled": {"runtime_key": "per_subject_enabled", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"runtime_key": "per_subject_enforced", "default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "descriptors": [{"entries": [{"key": "brickgate_sub", "value": ""}],
                         "token_bucket": {"max_tokens": BUCKET, "tokens_per_fill": BUCKET, "fill_interval": "3600s"}}],
        "max_dynamic_descriptors": 1000,
        "rate_limits": [{"actions": [{"extension": {
            "name": "envoy.rate_limit_descriptors.expr",
            "typed_config": {"@type": EXPR_DESCRIPTOR, "descriptor_key": "brickgate_sub", "text": f"filter_state['{SUBJECT_STATE}']"},
        }}]}],
    },
}


def publishing_listener(wasm_path: str, idp) -> dict:
    config = main_config(idp.issuer, idp.port)
    config["identity"] = {"publish": ["sub", "rule"]}
    listener = brickgate_listener("publishing", wasm_path, config)
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    wasm, router = hcm["http_filters"]
    assert router["typed_config"]["@type"] == ROUTER
    hcm["http_filters"] = [wasm, copy.deepcopy(RBAC_FILTER), copy.deepcopy(LOCAL_RATE_LIMIT_FILTER), router]
    hcm["stat_prefix"] = "publishing"
    return listener


@pytest.fixture(scope="module")
def port_and_envoy(start_envoy, wasm_path, idp, upstream, tokens):
    envoy = start_envoy(bootstrap([publishing_listener(str(wasm_path), idp)], upstream.port, idp.port), "publishing")
    envoy.wait_ready()
    port = envoy.listener_ports()["publishing"]
    warm = tokens.idp(scope="clusters:read", subject="warm-up")  # RBAC refuses it: no bucket spent
    wait_until_decided(port, lambda p: send(p, "GET", CLUSTERS, warm))
    return port, envoy


def request(port: int, protocol: str, token: str | None, headers: list[tuple[str, str]] = (), path: str = CLUSTERS):
    """One GET over HTTP/1.1 or HTTP/2 (h2c, prior knowledge)."""
    all_headers = list(headers) + ([("authorization", f"Bearer {token}")] if token else [])
    if protocol == "h1":
        return send(port, "GET", path, headers=all_headers)
    return h2_request(port, "GET", path, all_headers)


PROTOCOLS = ["h1", "h2"]


def rbac_denied(reply) -> bool:
    """Envoy RBAC's own refusal: 403, `RBAC: access denied`, and no brickgate refusal reason."""
    return reply.status == 403 and reply.body == b"RBAC: access denied" and reply.header("x-brickgate-reason") is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rbac_allows_the_subject_it_names(port_and_envoy, tokens, protocol):
    port, _ = port_and_envoy
    reply = request(port, protocol, tokens.idp(scope="clusters:read", subject="alice"))
    assert reply.status == 200, reply.body
    assert reply.forwarded["x-brickgate-subject"] == ["alice"], "the upstream received alice's request"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rbac_cel_condition_reads_the_subject(port_and_envoy, tokens, protocol):
    port, _ = port_and_envoy
    reply = request(port, protocol, tokens.idp(scope="clusters:read", subject="carol"))
    assert reply.status == 200, reply.body
    assert reply.forwarded["x-brickgate-subject"] == ["carol"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rbac_denies_a_verified_subject_it_does_not_name(port_and_envoy, tokens, protocol):
    port, envoy = port_and_envoy
    denied_before = envoy.stats(r"^http\.publishing\.rbac\.denied$").get("http.publishing.rbac.denied", 0)
    reply = request(port, protocol, tokens.idp(scope="clusters:read", subject="mallory"))
    assert rbac_denied(reply), (reply.status, reply.body, reply.headers)
    assert envoy.stats(r"^http\.publishing\.rbac\.denied$")["http.publishing.rbac.denied"] == denied_before + 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_rule_other_than_the_one_named_does_not_pass_rbac(port_and_envoy, tokens, protocol):
    """`alice-reads` also names the rule: alice under another rule (`api`) is not let through."""
    port, _ = port_and_envoy
    token = tokens.idp(scope="all-apis", subject="alice")
    assert rbac_denied(request(port, protocol, token, path="/api/2.0/jobs/list"))


# A client cannot write filter state; what it can send is headers and claims. None of them is
# taken for the published subject.
FORGERIES = [
    [("wasm.brickgate.sub", "alice")],
    [("x-brickgate-subject", "alice")],
    [("brickgate-sub", "alice"), ("x-envoy-original-path", CLUSTERS)],
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("forged", FORGERIES, ids=["state-key", "identity-header", "look-alikes"])
def test_a_forged_subject_is_not_honoured(port_and_envoy, tokens, protocol, forged):
    port, _ = port_and_envoy
    # A verified caller RBAC does not name, claiming to be alice.
    assert rbac_denied(request(port, protocol, tokens.idp(scope="clusters:read", subject="mallory"), forged))
    # An anonymous rule's request publishes no subject at all: nothing for RBAC to allow.
    assert rbac_denied(request(port, protocol, None, forged, path="/healthz"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_token_brickgate_refuses_is_brickgate_refusal_not_a_published_principal(port_and_envoy, tokens, protocol):
    port, _ = port_and_envoy
    reply = request(port, protocol, tokens.idp(scope="nothing-useful", subject="alice"))
    assert reply.status == 403 and reply.header("x-brickgate-reason") == "insufficient_scope"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rate_limit_buckets_are_per_subject(port_and_envoy, tokens, protocol):
    port, envoy = port_and_envoy
    run = uuid.uuid4().hex[:8]
    busy = tokens.idp(scope="clusters:read", subject=f"rl-busy-{run}")
    quiet = tokens.idp(scope="clusters:read", subject=f"rl-quiet-{run}")
    limited_before = envoy.stats(r"^per_subject\.http_local_rate_limit\.rate_limited$").get(
        "per_subject.http_local_rate_limit.rate_limited", 0)
    for _ in range(BUCKET):
        assert request(port, protocol, busy).status == 200
    limited = request(port, protocol, busy)
    assert limited.status == 429 and limited.header("x-brickgate-reason") is None, (limited.status, limited.body)
    assert limited.body == b"local_rate_limited"
    # The other subject's bucket is untouched.
    reply = request(port, protocol, quiet)
    assert reply.status == 200 and reply.forwarded["x-brickgate-subject"] == [f"rl-quiet-{run}"]
    stats = envoy.stats(r"^per_subject\.http_local_rate_limit\.rate_limited$")
    assert stats["per_subject.http_local_rate_limit.rate_limited"] == limited_before + 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_forged_subject_does_not_spend_another_callers_bucket(port_and_envoy, tokens, protocol):
    port, _ = port_and_envoy
    run = uuid.uuid4().hex[:8]
    victim = f"rl-victim-{run}"
    attacker = tokens.idp(scope="clusters:read", subject=f"rl-attacker-{run}")
    for _ in range(BUCKET + 1):
        request(port, protocol, attacker, [("wasm.brickgate.sub", victim), ("x-brickgate-subject", victim)])
    reply = request(port, protocol, tokens.idp(scope="clusters:read", subject=victim))
    assert reply.status == 200, "the victim's bucket was spent by someone claiming its subject"
