//! Strict parsing of a compact JWS (RFC 7515 §7.1): exactly three base64url segments, a JOSE
//! header with no extensions we do not implement, and a JSON object payload.

use serde_json::{Map, Value};

use crate::encoding::b64url_decode;
use crate::error::{AuthError, Reason, echo_at_most};
use crate::token::strict_json::parse_object_strict;

const MAX_KID_BYTES: usize = 256;
/// Room for a JSON parser's message, which may quote a string from the token.
const MAX_PARSER_MESSAGE_CHARS: usize = 160;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    /// As written; checked against the provider's allow-list later.
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UnverifiedJwt<'a> {
    pub header: JoseHeader,
    pub claims: Map<String, Value>,
    /// `base64url(header) . base64url(payload)`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

fn malformed(detail: impl Into<String>) -> AuthError {
    AuthError::new(Reason::MalformedToken, detail)
}

impl<'a> UnverifiedJwt<'a> {
    pub fn parse(token: &'a str) -> Result<UnverifiedJwt<'a>, AuthError> {
        // Count dots before splitting or decoding anything (CVE-2025-30204 class).
        let dots = token.bytes().filter(|b| *b == b'.').count();
        if dots != 2 {
            return Err(malformed(format!(
                "token has {} segments; a JWS has exactly 3 (encrypted tokens are not accepted)",
                dots + 1
            )));
        }
        let mut parts = token.split('.');
        let (header_b64, payload_b64, signature_b64) =
            match (parts.next(), parts.next(), parts.next()) {
                (Some(h), Some(p), Some(s)) => (h, p, s),
                _ => return Err(malformed("token does not have 3 segments")),
            };
        // An empty signature parses (`alg: none` is then refused by name, the others fail
        // signature verification); an empty header or payload cannot mean anything.
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(malformed("token has an empty header or payload"));
        }
        let decode = |segment: &str, what: &str| {
            b64url_decode(segment)
                .ok_or_else(|| malformed(format!("{what} is not strict base64url (no padding)")))
        };
        let header_bytes = decode(header_b64, "header")?;
        let payload_bytes = decode(payload_b64, "payload")?;
        let signature = decode(signature_b64, "signature")?;
        let header = parse_object_strict(&header_bytes).map_err(|e| {
            malformed(format!(
                "header is not a JSON object: {}",
                echo_at_most(&e, MAX_PARSER_MESSAGE_CHARS)
            ))
        })?;
        let claims = parse_object_strict(&payload_bytes).map_err(|e| {
            malformed(format!(
                "payload is not a JSON object: {}",
                echo_at_most(&e, MAX_PARSER_MESSAGE_CHARS)
            ))
        })?;
        let signing_input = token
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or_else(|| malformed("token does not have 3 segments"))?;
        Ok(UnverifiedJwt {
            header: parse_header(&header)?,
            claims,
            signing_input,
            signature,
        })
    }
}

fn parse_header(header: &Map<String, Value>) -> Result<JoseHeader, AuthError> {
    for refused in ["crit", "b64", "enc", "zip"] {
        if header.contains_key(refused) {
            return Err(AuthError::new(
                Reason::UnsupportedHeader,
                format!("JOSE header \"{refused}\" is not supported"),
            ));
        }
    }
    let text = |name: &str| -> Result<Option<String>, AuthError> {
        match header.get(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(_) => Err(malformed(format!("header \"{name}\" is not a string"))),
        }
    };
    if text("cty")?.is_some_and(|cty| cty.eq_ignore_ascii_case("JWT")) {
        return Err(AuthError::new(
            Reason::UnsupportedHeader,
            "nested JWTs (cty: JWT) are not accepted",
        ));
    }
    let alg = text("alg")?.ok_or_else(|| malformed("header has no \"alg\""))?;
    let kid = text("kid")?;
    if kid.as_ref().is_some_and(|kid| kid.len() > MAX_KID_BYTES) {
        return Err(malformed(format!("kid longer than {MAX_KID_BYTES} bytes")));
    }
    Ok(JoseHeader {
        alg,
        kid,
        typ: text("typ")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    #[test]
    fn parses_a_well_formed_token() {
        let text = token(
            r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"sub":"a"}"#,
        );
        let jwt = UnverifiedJwt::parse(&text).unwrap();
        assert_eq!(jwt.header.alg, "RS256");
        assert_eq!(jwt.header.kid.as_deref(), Some("k1"));
        assert_eq!(jwt.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(jwt.claims["sub"], "a");
        assert_eq!(jwt.signature, b"sig");
        assert_eq!(format!("{}.c2ln", jwt.signing_input), text);
    }

    #[test]
    fn refuses_malformed_and_unsupported_tokens() {
        let ok_header = r#"{"alg":"RS256"}"#;
        let cases: Vec<(String, Reason, &str)> = vec![
            ("a.b".into(), Reason::MalformedToken, "2 segments"),
            ("a.b.c.d.e".into(), Reason::MalformedToken, "5 segments"),
            (
                format!("{}..c2ln", b64(ok_header)),
                Reason::MalformedToken,
                "empty header or payload",
            ),
            (
                format!("{}=.{}.c2ln", b64(ok_header), b64("{}")),
                Reason::MalformedToken,
                "base64url",
            ),
            (
                format!("{}.{}.c2ln", b64(ok_header), "e30="),
                Reason::MalformedToken,
                "base64url",
            ),
            (
                format!("{}.{}.c2l=", b64(ok_header), b64("{}")),
                Reason::MalformedToken,
                "base64url",
            ),
            (
                token("[1]", "{}"),
                Reason::MalformedToken,
                "header is not a JSON object",
            ),
            (
                token(ok_header, "[]"),
                Reason::MalformedToken,
                "payload is not a JSON object",
            ),
            (
                token(ok_header, r#"{"aud":"a","aud":"b"}"#),
                Reason::MalformedToken,
                "duplicate key",
            ),
            (
                token(r#"{"alg":"RS256","alg":"none"}"#, "{}"),
                Reason::MalformedToken,
                "duplicate key",
            ),
            (
                token(r#"{"kid":"k"}"#, "{}"),
                Reason::MalformedToken,
                "no \"alg\"",
            ),
            (
                token(r#"{"alg":5}"#, "{}"),
                Reason::MalformedToken,
                "not a string",
            ),
            (
                token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}"),
                Reason::UnsupportedHeader,
                "crit",
            ),
            (
                token(r#"{"alg":"RS256","b64":false}"#, "{}"),
                Reason::UnsupportedHeader,
                "b64",
            ),
            (
                token(r#"{"alg":"RS256","enc":"A128GCM"}"#, "{}"),
                Reason::UnsupportedHeader,
                "enc",
            ),
            (
                token(r#"{"alg":"RS256","cty":"jwt"}"#, "{}"),
                Reason::UnsupportedHeader,
                "nested",
            ),
            (
                token(
                    &format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300)),
                    "{}",
                ),
                Reason::MalformedToken,
                "kid longer",
            ),
        ];
        for (text, reason, detail) in cases {
            let error = UnverifiedJwt::parse(&text).unwrap_err();
            assert_eq!(error.reason, reason, "{text}");
            assert!(error.detail.contains(detail), "{text}: {}", error.detail);
        }
    }

    #[test]
    fn parser_messages_repeat_token_strings_bounded() {
        let long = "x".repeat(10_000);
        let cases = [
            token(&format!(r#"{{"{long}":1,"{long}":2,"alg":"RS256"}}"#), "{}"),
            token(r#"{"alg":"RS256"}"#, &format!(r#""{long}""#)),
            token(&format!(r#""{long}""#), "{}"),
            token(r#"{"alg":"RS256"}"#, &format!("{{\"a\":\"é{long}")),
        ];
        for text in cases {
            let error = UnverifiedJwt::parse(&text).unwrap_err();
            assert_eq!(error.reason, Reason::MalformedToken);
            assert!(error.detail.len() < 250, "{} bytes", error.detail.len());
            assert!(error.detail.is_ascii(), "{}", error.detail);
        }
    }

    #[test]
    fn an_empty_signature_parses_so_alg_none_is_refused_by_name() {
        let text = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
        let jwt = UnverifiedJwt::parse(&text).unwrap();
        assert_eq!(jwt.header.alg, "none");
        assert!(jwt.signature.is_empty());
    }

    #[test]
    fn foreign_key_headers_are_parsed_but_never_used() {
        let text = token(
            r#"{"alg":"RS256","jku":"https://evil","jwk":{"kty":"RSA"},"x5u":"u","x5c":["x"]}"#,
            "{}",
        );
        let jwt = UnverifiedJwt::parse(&text).unwrap();
        assert_eq!(
            jwt.header,
            JoseHeader {
                alg: "RS256".into(),
                kid: None,
                typ: None
            }
        );
    }
}
