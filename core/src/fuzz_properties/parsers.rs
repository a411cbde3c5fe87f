//! Properties of the parsers that read hostile input: what a parse that succeeds guarantees,
//! and what a refusal never says.

use serde_json::Value;

use super::Input;
use super::vectors;
use crate::alg::{Alg, KeyFamily};
use crate::config::{Config, TokenSource};
use crate::databricks::exchange::{TokenEndpoint, parse_token_response};
use crate::databricks::serving::model_from_body;
use crate::encoding::b64url_decode;
use crate::engine::{Engine, Request};
use crate::error::{AuthError, Reason};
use crate::header_map::{self, MapError};
use crate::header_name::same_header_name;
use crate::jwks::{
    FetchLocation, JwksStore, KeyMaterial, KeyOrigin, jwks_location_from, parse_jwks,
};
use crate::policy::normalize_path;
use crate::token::{UnverifiedJwt, extract_credential};
use crate::verify::{InWasmVerifier, SignatureVerifier, verify_for_provider};

/// Words of at least this many characters from a credential never appear in a refusal.
const SECRET_WORD_CHARS: usize = 24;

fn assert_no_secret_words(detail: &str, values: &[&str], names: &[&str]) {
    for value in values {
        for word in value.split([' ', ',', '=', '&']) {
            let word = word.trim();
            // A word that is also part of a header name may be echoed as the name.
            if word.len() >= SECRET_WORD_CHARS && !names.iter().any(|name| name.contains(word)) {
                assert!(
                    !detail.contains(word),
                    "refusal echoes a credential: {detail:?}"
                );
            }
        }
    }
}

// --- credential extraction ----------------------------------------------------------------

fn credential_sources(choice: u8) -> Vec<TokenSource> {
    let bearer = TokenSource::Header {
        name: "authorization".into(),
        prefix: Some("Bearer ".into()),
    };
    let api = TokenSource::Header {
        name: "x-api-token".into(),
        prefix: None,
    };
    let query = TokenSource::Query {
        param: "access_token".into(),
    };
    match choice % 4 {
        0 => vec![bearer],
        1 => vec![bearer, query],
        2 => vec![api],
        _ => vec![bearer, api],
    }
}

/// Headers (one `name:value` a line, names in lower case as the host gives them) and a query
/// (a line starting with `?`).
fn headers_and_query(text: &str) -> (Vec<(String, String)>, Option<String>) {
    let mut headers = Vec::new();
    let mut query = None;
    for line in text.split('\n') {
        if let Some(q) = line.strip_prefix('?') {
            query = Some(q.to_string());
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.to_ascii_lowercase(), value.to_string()));
        }
    }
    (headers, query)
}

/// The one credential found is a well-formed bearer token taken from a place a source reads;
/// no credential found means no credential header (in any spelling) was present; the order of
/// the headers does not change the outcome; a refusal never echoes a credential.
pub fn credential(data: &[u8]) {
    let mut input = Input::new(data);
    let choice = input.byte();
    let max_bytes = if choice & 0x80 == 0 { 64 } else { 8192 };
    let owned = credential_sources(choice);
    let sources: Vec<&TokenSource> = owned.iter().collect();
    let text = String::from_utf8_lossy(input.rest());
    let (headers, query) = headers_and_query(&text);
    let result = extract_credential(&headers, query.as_deref(), &sources, max_bytes);
    let decoded_query = query
        .as_deref()
        .unwrap_or_default()
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    match &result {
        Ok(Some(found)) => {
            let token = &found.token;
            assert!(token.len() <= max_bytes, "token over the limit accepted");
            let body = token.trim_end_matches('=');
            assert!(
                !body.is_empty()
                    && body
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
                "not an RFC 6750 b64token: {token:?}"
            );
            assert!(!found.found_in.is_empty());
            for place in &found.found_in {
                assert!(owned.contains(*place), "found in a place no source reads");
            }
            let seen = headers.iter().any(|(_, v)| v.contains(token.as_ref()))
                || decoded_query.contains(token.as_ref());
            assert!(seen, "token found nowhere in the request");
        }
        Ok(None) => {
            for (name, _) in &headers {
                let credential_header = ["authorization", "proxy-authorization"]
                    .iter()
                    .chain(["x-api-token"].iter().filter(|_| choice % 4 >= 2))
                    .any(|c| same_header_name(name, c));
                assert!(
                    !credential_header,
                    "credential header {name:?} present, yet no credential and no refusal"
                );
            }
        }
        Err(error) => {
            assert!(
                error.reason.status() < 500,
                "a client's headers are not a gateway fault"
            );
            let values: Vec<&str> = headers
                .iter()
                .map(|(_, v)| v.as_str())
                .chain([decoded_query.as_str()])
                .collect();
            let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_no_secret_words(&error.detail, &values, &names);
        }
    }
    let mut reversed = headers.clone();
    reversed.reverse();
    let again = extract_credential(&reversed, query.as_deref(), &sources, max_bytes);
    let token = |r: &Result<Option<crate::token::Credential>, AuthError>| match r {
        Ok(found) => Ok(found.as_ref().map(|c| c.token.to_string())),
        Err(_) => Err(()),
    };
    assert_eq!(
        token(&result),
        token(&again),
        "header order changed the credential"
    );
}

// --- compact JWS ---------------------------------------------------------------------------

/// A parsed JWS has exactly three strict base64url segments, its signing input is the token up
/// to the second dot, and no refused header survives; a token that verifies against the vector
/// keys stops verifying when its signature changes.
pub fn jws(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let token = text.as_ref();
    let Ok(jwt) = UnverifiedJwt::parse(token) else {
        if let Err(error) = UnverifiedJwt::parse(token) {
            assert!(error.reason.status() < 500);
            // A JWT-shaped token (a token without dots may be a word of the message itself).
            if token.len() >= SECRET_WORD_CHARS && token.matches('.').count() == 2 {
                assert!(!error.detail.contains(token), "refusal echoes the token");
            }
        }
        return;
    };
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3);
    assert_eq!(
        jwt.signing_input,
        format!("{}.{}", segments[0], segments[1])
    );
    assert_eq!(
        b64url_decode(segments[2]).as_deref(),
        Some(jwt.signature.as_slice())
    );
    let header: Value = serde_json::from_slice(&b64url_decode(segments[0]).unwrap()).unwrap();
    for refused in ["crit", "b64", "enc", "zip"] {
        assert!(header.get(refused).is_none(), "header {refused} accepted");
    }
    assert_eq!(
        header.get("alg").and_then(Value::as_str),
        Some(jwt.header.alg.as_str())
    );
    assert!(jwt.header.kid.as_ref().is_none_or(|kid| kid.len() <= 256));

    let vectors = vectors::jws_provider();
    let keys = vectors.keys();
    let verified = verify_for_provider(
        vectors.provider(),
        &jwt,
        Ok(keys),
        vectors.now(),
        &InWasmVerifier,
    );
    if let Ok(alg) = verified {
        assert!(vectors.provider().algorithms.contains(&alg));
        assert_eq!(Alg::parse(&jwt.header.alg), Some(alg));
        let mut tampered = jwt.clone();
        match tampered.signature.last_mut() {
            Some(last) => *last ^= 1,
            None => panic!("a token without a signature verified"),
        }
        assert!(
            verify_for_provider(
                vectors.provider(),
                &tampered,
                Ok(keys),
                vectors.now(),
                &InWasmVerifier
            )
            .is_err(),
            "a changed signature still verifies"
        );
    }
}

// --- JWKS ----------------------------------------------------------------------------------

/// Every key of a parsed JWKS is usable: its material fits its family, its own `alg` (if any)
/// can use it, and some algorithm can; remote key sets never hold symmetric keys; every key
/// given is either kept or skipped with a reason; a garbage signature never verifies.
pub fn jwks(data: &[u8]) {
    let Ok(document) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for origin in [KeyOrigin::Inline, KeyOrigin::Remote] {
        let Ok(set) = parse_jwks(&document, origin) else {
            continue;
        };
        let given = document["keys"].as_array().map_or(0, Vec::len);
        assert_eq!(
            set.keys.len() + set.skipped.len(),
            given,
            "a key went missing"
        );
        for key in &set.keys {
            if origin == KeyOrigin::Remote {
                assert_ne!(key.family, KeyFamily::Hmac, "remote symmetric key accepted");
            }
            assert!(key.kid.as_ref().is_none_or(|kid| kid.len() <= 256));
            match (&key.material, key.family) {
                (KeyMaterial::Rsa { n, e }, KeyFamily::Rsa) => {
                    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                    assert!((2048..=8192).contains(&bits), "RSA modulus of {bits} bits");
                    assert!(!e.is_empty() && e.len() <= 4 && e.first() != Some(&0));
                    assert!(key.spki_der.is_some());
                }
                (KeyMaterial::Ec { point }, KeyFamily::EcP256) => assert_eq!(point.len(), 65),
                (KeyMaterial::Ec { point }, KeyFamily::EcP384) => assert_eq!(point.len(), 97),
                (KeyMaterial::Ed25519 { x }, KeyFamily::Ed25519) => assert_eq!(x.len(), 32),
                (KeyMaterial::Hmac { secret }, KeyFamily::Hmac) => {
                    assert_eq!(secret.len(), key.secret_len);
                }
                (material, family) => panic!(
                    "{family:?} key holds {} material",
                    match material {
                        KeyMaterial::Rsa { .. } => "RSA",
                        KeyMaterial::Ec { .. } => "EC",
                        KeyMaterial::Ed25519 { .. } => "Ed25519",
                        KeyMaterial::Hmac { .. } => "HMAC",
                    }
                ),
            }
            if let Some(own) = key.alg {
                assert_eq!(key.mismatch(own), None, "key unusable for its own alg");
            }
            let usable: Vec<Alg> = Alg::ALL
                .into_iter()
                .filter(|alg| key.mismatch(*alg).is_none())
                .collect();
            assert!(
                !usable.is_empty(),
                "key {:?} usable for no algorithm",
                key.kid
            );
            if let Some(kid) = &key.kid {
                assert!(
                    set.candidates(Some(kid), usable[0])
                        .iter()
                        .any(|k| k.kid == key.kid)
                );
            }
            for alg in usable {
                assert!(!InWasmVerifier.verify(alg, key, b"e30.e30", &[7u8; 64]));
            }
        }
    }
}

// --- discovery -----------------------------------------------------------------------------

const ISSUERS: [&str; 4] = [
    "https://idp.example/oauth2/default",
    "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
    "http://127.0.0.1:8080",
    "https://adb-1.azuredatabricks.net/oidc",
];

/// A discovery document yields a key location only when it names the configured issuer
/// exactly, and the location is exactly its `jwks_uri`, https (or loopback http), without
/// credentials, fragments or whitespace.
pub fn discovery(data: &[u8]) {
    let mut input = Input::new(data);
    let issuer = *input.choose(&ISSUERS);
    let document = input.rest();
    let Ok(location) = jwks_location_from(document, issuer) else {
        return;
    };
    let parsed: Value = serde_json::from_slice(document).unwrap();
    assert_eq!(
        parsed["issuer"].as_str(),
        Some(issuer),
        "another issuer's document accepted"
    );
    let uri = parsed["jwks_uri"].as_str().unwrap();
    assert_eq!(FetchLocation::parse(uri).as_ref(), Ok(&location));
    assert!(!location.authority.is_empty() && !location.authority.contains('@'));
    assert!(location.path.starts_with('/'));
    assert!(!location.path.contains('#'));
    let safe = |c: char| !c.is_whitespace() && !c.is_control();
    assert!(location.authority.chars().all(safe) && location.path.chars().all(safe));
    let https = uri.starts_with(&format!("https://{}", location.authority));
    let loopback = uri.starts_with(&format!("http://{}", location.authority));
    assert!(
        https || loopback,
        "jwks_uri {uri:?} is neither https nor loopback http"
    );
}

// --- paths ---------------------------------------------------------------------------------

/// A normalised path is a fixed point of normalisation, has no dot segments, repeated slashes
/// or escapes that would be refused, and is rewritten exactly when it differs from what came.
pub fn path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(normal) = normalize_path(&text) else {
        return;
    };
    let raw_path = text.split('?').next().unwrap_or_default();
    let again = normalize_path(&normal.encoded).expect("a normalised path is refused");
    assert_eq!(
        again.encoded, normal.encoded,
        "normalisation is not idempotent"
    );
    assert_eq!(again.path, normal.path);
    assert_eq!(again.rewritten, None);
    for form in [&normal.path, &normal.encoded] {
        assert!(form.starts_with('/'));
        assert!(!form.contains("//"), "repeated slash in {form:?}");
        for segment in form.split('/') {
            assert!(segment != "." && segment != "..", "dot segment in {form:?}");
        }
    }
    let upper = normal.encoded.to_ascii_uppercase();
    for refused in ["%2F", "%2E", "%5C", "%00", ";", "\\"] {
        assert!(
            !upper.contains(refused),
            "{refused} in {:?}",
            normal.encoded
        );
    }
    // An escaped `%` is data, never followed by what a second decoder reads as an escape.
    let hex = |text: &str, count: usize| {
        text.len() >= count && text.bytes().take(count).all(|b| b.is_ascii_hexdigit())
    };
    let escape_once_more = normal.path.split('%').skip(1).any(|after| {
        let unicode = after
            .strip_prefix(['u', 'U'])
            .is_some_and(|rest| hex(rest, 4));
        hex(after, 2) || unicode
    });
    assert!(!escape_once_more, "double encoding in {:?}", normal.path);
    assert!(!normal.path.chars().any(char::is_control));
    assert_eq!(normal.rewritten.is_some(), normal.encoded != raw_path);
    assert_eq!(
        normal.query.as_deref(),
        text.split_once('?').map(|(_, q)| q)
    );
}

// --- header maps ---------------------------------------------------------------------------

/// A header map from the host is read exactly (what decodes re-encodes to the same bytes), or
/// refused; a refusal for bytes that are not UTF-8 names the header in printable text only.
pub fn header_map(data: &[u8]) {
    match header_map::decode(data) {
        Ok(headers) => {
            let pairs: Vec<(&[u8], &[u8])> = headers
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect();
            if data.is_empty() {
                assert!(headers.is_empty());
            } else {
                assert_eq!(header_map::encode(&pairs), data, "not read exactly");
            }
        }
        Err(MapError::NotUtf8 { name, headers }) => {
            assert!(
                name.chars().all(|c| c.is_ascii_graphic() || c == '…'),
                "unprintable name {name:?}"
            );
            let pairs: Vec<(&[u8], &[u8])> = headers
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect();
            assert_ne!(header_map::encode(&pairs), data, "valid UTF-8 refused");
        }
        Err(MapError::Malformed(_)) => {}
    }
}

// --- serving bodies ------------------------------------------------------------------------

/// The serving endpoint read from a body is a plain name, and it is the `model` any JSON
/// reader finds in the same body (no duplicate keys, no second reading).
pub fn serving_body(data: &[u8]) {
    let mut input = Input::new(data);
    let limit = *input.choose(&[64usize, 1 << 20]);
    let body = input.rest();
    match model_from_body(body, limit) {
        Ok(model) => {
            assert!(body.len() <= limit);
            assert!(!model.is_empty() && model.len() <= 256);
            assert!(
                model
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            );
            let document: Value = serde_json::from_slice(body).expect("accepted body is not JSON");
            assert_eq!(document["model"].as_str(), Some(model.as_str()));
        }
        Err(error) => {
            assert!(matches!(
                error.reason,
                Reason::BadBody | Reason::BodyTooLarge
            ));
        }
    }
}

// --- token-endpoint responses --------------------------------------------------------------

/// A client token shaped like a real one, so the fuzzer can echo it (or its segments) back.
const SUBJECT_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QtcnNhLTEifQ.eyJpc3MiOiJodHRwczovL29rdGEudGVzdCIsInN1YiI6ImFsaWNlIn0.c2lnbmF0dXJlLWJ5dGVzLXRoYXQtYXJlLWxvbmctZW5vdWdoLXRvLXNjcnVi";

fn endpoint() -> TokenEndpoint {
    TokenEndpoint {
        cluster: "ws".into(),
        location: FetchLocation::parse("https://adb-1.azuredatabricks.net/oidc/v1/token").unwrap(),
        scopes: vec!["all-apis".into()],
        client_id: Some("brickgate".into()),
        client_secret: Some("sp-secret-value-never-echoed".into()),
        timeout_ms: 5000,
    }
}

/// A token is taken only from a 200 with a printable `access_token`, the one any JSON reader
/// finds; a failing endpoint is the gateway's fault (never a 401 blaming the client); no
/// refusal quotes the client's token or any of its segments.
pub fn token_response(data: &[u8]) {
    let mut input = Input::new(data);
    let status =
        u32::from(*input.choose(&[200u16, 400, 401, 403, 404, 429, 500, 502, 503, 0, 302]));
    let exchange = input.byte().is_multiple_of(2);
    let body = String::from_utf8_lossy(input.rest())
        .replace("$T", SUBJECT_TOKEN)
        .replace("$P", SUBJECT_TOKEN.split('.').nth(1).unwrap())
        .replace("$S", "sp-secret-value-never-echoed");
    let endpoint = endpoint();
    let scopes = endpoint.scopes.clone();
    let audiences = ["databricks".to_string()];
    let request = if exchange {
        let caller = crate::databricks::exchange::FederatedCaller {
            issuer: "https://okta.test",
            audiences: &audiences,
            subject_claim: "sub",
            subject: "alice",
            subject_token: SUBJECT_TOKEN,
        };
        endpoint.exchange(&caller, &scopes)
    } else {
        endpoint.client_credentials("okta", &scopes)
    };
    match parse_token_response(&request, status, body.as_bytes()) {
        Ok(issued) => {
            assert_eq!(status, 200, "a token taken from a {status}");
            let document: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                document["access_token"].as_str(),
                Some(issued.access_token.as_str())
            );
            assert!(issued.access_token.bytes().all(|b| b.is_ascii_graphic()));
        }
        Err(error) => {
            let refused = matches!(status, 400 | 401 | 403);
            let rejected = exchange && refused;
            let expected = if rejected {
                Reason::ExchangeRejected
            } else if refused {
                // Databricks refusing brickgate's own service-principal credentials.
                Reason::UpstreamCredentialsRejected
            } else {
                Reason::ExchangeFailed
            };
            assert_eq!(error.reason, expected, "status {status}");
            let response = error.to_response("brickgate");
            if !rejected {
                // A failing endpoint, or Databricks refusing brickgate's own credentials.
                assert!(
                    response.status >= 500,
                    "gateway fault answered {}",
                    response.status
                );
            }
            // Only a service-principal request carries brickgate's secret.
            if !exchange {
                assert!(!error.detail.contains("sp-secret-value-never-echoed"));
            }
            // Only an exchange sends the client's token; Databricks cannot echo what it never got.
            let sent = exchange.then_some(SUBJECT_TOKEN);
            for secret in sent
                .into_iter()
                .chain(sent.into_iter().flat_map(|t| t.split('.')))
            {
                assert!(
                    !error.detail.contains(secret),
                    "refusal quotes the client's token: {:?}",
                    error.detail
                );
            }
            assert!(!error.detail.chars().any(char::is_control));
        }
    }
}

// --- configuration -------------------------------------------------------------------------

fn secrets_in(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(secret) if key == "client_secret" || key == "k" => {
                        if secret.len() >= 8 {
                            found.push(secret.clone());
                        }
                    }
                    _ => secrets_in(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| secrets_in(item, found)),
        _ => {}
    }
}

/// A configuration compiles to something the engine and the key store can run, and neither a
/// compile error nor the compiled configuration's debug form shows a secret.
pub fn config(data: &[u8]) {
    let mut secrets = Vec::new();
    if let Ok(document) = serde_json::from_slice::<Value>(data) {
        secrets_in(&document, &mut secrets);
    }
    // A secret also written elsewhere in the document (a field name, another value) may be
    // named as that; only a value that appears once must never be shown.
    let text = String::from_utf8_lossy(data);
    secrets.retain(|secret| text.matches(secret.as_str()).count() == 1);
    match Config::from_json(data) {
        Err(error) => {
            let message = error.to_string();
            for secret in &secrets {
                assert!(
                    !message.contains(secret.as_str()),
                    "config error shows a secret"
                );
            }
        }
        Ok(config) => {
            let shown = format!("{config:?}");
            for secret in &secrets {
                assert!(
                    !shown.contains(secret.as_str()),
                    "config debug shows a secret"
                );
            }
            let store = JwksStore::new(&config, 1);
            let engine = Engine::new(config, Box::new(InWasmVerifier));
            let mut cache = crate::cache::TokenCache::new(8, 1 << 16);
            for (method, path, body) in [
                ("GET", "/api/2.1/jobs/list", None),
                (
                    "POST",
                    "/serving-endpoints/chat/completions",
                    Some(&br#"{"model":"a"}"#[..]),
                ),
                ("GET", "/", None),
            ] {
                let headers = vec![
                    (":method".to_string(), method.to_string()),
                    (":path".to_string(), path.to_string()),
                    ("authorization".to_string(), "Bearer a.b.c".to_string()),
                ];
                let request = Request {
                    method,
                    path,
                    headers: &headers,
                    body,
                    fingerprint: false,
                };
                // Deciding must not panic; with a bogus token it must not allow a guarded route.
                let _ = engine.decide(&request, &store, &mut cache, 1_800_000_000_000);
            }
        }
    }
}
