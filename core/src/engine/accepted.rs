//! What a rule's providers accept, worked out once per configuration: the token sources to read
//! and the provider each issuer names. A request then costs the same with one provider or a
//! hundred (a linear search by issuer compared a URL per provider).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, TokenSource};
use crate::policy::{Access, Rule};

#[derive(Debug, Default)]
pub(super) struct AcceptedProviders {
    /// Indices into `Config::providers`, in the rule's order (for messages).
    pub providers: Vec<usize>,
    /// By provider index: whether the rule accepts it.
    accepted: Vec<bool>,
    /// The union of their token sources, in order, without repeats.
    pub sources: Vec<TokenSource>,
    /// Issuer → the first of the rule's providers with it (issuers are unique per config).
    by_issuer: HashMap<String, usize>,
}

impl AcceptedProviders {
    fn new(config: &Config, providers: &[usize]) -> AcceptedProviders {
        let mut accepted = AcceptedProviders {
            providers: providers.to_vec(),
            ..AcceptedProviders::default()
        };
        for &index in providers {
            let Some(provider) = config.providers.get(index) else {
                continue;
            };
            for source in &provider.token_sources {
                if !accepted.sources.contains(source) {
                    accepted.sources.push(source.clone());
                }
            }
            accepted
                .by_issuer
                .entry(provider.issuer.clone())
                .or_insert(index);
        }
        accepted.accepted = vec![false; config.providers.len()];
        for &index in providers {
            if let Some(flag) = accepted.accepted.get_mut(index) {
                *flag = true;
            }
        }
        accepted
    }

    pub fn accepts(&self, provider: usize) -> bool {
        self.accepted.get(provider).copied().unwrap_or(false)
    }

    pub fn by_issuer(&self, issuer: &str) -> Option<usize> {
        self.by_issuer.get(issuer).copied()
    }

    pub fn source_refs(&self) -> Vec<&TokenSource> {
        self.sources.iter().collect()
    }
}

/// One entry per rule, in order; rules with the same providers share one.
pub(super) fn accepted_by_rule(config: &Config) -> Vec<Arc<AcceptedProviders>> {
    let mut shared: HashMap<&[usize], Arc<AcceptedProviders>> = HashMap::new();
    let none = Arc::new(AcceptedProviders::default());
    config
        .rules
        .iter()
        .map(|rule: &Rule| match &rule.access {
            Access::Token { providers, .. } => Arc::clone(
                shared
                    .entry(providers.as_slice())
                    .or_insert_with(|| Arc::new(AcceptedProviders::new(config, providers))),
            ),
            Access::Anonymous | Access::Refuse(_) => Arc::clone(&none),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_rule_knows_its_providers_sources_and_issuers() {
        let jwks = json!({"keys": [{"kty": "oct", "kid": "k", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]});
        let provider = |issuer: &str, sources: serde_json::Value| {
            json!({"issuer": issuer, "allow_any_audience": true, "algorithms": ["HS256"],
                   "jwks": {"inline": jwks}, "token_sources": sources})
        };
        let bearer = json!([{"header": "authorization", "prefix": "Bearer "}]);
        let config = json!({
            "providers": {
                "a": provider("https://a.test", bearer.clone()),
                "b": provider("https://b.test", json!([{"header": "authorization", "prefix": "Bearer "}, {"query": "t"}])),
                "c": provider("https://c.test", bearer)
            },
            "rules": [
                {"name": "one", "match": {"path": "/1"}, "providers": ["c", "a"]},
                {"name": "open", "match": {"path": "/2"}, "allow_anonymous": true},
                {"name": "same", "match": {"path": "/3"}, "providers": ["c", "a"]},
                {"name": "two", "match": {"path": "/4"}, "providers": ["b", "a"]}
            ],
            "allow_inline_secrets": true
        });
        let config = Config::from_json(config.to_string().as_bytes()).unwrap();
        let index_of = |name: &str| {
            config
                .providers
                .iter()
                .position(|p| p.name == name)
                .unwrap()
        };
        let (a, b, c) = (index_of("a"), index_of("b"), index_of("c"));
        let accepted = accepted_by_rule(&config);
        assert_eq!(accepted.len(), 4);
        let one = &accepted[0];
        assert_eq!(
            one.providers,
            vec![c, a],
            "in the rule's order, for messages"
        );
        assert!(one.accepts(a) && one.accepts(c) && !one.accepts(b));
        assert_eq!(one.by_issuer("https://a.test"), Some(a));
        assert_eq!(one.by_issuer("https://b.test"), None);
        assert_eq!(one.sources.len(), 1, "the same source twice is read once");
        assert!(
            Arc::ptr_eq(one, &accepted[2]),
            "rules with the same providers share one"
        );
        assert!(accepted[1].providers.is_empty() && !accepted[1].accepts(a));
        let two = &accepted[3];
        assert_eq!(two.sources.len(), 2);
        assert_eq!(two.sources[1], TokenSource::Query { param: "t".into() });
        assert_eq!(two.by_issuer("https://b.test"), Some(b));
    }
}
