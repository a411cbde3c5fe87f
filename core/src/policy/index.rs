//! The rules indexed once per configuration, so that choosing one costs about the same with
//! ten rules or ten thousand. The index only narrows the rules worth trying: every rule that
//! could match a path is among its candidates, tried in configuration order by the same code
//! as the linear reference (`match_rule`), so first-match-wins and the letter-case and suffix
//! conflict checks are unchanged (the property test in `index/tests.rs` compares the two on random rules and paths).

use std::collections::HashMap;

use super::matcher::{
    Bindings, PathPattern, Rule, RuleConflict, Segment, endpoint_case_conflict, match_rule_among,
};

/// Rules by the literal path segments they start with (ASCII lower-cased, so one walk serves
/// both the exact and the case-ignoring reading), and serving-endpoint rules by name.
#[derive(Debug, Default)]
pub struct RuleIndex {
    paths: Node,
    /// Literal serving-endpoint rules by lower-cased name: the candidates for an endpoint (the
    /// exact name is compared when they are tried) and for its letter-case conflict check.
    endpoints_folded: HashMap<String, Vec<usize>>,
    /// `{variable}` serving-endpoint rules: any endpoint.
    any_endpoint: Vec<usize>,
}

/// The rules whose leading literal segments end here (in order), and the longer ones below.
#[derive(Debug, Default)]
struct Node {
    rules: Vec<usize>,
    children: HashMap<String, Node>,
}

impl Node {
    /// Built once and kept for the configuration's lifetime: no spare capacity.
    fn shrink(&mut self) {
        self.rules.shrink_to_fit();
        self.children.shrink_to_fit();
        self.children.values_mut().for_each(Node::shrink);
    }
}

impl RuleIndex {
    pub fn new(rules: &[Rule]) -> RuleIndex {
        let mut index = RuleIndex::default();
        for (position, rule) in rules.iter().enumerate() {
            match &rule.pattern {
                PathPattern::ServingEndpoint(Segment::Literal(name)) => {
                    let folded = name.to_ascii_lowercase();
                    index
                        .endpoints_folded
                        .entry(folded)
                        .or_default()
                        .push(position);
                }
                PathPattern::ServingEndpoint(Segment::Variable(_)) => {
                    index.any_endpoint.push(position);
                }
                pattern => {
                    let mut node = &mut index.paths;
                    for segment in leading_literals(pattern) {
                        node = node
                            .children
                            .entry(segment.to_ascii_lowercase())
                            .or_default();
                    }
                    node.rules.push(position);
                }
            }
        }
        index.paths.shrink();
        index
            .endpoints_folded
            .values_mut()
            .for_each(Vec::shrink_to_fit);
        index
    }

    /// Exactly what [`super::match_rule`] answers for these `rules` (the ones the index was
    /// built from), with the index of the rule chosen.
    pub fn match_rule<'a>(
        &self,
        rules: &'a [Rule],
        method: &str,
        path: &str,
        serving_endpoint: Option<&str>,
    ) -> Result<Option<(usize, &'a Rule, Bindings)>, RuleConflict> {
        match_rule_among(
            rules,
            method,
            path,
            serving_endpoint,
            |path| self.candidates(path, serving_endpoint),
            |endpoint| {
                let folded = self.same_endpoint_folded(endpoint).iter().copied();
                endpoint_case_conflict(rules, folded, endpoint)
            },
        )
    }

    /// In increasing order: the rules along the path's segments, and the serving-endpoint rules
    /// that could take `serving_endpoint`.
    fn candidates(&self, path: &str, serving_endpoint: Option<&str>) -> Vec<usize> {
        let mut found: Vec<usize> = self.paths.rules.clone();
        if let Some(segments) = path.strip_prefix('/').map(|rest| rest.split('/')) {
            let mut node = &self.paths;
            for segment in segments {
                let child = if segment.bytes().any(|b| b.is_ascii_uppercase()) {
                    node.children.get(&segment.to_ascii_lowercase())
                } else {
                    node.children.get(segment)
                };
                let Some(child) = child else { break };
                found = merged(found, &child.rules);
                node = child;
            }
        }
        if let Some(endpoint) = serving_endpoint {
            found = merged(found, self.same_endpoint_folded(endpoint));
            found = merged(found, &self.any_endpoint);
        }
        found
    }

    /// The literal serving-endpoint rules naming `endpoint` in any letter case, in order.
    fn same_endpoint_folded(&self, endpoint: &str) -> &[usize] {
        let folded = self.endpoints_folded.get(&endpoint.to_ascii_lowercase());
        folded.map_or(&[], Vec::as_slice)
    }
}

/// Two increasing lists of rule indices as one (they never share an index): a merge, since
/// every list the index keeps is in configuration order.
fn merged(found: Vec<usize>, more: &[usize]) -> Vec<usize> {
    if more.is_empty() {
        return found;
    }
    let mut out = Vec::with_capacity(found.len() + more.len());
    let (mut a, mut b) = (found.iter().peekable(), more.iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x <= y => a.next(),
            (Some(_), Some(_)) | (None, _) => b.next(),
            (Some(_), None) => a.next(),
        };
        match next {
            Some(index) => out.push(*index),
            None => return out,
        }
    }
}

/// The path segments every path the pattern matches starts with (compared ignoring case, as
/// the index keys are): all of an exact path's, the complete ones of a prefix (those followed
/// by `/`), a template's literals up to its first class or variable. None for anything else,
/// which is then tried on every path.
fn leading_literals(pattern: &PathPattern) -> Vec<&str> {
    match pattern {
        PathPattern::Exact(exact) => exact
            .strip_prefix('/')
            .map(|rest| rest.split('/').collect())
            .unwrap_or_default(),
        PathPattern::Prefix(prefix) => prefix
            .strip_prefix('/')
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(complete, _partial)| complete.split('/').collect())
            .unwrap_or_default(),
        PathPattern::Template { segments, .. } => segments
            .iter()
            .map_while(|segment| match segment {
                Segment::Literal(literal) => Some(literal.as_str()),
                Segment::Glob(_) | Segment::Variable(_) => None,
            })
            .collect(),
        PathPattern::ServingEndpoint(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
