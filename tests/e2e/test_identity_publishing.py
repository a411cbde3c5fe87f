"""The verified principal for the filters after brickgate (`identity.publish`): Envoy's own RBAC
filter and its local rate limiter, placed after brickgate, keyed on the brickgate subject, over
HTTP/1.1 and HTTP/2, in the form under test (docs/OPERATIONS.md, "Keying RBAC and rate limits on
the brickgate principal"; the filter configs below are the ones that document shows):

- Wasm: each field is the read-only string filter state `wasm.brickgate.<name>`, read by RBAC's
  `filter_state` matcher and by CEL's `filter_state[...]` (RBAC's condition, the `expr` rate-limit
  descriptor).
- native: each field is a string in the dynamic metadata namespace `brickgate`, read by RBAC's
  `metadata` matcher, by CEL's `metadata.filter_metadata['brickgate'][...]` and by the rate
  limiter's `metadata` action (`source: DYNAMIC`)."""

import copy
import uuid

import pytest

from databricks_support import wait_until_decided
from envoy_harness import NATIVE, ROUTER, bootstrap, brickgate_listener
from gateway_client import send
from h2_client import h2_request
from plugin_configs import main_config

CLUSTERS = "/api/2.0/clusters/list"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
LOCAL_RATE_LIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
EXPR_DESCRIPTOR = "type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor"
STATE_PREFIX = "wasm.brickgate."  # the Wasm form's filter-state keys
METADATA_NAMESPACE = "brickgate"  # the native form's dynamic-metadata namespace
# Each caller's bucket: three requests an hour. Every test uses its own subjects for the requests
# that pass RBAC, fewer of them than this, except where it means to empty a bucket.
BUCKET = 3


def published_is(field: str, string_match: dict) -> dict:
    """An RBAC principal: the published `field` (`sub`, `rule`, ...) matches `string_match`."""
    if NATIVE:
        return {"metadata": {"filter": METADATA_NAMESPACE, "path": [{"key": field}], "value": {"string_match": string_match}}}
    return {"filter_state": {"key": STATE_PREFIX + field, "string_match": string_match}}


def subject_is(subject: str) -> dict:
    return published_is("sub", {"exact": subject})


def cel_published(field: str) -> dict:
    """The CEL expression for the published `field`, parsed (google.api.expr.v1alpha1.Expr):
    `filter_state['wasm.brickgate.sub']` (Wasm) or `metadata.filter_metadata['brickgate']['sub']`
    (native)."""
    def index(operand, key):
        return {"call_expr": {"function": "_[_]", "args": [operand, {"const_expr": {"string_value": key}}]}}
    if NATIVE:
        filter_metadata = {"select_expr": {"operand": {"ident_expr": {"name": "metadata"}}, "field": "filter_metadata"}}
        return index(index(filter_metadata, METADATA_NAMESPACE), field)
    return index({"ident_expr": {"name": "filter_state"}}, STATE_PREFIX + field)


def cel_subject_is(subject: str) -> dict:
    """The CEL `<published sub> == subject` as the RBAC `condition` takes it."""
    return {"call_expr": {"function": "_==_", "args": [cel_published("sub"), {"const_expr": {"string_value": subject}}]}}


def subject_descriptor(descriptor_key: str) -> dict:
    """The rate-limit action whose descriptor value is the published subject (no subject: no
    descriptor). Native: the `metadata` action on the dynamic metadata. Wasm: the `expr` descriptor
    on the filter state (a Wasm filter cannot write dynamic metadata)."""
    if NATIVE:
        return {"metadata": {"descriptor_key": descriptor_key, "source": "DYNAMIC",
                             "metadata_key": {"key": METADATA_NAMESPACE, "path": [{"key": "sub"}]}}}
    return {"extension": {"name": "envoy.rate_limit_descriptors.expr",
                          "typed_config": {"@type": EXPR_DESCRIPTOR, "descriptor_key": descriptor_key,
                                           "text": f"filter_state['{STATE_PREFIX}sub']"}}}


# RBAC after brickgate: ALLOW lists who may pass, so a request with no published subject (an
# anonymous rule's, or anything brickgate did not verify) matches no policy and is denied.
RBAC_FILTER = {
    "name": "envoy.filters.http.rbac",
    "typed_config": {
        "@type": RBAC,
        "rules": {
            "action": "ALLOW",
            "policies": {
                # The filter-state (Wasm) or metadata (native) matcher: no CEL needed.
                "alice-reads": {
                    "permissions": [{"any": True}],
                    "principals": [{"and_ids": {"ids": [subject_is("alice"), published_is("rule", {"exact": "clusters-read"})]}}],
                },
                # The same kind of match as a CEL condition.
                "carol-by-cel": {"permissions": [{"any": True}], "principals": [{"any": True}],
                                 "condition": cel_subject_is("carol")},
                # Rate-limit callers (below) all start with `rl-`.
                "rate-limited-callers": {"permissions": [{"any": True}], "principals": [published_is("sub", {"prefix": "rl-"})]},
            },
        },
    },
}

# The local rate limiter after brickgate: one bucket per subject (an entry with an empty value
# is a bucket per distinct value), the descriptor read from the published subject.
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
        "rate_limits": [{"actions": [subject_descriptor("brickgate_sub")]}],
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


# A client cannot write filter state or dynamic metadata; what it can send is headers and claims.
# None of them is taken for the published subject, in either form.
FORGERIES = [
    [("wasm.brickgate.sub", "alice")],
    [("x-brickgate-subject", "alice")],
    [("brickgate-sub", "alice"), ("x-envoy-original-path", CLUSTERS)],
    [("brickgate", "sub=alice"), ("sub", "alice"), ("x-envoy-dynamic-metadata", "brickgate.sub=alice")],
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("forged", FORGERIES, ids=["state-key", "identity-header", "look-alikes", "metadata-names"])
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
        request(port, protocol, attacker, [("wasm.brickgate.sub", victim), ("x-brickgate-subject", victim),
                                            ("brickgate", f"sub={victim}"), ("sub", victim)])
    reply = request(port, protocol, tokens.idp(scope="clusters:read", subject=victim))
    assert reply.status == 200, "the victim's bucket was spent by someone claiming its subject"
