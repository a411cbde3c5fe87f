//! Everything a verified token says about its holder, worked out once per token: the warm
//! path (a cached token) then only checks the time and the route's rules, and copies headers.

use std::sync::Arc;

use crate::identity::PrincipalKind;
use crate::verify::claims::TokenTimes;

/// Who holds a token, as its claims name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// `jti`.
    pub token_id: Option<String>,
}

/// The value of the claim a Databricks federation policy maps (`upstream.subject_claim`),
/// read from the verified claims: what an exchanged Databricks token is cached under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederatedSubject {
    /// The provider does not exchange tokens.
    NotExchanged,
    /// The claim's value, and the token's `aud` values (sorted, deduplicated), which the
    /// policy judges too.
    Claim {
        subject: String,
        audiences: Vec<String>,
    },
    /// The claim is absent, not a string, or empty: the token cannot be exchanged. Says which.
    Unusable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub times: TokenTimes,
    pub holder: Holder,
    pub federated_subject: FederatedSubject,
    pub kind: PrincipalKind,
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    /// The identity headers, except the rule's, which depends on the request. Shared with
    /// every request the cached token allows (no copy per request).
    pub headers: Arc<[(String, String)]>,
}

impl Verified {
    /// Rough memory held, for the cache's byte bound.
    pub fn approximate_bytes(&self) -> usize {
        let strings = |items: &[String]| items.iter().map(|s| s.len() + 24).sum::<usize>();
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 48)
            .sum();
        let federated = match &self.federated_subject {
            FederatedSubject::Claim { subject, audiences } => {
                subject.len() + audiences.iter().map(|a| a.len() + 24).sum::<usize>()
            }
            FederatedSubject::Unusable(text) => text.len(),
            FederatedSubject::NotExchanged => 0,
        };
        256 + strings(&self.scopes) + strings(&self.groups) + headers + federated
    }
}
