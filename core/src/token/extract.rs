//! Extraction of the one credential a request may carry (RFC 6750 §2): strict syntax, a size
//! limit before any decoding, and any second credential refused (token smuggling): a different
//! bearer token, or a credential of any other scheme next to the bearer token, since the
//! upstream may authenticate with the one brickgate did not verify.

use std::borrow::Cow;

use crate::error::{AuthError, Reason};
use crate::header_name::same_header_name;

/// Headers that carry a credential whether or not a provider reads its tokens there: a value
/// in them next to a bearer token is a second credential.
const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "proxy-authorization"];

/// Where a provider's tokens are read (configuration `token_sources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header (lower-case name), with an optional case-insensitive prefix.
    Header {
        name: String,
        prefix: Option<String>,
    },
    /// A query parameter: opt-in only, since URLs end up in access logs.
    Query { param: String },
}

/// The credential found, and every place it was found (removed upstream when not forwarded).
/// Borrowed from the request and the configuration: extracting costs no copy of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential<'a> {
    pub token: Cow<'a, str>,
    pub found_in: Vec<&'a TokenSource>,
}

/// A token read from one place, and whether its syntax is already known to be valid.
struct Candidate<'a> {
    token: Cow<'a, str>,
    syntax_checked: bool,
}

/// Looks in `sources` (the union of the route's providers' sources). `headers` are the
/// request headers with lower-case names; `query` is the raw query string.
///
/// Refuses with `multiple_tokens` two different bearer tokens, and a bearer token next to any
/// other credential: another scheme in a token header (`Bearer a, Basic b`, one header or two),
/// `Authorization` or `Proxy-Authorization` that no source reads, or a token header spelled
/// differently (`X_Api_Token` for `x-api-token`), which some upstreams read as the same.
pub fn extract_credential<'a>(
    headers: &'a [(String, String)],
    query: Option<&'a str>,
    sources: &[&'a TokenSource],
    max_bytes: usize,
) -> Result<Option<Credential<'a>>, AuthError> {
    let mut found: Option<Credential<'a>> = None;
    // Where a credential that is not a bearer token was seen, for the message.
    let mut foreign_scheme: Option<String> = None;
    for &source in sources {
        let candidates: Vec<Candidate<'a>> = match source {
            TokenSource::Header { name, prefix } => {
                header_tokens(headers, name, prefix.as_deref(), &mut foreign_scheme)?
            }
            TokenSource::Query { param } => query_values(query, param),
        };
        for Candidate {
            token,
            syntax_checked,
        } in candidates
        {
            check_length(&token, source, max_bytes)?;
            if !syntax_checked {
                check_syntax(&token, source)?;
            }
            match &mut found {
                None => {
                    found = Some(Credential {
                        token,
                        found_in: vec![source],
                    })
                }
                Some(existing) if existing.token == token => {
                    if !existing.found_in.contains(&source) {
                        existing.found_in.push(source);
                    }
                }
                Some(existing) => {
                    return Err(AuthError::new(
                        Reason::MultipleTokens,
                        format!(
                            "request carries two different tokens (in {} and {}); send exactly one",
                            describe(&existing.found_in),
                            describe(&[source])
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
fn header_tokens<'a>(
    headers: &'a [(String, String)],
    name: &str,
    prefix: Option<&str>,
    foreign_scheme: &mut Option<String>,
) -> Result<Vec<Candidate<'a>>, AuthError> {
    let mut tokens = Vec::new();
    for (_, value) in headers.iter().filter(|(n, _)| n == name) {
        // The common case, one well-formed token, in one pass over its bytes: a b64token has
        // no `,` nor whitespace, so splitting the value would yield exactly this token.
        if let Some(token) = lone_token(value, prefix) {
            tokens.push(Candidate {
                token: Cow::Borrowed(token),
                syntax_checked: true,
            });
            continue;
        }
        header_value_tokens(value, name, prefix, foreign_scheme, &mut tokens)?;
    }
    Ok(tokens)
}

/// The token of a header value that is exactly `[prefix] b64token`, if it is.
fn lone_token<'a>(value: &'a str, prefix: Option<&str>) -> Option<&'a str> {
    let value = value.trim();
    let token = match prefix {
        Some(prefix) => strip_prefix_ignore_case(value, prefix)?.trim_start(),
        None => value,
    };
    is_b64token(token).then_some(token)
}

/// Every token of one header value (a list, in general), for the general case and its errors.
fn header_value_tokens<'a>(
    value: &'a str,
    name: &str,
    prefix: Option<&str>,
    foreign_scheme: &mut Option<String>,
    tokens: &mut Vec<Candidate<'a>>,
) -> Result<(), AuthError> {
    let unchecked = |token: &'a str| Candidate {
        token: Cow::Borrowed(token),
        syntax_checked: false,
    };
    for value in value.split(',') {
        let value = value.trim();
        if value.is_empty() {
            return Err(AuthError::new(
                Reason::MalformedCredential,
                format!("{name} header is empty"),
            ));
        }
        let Some(prefix) = prefix else {
            tokens.push(unchecked(value));
            continue;
        };
        match strip_prefix_ignore_case(value, prefix) {
            Some(rest) => tokens.push(unchecked(rest.trim_start())),
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
    Ok(())
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
    headers
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| {
            !read_exactly(name)
                && CREDENTIAL_HEADERS
                    .into_iter()
                    .chain(source_names.clone())
                    .any(|c| same_header_name(name, c))
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

fn query_values<'a>(query: Option<&'a str>, param: &str) -> Vec<Candidate<'a>> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(name, _)| *name == param)
        .map(|(_, value)| {
            let token = if value.contains('%') {
                Cow::Owned(
                    value
                        .replace("%2B", "+")
                        .replace("%2F", "/")
                        .replace("%3D", "="),
                )
            } else {
                Cow::Borrowed(value)
            };
            Candidate {
                token,
                syntax_checked: false,
            }
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

/// `1*b64token-byte *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=').as_bytes();
    let mut words = body.chunks_exact(8);
    let words_valid = words.by_ref().all(|chunk| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        b64token_word(u64::from_le_bytes(word))
    });
    !body.is_empty() && words_valid && words.remainder().iter().all(|b| is_b64token_byte(*b))
}

/// Whether all eight bytes of `word` are b64token bytes, without a branch per byte (inside
/// wasm a table lookup per byte of a 1 KB token costs about a microsecond). Per byte `x` below
/// 0x80: `(x | 0x80) - m` keeps its top bit exactly when `x >= m`, and `(n | 0x80) - x` when
/// `x <= n`; neither borrows from the next byte. A test checks every byte value against the
/// table.
fn b64token_word(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const TOPS: u64 = 0x8080_8080_8080_8080;
    if word & TOPS != 0 {
        return false;
    }
    let at_least = |m: u8| ((word | TOPS).wrapping_sub(ONES * u64::from(m))) & TOPS;
    let at_most = |n: u8| ((ONES * u64::from(n | 0x80)).wrapping_sub(word)) & TOPS;
    let within = |m: u8, n: u8| at_least(m) & at_most(n);
    let valid = within(b'A', b'Z')
        | within(b'a', b'z')
        | within(b'-', b'9') // - . / 0-9
        | within(b'+', b'+')
        | within(b'_', b'_')
        | within(b'~', b'~');
    valid == TOPS
}

fn check_length(token: &str, source: &TokenSource, max_bytes: usize) -> Result<(), AuthError> {
    if token.len() > max_bytes {
        return Err(AuthError::new(
            Reason::TokenTooLarge,
            format!(
                "token in {} is {} bytes; the limit is {max_bytes}",
                describe(&[source]),
                token.len()
            ),
        ));
    }
    Ok(())
}

fn check_syntax(token: &str, source: &TokenSource) -> Result<(), AuthError> {
    let place = || describe(&[source]);
    if !is_b64token(token) {
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

fn describe(sources: &[&TokenSource]) -> String {
    match sources.first() {
        Some(TokenSource::Header { name, .. }) => format!("header {name}"),
        Some(TokenSource::Query { param }) => format!("query parameter {param}"),
        None => "request".to_string(),
    }
}

#[cfg(test)]
mod tests;
