//! Request headers no upstream may act on, whatever rule admitted the request (anonymous ones
//! included): method overrides and proxy credentials.
//!
//! Method overrides (`X-HTTP-Method-Override: DELETE` on a `GET`) make many frameworks run
//! another method than the one brickgate authorised, so a `:read` scope would buy a write.
//! brickgate cannot know which upstream honours them: an override naming the request's own
//! method is harmless and only removed; one naming any other method is refused.
//!
//! `Proxy-Authorization` is hop-by-hop, meant for the proxy that consumes it (RFC 9110
//! §11.7.2); brickgate does not, and no upstream behind it should: removed. Next to a bearer
//! token it is refused as a second credential by token extraction, before this matters.

use crate::error::{AuthError, Reason};
use crate::header_name::same_header_name;

/// Method-override headers, as the common frameworks spell them (compared with case and
/// `_`/`-` folded).
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Credentials for a proxy, never for the upstream.
pub const PROXY_CREDENTIAL_HEADERS: [&str; 1] = ["proxy-authorization"];

/// The names of `headers` to remove before the request goes upstream, or a refusal
/// (`method_override`) when an override names a method other than `method`.
pub fn headers_to_remove(
    method: &str,
    headers: &[(String, String)],
) -> Result<Vec<String>, AuthError> {
    let mut remove: Vec<String> = Vec::new();
    for (name, value) in headers {
        let is_override = METHOD_OVERRIDE_HEADERS
            .iter()
            .any(|h| same_header_name(name, h));
        if is_override {
            check_override(method, name, value)?;
        }
        let is_proxy_credential = PROXY_CREDENTIAL_HEADERS
            .iter()
            .any(|h| same_header_name(name, h));
        if (is_override || is_proxy_credential) && !remove.contains(name) {
            remove.push(name.clone());
        }
    }
    Ok(remove)
}

/// Each value (repeated headers arrive joined with `,`) must name `method` itself.
fn check_override(method: &str, name: &str, value: &str) -> Result<(), AuthError> {
    for named in value.split(',').map(str::trim) {
        if !named.eq_ignore_ascii_case(method) {
            return Err(AuthError::new(
                Reason::MethodOverride,
                format!(
                    "header {} asks for method {} on a {method} request; send the method itself",
                    printable_name(name),
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
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hygiene_table() {
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            Result<&'a [&'a str], Reason>,
        );
        let cases: &[Case] = &[
            ("nothing to remove", "GET", &[("accept", "*/*")], Ok(&[])),
            (
                "override naming the request's method",
                "GET",
                &[("x-http-method-override", "GET")],
                Ok(&["x-http-method-override"]),
            ),
            (
                "same method, other case",
                "POST",
                &[("x-http-method", "post")],
                Ok(&["x-http-method"]),
            ),
            (
                "same method, repeated headers joined",
                "GET",
                &[("x-method-override", "GET, get")],
                Ok(&["x-method-override"]),
            ),
            (
                "underscore and mixed-case spellings",
                "GET",
                &[
                    ("X_HTTP_Method_Override", "GET"),
                    ("X-Http_Method", "GET"),
                    ("x_method_override", "GET"),
                ],
                Ok(&[
                    "X_HTTP_Method_Override",
                    "X-Http_Method",
                    "x_method_override",
                ]),
            ),
            (
                "override naming another method",
                "GET",
                &[("x-http-method-override", "DELETE")],
                Err(Reason::MethodOverride),
            ),
            (
                "x-http-method naming another method",
                "POST",
                &[("x-http-method", "PUT")],
                Err(Reason::MethodOverride),
            ),
            (
                "x-method-override naming another method",
                "GET",
                &[("x-method-override", "PATCH")],
                Err(Reason::MethodOverride),
            ),
            (
                "underscore spelling naming another method",
                "GET",
                &[("X_HTTP_METHOD_OVERRIDE", "POST")],
                Err(Reason::MethodOverride),
            ),
            (
                "one of two joined values differs",
                "GET",
                &[("x-http-method-override", "GET, DELETE")],
                Err(Reason::MethodOverride),
            ),
            (
                "second of two headers differs",
                "GET",
                &[
                    ("x-http-method", "GET"),
                    ("x-http-method-override", "DELETE"),
                ],
                Err(Reason::MethodOverride),
            ),
            (
                "empty override",
                "GET",
                &[("x-http-method-override", "")],
                Err(Reason::MethodOverride),
            ),
            (
                "proxy credentials removed",
                "GET",
                &[
                    ("proxy-authorization", "Basic dXNlcjpwdw=="),
                    ("Proxy_Authorization", "x"),
                ],
                Ok(&["proxy-authorization", "Proxy_Authorization"]),
            ),
            (
                "look-alikes that are other headers",
                "GET",
                &[
                    ("x-http-method-overrides", "DELETE"),
                    ("x-method", "DELETE"),
                ],
                Ok(&[]),
            ),
        ];
        for (name, method, request, expected) in cases {
            let got = headers_to_remove(method, &headers(request));
            match expected {
                Ok(removed) => assert_eq!(got.unwrap(), *removed, "{name}"),
                Err(reason) => assert_eq!(got.unwrap_err().reason, *reason, "{name}"),
            }
        }
    }

    #[test]
    fn refusal_names_header_and_method_but_echoes_nothing_unbounded() {
        let error = headers_to_remove("GET", &headers(&[("x-http-method-override", "DELETE")]))
            .unwrap_err();
        assert_eq!(
            error.detail,
            "header x-http-method-override asks for method DELETE on a GET request; send the method itself"
        );
        let long = "A".repeat(5000);
        let error = headers_to_remove("GET", &headers(&[("x-http-method", &long)])).unwrap_err();
        assert!(error.detail.len() < 200, "{}", error.detail);
        assert_eq!(error.to_response("r").status, 400);
    }
}
