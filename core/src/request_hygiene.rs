//! What every request must be before any rule looks at it, whatever rule admits it (anonymous
//! ones and CORS preflights included): one canonical method, and no header an upstream may act
//! on instead of what brickgate judged (method and path overrides, proxy credentials).
//!
//! The method is compared byte for byte with the rules' methods. Over HTTP/2 Envoy forwards
//! `:method` as the client wrote it, and an upstream that reads methods case-insensitively
//! would run `Post` as the `POST` a rule refuses: only the exact upper-case methods the
//! Databricks API uses pass (RFC 9110 §9.3, PATCH from RFC 5789). `CONNECT` (a tunnel) and
//! `TRACE` (echoes the request, credentials included) have no use behind a Databricks gateway.
//!
//! Method overrides (`X-HTTP-Method-Override: DELETE` on a `GET`) make many frameworks run
//! another method than the one brickgate authorised, so a `:read` scope would buy a write.
//! brickgate cannot know which upstream honours them: an override naming the request's own
//! method is harmless and only removed; one naming any other method is refused. The same
//! holds for a query parameter `_method` (Rails, Laravel) or named like the headers.
//!
//! Path overrides (`X-Original-URL`, `X-Rewrite-URL`, …) make some frameworks and proxies route
//! on the header instead of `:path` (Symfony and Laravel once trusted `X-Original-URL` and
//! `X-Rewrite-URL`, IIS URL Rewrite sets them, nginx `auth_request` and Traefik `forwardAuth`
//! pass `X-Original-URI` and `X-Forwarded-Uri`, Envoy writes `X-Envoy-Original-Path`): one
//! naming the path brickgate matched is harmless and only removed; one naming another path, or
//! one that is not a readable path, is refused. `X-Forwarded-Prefix` names no path of its own
//! (Spring prepends it to the request path) and is removed.
//!
//! `Proxy-Authorization` is hop-by-hop, meant for the proxy that consumes it (RFC 9110
//! §11.7.2); brickgate does not, and no upstream behind it should: removed. Next to a bearer
//! token it is refused as a second credential by token extraction, before this matters.

use std::borrow::Cow;

use crate::error::{AuthError, Reason};
use crate::header_name::same_header_name;
use crate::policy::normalize_path;

/// The methods brickgate forwards, exactly as spelled here.
pub const FORWARDED_METHODS: [&str; 7] =
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Headers naming a request path that some upstream routes on instead of `:path`.
pub const PATH_OVERRIDE_HEADERS: [&str; 6] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-envoy-original-path",
];

/// Headers naming part of a path, removed whatever they say.
pub const PATH_PREFIX_HEADERS: [&str; 1] = ["x-forwarded-prefix"];

/// Refuses (`bad_method`) any method but the [`FORWARDED_METHODS`] spelled exactly.
pub fn check_method(method: &str) -> Result<(), AuthError> {
    if FORWARDED_METHODS.contains(&method) {
        return Ok(());
    }
    let known = FORWARDED_METHODS
        .iter()
        .chain(&["CONNECT", "TRACE"])
        .any(|m| m.eq_ignore_ascii_case(method.trim()));
    let why = if !known {
        "is not a method the Databricks API uses"
    } else if matches!(method, "CONNECT" | "TRACE") {
        "has no use behind a Databricks gateway"
    } else {
        "must be spelled in upper case, exactly (RFC 9110 methods are case-sensitive)"
    };
    Err(AuthError::new(
        Reason::BadMethod,
        format!(
            "method {} {why}; brickgate forwards only {}",
            crate::error::echo_at_most(method, 16),
            FORWARDED_METHODS.join(", ")
        ),
    ))
}

/// Method-override headers, as the common frameworks spell them (compared with case and
/// `_`/`-` folded).
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Credentials for a proxy, never for the upstream.
pub const PROXY_CREDENTIAL_HEADERS: [&str; 1] = ["proxy-authorization"];

/// The names of `headers` to remove before the request goes upstream, or a refusal: an
/// override naming a method other than `method` (`method_override`), or a path other than
/// `path`, the decoded path rules were matched against (`path_override`).
pub fn headers_to_remove(
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<Vec<String>, AuthError> {
    let mut remove: Vec<String> = Vec::new();
    for (name, value) in headers {
        let is = |names: &[&str]| names.iter().any(|h| same_header_name(name, h));
        let is_method_override = is(&METHOD_OVERRIDE_HEADERS);
        if is_method_override {
            check_override(method, &format!("header {}", printable_name(name)), value)?;
        }
        let is_path_override = is(&PATH_OVERRIDE_HEADERS);
        if is_path_override {
            check_path_override(path, name, value)?;
        }
        let removed = is_method_override
            || is_path_override
            || is(&PATH_PREFIX_HEADERS)
            || is(&PROXY_CREDENTIAL_HEADERS);
        if removed && !remove.contains(name) {
            remove.push(name.clone());
        }
    }
    Ok(remove)
}

/// The query parameter Rails and Laravel read as the method; the override headers' names are
/// read as parameters too (compared as [`same_header_name`] compares).
const METHOD_PARAMETER: &str = "_method";

/// Refuses (`method_override`) a query parameter that asks for another method than `method`.
/// Parameters are split on `&` and `;` (both separate them in some servers) and their names
/// and values percent-decoded; a name without a value asks for no method, so it is refused.
pub fn check_query_overrides(method: &str, query: Option<&str>) -> Result<(), AuthError> {
    let pairs = query.into_iter().flat_map(|q| q.split(['&', ';']));
    for pair in pairs {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decoded(name);
        let overrides = std::iter::once(METHOD_PARAMETER).chain(METHOD_OVERRIDE_HEADERS);
        if overrides
            .into_iter()
            .any(|known| same_header_name(&name, known))
        {
            let what = format!("query parameter {}", printable_name(&name));
            check_override(method, &what, &percent_decoded(value))?;
        }
    }
    Ok(())
}

/// `%XX` decoded, `+` as a space (form encoding); undecodable bytes kept as sent. Borrowed
/// when there is nothing to decode (most parameter names).
fn percent_decoded(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..))
            .flatten()
            .and_then(crate::encoding::hex_byte);
        match escaped {
            Some(value) => {
                out.push(value);
                index += 3;
            }
            None => {
                out.push(if byte == b'+' { b' ' } else { byte });
                index += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The header must name `path` itself, as a path or an absolute URL (query ignored), once
/// normalised as `:path` is.
fn check_path_override(path: &str, name: &str, value: &str) -> Result<(), AuthError> {
    let value = value.trim();
    let without_origin = match value.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && !scheme.contains('/') => {
            rest.find('/').and_then(|at| rest.get(at..)).unwrap_or("/")
        }
        _ => value,
    };
    let named = normalize_path(without_origin).ok();
    if named.as_ref().is_some_and(|named| named.path == path) {
        return Ok(());
    }
    let shown = match &named {
        Some(named) => format!("names path {}", crate::error::echo_at_most(&named.path, 64)),
        None => "is not a path brickgate can read".to_string(),
    };
    Err(AuthError::new(
        Reason::PathOverride,
        format!(
            "header {} {shown}, not the request's own path {}; some upstreams route on it: \
             send the path itself",
            printable_name(name),
            crate::error::echo_at_most(path, 64)
        ),
    ))
}

/// Each value (repeated headers arrive joined with `,`) must name `method` itself; `what`
/// names the header or parameter that asks.
fn check_override(method: &str, what: &str, value: &str) -> Result<(), AuthError> {
    for named in value.split(',').map(str::trim) {
        if !named.eq_ignore_ascii_case(method) {
            return Err(AuthError::new(
                Reason::MethodOverride,
                format!(
                    "{what} asks for method {} on a {method} request; send the method itself",
                    printable_method(named)
                ),
            ));
        }
    }
    Ok(())
}

/// The client's header name, bounded (Envoy only passes token characters).
fn printable_name(name: &str) -> String {
    name.chars().take(40).collect()
}

/// The client's method, named only when it looks like one: messages echo nothing unbounded.
fn printable_method(named: &str) -> String {
    let looks_like_method =
        !named.is_empty() && named.len() <= 16 && named.bytes().all(|b| b.is_ascii_alphabetic());
    if looks_like_method {
        named.to_string()
    } else {
        "(not a method name)".to_string()
    }
}

#[cfg(test)]
mod tests;
