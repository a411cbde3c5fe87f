use serde_json::{Value, json};

use crate::config::{Config, IdpKind, JwksSource, TokenSource};
use crate::databricks::exchange::UpstreamMode;
use crate::policy::Access;

const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

fn base() -> Value {
    json!({
        "providers": {
            "idp": {
                "issuer": "https://idp.example",
                "audiences": ["api"],
                "jwks": {"remote": {"cluster": "idp", "uri": "https://idp.example/keys"}}
            },
            "local": {
                "issuer": "https://local.example",
                "audiences": ["api"],
                "jwks": {"inline": {"keys": [{"kty": "EC", "kid": "e", "crv": "P-256", "x": EC_X, "y": EC_Y}]}}
            }
        },
        "rules": [
            {"name": "health", "match": {"path": "/healthz", "methods": ["GET"]}, "allow_anonymous": true},
            {"name": "serve", "match": {"template": "/serving-endpoints/{name}/invocations"},
             "providers": ["idp"], "require": {"scopes_any": ["serving:{name}"]}}
        ]
    })
}

fn with(mut config: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = config.pointer_mut(parent).unwrap();
    if value.is_null() {
        target.as_object_mut().unwrap().remove(key);
    } else if let Some(array) = target.as_array_mut() {
        array[key.parse::<usize>().unwrap()] = value;
    } else {
        target[key] = value;
    }
    config
}

fn compile(config: &Value) -> Result<Config, crate::config::ConfigError> {
    Config::from_json(config.to_string().as_bytes())
}

#[test]
fn a_good_config_gets_documented_defaults() {
    let config = compile(&base()).unwrap();
    assert_eq!(config.realm, "brickgate");
    assert_eq!(config.max_token_bytes, 8192);
    assert_eq!(config.identity.header_prefix, "x-brickgate-");
    assert!(config.identity.forward_authorization);
    let idp = &config.providers[0];
    assert_eq!(idp.name, "idp");
    assert_eq!(idp.clock_skew_s, 60);
    assert_eq!(idp.max_lifetime_s, 86_400);
    assert_eq!(
        idp.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
        ["RS256", "ES256"]
    );
    assert_eq!(idp.idp, IdpKind::Generic);
    assert_eq!(idp.scope_claims, ["scope", "scp"]);
    assert_eq!(
        idp.token_sources,
        [TokenSource::Header {
            name: "authorization".into(),
            prefix: Some("Bearer ".into())
        }]
    );
    let JwksSource::Remote(remote) = &idp.jwks else {
        panic!("remote expected")
    };
    let crate::config::JwksLocation::Fixed(location) = &remote.location else {
        panic!("fixed location expected")
    };
    assert_eq!(
        (location.authority.as_str(), location.path.as_str()),
        ("idp.example", "/keys")
    );
    assert_eq!(
        (
            remote.refresh_interval_s,
            remote.timeout_ms,
            remote.max_bytes
        ),
        (600, 5000, 262_144)
    );
    assert!(matches!(config.rules[0].access, Access::Anonymous));
    assert_eq!(config.performance.upstream_token_slots, 4096);
}

#[test]
fn exchange_maps_sub_unless_told_otherwise() {
    let upstream =
        json!({"mode": "exchange", "cluster": "ws", "workspace_url": "https://ws.example"});
    let subject_claim = |upstream: Value| {
        let config = compile(&with(base(), "/providers/idp/upstream", upstream)).unwrap();
        match &config.providers[0].upstream {
            UpstreamMode::Exchange { subject_claim, .. } => subject_claim.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(subject_claim(upstream.clone()), "sub");
    assert_eq!(
        subject_claim(with(upstream, "/subject_claim", json!("email"))),
        "email"
    );
}

#[test]
fn bad_configs_name_the_field() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "grant key without a kind",
            with(
                base(),
                "/providers/idp/grants",
                json!({"ml-engineers": ["mlflow"]}),
            ),
            "providers.idp.grants.ml-engineers",
            "group:<name>, role:<name> or scope:<name>",
        ),
        (
            "grant without scopes",
            with(base(), "/providers/idp/grants", json!({"role:Reader": []})),
            "providers.idp.grants.role:Reader",
            "non-empty list",
        ),
        (
            "the old sensitive-routes boolean",
            with(
                base(),
                "/databricks",
                json!({"route_catalogue": true, "allow_sensitive_routes": true}),
            ),
            "databricks.allow_sensitive_routes",
            "replaced by databricks.enable_route_classes",
        ),
        (
            "unknown route class",
            with(
                base(),
                "/databricks",
                json!({"route_catalogue": true, "enable_route_classes": ["tokens"]}),
            ),
            "databricks.enable_route_classes[0]",
            "is not one of personal_access_tokens",
        ),
        (
            "body limit prefix with a slash",
            with(
                base(),
                "/databricks",
                json!({"serving_body_limits": [{"endpoint_prefix": "ok-", "max_body_bytes": 2048}, {"endpoint_prefix": "a/b", "max_body_bytes": 2048}]}),
            ),
            "databricks.serving_body_limits[1].endpoint_prefix",
            "is not the start of a serving endpoint name",
        ),
        (
            "body limit above max_body_bytes",
            with(
                base(),
                "/databricks",
                json!({"max_body_bytes": 8_388_608, "serving_body_limits": [{"endpoint_prefix": "big-", "max_body_bytes": 8_388_609}]}),
            ),
            "databricks.serving_body_limits[0].max_body_bytes",
            "outside 1024..=8388608",
        ),
        (
            "unknown identity header",
            with(
                base(),
                "/identity",
                json!({"headers": ["subject", "email"]}),
            ),
            "identity.headers[1]",
            "\"email\" is not one of subject, issuer, provider, client-id, scopes, groups, principal-kind, token-id, rule",
        ),
        (
            "identity header twice",
            with(base(), "/identity", json!({"headers": ["rule", "rule"]})),
            "identity.headers[1]",
            "\"rule\" is listed twice",
        ),
        (
            "unknown published field",
            with(base(), "/identity", json!({"publish": ["sub", "subject"]})),
            "identity.publish[1]",
            "\"subject\" is not one of sub, iss, client_id, scope, groups, rule",
        ),
        (
            "published field twice",
            with(base(), "/identity", json!({"publish": ["sub", "sub"]})),
            "identity.publish[1]",
            "\"sub\" is listed twice",
        ),
        (
            "held bodies below one body",
            with(
                base(),
                "/databricks",
                json!({"max_body_bytes": 2_097_152, "max_held_body_bytes": 1_048_576}),
            ),
            "databricks.max_held_body_bytes",
            "outside 2097152..=536870912",
        ),
        (
            "a body deadline shorter than the first-body wait",
            with(
                base(),
                "/databricks",
                json!({"first_body_wait_ms": 20_000, "body_deadline_ms": 15_000}),
            ),
            "databricks.body_deadline_ms",
            "15000 is shorter than databricks.first_body_wait_ms (20000)",
        ),
        (
            "a body deadline beyond ten minutes",
            with(base(), "/databricks", json!({"body_deadline_ms": 600_001})),
            "databricks.body_deadline_ms",
            "outside 100..=600000",
        ),
        (
            "held bodies beyond the VM's memory",
            with(
                base(),
                "/databricks",
                json!({"max_held_body_bytes": 1_073_741_824u64}),
            ),
            "databricks.max_held_body_bytes",
            "outside 16777216..=536870912",
        ),
        (
            "body limit with an unknown field",
            with(
                base(),
                "/databricks",
                json!({"serving_body_limits": [{"endpoint_prefix": "x", "max_body_bytes": 4096, "kind": "agent"}]}),
            ),
            "databricks.serving_body_limits[0].kind",
            "unknown field `kind`",
        ),
        (
            "body limit without a size",
            with(
                base(),
                "/databricks",
                json!({"serving_body_limits": [{"endpoint_prefix": "x"}]}),
            ),
            "databricks.serving_body_limits[0]",
            "missing field `max_body_bytes`",
        ),
        (
            "unknown top-level field",
            with(base(), "/extra", json!(1)),
            "extra",
            "unknown field `extra`",
        ),
        (
            "unknown provider field",
            with(base(), "/providers/idp/isuer", json!("x")),
            "providers.idp.isuer",
            "unknown field `isuer`",
        ),
        (
            "missing issuer",
            with(base(), "/providers/idp/issuer", Value::Null),
            "providers.idp",
            "missing field `issuer`",
        ),
        (
            "wrong type",
            with(base(), "/providers/idp/clock_skew_s", json!("60")),
            "providers.idp.clock_skew_s",
            "invalid type",
        ),
        (
            "no audiences",
            with(base(), "/providers/idp/audiences", Value::Null),
            "providers.idp.audiences",
            "allow_any_audience",
        ),
        (
            "empty audiences",
            with(base(), "/providers/idp/audiences", json!([])),
            "providers.idp.audiences",
            "non-empty",
        ),
        (
            "audiences and waiver",
            with(base(), "/providers/idp/allow_any_audience", json!(true)),
            "providers.idp.allow_any_audience",
            "cannot be combined",
        ),
        (
            "alg none",
            with(
                base(),
                "/providers/idp/algorithms",
                json!(["RS256", "none"]),
            ),
            "providers.idp.algorithms",
            "never accepted",
        ),
        (
            "unknown alg",
            with(base(), "/providers/idp/algorithms", json!(["RS257"])),
            "providers.idp.algorithms",
            "unknown algorithm",
        ),
        (
            "HS without secret",
            with(base(), "/providers/idp/algorithms", json!(["HS256"])),
            "providers.idp.algorithms",
            "symmetric",
        ),
        (
            "http JWKS",
            with(
                base(),
                "/providers/idp/jwks/remote/uri",
                json!("http://idp.example/keys"),
            ),
            "providers.idp.jwks.remote.uri",
            "loopback",
        ),
        (
            "relative JWKS",
            with(base(), "/providers/idp/jwks/remote/uri", json!("/keys")),
            "providers.idp.jwks.remote.uri",
            "absolute",
        ),
        (
            "refresh 0",
            with(
                base(),
                "/providers/idp/jwks/remote/refresh_interval_s",
                json!(0),
            ),
            "providers.idp.jwks.remote.refresh_interval_s",
            "outside",
        ),
        (
            "both jwks",
            with(base(), "/providers/idp/jwks/inline", json!({"keys": []})),
            "providers.idp.jwks",
            "exactly one",
        ),
        (
            "bad inline key",
            with(
                base(),
                "/providers/local/jwks/inline",
                json!({"keys": [{"kty": "EC", "kid": "bad", "crv": "P-256", "x": "AA", "y": "AA"}]}),
            ),
            "providers.local.jwks.inline.keys[bad]",
            "32 bytes",
        ),
        (
            "empty inline",
            with(base(), "/providers/local/jwks/inline", json!({"keys": []})),
            "providers.local.jwks.inline",
            "no keys",
        ),
        (
            "same issuer",
            with(
                base(),
                "/providers/local/issuer",
                json!("https://idp.example"),
            ),
            "providers.local.issuer",
            "same issuer",
        ),
        (
            "skew too big",
            with(base(), "/providers/idp/clock_skew_s", json!(3600)),
            "providers.idp.clock_skew_s",
            "outside",
        ),
        (
            "bad idp",
            with(base(), "/providers/idp/idp", json!("keycloak")),
            "providers.idp.idp",
            "not one of",
        ),
        (
            "bad provider name",
            with(
                base(),
                "/providers/Bad Name",
                base()["providers"]["idp"].clone(),
            ),
            "providers.Bad Name",
            "[a-z0-9_-]",
        ),
        (
            "prefix on query",
            with(
                base(),
                "/providers/idp/token_sources",
                json!([{"query": "t", "prefix": "x"}]),
            ),
            "providers.idp.token_sources[0].prefix",
            "headers",
        ),
        (
            "header and query",
            with(
                base(),
                "/providers/idp/token_sources",
                json!([{"query": "t", "header": "x"}]),
            ),
            "providers.idp.token_sources[0]",
            "exactly one",
        ),
        (
            "upper-case header",
            with(
                base(),
                "/providers/idp/token_sources",
                json!([{"header": "Authorization"}]),
            ),
            "providers.idp.token_sources[0].header",
            "lower-case",
        ),
        (
            "no rules",
            with(base(), "/rules", json!([])),
            "rules",
            "at least one",
        ),
        (
            "two matchers",
            with(
                base(),
                "/rules/0/match",
                json!({"path": "/a", "prefix": "/a"}),
            ),
            "rules[0].match",
            "exactly one",
        ),
        (
            "no matcher",
            with(base(), "/rules/0/match", json!({"methods": ["GET"]})),
            "rules[0].match",
            "exactly one",
        ),
        (
            "lower-case method",
            with(base(), "/rules/0/match/methods", json!(["get"])),
            "rules[0].match.methods",
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        ),
        (
            "a method brickgate never forwards",
            with(base(), "/rules/0/match/methods", json!(["GET", "TRACE"])),
            "rules[0].match.methods",
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        ),
        (
            "bad template",
            with(base(), "/rules/1/match/template", json!("/a/*/b")),
            "rules[1].match.template",
            "bad segment",
        ),
        (
            "unknown provider",
            with(base(), "/rules/1/providers", json!(["nope"])),
            "rules[1].providers",
            "unknown provider",
        ),
        (
            "no providers",
            with(base(), "/rules/1/providers", Value::Null),
            "rules[1].providers",
            "allow_anonymous",
        ),
        (
            "anonymous with providers",
            with(base(), "/rules/0/providers", json!(["idp"])),
            "rules[0].allow_anonymous",
            "cannot be combined",
        ),
        (
            "unbound scope variable",
            with(
                base(),
                "/rules/1/require/scopes_any",
                json!(["serving:{model}"]),
            ),
            "rules[1].require.scopes_any",
            "{model}",
        ),
        (
            "scope with space",
            with(base(), "/rules/1/require/scopes_all", json!(["a b"])),
            "rules[1].require.scopes_all",
            "no spaces",
        ),
        (
            "unknown rule field",
            with(base(), "/rules/0/allow", json!(true)),
            "rules[0].allow",
            "unknown field `allow`",
        ),
        (
            "bad prefix",
            with(base(), "/identity", json!({"header_prefix": "X-Gw"})),
            "identity.header_prefix",
            "ending in -",
        ),
        (
            "built-in claim header",
            with(
                base(),
                "/identity",
                json!({"claim_headers": {"email": "subject"}}),
            ),
            "identity.claim_headers.email",
            "built-in",
        ),
        (
            "bad realm",
            with(base(), "/realm", json!("a\"b")),
            "realm",
            "printable",
        ),
        (
            "service principal without scopes",
            with(
                with(base(), "/allow_inline_secrets", json!(true)),
                "/providers/idp/upstream",
                json!({"mode": "service_principal", "cluster": "ws", "workspace_url": "https://ws.example",
                       "client_id": "sp", "client_secret": "s"}),
            ),
            "providers.idp.upstream.scopes",
            "required for service_principal",
        ),
        (
            "subject_claim outside exchange mode",
            with(
                base(),
                "/providers/idp/upstream",
                json!({"mode": "service_principal", "cluster": "ws", "workspace_url": "https://ws.example",
                       "client_id": "sp", "client_secret_env": "SP_SECRET", "subject_claim": "email"}),
            ),
            "providers.idp.upstream.subject_claim",
            "only for mode exchange",
        ),
        (
            "empty subject_claim",
            with(
                base(),
                "/providers/idp/upstream",
                json!({"mode": "exchange", "cluster": "ws", "workspace_url": "https://ws.example", "subject_claim": ""}),
            ),
            "providers.idp.upstream.subject_claim",
            "claim name",
        ),
        (
            "subject_claim of the wrong type",
            with(
                base(),
                "/providers/idp/upstream",
                json!({"mode": "exchange", "cluster": "ws", "workspace_url": "https://ws.example", "subject_claim": ["sub"]}),
            ),
            "providers.idp.upstream.subject_claim",
            "invalid type",
        ),
        (
            "too few upstream token slots",
            with(base(), "/performance", json!({"upstream_token_slots": 1})),
            "performance.upstream_token_slots",
            "outside",
        ),
        (
            "audit switch of the wrong type",
            with(base(), "/audit", json!({"log_line": "yes"})),
            "audit.log_line",
            "invalid type",
        ),
        (
            "unknown audit output",
            with(base(), "/audit", json!({"syslog": true})),
            "audit.syslog",
            "unknown field",
        ),
        (
            "tiny token limit",
            with(base(), "/max_token_bytes", json!(10)),
            "max_token_bytes",
            "outside",
        ),
    ];
    for (name, config, field, problem) in cases {
        let error = compile(&config)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(error.field, field, "{name}: {error}");
        assert!(error.problem.contains(problem), "{name}: {error}");
    }
}

#[test]
fn audit_goes_to_filter_state_by_default_and_each_output_is_a_choice() {
    // (`audit` given, filter_state, log_line) after compiling.
    let cases = [
        (None, true, false),
        (Some(json!({})), true, false),
        (Some(json!({"filter_state": false})), false, false),
        (Some(json!({"log_line": true})), true, true),
        (
            Some(json!({"log_line": true, "filter_state": false})),
            false,
            true,
        ),
    ];
    for (audit, filter_state, log_line) in cases {
        let raw = match &audit {
            Some(audit) => with(base(), "/audit", audit.clone()),
            None => base(),
        };
        let config = compile(&raw).unwrap();
        assert_eq!(
            (config.audit.filter_state, config.audit.log_line),
            (filter_state, log_line),
            "{audit:?}"
        );
    }
}

#[test]
fn not_json_is_refused_without_panicking() {
    for bytes in [&b""[..], b"{", b"[]", b"null", b"\xff\xfe"] {
        assert!(Config::from_json(bytes).is_err());
    }
}

#[test]
fn loopback_http_is_accepted_for_dev_and_tests() {
    for uri in [
        "http://127.0.0.1:9400/jwks.json",
        "http://localhost/keys",
        "http://[::1]:80/k",
    ] {
        let config = with(base(), "/providers/idp/jwks/remote/uri", json!(uri));
        assert!(compile(&config).is_ok(), "{uri}");
    }
}

#[test]
fn inline_jwks_may_be_a_string_and_hs_needs_an_oct_key() {
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";
    let config = with(
        base(),
        "/providers/local/jwks/inline",
        json!(format!(
            r#"{{"keys": [{{"kty": "oct", "kid": "s", "k": "{secret}"}}]}}"#
        )),
    );
    let config = with(config, "/providers/local/algorithms", json!(["HS256"]));
    // A symmetric key is a secret: inline only for development.
    let refused = compile(&config).unwrap_err();
    assert_eq!(refused.field, "providers.local.jwks.inline");
    assert!(refused.problem.contains("inline_env"), "{refused}");
    assert!(!refused.to_string().contains(secret));
    let config = with(config, "/allow_inline_secrets", json!(true));
    assert!(compile(&config).is_ok());
}

#[test]
fn a_jwks_with_secret_keys_comes_from_the_environment() {
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";
    let jwks = format!(r#"{{"keys": [{{"kty": "oct", "kid": "s", "k": "{secret}"}}]}}"#);
    let config = with(
        base(),
        "/providers/local/jwks",
        json!({"inline_env": "HS_JWKS"}),
    );
    let config = with(config, "/providers/local/algorithms", json!(["HS256"]));
    let text = config.to_string();
    let env = |name: &str| (name == "HS_JWKS").then(|| jwks.clone());
    let compiled = Config::from_json_with_env(text.as_bytes(), &env).unwrap();
    assert!(
        matches!(&compiled.providers[1].jwks, JwksSource::Inline(keys) if keys.kids() == ["s"])
    );
    let unset = Config::from_json(text.as_bytes()).unwrap_err();
    assert_eq!(unset.field, "providers.local.jwks.inline_env");
    let both = with(config, "/providers/local/jwks/inline", json!(jwks.clone()));
    let both = Config::from_json_with_env(both.to_string().as_bytes(), &env).unwrap_err();
    assert_eq!(both.field, "providers.local.jwks.inline");
}

#[test]
fn claim_headers_get_the_prefix() {
    let config = with(
        base(),
        "/identity",
        json!({"header_prefix": "x-gw-", "claim_headers": {"email": "email"}}),
    );
    let config = compile(&config).unwrap();
    assert_eq!(
        config.identity.claim_headers,
        [("email".to_string(), "x-gw-email".to_string())]
    );
}

#[test]
fn serving_body_limits_default_to_databricks_and_can_be_replaced() {
    use crate::databricks::body_limits::PrefixLimit;
    let limits = |databricks: Value| {
        let config = compile(&with(base(), "/databricks", databricks)).unwrap();
        config.databricks.unwrap().serving_body_limits
    };
    let prefix = |p: &str, bytes: usize| PrefixLimit {
        endpoint_prefix: p.to_string(),
        max_body_bytes: bytes,
    };
    // (databricks section, prefixes, other, configured)
    let cases: Vec<(Value, Vec<PrefixLimit>, usize, bool)> = vec![
        (
            json!({}),
            vec![prefix("databricks-", 4 << 20), prefix("agents_", 4 << 20)],
            16 << 20,
            false,
        ),
        // A lower max_body_bytes caps the defaults too.
        (
            json!({"max_body_bytes": 2 << 20}),
            vec![prefix("databricks-", 2 << 20), prefix("agents_", 2 << 20)],
            2 << 20,
            false,
        ),
        (
            json!({"serving_body_limits": [{"endpoint_prefix": "ext-openai", "max_body_bytes": 4_194_304}]}),
            vec![prefix("ext-openai", 4 << 20)],
            16 << 20,
            true,
        ),
        (json!({"serving_body_limits": []}), vec![], 16 << 20, true),
    ];
    for (databricks, prefixes, other, configured) in cases {
        let got = limits(databricks.clone());
        assert_eq!(got.prefixes, prefixes, "{databricks}");
        assert_eq!(got.other, other, "{databricks}");
        assert_eq!(got.configured, configured, "{databricks}");
    }
}

/// `databricks.body_deadline_ms`: 60 s by default (docs/CONFIG.md), any value from the
/// first-body wait up to ten minutes.
#[test]
fn the_body_deadline_defaults_to_a_minute_and_may_equal_the_first_body_wait() {
    let deadline = |databricks: Value| {
        let config = compile(&with(base(), "/databricks", databricks)).unwrap();
        let databricks = config.databricks.unwrap();
        (databricks.first_body_wait_ms, databricks.body_deadline_ms)
    };
    assert_eq!(deadline(json!({})), (10_000, 60_000));
    assert_eq!(
        deadline(json!({"first_body_wait_ms": 500, "body_deadline_ms": 500})),
        (500, 500)
    );
    assert_eq!(deadline(json!({"body_deadline_ms": 600_000})).1, 600_000);
}

#[test]
fn body_rules_default_to_holding_headers_and_refuse_other_values_by_name() {
    use crate::config::BodyRules;
    let cases = [
        (None, Ok(BodyRules::HoldHeaders)),
        (Some(json!("hold_headers")), Ok(BodyRules::HoldHeaders)),
        (Some(json!("buffer_filter")), Ok(BodyRules::BufferFilter)),
        (Some(json!("Buffer_Filter")), Err("body_rules")),
        (Some(json!("buffer")), Err("body_rules")),
        (Some(json!(true)), Err("body_rules")),
    ];
    for (value, expected) in cases {
        let raw = match &value {
            Some(value) => with(base(), "/body_rules", value.clone()),
            None => base(),
        };
        match (compile(&raw), expected) {
            (Ok(config), Ok(rules)) => assert_eq!(config.body_rules, rules, "{value:?}"),
            (Err(error), Err(field)) => {
                assert!(error.to_string().contains(field), "{value:?}: {error}")
            }
            (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
        }
    }
}
