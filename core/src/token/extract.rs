//! Extraction of the one credential a request may carry (RFC 6750 §2): strict syntax, a size
//! limit before any decoding, and two different tokens refused (token smuggling).

use crate::config::TokenSource;
use crate::error::{AuthError, Reason};

/// The credential found, and every place it was found (removed upstream when not forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub token: String,
    pub found_in: Vec<TokenSource>,
}

/// Looks in `sources` (the union of the route's providers' sources). `headers` are the
/// request headers with lower-case names; `query` is the raw query string.
pub fn extract_credential(
    headers: &[(String, String)],
    query: Option<&str>,
    sources: &[&TokenSource],
    max_bytes: usize,
) -> Result<Option<Credential>, AuthError> {
    let mut found: Option<Credential> = None;
    let mut foreign_scheme: Option<String> = None;
    for source in sources {
        let candidates: Vec<String> = match source {
            TokenSource::Header { name, prefix } => {
                let mut tokens = Vec::new();
                // Envoy joins repeated headers with ",", which no bearer token contains.
                let values = headers
                    .iter()
                    .filter(|(n, _)| n == name)
                    .flat_map(|(_, value)| value.split(','));
                for value in values {
                    let value = value.trim();
                    if value.is_empty() {
                        return Err(AuthError::new(
                            Reason::MalformedCredential,
                            format!("{name} header is empty"),
                        ));
                    }
                    let Some(prefix) = prefix else {
                        tokens.push(value.to_string());
                        continue;
                    };
                    match strip_prefix_ignore_case(value, prefix) {
                        Some(rest) => tokens.push(rest.trim_start().to_string()),
                        None if prefix.trim().eq_ignore_ascii_case(value) => {
                            return Err(AuthError::new(
                                Reason::MalformedCredential,
                                format!(
                                    "{name} header has the {} scheme but no token",
                                    prefix.trim()
                                ),
                            ));
                        }
                        None => {
                            let scheme = scheme_name(value);
                            foreign_scheme = Some(format!("{name} header uses {scheme}"));
                        }
                    }
                }
                tokens
            }
            TokenSource::Query { param } => query_values(query, param),
        };
        for token in candidates {
            check_syntax(&token, source, max_bytes)?;
            match &mut found {
                None => {
                    found = Some(Credential {
                        token,
                        found_in: vec![(*source).clone()],
                    })
                }
                Some(existing) if existing.token == token => {
                    if !existing.found_in.contains(source) {
                        existing.found_in.push((*source).clone());
                    }
                }
                Some(existing) => {
                    return Err(AuthError::new(
                        Reason::MultipleTokens,
                        format!(
                            "request carries two different tokens (in {} and {}); send exactly one",
                            describe(&existing.found_in),
                            describe(std::slice::from_ref(*source))
                        ),
                    ));
                }
            }
        }
    }
    if let (None, Some(scheme)) = (&found, foreign_scheme) {
        return Err(AuthError::new(
            Reason::MissingToken,
            format!("no bearer token: {scheme}; this route needs a Bearer access token"),
        ));
    }
    Ok(found)
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value.get(prefix.len()..))
        .flatten()
}

fn query_values(query: Option<&str>, param: &str) -> Vec<String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(name, _)| *name == param)
        .map(|(_, value)| {
            value
                .replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "=")
        })
        .collect()
}

/// RFC 6750 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Bytes allowed in an RFC 6750 b64token (before any trailing `=`), as a table: this runs
/// over every byte of every token.
// Evaluated at compile time, where an out-of-range index is a build error, not a panic.
#[allow(clippy::indexing_slicing)]
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte: u8 = 0;
    loop {
        table[byte as usize] =
            byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        if byte == u8::MAX {
            break table;
        }
        byte += 1;
    }
};

fn is_b64token_byte(b: u8) -> bool {
    B64TOKEN.get(usize::from(b)).copied().unwrap_or(false)
}

fn check_syntax(token: &str, source: &TokenSource, max_bytes: usize) -> Result<(), AuthError> {
    let place = || describe(std::slice::from_ref(source));
    if token.len() > max_bytes {
        return Err(AuthError::new(
            Reason::TokenTooLarge,
            format!(
                "token in {} is {} bytes; the limit is {max_bytes}",
                place(),
                token.len()
            ),
        ));
    }
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty() && body.bytes().all(is_b64token_byte);
    if !valid {
        let problem = if token.is_empty() {
            "is empty"
        } else if token.contains(' ') {
            "has extra words after the token"
        } else {
            "contains characters a bearer token cannot have"
        };
        return Err(AuthError::new(
            Reason::MalformedCredential,
            format!("credential in {} {problem}", place()),
        ));
    }
    Ok(())
}

fn describe(sources: &[TokenSource]) -> String {
    match sources.first() {
        Some(TokenSource::Header { name, .. }) => format!("header {name}"),
        Some(TokenSource::Query { param }) => format!("query parameter {param}"),
        None => "request".to_string(),
    }
}

/// The scheme of a non-bearer credential, named only when it looks like one: a header that
/// holds a bare token (`Authorization: eyJ…`) must not have it repeated in the refusal.
fn scheme_name(value: &str) -> String {
    let word = value.split(' ').next().unwrap_or_default();
    let plausible = (1..=20).contains(&word.len())
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if plausible {
        format!("scheme {word:?}")
    } else {
        "no recognisable scheme".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: Some("Bearer ".into()),
        }
    }

    fn query() -> TokenSource {
        TokenSource::Query {
            param: "access_token".into(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_bare_token_is_not_repeated_as_its_scheme() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
        let cases = [
            (
                "Basic dXNlcjpwdw==",
                "authorization header uses scheme \"Basic\"",
            ),
            (token, "authorization header uses no recognisable scheme"),
            ("Digest-x", "authorization header uses scheme \"Digest-x\""),
        ];
        for (value, expected) in cases {
            let error = extract_credential(
                &headers(&[("authorization", value)]),
                None,
                &[&bearer()],
                4096,
            )
            .unwrap_err();
            assert_eq!(error.reason, Reason::MissingToken);
            assert!(error.detail.contains(expected), "{}", error.detail);
            assert!(!error.detail.contains("eyJ"), "{}", error.detail);
        }
    }

    #[test]
    fn extraction_table() {
        let (b, q) = (bearer(), query());
        let both = [&b, &q];
        type Case<'a> = (
            &'a str,
            Vec<(String, String)>,
            Option<&'a str>,
            Result<Option<&'a str>, Reason>,
        );
        let cases: Vec<Case> = vec![
            ("none", headers(&[]), None, Ok(None)),
            (
                "bearer",
                headers(&[("authorization", "Bearer abc.def.ghi")]),
                None,
                Ok(Some("abc.def.ghi")),
            ),
            (
                "case-insensitive scheme",
                headers(&[("authorization", "bearer abc")]),
                None,
                Ok(Some("abc")),
            ),
            (
                "padding allowed",
                headers(&[("authorization", "Bearer abc==")]),
                None,
                Ok(Some("abc==")),
            ),
            (
                "query",
                headers(&[]),
                Some("a=1&access_token=abc"),
                Ok(Some("abc")),
            ),
            (
                "same token twice",
                headers(&[("authorization", "Bearer abc")]),
                Some("access_token=abc"),
                Ok(Some("abc")),
            ),
            (
                "two tokens",
                headers(&[("authorization", "Bearer abc")]),
                Some("access_token=xyz"),
                Err(Reason::MultipleTokens),
            ),
            (
                "two headers",
                headers(&[
                    ("authorization", "Bearer abc"),
                    ("authorization", "Bearer xyz"),
                ]),
                None,
                Err(Reason::MultipleTokens),
            ),
            (
                "extra words",
                headers(&[("authorization", "Bearer abc def")]),
                None,
                Err(Reason::MalformedCredential),
            ),
            (
                "scheme only",
                headers(&[("authorization", "Bearer")]),
                None,
                Err(Reason::MalformedCredential),
            ),
            (
                "bad characters",
                headers(&[("authorization", "Bearer abc\"def")]),
                None,
                Err(Reason::MalformedCredential),
            ),
            (
                "empty query token",
                headers(&[]),
                Some("access_token="),
                Err(Reason::MalformedCredential),
            ),
            (
                "basic",
                headers(&[("authorization", "Basic dXNlcjpwdw==")]),
                None,
                Err(Reason::MissingToken),
            ),
            (
                "too large",
                headers(&[("authorization", &format!("Bearer {}", "a".repeat(65)))]),
                None,
                Err(Reason::TokenTooLarge),
            ),
            (
                "other header ignored",
                headers(&[("x-token", "Bearer abc")]),
                None,
                Ok(None),
            ),
        ];
        for (name, headers, query, expected) in cases {
            let got = extract_credential(&headers, query, &both, 64);
            match expected {
                Ok(token) => assert_eq!(
                    got.unwrap().map(|c| c.token),
                    token.map(String::from),
                    "{name}"
                ),
                Err(reason) => assert_eq!(got.unwrap_err().reason, reason, "{name}"),
            }
        }
    }

    #[test]
    fn query_sources_are_ignored_unless_configured() {
        let got = extract_credential(&[], Some("access_token=abc"), &[&bearer()], 64).unwrap();
        assert_eq!(got, None);
    }

    #[test]
    fn messages_never_echo_the_token() {
        let hs = headers(&[
            ("authorization", "Bearer secret.token.value"),
            ("authorization", "Bearer other.token.value"),
        ]);
        let error = extract_credential(&hs, None, &[&bearer()], 64).unwrap_err();
        assert!(!error.detail.contains("secret") && !error.detail.contains("other"));
    }

    #[test]
    fn found_in_lists_every_place() {
        let got = extract_credential(
            &headers(&[("authorization", "Bearer abc")]),
            Some("access_token=abc"),
            &[&bearer(), &query()],
            64,
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.found_in, vec![bearer(), query()]);
    }
}
