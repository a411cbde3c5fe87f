//! Table-driven extraction: every place a credential can hide, alone and in pairs.

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

/// A custom header carrying the bare token (no scheme).
fn custom() -> TokenSource {
    TokenSource::Header {
        name: "x-api-token".into(),
        prefix: None,
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

type Case<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
    Result<Option<&'a str>, Reason>,
);

fn run(cases: &[Case], sources: &[&TokenSource]) {
    for (name, request, query, expected) in cases {
        let request = headers(request);
        let got = extract_credential(&request, *query, sources, 64);
        match expected {
            Ok(token) => assert_eq!(
                got.map(|c| c.map(|c| c.token.into_owned())),
                Ok(token.map(String::from)),
                "{name}"
            ),
            Err(reason) => assert_eq!(got.map_err(|e| e.reason), Err(*reason), "{name}"),
        }
    }
}

const BASIC: &str = "Basic dXNlcjpwdw==";

#[test]
fn one_credential() {
    let too_large = format!("Bearer {}", "a".repeat(65));
    let cases: &[Case] = &[
        ("none", &[], None, Ok(None)),
        (
            "bearer",
            &[("authorization", "Bearer abc.def.ghi")],
            None,
            Ok(Some("abc.def.ghi")),
        ),
        (
            "case-insensitive scheme",
            &[("authorization", "bearer abc")],
            None,
            Ok(Some("abc")),
        ),
        (
            "padding allowed",
            &[("authorization", "Bearer abc==")],
            None,
            Ok(Some("abc==")),
        ),
        ("query", &[], Some("a=1&access_token=abc"), Ok(Some("abc"))),
        (
            "custom header",
            &[("x-api-token", "abc")],
            None,
            Ok(Some("abc")),
        ),
        (
            "same token in header and query",
            &[("authorization", "Bearer abc")],
            Some("access_token=abc"),
            Ok(Some("abc")),
        ),
        (
            "same token in two headers",
            &[
                ("authorization", "Bearer abc"),
                ("authorization", "Bearer abc"),
            ],
            None,
            Ok(Some("abc")),
        ),
        (
            "same token in bearer and custom header",
            &[("authorization", "Bearer abc"), ("x-api-token", "abc")],
            None,
            Ok(Some("abc")),
        ),
        (
            "extra words",
            &[("authorization", "Bearer abc def")],
            None,
            Err(Reason::MalformedCredential),
        ),
        (
            "scheme only",
            &[("authorization", "Bearer")],
            None,
            Err(Reason::MalformedCredential),
        ),
        (
            "empty part in a joined header",
            &[("authorization", "Bearer abc,")],
            None,
            Err(Reason::MalformedCredential),
        ),
        (
            "bad characters",
            &[("authorization", "Bearer abc\"def")],
            None,
            Err(Reason::MalformedCredential),
        ),
        (
            "empty query token",
            &[],
            Some("access_token="),
            Err(Reason::MalformedCredential),
        ),
        (
            "too large",
            &[("authorization", too_large.as_str())],
            None,
            Err(Reason::TokenTooLarge),
        ),
        (
            "unrelated header ignored",
            &[("x-token", "Bearer abc")],
            None,
            Ok(None),
        ),
    ];
    run(cases, &[&bearer(), &query(), &custom()]);
}

#[test]
fn credentials_without_a_bearer_token_are_missing_token() {
    let cases: &[Case] = &[
        (
            "basic",
            &[("authorization", BASIC)],
            None,
            Err(Reason::MissingToken),
        ),
        (
            "digest",
            &[("authorization", "Digest username=\"u\"")],
            None,
            Err(Reason::MissingToken),
        ),
        (
            "proxy-authorization only",
            &[("proxy-authorization", BASIC)],
            None,
            Err(Reason::MissingToken),
        ),
        (
            "underscore spelling of a token header only",
            &[("x_api_token", "abc")],
            None,
            Err(Reason::MissingToken),
        ),
    ];
    run(cases, &[&bearer(), &query(), &custom()]);
}

#[test]
fn any_second_credential_is_multiple_tokens() {
    let cases: &[Case] = &[
        (
            "two bearer headers",
            &[
                ("authorization", "Bearer abc"),
                ("authorization", "Bearer xyz"),
            ],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "two bearer tokens joined in one header",
            &[("authorization", "Bearer abc, Bearer xyz")],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer then basic, one header (Envoy's join)",
            &[("authorization", "Bearer abc, Basic dXNlcjpwdw==")],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "basic then bearer, one header",
            &[("authorization", "Basic dXNlcjpwdw==, Bearer abc")],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and basic, two headers",
            &[("authorization", "Bearer abc"), ("authorization", BASIC)],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "basic header before the bearer header",
            &[("authorization", BASIC), ("authorization", "Bearer abc")],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and a bare value",
            &[("authorization", "Bearer abc, dXNlcjpwdw")],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and digest",
            &[
                ("authorization", "Bearer abc"),
                ("authorization", "Digest u=1"),
            ],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and another token in the query",
            &[("authorization", "Bearer abc")],
            Some("access_token=xyz"),
            Err(Reason::MultipleTokens),
        ),
        (
            "two query tokens",
            &[],
            Some("access_token=abc&access_token=xyz"),
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and another token in a custom header",
            &[("authorization", "Bearer abc"), ("x-api-token", "xyz")],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "custom header and basic authorization",
            &[("x-api-token", "abc"), ("authorization", BASIC)],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "custom header and query differ",
            &[("x-api-token", "abc")],
            Some("access_token=xyz"),
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and proxy-authorization",
            &[
                ("authorization", "Bearer abc"),
                ("proxy-authorization", BASIC),
            ],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and proxy-authorization with the same token",
            &[
                ("authorization", "Bearer abc"),
                ("proxy-authorization", "Bearer abc"),
            ],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "query token and proxy-authorization",
            &[("proxy-authorization", BASIC)],
            Some("access_token=abc"),
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and an underscore spelling of authorization",
            &[("authorization", "Bearer abc"), ("Authorization_", BASIC)],
            None,
            Ok(Some("abc")),
        ),
        (
            "bearer and a mixed-case authorization",
            &[("authorization", "Bearer abc"), ("Authorization", BASIC)],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and an underscore spelling of the custom header",
            &[("authorization", "Bearer abc"), ("X_Api_Token", "xyz")],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "bearer and underscore proxy_authorization",
            &[
                ("authorization", "Bearer abc"),
                ("Proxy_Authorization", BASIC),
            ],
            None,
            Err(Reason::MultipleTokens),
        ),
    ];
    run(cases, &[&bearer(), &query(), &custom()]);
}

#[test]
fn authorization_counts_even_when_no_source_reads_it() {
    let cases: &[Case] = &[
        (
            "custom header alone",
            &[("x-api-token", "abc")],
            None,
            Ok(Some("abc")),
        ),
        (
            "custom header and authorization bearer, same token",
            &[("x-api-token", "abc"), ("authorization", "Bearer abc")],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "custom header and basic",
            &[("x-api-token", "abc"), ("authorization", BASIC)],
            None,
            Err(Reason::MultipleTokens),
        ),
        (
            "authorization alone",
            &[("authorization", "Bearer abc")],
            None,
            Err(Reason::MissingToken),
        ),
    ];
    run(cases, &[&custom()]);
}

#[test]
fn query_sources_are_ignored_unless_configured() {
    let bearer = bearer();
    let got = extract_credential(&[], Some("access_token=abc"), &[&bearer], 64).unwrap();
    assert_eq!(got, None);
}

#[test]
fn messages_never_echo_a_credential() {
    let cases: &[&[(&str, &str)]] = &[
        &[
            ("authorization", "Bearer s3cr3t.t0ken.value"),
            ("authorization", "Bearer 0th3r.t0ken.value"),
        ],
        &[(
            "authorization",
            "Bearer s3cr3t.t0ken.value, 0th3rs3cr3tvalue",
        )],
        &[(
            "authorization",
            "Bearer s3cr3t.t0ken.value, Basic b3RoZXJzZWNyZXQ=",
        )],
        &[("authorization", "0th3rs3cr3tvalue")],
        &[
            ("authorization", "Bearer s3cr3t.t0ken.value"),
            ("proxy-authorization", "Basic b3RoZXJzZWNyZXQ="),
        ],
    ];
    for request in cases {
        let error = extract_credential(&headers(request), None, &[&bearer()], 64).unwrap_err();
        for secret in ["s3cr3t", "0th3r", "b3RoZXJzZWNyZXQ"] {
            assert!(!error.detail.contains(secret), "{}", error.detail);
        }
    }
}

#[test]
fn second_credential_message_names_both_places() {
    let request = headers(&[("authorization", "Bearer abc, Basic dXNlcjpwdw==")]);
    let error = extract_credential(&request, None, &[&bearer()], 64).unwrap_err();
    assert_eq!(
        error.detail,
        "request carries a bearer token (in header authorization) and another credential \
         (authorization header uses scheme \"Basic\"); send exactly one"
    );
}

#[test]
fn found_in_lists_every_place() {
    let (request, bearer, query) = (
        headers(&[("authorization", "Bearer abc")]),
        bearer(),
        query(),
    );
    let got = extract_credential(&request, Some("access_token=abc"), &[&bearer, &query], 64)
        .unwrap()
        .unwrap();
    assert_eq!(got.found_in, vec![&bearer, &query]);
}

/// The word-at-a-time check agrees with the byte table for every byte value in every
/// position, and for tokens of every length around a word boundary.
#[test]
fn the_word_check_agrees_with_the_byte_table() {
    for byte in 0..=255u8 {
        for position in 0..8 {
            let mut word = *b"abcdefgh";
            word[position] = byte;
            assert_eq!(
                super::b64token_word(u64::from_le_bytes(word)),
                super::is_b64token_byte(byte),
                "byte {byte:#04x} at {position}"
            );
        }
    }
    for len in 1..20 {
        let good = "aZ09-._~+/".repeat(2)[..len].to_string();
        assert!(super::is_b64token(&good), "{good}");
        assert!(super::is_b64token(&format!("{good}==")));
        for bad in [",", " ", "=", "%", "\u{e9}"] {
            let mut text = good.clone();
            text.insert_str(len / 2, bad);
            assert!(!super::is_b64token(&text), "{text:?}");
        }
    }
    assert!(!super::is_b64token(""));
    assert!(!super::is_b64token("=="));
}
