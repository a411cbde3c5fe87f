//! Databricks specifics: the built-in route catalogue, serving endpoints named in request
//! bodies, how requests authenticate to Databricks (pass-through, token exchange, service
//! principal), and the header hygiene that keeps Databricks' own audit trail meaningful.

pub mod body_limits;
pub mod catalogue;
pub mod exchange;
pub mod own_credentials;
pub mod serving;
pub mod token_scopes;
pub mod upstream_tokens;

/// The `databricks` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabricksConfig {
    pub route_catalogue: bool,
    /// The classes of credential-minting and code-running routes the catalogue allows.
    pub enabled_route_classes: Vec<catalogue::RouteClass>,
    /// Providers the catalogue's rules accept (indices into `Config::providers`).
    pub catalogue_providers: Vec<usize>,
    /// Largest request body read to find the serving endpoint (`model`) of OpenAI-style routes.
    pub max_body_bytes: usize,
    /// Per-endpoint body limits (`serving_body_limits`, then `max_body_bytes`).
    pub serving_body_limits: body_limits::ServingBodyLimits,
    /// How long a request held for its body waits for the host's first body callback before
    /// brickgate concludes the host never delivers it (and refuses).
    pub first_body_wait_ms: u64,
    /// How long after its headers a held body must be complete (else 408 `body_timeout`).
    pub body_deadline_ms: u64,
    /// The most request-body memory all streams of one VM may hold at once (bodies read to find
    /// a serving endpoint): beyond it a stream is refused, so that bodies cannot exhaust the
    /// VM's memory (a trap would take every stream of the worker with it).
    pub max_held_body_bytes: usize,
}

/// Client-sent headers that carry extra credentials, or identity that something downstream
/// might trust (Databricks Apps' forwarded-identity headers).
pub const STRIPPED_HEADERS: [&str; 8] = [
    "x-databricks-azure-sp-management-token",
    "x-databricks-azure-workspace-resource-id",
    "x-databricks-gcp-sa-access-token",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-forwarded-groups",
];

/// The most characters of the client's own `User-Agent` kept: ours comes last, and a store
/// that truncates long values must not cut it off.
const MAX_CLIENT_AGENT_CHARS: usize = 256;
/// Envoy's `x-request-id` is a UUID; anything else is not trusted into the marker.
const MAX_REQUEST_ID_CHARS: usize = 64;

/// The upstream `User-Agent`: the client's, then `brickgate/<version> req/<request id>`, the
/// one field a Databricks audit row (`user_agent`) always records, so it joins with ours.
/// Ours is always the last two words, so a join anchored at the end (docs/DATABRICKS.md) finds
/// only it: markers the client sent are removed, and a request id that is not
/// `[A-Za-z0-9-]{1,64}` becomes `-`.
pub fn user_agent(client: Option<&str>, request_id: Option<&str>) -> String {
    let request_id = request_id
        .filter(|id| is_plain_request_id(id))
        .unwrap_or("-");
    let ours = format!("brickgate/{} req/{request_id}", crate::VERSION);
    let client = client.map(without_our_markers).unwrap_or_default();
    if client.is_empty() {
        ours
    } else {
        format!("{client} {ours}")
    }
}

fn is_plain_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_CHARS).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The client's `User-Agent` without `brickgate/<anything>` words (any case) and the
/// `req/<anything>` word that follows one, bounded.
fn without_our_markers(agent: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut after_marker = false;
    for word in agent.split_whitespace() {
        let lower = word.to_ascii_lowercase();
        if lower.starts_with("brickgate/") {
            after_marker = true;
            continue;
        }
        if after_marker && lower.starts_with("req/") {
            after_marker = false;
            continue;
        }
        after_marker = false;
        kept.push(word);
    }
    let joined = kept.join(" ");
    match joined.char_indices().nth(MAX_CLIENT_AGENT_CHARS) {
        Some((cut, _)) => joined.get(..cut).unwrap_or_default().trim_end().to_string(),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_keeps_the_client_and_names_the_request() {
        let version = crate::VERSION;
        assert_eq!(
            user_agent(Some("databricks-sdk-py/0.40.0 python/3.11"), Some("r-1")),
            format!("databricks-sdk-py/0.40.0 python/3.11 brickgate/{version} req/r-1")
        );
        assert_eq!(user_agent(None, None), format!("brickgate/{version} req/-"));
    }

    #[test]
    fn client_sent_markers_cannot_name_another_request() {
        let version = crate::VERSION;
        let ours = |id: &str| format!("brickgate/{version} req/{id}");
        let uuid = "3f1c9e2a-7b4d-4c1e-9a2b-0c5d6e7f8a9b";
        let cases: &[(Option<&str>, Option<&str>, String)] = &[
            (
                Some("sdk/1 brickgate/9 req/victim"),
                Some(uuid),
                format!("sdk/1 {}", ours(uuid)),
            ),
            (Some("brickgate/9 req/victim"), Some("r-1"), ours("r-1")),
            (
                Some("BrickGate/0.1.0 REQ/victim sdk/1"),
                Some("r-1"),
                format!("sdk/1 {}", ours("r-1")),
            ),
            (
                Some("a brickgate/9 b req/victim"),
                Some("r-1"),
                format!("a b req/victim {}", ours("r-1")),
            ),
            (Some("brickgate/1 brickgate/2 req/v"), None, ours("-")),
            (Some("   "), Some("r-1"), ours("r-1")),
            (
                Some("sdk/1"),
                Some("victim req/other"),
                format!("sdk/1 {}", ours("-")),
            ),
            (Some("sdk/1"), Some("id%"), format!("sdk/1 {}", ours("-"))),
            (
                Some("sdk/1"),
                Some("under_score"),
                format!("sdk/1 {}", ours("-")),
            ),
            (Some("sdk/1"), Some(""), format!("sdk/1 {}", ours("-"))),
            (
                Some("sdk/1"),
                Some(&"a".repeat(65)),
                format!("sdk/1 {}", ours("-")),
            ),
            (
                Some("sdk/1"),
                Some(&"a".repeat(64)),
                format!("sdk/1 {}", ours(&"a".repeat(64))),
            ),
        ];
        for (client, request_id, expected) in cases {
            let agent = user_agent(*client, *request_id);
            assert_eq!(&agent, expected, "{client:?} {request_id:?}");
            let last_two: Vec<&str> = agent.rsplit(' ').take(2).collect();
            assert_eq!(
                last_two.get(1),
                Some(&format!("brickgate/{version}").as_str())
            );
            assert!(!last_two.iter().any(|w| w.contains("victim")), "{agent}");
        }
    }

    #[test]
    fn a_long_client_agent_is_cut_so_ours_survives() {
        let agent = user_agent(Some(&"x".repeat(10_000)), Some("r-1"));
        assert!(agent.ends_with(" req/r-1"));
        assert!(
            agent.len() <= MAX_CLIENT_AGENT_CHARS + 40,
            "{}",
            agent.len()
        );
    }
}
