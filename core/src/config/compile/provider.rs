//! A provider: issuer, audiences, keys (inline or remote), algorithms, token sources.

use serde_json::Value;

use super::super::raw::{RawJwks, RawProvider, RawRemoteJwks, RawTokenSource};
use super::super::{
    ConfigError, IdpKind, JwksLocation, JwksSource, Provider, RemoteJwks, TokenSource,
};
use super::secrets::Secrets;
use super::upstream::compile_upstream;
use super::{Result, in_range};
use crate::alg::{Alg, KeyFamily};
use crate::identity::grants::{Grant, GrantSource};
use crate::jwks::{FetchLocation, KeyOrigin, parse_jwks};

pub(super) fn compile_provider(
    field: &str,
    name: &str,
    raw: &RawProvider,
    secrets: Secrets<'_>,
) -> Result<Provider> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !name_ok {
        return Err(ConfigError::new(
            field,
            "provider names are 1 to 64 of [a-z0-9_-]",
        ));
    }
    if raw.issuer.is_empty() || raw.issuer.len() > 1024 {
        return Err(ConfigError::new(
            format!("{field}.issuer"),
            "must be 1 to 1024 bytes",
        ));
    }
    let audiences = match (&raw.audiences, raw.allow_any_audience) {
        (Some(_), true) => {
            return Err(ConfigError::new(
                format!("{field}.allow_any_audience"),
                "cannot be combined with audiences",
            ));
        }
        (None, false) => {
            return Err(ConfigError::new(
                format!("{field}.audiences"),
                "required (or waive the check explicitly with \"allow_any_audience\": true)",
            ));
        }
        (None, true) => None,
        (Some(list), false) => {
            if list.is_empty() || list.iter().any(String::is_empty) {
                return Err(ConfigError::new(
                    format!("{field}.audiences"),
                    "must be a non-empty list of non-empty strings",
                ));
            }
            Some(list.clone())
        }
    };
    let jwks = compile_jwks(&format!("{field}.jwks"), &raw.issuer, &raw.jwks, secrets)?;
    let algorithms = compile_algorithms(
        &format!("{field}.algorithms"),
        raw.algorithms.as_deref(),
        &jwks,
    )?;
    let idp = match raw.idp.as_deref().unwrap_or("generic") {
        "generic" => IdpKind::Generic,
        "okta" => IdpKind::Okta,
        "entra" => IdpKind::Entra,
        "auth0" => IdpKind::Auth0,
        "databricks" => IdpKind::Databricks,
        other => {
            return Err(ConfigError::new(
                format!("{field}.idp"),
                format!("{other:?} is not one of generic, okta, entra, auth0, databricks"),
            ));
        }
    };
    let token_sources = match &raw.token_sources {
        None => vec![TokenSource::Header {
            name: "authorization".to_string(),
            prefix: Some("Bearer ".to_string()),
        }],
        Some(list) if list.is_empty() => {
            return Err(ConfigError::new(
                format!("{field}.token_sources"),
                "must not be empty",
            ));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, source)| compile_token_source(&format!("{field}.token_sources[{i}]"), source))
            .collect::<Result<Vec<_>>>()?,
    };
    let claim_name = |sub: &str, value: Option<&String>, default: &str| -> Result<String> {
        let value = value.cloned().unwrap_or_else(|| default.to_string());
        if value.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.claims.{sub}"),
                "must not be empty",
            ));
        }
        Ok(value)
    };
    let scope_claims = raw
        .claims
        .scopes
        .clone()
        .unwrap_or_else(|| vec!["scope".to_string(), "scp".to_string()]);
    if scope_claims.is_empty() || scope_claims.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            format!("{field}.claims.scopes"),
            "must be a non-empty list of claim names",
        ));
    }
    Ok(Provider {
        name: name.to_string(),
        issuer: raw.issuer.clone(),
        audiences,
        jwks,
        algorithms,
        clock_skew_s: in_range(
            &format!("{field}.clock_skew_s"),
            raw.clock_skew_s,
            60,
            0,
            600,
        )?,
        max_lifetime_s: in_range(
            &format!("{field}.max_lifetime_s"),
            raw.max_lifetime_s,
            86_400,
            60,
            31_536_000,
        )?,
        require_typ: raw.require_typ,
        idp,
        token_sources,
        scope_claims,
        subject_claim: claim_name("subject", raw.claims.subject.as_ref(), "sub")?,
        groups_claim: claim_name("groups", raw.claims.groups.as_ref(), "groups")?,
        roles_claim: claim_name("roles", raw.claims.roles.as_ref(), "roles")?,
        grants: compile_grants(&format!("{field}.grants"), raw.grants.as_ref())?,
        upstream: compile_upstream(&format!("{field}.upstream"), raw.upstream.as_ref(), secrets)?,
    })
}

fn compile_jwks(
    field: &str,
    issuer: &str,
    raw: &RawJwks,
    secrets: Secrets<'_>,
) -> Result<JwksSource> {
    // A JWKS from the environment is read as an inline one written as a string.
    let from_env = match &raw.inline_env {
        Some(_) if raw.inline.is_some() => {
            return Err(ConfigError::new(
                format!("{field}.inline"),
                "give either inline or inline_env, not both",
            ));
        }
        Some(variable) => secrets
            .read(field, "inline", None, Some(variable))?
            .map(Value::String),
        None => None,
    };
    match (raw.inline.as_ref().or(from_env.as_ref()), &raw.remote) {
        (Some(inline), None) => {
            let field = format!("{field}.inline");
            let document = match inline {
                Value::String(text) => serde_json::from_str(text)
                    .map_err(|e| ConfigError::new(&field, format!("not JSON: {e}")))?,
                other => other.clone(),
            };
            let keys = parse_jwks(&document, KeyOrigin::Inline)
                .map_err(|problem| ConfigError::new(&field, problem))?;
            if let Some(skipped) = keys.skipped.first() {
                // An unusable key in hand-written config is a mistake, not IdP noise.
                return Err(ConfigError::new(
                    format!("{field}.keys[{}]", skipped.kid.as_deref().unwrap_or("?")),
                    skipped.why.clone(),
                ));
            }
            if keys.keys.is_empty() {
                return Err(ConfigError::new(field, "holds no keys"));
            }
            let holds_secret = keys.keys.iter().any(|k| k.family == KeyFamily::Hmac);
            if holds_secret && raw.inline.is_some() && !secrets.allow_inline {
                return Err(ConfigError::new(
                    field,
                    "a symmetric (kty \"oct\") key is a secret, and Envoy's /config_dump shows the \
                     plugin configuration: put the JWKS in an environment variable of the Wasm VM \
                     (vm_config.environment_variables) and name it with inline_env, or set \
                     \"allow_inline_secrets\": true for development",
                ));
            }
            Ok(JwksSource::Inline(keys))
        }
        (None, Some(remote)) => Ok(JwksSource::Remote(compile_remote(
            &format!("{field}.remote"),
            issuer,
            remote,
        )?)),
        _ => Err(ConfigError::new(
            field,
            "exactly one of \"inline\" (or \"inline_env\") or \"remote\" is required",
        )),
    }
}

fn compile_remote(field: &str, issuer: &str, raw: &RawRemoteJwks) -> Result<RemoteJwks> {
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.cluster"),
            "must name an Envoy cluster",
        ));
    }
    let location = match &raw.uri {
        Some(uri) => JwksLocation::Fixed(
            FetchLocation::parse(uri)
                .map_err(|problem| ConfigError::new(format!("{field}.uri"), problem))?,
        ),
        None => JwksLocation::Discover {
            issuer: FetchLocation::parse(issuer).map_err(|problem| {
                ConfigError::new(
                    format!("{field}.uri"),
                    format!(
                        "absent, so keys are discovered from the issuer, but the issuer {problem}"
                    ),
                )
            })?,
        },
    };
    let range = |name: &str, value: Option<u64>, default: u64, min: u64, max: u64| {
        in_range(&format!("{field}.{name}"), value, default, min, max)
    };
    Ok(RemoteJwks {
        cluster: raw.cluster.clone(),
        location,
        refresh_interval_s: range("refresh_interval_s", raw.refresh_interval_s, 600, 1, 86_400)?,
        timeout_ms: range("timeout_ms", raw.timeout_ms, 5000, 100, 60_000)?,
        max_bytes: range("max_bytes", raw.max_bytes, 262_144, 1024, 4_194_304)?,
        max_stale_s: range("max_stale_s", raw.max_stale_s, 3600, 0, 604_800)?,
        refetch_min_interval_s: range(
            "refetch_min_interval_s",
            raw.refetch_min_interval_s,
            30,
            1,
            3600,
        )?,
        wait_for_keys_ms: range("wait_for_keys_ms", raw.wait_for_keys_ms, 5000, 0, 60_000)?,
    })
}

fn compile_algorithms(field: &str, raw: Option<&[String]>, jwks: &JwksSource) -> Result<Vec<Alg>> {
    let names: Vec<String> = match raw {
        None => vec!["RS256".to_string(), "ES256".to_string()],
        Some(names) => names.to_vec(),
    };
    if names.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    let mut algorithms = Vec::new();
    for name in &names {
        if name.eq_ignore_ascii_case("none") {
            return Err(ConfigError::new(field, "\"none\" is never accepted"));
        }
        let alg = Alg::parse(name)
            .ok_or_else(|| ConfigError::new(field, format!("unknown algorithm {name:?}")))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.iter().any(|alg| alg.is_hmac()) {
        let has_secret = matches!(jwks, JwksSource::Inline(keys)
            if keys.keys.iter().any(|k| k.family == KeyFamily::Hmac));
        if !has_secret {
            return Err(ConfigError::new(
                field,
                "HS* algorithms need a symmetric (kty \"oct\") key in jwks.inline",
            ));
        }
    }
    Ok(algorithms)
}

fn compile_token_source(field: &str, raw: &RawTokenSource) -> Result<TokenSource> {
    match (&raw.header, &raw.query) {
        (Some(header), None) => {
            if !is_header_name(header) {
                return Err(ConfigError::new(
                    format!("{field}.header"),
                    "must be a lower-case header name",
                ));
            }
            if raw.prefix.as_deref() == Some("") {
                return Err(ConfigError::new(
                    format!("{field}.prefix"),
                    "must not be empty",
                ));
            }
            Ok(TokenSource::Header {
                name: header.clone(),
                prefix: raw.prefix.clone(),
            })
        }
        (None, Some(param)) if raw.prefix.is_none() => {
            if param.is_empty()
                || !param
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ConfigError::new(
                    format!("{field}.query"),
                    "must be a plain parameter name",
                ));
            }
            Ok(TokenSource::Query {
                param: param.clone(),
            })
        }
        (None, Some(_)) => Err(ConfigError::new(
            format!("{field}.prefix"),
            "only applies to headers",
        )),
        _ => Err(ConfigError::new(
            field,
            "exactly one of \"header\" or \"query\" is required",
        )),
    }
}

pub(super) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `grants`: each key `group:<name>`, `role:<name>` or `scope:<name>`, each value a non-empty
/// list of scope names (the ones rules and the catalogue ask for).
fn compile_grants(
    field: &str,
    raw: Option<&std::collections::BTreeMap<String, Vec<String>>>,
) -> Result<Vec<Grant>> {
    let mut grants = Vec::new();
    for (key, scopes) in raw.into_iter().flatten() {
        let field = format!("{field}.{key}");
        let source = GrantSource::parse(key).ok_or_else(|| {
            ConfigError::new(
                &field,
                "a grant key is group:<name>, role:<name> or scope:<name>",
            )
        })?;
        let valid =
            |s: &String| !s.is_empty() && s.len() <= 256 && !s.contains(char::is_whitespace);
        if scopes.is_empty() || !scopes.iter().all(valid) {
            return Err(ConfigError::new(
                &field,
                "must be a non-empty list of scope names without whitespace",
            ));
        }
        grants.push(Grant {
            source,
            scopes: scopes.clone(),
        });
    }
    Ok(grants)
}
