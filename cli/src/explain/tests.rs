use brickgate_core::config::Config;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Replayed, replay, request_headers};
use crate::Outcome;
use crate::transcript::Transcript;

const NOW: u64 = 1_800_000_000;
const KEY: &[u8] = b"explain-test-hmac-secret-32-bytes!";

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// HMAC-SHA256 (RFC 2104), for a key shorter than the block.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn token() -> String {
    let header = b64url(br#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#);
    let claims = json!({"iss": "https://q.test", "aud": "api", "sub": "alice", "iat": NOW, "exp": NOW + 600});
    let signed = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let signature = b64url(&hmac_sha256(KEY, signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// A provider that reads tokens from the query only, so `explain` places the token there.
fn query_token_config() -> Config {
    let config = json!({
        "realm": "r",
        "allow_inline_secrets": true,
        "providers": {"q": {
            "issuer": "https://q.test",
            "audiences": ["api"],
            "algorithms": ["HS256"],
            "jwks": {"inline": {"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": b64url(KEY)}]}},
            "token_sources": [{"query": "access_token"}]
        }},
        "rules": [{"name": "all", "match": {"template": "/**"}, "providers": ["q"]}]
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

/// The token rides in the query, and a path the plugin rewrites (`//`, `%73`, `%7E`) used to be
/// printed whole, token included (`path becomes …`). Nothing printed holds it now, nor a token
/// the user wrote into PATH.
#[test]
fn no_line_holds_a_token_from_the_query() {
    let token = token();
    let other = "eyJvdGhlciJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl";
    // (PATH as given, the rewritten path printed)
    let cases = [
        ("/a//b", "/a/b?access_token=[redacted]"),
        (
            "/api/2.0/clusters/li%73t",
            "/api/2.0/clusters/list?access_token=[redacted]",
        ),
        ("/a/%7Eb?x=1", "/a/~b?x=1&access_token=[redacted]"),
    ];
    for (path, printed) in cases {
        let out = Transcript::kept(&query_token_config(), &token);
        let outcome = replay(query_token_config(), &out, get(path, &[]));
        assert!(matches!(outcome, Ok(Outcome::Allowed)), "{path}");
        let lines = out.lines();
        assert!(
            lines
                .iter()
                .any(|l| l == &format!("  path becomes {printed}")),
            "{path}: {lines:#?}"
        );
        for line in &lines {
            assert!(!line.contains(&token), "{path}: {line}");
        }
    }
    let given = format!("/a//b?access_token={other}");
    let out = Transcript::kept(&query_token_config(), &token);
    let _ = replay(query_token_config(), &out, get(&given, &[]));
    let lines = out.lines();
    assert!(lines.len() > 3, "{lines:#?}");
    for line in &lines {
        assert!(!line.contains(&token) && !line.contains(other), "{line}");
    }
}

fn get<'a>(path: &'a str, extra_headers: &'a [(String, String)]) -> Replayed<'a> {
    Replayed {
        method: "GET",
        path,
        extra_headers,
        body: None,
        now_s: NOW,
    }
}

#[test]
fn headers_are_name_value_pairs() {
    let given = [
        "Origin: https://a.example".to_string(),
        "x-forwarded-for:10.0.0.1, 10.0.0.2".to_string(),
    ];
    assert_eq!(
        request_headers(&given).unwrap(),
        [
            ("origin".to_string(), "https://a.example".to_string()),
            (
                "x-forwarded-for".to_string(),
                "10.0.0.1, 10.0.0.2".to_string()
            )
        ]
    );
    for bad in ["no-colon", ": value", ""] {
        assert!(request_headers(&[bad.to_string()]).is_err(), "{bad:?}");
    }
}

/// A second credential given with --header reaches the engine: the plugin refuses a request
/// carrying two, and so does the replay.
#[test]
fn a_header_given_reaches_the_decision() {
    let token = token();
    let second = [(
        "authorization".to_string(),
        "Bearer other.jwt.value".to_string(),
    )];
    let out = Transcript::kept(&query_token_config(), &token);
    let alone = replay(
        query_token_config(),
        &out,
        get("/api/2.0/clusters/list", &[]),
    );
    assert!(matches!(alone, Ok(Outcome::Allowed)));
    let out = Transcript::kept(&query_token_config(), &token);
    let both = replay(
        query_token_config(),
        &out,
        get("/api/2.0/clusters/list", &second),
    );
    assert!(matches!(both, Ok(Outcome::Refused)), "{:#?}", out.lines());
}
