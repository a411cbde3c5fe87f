//! What a rule's providers accept, worked out once per configuration: the token sources to read
//! and the provider each issuer names. A request then costs the same with one provider or a
//! hundred (a linear search by issuer compared a URL per provider).

use std::collections::HashMap;
use std::rc::Rc;

use crate::config::{Config, TokenSource};
use crate::policy::{Access, Rule};

#[derive(Debug, Default)]
pub(super) struct AcceptedProviders {
    /// Indices into `Config::providers`, in the rule's order (for messages).
    pub providers: Vec<usize>,
    /// The same, sorted: membership by binary search.
    sorted: Vec<usize>,
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
        accepted.sorted = accepted.providers.clone();
        accepted.sorted.sort_unstable();
        accepted
    }

    pub fn accepts(&self, provider: usize) -> bool {
        self.sorted.binary_search(&provider).is_ok()
    }

    pub fn by_issuer(&self, issuer: &str) -> Option<usize> {
        self.by_issuer.get(issuer).copied()
    }

    pub fn source_refs(&self) -> Vec<&TokenSource> {
        self.sources.iter().collect()
    }
}

/// One entry per rule, in order; rules with the same providers share one.
pub(super) fn accepted_by_rule(config: &Config) -> Vec<Rc<AcceptedProviders>> {
    let mut shared: HashMap<&[usize], Rc<AcceptedProviders>> = HashMap::new();
    let none = Rc::new(AcceptedProviders::default());
    config
        .rules
        .iter()
        .map(|rule: &Rule| match &rule.access {
            Access::Token { providers, .. } => Rc::clone(
                shared
                    .entry(providers.as_slice())
                    .or_insert_with(|| Rc::new(AcceptedProviders::new(config, providers))),
            ),
            Access::Anonymous | Access::Refuse(_) => Rc::clone(&none),
        })
        .collect()
}
