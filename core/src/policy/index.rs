//! The rules indexed once per configuration, so that choosing one costs about the same with
//! ten rules or ten thousand. The index only narrows the rules worth trying: every rule that
//! could match a path is among its candidates, tried in configuration order by the same code
//! as the linear reference (`match_rule`), so first-match-wins and the letter-case and suffix
//! conflict checks are unchanged (the property test in `index/tests.rs` compares the two on random rules and paths).

use std::collections::HashMap;

use super::matcher::{
    Bindings, PathPattern, Rule, RuleConflict, Segment, endpoint_case_conflict, match_rule_among,
};

/// Rules by the path segments they start with (literals ASCII lower-cased, so one walk serves
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

/// The rules whose leading segments end here (in order), and the longer ones below: by literal
/// segment, or under `any_segment` for a class or variable segment (`/api/{version}/jobs/**`
/// sits under api → any → jobs), which every path segment may take.
#[derive(Debug, Default)]
struct Node {
    rules: Vec<usize>,
    children: HashMap<String, Node>,
    any_segment: Option<Box<Node>>,
}

impl Node {
    /// Built once and kept for the configuration's lifetime: no spare capacity.
    fn shrink(&mut self) {
        self.rules.shrink_to_fit();
        self.children.shrink_to_fit();
        self.children.values_mut().for_each(Node::shrink);
        if let Some(any) = self.any_segment.as_mut() {
            any.shrink();
        }
    }
}

/// A leading segment of a pattern, as the index keys it.
enum Key<'a> {
    Literal(&'a str),
    /// A `[...]` class or `{variable}` segment: any one path segment.
    Any,
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
                    for key in leading_segments(pattern) {
                        node = match key {
                            Key::Literal(segment) => node
                                .children
                                .entry(segment.to_ascii_lowercase())
                                .or_default(),
                            Key::Any => node.any_segment.get_or_insert_with(Box::default),
                        };
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
            // Every node a path reaches holds rules no other node holds, so each list merges in
            // once; a path reaches one node per literal-or-any choice along its segments.
            let mut nodes: Vec<&Node> = vec![&self.paths];
            for segment in segments {
                let folded = segment
                    .bytes()
                    .any(|b| b.is_ascii_uppercase())
                    .then(|| segment.to_ascii_lowercase());
                let key = folded.as_deref().unwrap_or(segment);
                let next: Vec<&Node> = nodes
                    .iter()
                    .flat_map(|node| [node.children.get(key), node.any_segment.as_deref()])
                    .flatten()
                    .collect();
                if next.is_empty() {
                    break;
                }
                for child in &next {
                    found = merged(found, &child.rules);
                }
                nodes = next;
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

/// The path segments every path the pattern matches starts with (literals compared ignoring
/// case, as the index keys are): all of an exact path's, the complete ones of a prefix (those
/// followed by `/`), a template's segments (a class or variable as any segment). None for
/// anything else, which is then tried on every path.
fn leading_segments(pattern: &PathPattern) -> Vec<Key<'_>> {
    fn literals<'a>(parts: Option<std::str::Split<'a, char>>) -> Vec<Key<'a>> {
        parts
            .map(|p| p.map(Key::Literal).collect())
            .unwrap_or_default()
    }
    match pattern {
        PathPattern::Exact(exact) => literals(exact.strip_prefix('/').map(|r| r.split('/'))),
        PathPattern::Prefix(prefix) => literals(
            prefix
                .strip_prefix('/')
                .and_then(|rest| rest.rsplit_once('/'))
                .map(|(complete, _partial)| complete.split('/')),
        ),
        PathPattern::Template { segments, .. } => segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(literal) => Key::Literal(literal.as_str()),
                Segment::Glob(_) | Segment::Variable(_) => Key::Any,
            })
            .collect(),
        PathPattern::ServingEndpoint(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
