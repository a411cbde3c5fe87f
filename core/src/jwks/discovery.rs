//! OIDC discovery (OpenID Connect Discovery §4) and RFC 8414 metadata: the document must name
//! the configured issuer exactly, and its `jwks_uri` must be https (or loopback).

use serde_json::Value;

use crate::jwks::FetchLocation;

pub const OIDC_WELL_KNOWN: &str = ".well-known/openid-configuration";
/// RFC 8414, as Databricks serves it under `<issuer>/.well-known/oauth-authorization-server`.
pub const OAUTH_WELL_KNOWN: &str = ".well-known/oauth-authorization-server";

pub fn jwks_location_from(document: &[u8], issuer: &str) -> Result<FetchLocation, String> {
    let document: Value = serde_json::from_slice(document)
        .map_err(|e| format!("discovery document is not JSON: {e}"))?;
    let named = document
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if named != issuer {
        return Err(format!(
            "discovery document names issuer {named:?}, expected {issuer:?}"
        ));
    }
    let uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("discovery document has no jwks_uri")?;
    FetchLocation::parse(uri).map_err(|problem| format!("jwks_uri {problem}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_matching_issuers_and_safe_uris() {
        let issuer = "https://idp.example/oauth2/default";
        let ok = br#"{"issuer": "https://idp.example/oauth2/default", "jwks_uri": "https://idp.example/oauth2/default/v1/keys"}"#;
        assert_eq!(
            jwks_location_from(ok, issuer).unwrap().path,
            "/oauth2/default/v1/keys"
        );
        let cases: [(&[u8], &str); 4] = [
            (br#"{"issuer": "https://evil.example", "jwks_uri": "https://idp.example/k"}"#, "names issuer"),
            (br#"{"issuer": "https://idp.example/oauth2/default"}"#, "no jwks_uri"),
            (br#"{"issuer": "https://idp.example/oauth2/default", "jwks_uri": "http://idp.example/k"}"#, "jwks_uri http"),
            (b"<html>", "not JSON"),
        ];
        for (document, problem) in cases {
            let error = jwks_location_from(document, issuer).unwrap_err();
            assert!(error.contains(problem), "{error}");
        }
    }
}
