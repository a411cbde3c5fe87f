//! How a verified request authenticates to Databricks: the client's own token (pass-through),
//! a Databricks token obtained by exchanging the client's IdP token (RFC 8693, OAuth token
//! federation), or brickgate's own service-principal token (`client_credentials`). Obtained
//! tokens are cached, across the VMs of one Envoy, until shortly before they expire.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{AuthError, Reason};
use crate::jwks::FetchLocation;

pub use super::upstream_tokens::UpstreamTokens;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Databricks OAuth access tokens live one hour: a longer `expires_in` is not believed, so a
/// wrong or hostile answer cannot keep a token cached past what Databricks issues.
pub const MAX_EXPIRES_IN_S: u64 = 3600;
/// When the answer names no lifetime.
const DEFAULT_EXPIRES_IN_S: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamMode {
    /// The client's token is one Databricks accepts: forward it.
    PassThrough,
    Exchange {
        endpoint: TokenEndpoint,
        /// The token claim the workspace's federation policy maps to a Databricks user or
        /// service principal (its `subject_claim`): the identity a Databricks token is cached
        /// under.
        subject_claim: String,
    },
    ServicePrincipal(TokenEndpoint),
}

/// The workspace's `/oidc/v1/token`, reached through an Envoy cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEndpoint {
    pub cluster: String,
    pub location: FetchLocation,
    pub scopes: Vec<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub timeout_ms: u64,
}

impl fmt::Debug for TokenEndpoint {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("cluster", &self.cluster)
            .field("location", &self.location)
            .field("scopes", &self.scopes)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// What the workspace's federation policy judges in an exchanged token, and the token itself.
#[derive(Clone, Copy)]
pub struct FederatedCaller<'a> {
    pub issuer: &'a str,
    /// The token's `aud` values, sorted and deduplicated.
    pub audiences: &'a [String],
    /// The claim the policy maps (`upstream.subject_claim`) and its value.
    pub subject_claim: &'a str,
    pub subject: &'a str,
    pub subject_token: &'a str,
}

/// A token request to send; holds the client's token or brickgate's secret, so it is never
/// printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub cache_key: String,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub timeout_ms: u64,
    /// Kept to scrub it from anything Databricks echoes back.
    subject_token: Option<String>,
}

impl TokenRequest {
    /// The call's request headers, the request's own last. `authority` as
    /// [`crate::jwks::FetchRequest::headers`] takes it.
    pub fn call_headers(&self, authority: &'static str) -> Vec<(&str, &str)> {
        let mut headers = vec![
            (":method", "POST"),
            (":path", self.path.as_str()),
            (authority, self.authority.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
            ("user-agent", crate::USER_AGENT),
        ];
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        headers
    }
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("cache_key", &self.cache_key)
            .field("cluster", &self.cluster)
            .field("path", &self.path)
            .finish()
    }
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A digest of `parts`, each length-prefixed so that no value (a subject holding a newline)
/// can shift into the next part and collide with another key.
fn cache_key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(format!("{}:", part.len()).as_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl TokenEndpoint {
    fn request(
        &self,
        cache_key: String,
        headers: Vec<(String, String)>,
        body: String,
        subject_token: Option<String>,
    ) -> TokenRequest {
        TokenRequest {
            cache_key,
            cluster: self.cluster.clone(),
            authority: self.location.authority.clone(),
            path: self.location.path.clone(),
            headers,
            body,
            timeout_ms: self.timeout_ms,
            subject_token,
        }
    }

    /// RFC 8693 exchange of the verified IdP token for a Databricks token carrying `scopes`
    /// (the caller's, narrowed: [`super::token_scopes::to_request`]). Cached per what the
    /// federation policy judges (issuer, audiences, the mapped subject claim and its value),
    /// the scopes and the client id: a token the policy would judge otherwise (another `aud`)
    /// never reuses a Databricks token obtained for another.
    pub fn exchange(&self, caller: &FederatedCaller<'_>, scopes: &[String]) -> TokenRequest {
        let scope = scopes.join(" ");
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", caller.subject_token),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("scope", scope.as_str()),
        ];
        if let Some(client_id) = &self.client_id {
            form.push(("client_id", client_id));
        }
        // Length-prefixed: `["a b"]` and `["a", "b"]` are different audiences.
        let audiences: String = caller
            .audiences
            .iter()
            .map(|aud| format!("{}:{aud};", aud.len()))
            .collect();
        let key = cache_key(&[
            "exchange",
            &self.cluster,
            &self.location.authority,
            caller.issuer,
            &audiences,
            caller.subject_claim,
            caller.subject,
            &scope,
            self.client_id.as_deref().unwrap_or(""),
        ]);
        self.request(
            key,
            Vec::new(),
            form_encode(&form),
            Some(caller.subject_token.to_string()),
        )
    }

    /// brickgate's own token (`client_credentials`), shared by every caller of the provider.
    /// Asks for `scopes` (the caller's, narrowed), so the token is shared by the callers of
    /// the provider holding the same scopes.
    pub fn client_credentials(&self, provider: &str, scopes: &[String]) -> TokenRequest {
        let scope = scopes.join(" ");
        let id = self.client_id.as_deref().unwrap_or_default();
        let secret = self.client_secret.as_deref().unwrap_or_default();
        let basic = STANDARD.encode(format!("{id}:{secret}"));
        let headers = vec![("authorization".to_string(), format!("Basic {basic}"))];
        let body = form_encode(&[("grant_type", "client_credentials"), ("scope", &scope)]);
        self.request(
            cache_key(&[
                "sp",
                &self.cluster,
                &self.location.authority,
                provider,
                id,
                &scope,
            ]),
            headers,
            body,
            None,
        )
    }
}

/// A token Databricks issued, with its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in_s: u64,
}

impl TokenRequest {
    /// Text Databricks sent back, without the client's token or brickgate's secret (sent in
    /// the `Basic` credentials of a service-principal request, and only there).
    fn scrub(&self, text: &str) -> String {
        let text = match self.own_secret() {
            Some(secret) if !secret.is_empty() => text.replace(&secret, "[secret]"),
            _ => text.to_string(),
        };
        scrub(&text, self.subject_token.as_deref())
    }

    fn own_secret(&self) -> Option<String> {
        let (_, value) = self
            .headers
            .iter()
            .find(|(name, _)| name == "authorization")?;
        let decoded = STANDARD.decode(value.strip_prefix("Basic ")?).ok()?;
        let credentials = String::from_utf8(decoded).ok()?;
        let (_, secret) = credentials.split_once(':')?;
        Some(secret.to_string())
    }
}

/// Removes anything that could be a token from text Databricks sent back.
fn scrub(text: &str, subject_token: Option<&str>) -> String {
    let mut text = match subject_token {
        Some(token) if !token.is_empty() => text.replace(token, "[token]"),
        _ => text.to_string(),
    };
    // Any segment of the client's token quoted on its own (payload, signature).
    for segment in subject_token
        .unwrap_or_default()
        .split('.')
        .filter(|s| s.len() >= 16)
    {
        text = text.replace(segment, "[token]");
    }
    // And anything else that looks like a token or a token segment: long runs of base64url.
    let looks_secret = |word: &str| {
        let core = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        // Token segments are 40+ base64url characters; ids (UUIDs: 36, hex) are not secrets.
        let hex_id = core.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        core.len() >= 40
            && !hex_id
            && core
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
    };
    let words: Vec<String> = text
        .split_whitespace()
        .map(|word| {
            if looks_secret(word) {
                "[token]".to_string()
            } else {
                word.to_string()
            }
        })
        .collect();
    words
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

/// Interprets the token endpoint's answer. Databricks' refusals (policy: audience, issuer,
/// unknown subject …) become 401s that say what it objected to; an endpoint that is missing
/// (federation not enabled) or failing becomes a 502.
pub fn parse_token_response(
    request: &TokenRequest,
    status: u32,
    body: &[u8],
) -> Result<IssuedToken, AuthError> {
    let document: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        document
            .as_ref()
            .and_then(|d| d.get(name))
            .and_then(Value::as_str)
    };
    let what = if request.subject_token.is_some() {
        "token exchange"
    } else {
        "service principal token request"
    };
    match status {
        200 => {
            let token = field("access_token")
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()));
            let expires_in = document
                .as_ref()
                .and_then(|d| d.get("expires_in"))
                .and_then(Value::as_u64)
                .unwrap_or(DEFAULT_EXPIRES_IN_S)
                .min(MAX_EXPIRES_IN_S);
            token
                .map(|token| IssuedToken {
                    access_token: token.to_string(),
                    expires_in_s: expires_in,
                })
                .ok_or_else(|| {
                    AuthError::new(
                        Reason::ExchangeFailed,
                        format!("Databricks {what} answered 200 without an access_token"),
                    )
                })
        }
        400 | 401 | 403 => {
            let error = field("error")
                .or_else(|| field("error_code"))
                .unwrap_or("rejected");
            let description = field("error_description")
                .or_else(|| field("message"))
                .unwrap_or("");
            let scrubbed = |text: &str| request.scrub(text);
            // Databricks' handle for support tickets; kept in the message and the audit record.
            let error_id = field("error_id")
                .filter(|id| {
                    id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
                .map(|id| format!(" (error_id {id})"))
                .unwrap_or_default();
            if request.subject_token.is_none() {
                // brickgate's own client credentials: the client's token is fine.
                return Err(AuthError::new(
                    Reason::UpstreamCredentialsRejected,
                    format!(
                        "Databricks refused brickgate's own service principal credentials \
                         (HTTP {status}): {}: {}{error_id}; the gateway's client_id, \
                         client_secret or upstream.scopes need fixing, not your token",
                        scrubbed(error),
                        scrubbed(description)
                    ),
                ));
            }
            Err(AuthError::new(
                Reason::ExchangeRejected,
                format!(
                    "Databricks refused the {what}: {}: {}{error_id}",
                    scrubbed(error),
                    scrubbed(description)
                ),
            ))
        }
        404 => Err(AuthError::new(
            Reason::ExchangeFailed,
            format!(
                "Databricks {what} endpoint not found (HTTP 404): federation not enabled, or not a \
                 Databricks workspace host (check upstream.workspace_url and the cluster)"
            ),
        )),
        0 => Err(AuthError::new(
            Reason::ExchangeFailed,
            format!(
                "Databricks {what}: no response from cluster {}",
                request.cluster
            ),
        )),
        // Envoy answers 503 (cannot connect) and 504 (timeout) itself.
        503 | 504 if document.is_none() => Err(AuthError::new(
            Reason::ExchangeFailed,
            if status == 504 {
                format!(
                    "Databricks {what} timed out: no answer through cluster {} in time (Envoy answered 504)",
                    request.cluster
                )
            } else {
                format!(
                    "Databricks {what}: could not reach the workspace through cluster {} (Envoy answered 503)",
                    request.cluster
                )
            },
        )),
        other => Err(AuthError::new(
            Reason::ExchangeFailed,
            format!("Databricks {what} answered HTTP {other}"),
        )),
    }
}

#[cfg(test)]
mod tests;
