//! `brickgate explain`: one request replayed through the plugin's decision code. Each check
//! is printed in order with the core function that makes it (so the lines say what the plugin
//! compares), then the answer comes from `Engine::decide` itself. The token is never printed,
//! even where the core's answer carries it (a rewritten path with the token in its query): every
//! line goes through a `Transcript`, which writes the fingerprint in its place.

use std::io::Read;

use serde_json::json;

use brickgate_core::config::{Config, Provider, TokenSource};
use brickgate_core::databricks::serving;
use brickgate_core::error::AuthError;
use brickgate_core::identity::fingerprint;
use brickgate_core::jwks::{Availability, JwksStore};
use brickgate_core::policy::{Access, Bindings, Rule, match_rule, normalize_path};
use brickgate_core::token::UnverifiedJwt;
use brickgate_core::verify::claims::{
    check_audience, check_lifetime, format_time, name_list, scope_list, string_claim, token_times,
};
use brickgate_core::verify::{
    InWasmVerifier, accepted_alg, is_access_token_typ, verify_for_provider,
};

use crate::args::{Args, load_config, read_file};
use crate::transcript::Transcript;
use crate::{Outcome, describe, keys};

pub fn run(args: &Args) -> Result<Outcome, String> {
    let [path] = args.positionals(&["PATH"])? else {
        return Err("expected PATH".to_string());
    };
    let mut config = load_config(args, args.required("config")?)?;
    let extra_headers = request_headers(&args.headers)?;
    let token = read_token(args.required("token")?)?;
    // As sent: the plugin refuses a method not spelled exactly (`Post`), and so does explain.
    let method = args.flag("method").unwrap_or("GET").to_string();
    let body = args
        .flag("body")
        .map(|f| read_file(f, "body"))
        .transpose()?;
    let now_s = match args.flag("now") {
        Some(now) => now
            .parse::<u64>()
            .map_err(|_| format!("--now {now:?} is not Unix seconds"))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| format!("clock: {e}"))?
            .as_secs(),
    };
    if let Some(jwks) = args.flag("jwks") {
        keys::use_file(&mut config, jwks)?;
    }
    let out =
        Transcript::new(&config, &token, args.json).hiding_credentials_in(&config, &extra_headers);
    let request = Replayed {
        method: &method,
        path,
        extra_headers: &extra_headers,
        body,
        now_s,
    };
    let outcome = replay(config, &out, request).map_err(|problem| out.clean(&problem))?;
    out.finish();
    Ok(outcome)
}

/// One request as given on the command line.
struct Replayed<'a> {
    method: &'a str,
    path: &'a str,
    /// `--header NAME:VALUE`, names lowercased, after the token's own header.
    extra_headers: &'a [(String, String)],
    body: Option<Vec<u8>>,
    now_s: u64,
}

/// `--header NAME:VALUE` (or `NAME: VALUE`); pseudo-headers come from `--method` and PATH.
fn request_headers(given: &[String]) -> Result<Vec<(String, String)>, String> {
    given
        .iter()
        .enumerate()
        .map(|(index, header)| {
            // The value is not echoed: a mistyped credential header would print its token.
            let (name, value) = header
                .split_once(':')
                .filter(|(name, _)| !name.trim().is_empty())
                .ok_or_else(|| format!("--header #{} is not NAME:VALUE", index + 1))?;
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect()
}

/// The request replayed; every line printed goes through `out`, which hides the token.
fn replay(config: Config, out: &Transcript, request: Replayed) -> Result<Outcome, String> {
    let Replayed {
        method,
        path,
        extra_headers,
        body,
        now_s,
    } = request;
    out.line(format!(
        "request: {method} {path} (token fingerprint {})",
        fingerprint(out.token())
    ));
    for (name, value) in extra_headers {
        out.line(format!("  with header {name}: {value}"));
    }
    out.set(
        "request",
        json!({
            "method": method,
            "path": path,
            "token_fingerprint": fingerprint(out.token()),
            "headers": extra_headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        }),
    );
    let now_ms = now_s * 1000;
    let (store, key_lines) = keys::fetch_all(&config, now_ms);
    for line in &key_lines {
        out.line(format!("  {line}"));
    }
    out.set("keys", json!(key_lines));
    let mut headers = trace(&config, &store, out, method, path, body.as_deref(), now_s);
    headers.extend(extra_headers.iter().cloned());
    verdict::verdict(config, &store, out, method, &headers, body, now_ms)
}

/// `-` reads the token from stdin, `@FILE` from a file: a token on the command line is visible
/// to every user of the machine (`ps`).
fn read_token(given: &str) -> Result<String, String> {
    let text = if given == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
        text
    } else if let Some(file) = given.strip_prefix('@') {
        String::from_utf8(read_file(file, "token")?)
            .map_err(|_| "the token file is not UTF-8".to_string())?
    } else {
        given.to_string()
    };
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err("the token is empty".to_string());
    }
    Ok(token)
}

/// Prints each check in the plugin's order; returns the request headers, the token placed
/// where the rule's providers read it.
fn trace(
    config: &Config,
    store: &JwksStore,
    out: &Transcript,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    now: u64,
) -> Vec<(String, String)> {
    let token = out.token();
    let mut headers = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        ("authorization".to_string(), format!("Bearer {token}")),
    ];
    out.line("checks, in the plugin's order:");
    let normalized = match normalize_path(path) {
        Ok(normalized) => {
            out.pass("path", format!("canonical {}", normalized.path));
            normalized
        }
        Err(problem) => {
            out.info("path", format!("refused: {problem}"));
            return headers;
        }
    };
    let limit = config
        .databricks
        .as_ref()
        .map_or(1 << 20, |d| d.max_body_bytes);
    let model = match body {
        Some(body) if serving::endpoint_in_body(method, &normalized.path) => {
            match serving::model_from_body(body, limit) {
                Ok(model) => Some(model),
                Err(error) => {
                    out.fail("body", &error);
                    return headers;
                }
            }
        }
        _ => None,
    };
    let endpoint = serving::endpoint(method, &normalized.path, model.as_deref());
    let (rule, bindings) = match match_rule(&config.rules, method, &normalized.path, endpoint) {
        Ok(Some(found)) => found,
        Ok(None) => {
            out.info(
                "rule",
                format!("no rule matches {method} {}", normalized.path),
            );
            return headers;
        }
        Err(conflict) => {
            out.fail("rule", &conflict.into_error(model.is_some()));
            return headers;
        }
    };
    out.pass(
        "rule",
        format!(
            "{} ({} {}): {}",
            rule.name,
            describe::methods(rule),
            describe::pattern(&rule.pattern),
            describe::access(config, rule)
        ),
    );
    let Access::Token { providers, require } = &rule.access else {
        return headers;
    };
    headers = place_token(config, out, providers, method, path);
    token_checks(config, store, out, rule, providers, &bindings, now);
    let _ = require;
    headers
}

/// The request as a client of this rule sends it: the token where the first of the rule's
/// providers' token sources reads it.
fn place_token(
    config: &Config,
    out: &Transcript,
    providers: &[usize],
    method: &str,
    path: &str,
) -> Vec<(String, String)> {
    let token = out.token();
    let source = providers
        .iter()
        .filter_map(|i| config.providers.get(*i))
        .flat_map(|p| p.token_sources.iter())
        .next();
    let mut headers = vec![(":method".to_string(), method.to_string())];
    match source {
        Some(TokenSource::Query { param }) => {
            let joiner = if path.contains('?') { '&' } else { '?' };
            headers.push((
                ":path".to_string(),
                format!("{path}{joiner}{param}={token}"),
            ));
            out.info("credential", format!("sent in query parameter {param}"));
        }
        Some(TokenSource::Header { name, prefix }) => {
            headers.push((":path".to_string(), path.to_string()));
            let prefix = prefix.clone().unwrap_or_default();
            headers.push((name.clone(), format!("{prefix}{token}")));
            out.info(
                "credential",
                format!(
                    "sent in header {name}{}",
                    if prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", prefix.trim())
                    }
                ),
            );
        }
        None => headers.push((":path".to_string(), path.to_string())),
    }
    headers
}

fn token_checks(
    config: &Config,
    store: &JwksStore,
    out: &Transcript,
    rule: &Rule,
    providers: &[usize],
    bindings: &Bindings,
    now: u64,
) {
    let token = out.token();
    let jwt = match UnverifiedJwt::parse(token) {
        Ok(jwt) => jwt,
        Err(error) => {
            out.fail("token", &error);
            return;
        }
    };
    out.pass(
        "token",
        format!(
            "JWT alg {} kid {} typ {}",
            jwt.header.alg,
            jwt.header.kid.as_deref().unwrap_or("-"),
            jwt.header.typ.as_deref().unwrap_or("-")
        ),
    );
    let iss = string_claim(&jwt.claims, "iss");
    let accepted: Vec<(usize, &Provider)> = providers
        .iter()
        .filter_map(|i| config.providers.get(*i).map(|p| (*i, p)))
        .collect();
    let issuers: Vec<&str> = accepted.iter().map(|(_, p)| p.issuer.as_str()).collect();
    let Some((index, provider)) = accepted
        .iter()
        .find(|(_, p)| Some(&p.issuer) == iss.as_ref())
        .copied()
    else {
        out.failed(
            "issuer",
            &format!(
                "iss {:?} is not one of [{}]",
                iss.unwrap_or_default(),
                issuers.join(", ")
            ),
            "issuer_not_accepted",
        );
        return;
    };
    out.pass(
        "issuer",
        format!("iss {} -> provider {}", provider.issuer, provider.name),
    );
    let mut ok = true;
    if provider.require_typ {
        let typ = jwt.header.typ.as_deref().unwrap_or("");
        let line = format!("typ {typ:?}; at+jwt required (RFC 9068)");
        if is_access_token_typ(typ) {
            out.pass("typ", line);
        } else {
            ok = false;
            out.failed("typ", &line, "typ_mismatch");
        }
    }
    let algorithms: Vec<&str> = provider.algorithms.iter().map(|a| a.name()).collect();
    let alg_ok = accepted_alg(&provider.algorithms, &jwt.header.alg).is_some();
    let alg_line = format!("alg {} among [{}]", jwt.header.alg, algorithms.join(", "));
    ok &= alg_ok;
    if alg_ok {
        out.pass("algorithm", alg_line)
    } else {
        out.failed("algorithm", &alg_line, "alg_not_allowed")
    }
    let times = token_times(&jwt.claims).map(|t| {
        let show = |v: Option<u64>| v.map_or("-".to_string(), format_time);
        format!(
            "now {}; exp {}, nbf {}, iat {}; skew {} s, lifetime at most {} s",
            format_time(now),
            format_time(t.exp),
            show(t.nbf),
            show(t.iat),
            provider.clock_skew_s,
            provider.max_lifetime_s
        )
    });
    let lifetime = check_lifetime(
        &jwt.claims,
        now,
        provider.clock_skew_s,
        provider.max_lifetime_s,
    );
    ok &= out.check("time", lifetime.and(times));
    let aud = jwt
        .claims
        .get("aud")
        .map_or("none".to_string(), |v| v.to_string());
    match &provider.audiences {
        Some(audiences) => {
            let result = check_audience(&jwt.claims, audiences)
                .map(|()| format!("aud {aud} holds one of [{}]", audiences.join(", ")));
            if let Err(error) = &result {
                ok = false;
                out.fail("audience", error);
                out.info(
                    "",
                    format!(
                        "token aud {aud}; expected one of [{}]",
                        audiences.join(", ")
                    ),
                );
            } else {
                out.check("audience", result);
            }
        }
        None => out.pass(
            "audience",
            format!("aud {aud} (provider accepts any audience)"),
        ),
    }
    let keys = match store.availability(index, now * 1000) {
        Availability::Ready(keys) | Availability::Stale(keys) => {
            out.pass(
                "keys",
                format!(
                    "provider {} has [{}]",
                    provider.name,
                    keys.kids().join(", ")
                ),
            );
            Ok(keys)
        }
        Availability::Cold => Err(AuthError::new(
            brickgate_core::error::Reason::KeysUnavailable,
            format!("no keys for provider {}", provider.name),
        )),
        Availability::Expired(why) => Err(AuthError::new(
            brickgate_core::error::Reason::KeysUnavailable,
            why,
        )),
    };
    if !ok {
        out.info(
            "signature",
            "not checked: the plugin stops at the first failed check",
        );
        return;
    }
    let signature = verify_for_provider(provider, &jwt, keys, now, &InWasmVerifier).map(|alg| {
        format!(
            "{alg} signature verifies with key {}",
            jwt.header.kid.as_deref().unwrap_or("(no kid)")
        )
    });
    if !out.check("signature", signature) {
        return;
    }
    let Access::Token { require, .. } = &rule.access else {
        return;
    };
    let mut scopes: Vec<String> = Vec::new();
    for claim in &provider.scope_claims {
        for scope in scope_list(&jwt.claims, claim) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    let groups = name_list(&jwt.claims, &provider.groups_claim);
    out.info(
        "token has",
        format!(
            "scopes [{}] (claims {}), groups [{}]",
            scopes.join(" "),
            provider.scope_claims.join(", "),
            groups.join(", ")
        ),
    );
    let requirement = require
        .check(&rule.name, bindings, &scopes, &groups)
        .map(|()| format!("requires {}", describe::requirement(require)));
    out.check("requirement", requirement);
}

mod verdict;

#[cfg(test)]
mod tests;
