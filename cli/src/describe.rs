//! Rules and providers as one line of text each, for `check`, `route` and `explain`.

use brickgate_core::config::{Config, JwksLocation, JwksSource};
use brickgate_core::databricks::exchange::UpstreamMode;
use brickgate_core::policy::{Access, PathPattern, Requirement, Rule, Segment};

pub fn pattern(pattern: &PathPattern) -> String {
    match pattern {
        PathPattern::Exact(path) => format!("path {path}"),
        PathPattern::Prefix(prefix) => format!("prefix {prefix}"),
        PathPattern::ServingEndpoint(segment) => {
            format!("serving endpoint {}", segment_text(segment))
        }
        PathPattern::Template { segments, any_tail } => {
            let mut text: String = segments
                .iter()
                .map(|s| format!("/{}", segment_text(s)))
                .collect();
            if *any_tail {
                text.push_str("/**");
            }
            format!("template {text}")
        }
    }
}

fn segment_text(segment: &Segment) -> String {
    match segment {
        Segment::Literal(text) | Segment::Glob(text) => text.clone(),
        Segment::Variable(name) => format!("{{{name}}}"),
    }
}

pub fn methods(rule: &Rule) -> String {
    rule.methods
        .as_ref()
        .map_or_else(|| "*".to_string(), |m| m.join(","))
}

pub fn provider_names(config: &Config, providers: &[usize]) -> Vec<String> {
    providers
        .iter()
        .filter_map(|i| config.providers.get(*i).map(|p| p.name.clone()))
        .collect()
}

pub fn requirement(require: &Requirement) -> String {
    let list = |items: Vec<String>| items.join(" ");
    let mut parts = Vec::new();
    if !require.scopes_all.is_empty() {
        parts.push(format!(
            "all of scopes [{}]",
            list(require.scopes_all.iter().map(|s| s.0.clone()).collect())
        ));
    }
    if !require.scopes_any.is_empty() {
        parts.push(format!(
            "any of scopes [{}]",
            list(require.scopes_any.iter().map(|s| s.0.clone()).collect())
        ));
    }
    if !require.groups_any.is_empty() {
        parts.push(format!(
            "any of groups [{}]",
            list(require.groups_any.clone())
        ));
    }
    if parts.is_empty() {
        "a verified token".to_string()
    } else {
        parts.join(" and ")
    }
}

pub fn access(config: &Config, rule: &Rule) -> String {
    match &rule.access {
        Access::Anonymous => "anonymous".to_string(),
        Access::Refuse(why) => format!("refused: {why}"),
        Access::Token { providers, require } => format!(
            "token from [{}], requires {}",
            provider_names(config, providers).join(", "),
            requirement(require)
        ),
    }
}

pub fn rule(config: &Config, index: usize, rule: &Rule) -> String {
    let mode = if config.dry_run.everything || config.dry_run.rules.contains(&rule.name) {
        " (dry_run)"
    } else {
        ""
    };
    format!(
        "{index:>3}  {}{mode}  {} {}  -> {}",
        rule.name,
        methods(rule),
        pattern(&rule.pattern),
        access(config, rule)
    )
}

pub fn provider(config: &Config, index: usize) -> String {
    let Some(p) = config.providers.get(index) else {
        return String::new();
    };
    let keys = match &p.jwks {
        JwksSource::Inline(keys) => format!("inline keys [{}]", keys.kids().join(", ")),
        JwksSource::Remote(remote) => match &remote.location {
            JwksLocation::Fixed(at) => format!(
                "keys from {}{} via cluster {}",
                at.authority, at.path, remote.cluster
            ),
            JwksLocation::Discover { issuer } => format!(
                "keys discovered from {}{} via cluster {}",
                issuer.authority, issuer.path, remote.cluster
            ),
        },
    };
    let audiences = p.audiences.as_ref().map_or_else(
        || "any audience".to_string(),
        |a| format!("audiences [{}]", a.join(", ")),
    );
    let algorithms: Vec<&str> = p.algorithms.iter().map(|a| a.name()).collect();
    let upstream = match &p.upstream {
        UpstreamMode::PassThrough => "pass_through",
        UpstreamMode::Exchange { .. } => "exchange",
        UpstreamMode::ServicePrincipal(_) => "service_principal",
    };
    let mode = if config.dry_run.everything || config.dry_run.providers.contains(&p.name) {
        " (dry_run)"
    } else {
        ""
    };
    format!(
        "{}{mode}: issuer {}, {audiences}, algorithms [{}], {keys}, upstream {upstream}",
        p.name,
        p.issuer,
        algorithms.join(", ")
    )
}
