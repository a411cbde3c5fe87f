"""The route Envoy uses is the route of the path brickgate authorised and forwards (docs/PATHS.md,
"Envoy in front").

Envoy picks a request's route from `:path` as the client sent it, before brickgate runs. brickgate
forwards the canonical path (repeated slashes merged, dot segments resolved, escaped unreserved
letters decoded). Since Envoy 1.33 a Wasm filter's header changes clear Envoy's route cache only
for modules of ABI 0.2.1 or older (envoyproxy/envoy#36671), so brickgate asks for it explicitly
(the `clear_route_cache` foreign function) after rewriting the request's headers; had Envoy
refused that call, each request here would be a 503.

Here two routes split the traffic: prefix `/api/` to upstream A, everything else to upstream B,
each route with its own per-route config for a filter after brickgate (`header_mutation`) and its
own router header. A request must reach the upstream, the later filter's per-route config and the
router header of the route its canonical path selects, over HTTP/1.1 and HTTP/2.
"""

from dataclasses import dataclass

import pytest

from databricks_support import bootstrap_with, make_body_echo, wait_until_decided
from devstack.httpbase import DevServer, running
from devstack.idp import make_idp
from envoy_harness import ROUTER, brickgate_listener
from gateway_client import Reply, send
from h2_client import h2_request
from plugin_configs import AUDIENCE, REALM, idp_provider
from token_factory import TokenFactory

PROTOCOLS = ["http1", "h2"]
HEADER_MUTATION = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
HEADER_MUTATION_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute"
# Added by the later filter's per-route config, and by the router's route entry: each names its route.
FILTER_MARK = "x-e2e-route-filter"
ROUTER_MARK = "x-e2e-route-router"


def route(name: str, prefix: str, cluster: str) -> dict:
    mark = {"append": {"header": {"key": FILTER_MARK, "value": name}}}
    return {
        "name": name,
        "match": {"prefix": prefix},
        "route": {"cluster": cluster, "timeout": "10s"},
        "request_headers_to_add": [{"header": {"key": ROUTER_MARK, "value": name}}],
        "typed_per_filter_config": {
            "envoy.filters.http.header_mutation": {"@type": HEADER_MUTATION_PER_ROUTE,
                                                   "mutations": {"request_mutations": [mark]}}},
    }


def two_route_listener(wasm_path, plugin_config: dict) -> dict:
    """brickgate, then header_mutation (per-route config only), then the router; `/api/` → A, `/` → B."""
    listener = brickgate_listener("routes", str(wasm_path), plugin_config, root_id="bg-routes")
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["route_config"]["virtual_hosts"][0]["routes"] = [route("api", "/api/", "upstream_a"),
                                                         route("catch-all", "/", "upstream_b")]
    brickgate_filter = hcm["http_filters"][0]
    hcm["http_filters"] = [brickgate_filter,
                           {"name": "envoy.filters.http.header_mutation",
                            "typed_config": {"@type": HEADER_MUTATION, "mutations": {}}},
                           {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}]
    return listener


@dataclass
class Gateway:
    port: int
    upstream_a: DevServer
    upstream_b: DevServer
    token: str  # all-apis


@pytest.fixture(scope="module")
def gateway(start_envoy, wasm_path):
    with running(make_idp(0, audience=AUDIENCE)) as idp, running(make_body_echo()) as upstream_a, \
            running(make_body_echo()) as upstream_b:
        plugin_config = {
            "realm": REALM,
            "providers": {"idp": idp_provider(idp.issuer, idp.port)},
            "rules": [{"name": "health", "match": {"path": "/healthz"}, "allow_anonymous": True}],
            "databricks": {"route_catalogue": True},
        }
        clusters = {"upstream_a": upstream_a.port, "upstream_b": upstream_b.port, "idp": idp.port}
        envoy = start_envoy(bootstrap_with([two_route_listener(wasm_path, plugin_config)], clusters), "route-after-rewrite")
        try:
            envoy.wait_ready()
            port = envoy.listener_ports()["routes"]
            token = TokenFactory(idp.issuer).idp(subject="route-admin", scope="all-apis")
            wait_until_decided(port, lambda p: send(p, "GET", "/api/2.0/clusters/list", token))
            yield Gateway(port, upstream_a, upstream_b, token)
        finally:
            envoy.stop()


def request(protocol: str, port: int, path: str, token: str | None) -> Reply:
    headers = [("authorization", f"Bearer {token}")] if token else []
    if protocol == "h2":
        return h2_request(port, "GET", path, headers)
    return send(port, "GET", path, headers=headers)


def counts(gateway: Gateway) -> tuple[dict, dict]:
    return gateway.upstream_a.snapshot_counts(), gateway.upstream_b.snapshot_counts()


# (path as sent, token?, canonical path, the route the canonical path selects)
REWRITTEN = [
    pytest.param("//api/2.0/clusters/list", True, "/api/2.0/clusters/list", "api", id="leading-double-slash"),
    pytest.param("/x/../api/2.0/clusters/list", True, "/api/2.0/clusters/list", "api", id="dot-dot-into-api"),
    pytest.param("/%61pi/2.0/clusters/list", True, "/api/2.0/clusters/list", "api", id="escaped-letter"),
    pytest.param("/./api/2.0/clusters/list?x=1", True, "/api/2.0/clusters/list?x=1", "api", id="dot-segment-query-kept"),
    pytest.param("/api/../healthz", False, "/healthz", "catch-all", id="api-prefix-resolving-out-of-api"),
    pytest.param("/api/2.0/../../healthz", False, "/healthz", "catch-all", id="two-dot-dots-out-of-api"),
    # Sent and canonical alike: nothing rewritten, the route Envoy picked stands.
    pytest.param("/api/2.0/clusters/list", True, "/api/2.0/clusters/list", "api", id="canonical-api"),
    pytest.param("/healthz", False, "/healthz", "catch-all", id="canonical-catch-all"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("sent", "with_token", "canonical", "expected_route"), REWRITTEN)
def test_the_route_of_the_canonical_path_serves_the_request(gateway, protocol, sent, with_token, canonical,
                                                            expected_route):
    before_a, before_b = counts(gateway)
    reply = request(protocol, gateway.port, sent, gateway.token if with_token else None)
    assert reply.status == 200 and reply.header("x-brickgate-reason") is None, f"{reply.status} {reply.body[:300]!r}"
    echo = reply.json()
    assert echo["path"] == canonical, f"{sent} reached the upstream as {echo['path']}"
    assert echo["headers"].get(ROUTER_MARK) == [expected_route], "the router used another route's entry"
    assert echo["headers"].get(FILTER_MARK) == [expected_route], "the later filter used another route's config"
    after_a, after_b = counts(gateway)
    reached_a, reached_b = after_a != before_a, after_b != before_b
    assert (reached_a, reached_b) == (expected_route == "api", expected_route == "catch-all"), \
        f"{sent}: upstream A {'reached' if reached_a else 'not reached'}, B {'reached' if reached_b else 'not reached'}"
