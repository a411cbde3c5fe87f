//! Extraction of the one credential a request may carry (RFC 6750 §2): strict syntax, a size
//! limit before any decoding, and any second credential refused (token smuggling): a different
//! bearer token, or a credential of any other scheme next to the bearer token, since the
//! upstream may authenticate with the one brickgate did not verify.

use crate::config::TokenSource;
use crate::error::{AuthError, Reason};
use crate::header_name::same_header_name;

/// Headers that carry a credential whether or not a provider reads its tokens there: a value
/// in them next to a bearer token is a second credential.
const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

/// The credential found, and every place it was found (removed upstream when not forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub token: String,
    pub found_in: Vec<TokenSource>,
}

/// Looks in `sources` (the union of the route's providers' sources). `headers` are the
/// request headers with lower-case names; `query` is the raw query string.
///
/// Refuses with `multiple_tokens` two different bearer tokens, and a bearer token next to any
/// other credential: another scheme in a token header (`Bearer a, Basic b`, one header or two),
/// `Authorization` or `Proxy-Authorization` that no source reads, or a token header spelled
/// differently (`X_Api_Token` for `x-api-token`), which some upstreams read as the same.
pub fn extract_credential(
    headers: &[(String, String)],
    query: Option<&str>,
    sources: &[&TokenSource],
    max_bytes: usize,
) -> Result<Option<Credential>, AuthError> {
    let mut found: Option<Credential> = None;
    // Where a credential that is not a bearer token was seen, for the message.
    let mut foreign_scheme: Option<String> = None;
    for source in sources {
        let candidates: Vec<String> = match source {
            TokenSource::Header { name, prefix } => {
                header_tokens(headers, name, prefix.as_deref(), &mut foreign_scheme)?
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
    let other = foreign_scheme.or_else(|| unread_credential_header(headers, sources));
    match (found, other) {
        (Some(credential), Some(other)) => Err(AuthError::new(
            Reason::MultipleTokens,
            format!(
                "request carries a bearer token (in {}) and another credential ({other}); send exactly one",
                describe(&credential.found_in)
            ),
        )),
        (None, Some(other)) => Err(AuthError::new(
            Reason::MissingToken,
            format!("no bearer token: {other}; this route needs a Bearer access token"),
        )),
        (found, None) => Ok(found),
    }
}

/// The tokens in every `name` header. Envoy joins repeated headers with ",", which no bearer
/// token contains: each part is a credential of its own. A part with another scheme is noted
/// in `foreign_scheme`.
fn header_tokens(
    headers: &[(String, String)],
    name: &str,
    prefix: Option<&str>,
    foreign_scheme: &mut Option<String>,
) -> Result<Vec<String>, AuthError> {
    let mut tokens = Vec::new();
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
                foreign_scheme.get_or_insert_with(|| {
                    format!("{name} header uses {}", describe_scheme(value))
                });
            }
        }
    }
    Ok(tokens)
}

/// A credential header no source reads exactly as sent: `Authorization` or
/// `Proxy-Authorization` when no source names it, or any spelling of a credential header
/// other than the one a source reads (`X_Api_Token`, `Authorization_`…).
fn unread_credential_header(
    headers: &[(String, String)],
    sources: &[&TokenSource],
) -> Option<String> {
    let read_exactly = |name: &str| {
        sources
            .iter()
            .any(|s| matches!(s, TokenSource::Header { name: n, .. } if n == name))
    };
    let source_names = sources.iter().filter_map(|s| match s {
        TokenSource::Header { name, .. } => Some(name.as_str()),
        TokenSource::Query { .. } => None,
    });
    let credential_headers: Vec<&str> =
        CREDENTIAL_HEADERS.into_iter().chain(source_names).collect();
    headers
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| {
            !read_exactly(name) && credential_headers.iter().any(|c| same_header_name(name, c))
        })
        .map(|name| format!("header {}", name.chars().take(40).collect::<String>()))
}

/// Names the scheme of a credential only when it is one (`Basic dXNl…` → `scheme "Basic"`):
/// a bare value may be a secret, and messages never echo one.
fn describe_scheme(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme.len() <= 20
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            format!("scheme {scheme:?}")
        }
        _ => "a value that is not a Bearer credential".to_string(),
    }
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

#[cfg(test)]
mod tests;
