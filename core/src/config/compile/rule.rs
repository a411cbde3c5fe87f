//! Rules: what they match, who they accept, and what they require.

use super::super::raw::RawRule;
use super::super::{ConfigError, Provider};
use super::Result;
use crate::policy::{Access, PathPattern, Requirement, Rule, ScopeTemplate, Segment};

pub(super) fn compile_rule(index: usize, raw: &RawRule, providers: &[Provider]) -> Result<Rule> {
    let field = format!("rules[{index}]");
    let name = raw.name.clone().unwrap_or_else(|| format!("rule-{index}"));
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::new(
            format!("{field}.name"),
            "1 to 128 printable ASCII characters, no spaces",
        ));
    }
    let matcher = &raw.matcher;
    let given = [
        &matcher.path,
        &matcher.prefix,
        &matcher.template,
        &matcher.serving_endpoint,
    ]
    .iter()
    .filter(|m| m.is_some())
    .count();
    if given != 1 {
        return Err(ConfigError::new(
            format!("{field}.match"),
            "exactly one of \"path\", \"prefix\", \"template\" or \"serving_endpoint\" is required",
        ));
    }
    let pattern = if let Some(path) = &matcher.path {
        if !path.starts_with('/') {
            return Err(ConfigError::new(
                format!("{field}.match.path"),
                "paths start with /",
            ));
        }
        PathPattern::Exact(path.clone())
    } else if let Some(prefix) = &matcher.prefix {
        if !prefix.starts_with('/') {
            return Err(ConfigError::new(
                format!("{field}.match.prefix"),
                "prefixes start with /",
            ));
        }
        PathPattern::Prefix(prefix.clone())
    } else if let Some(template) = &matcher.template {
        PathPattern::template(template)
            .map_err(|problem| ConfigError::new(format!("{field}.match.template"), problem))?
    } else {
        let endpoint = matcher.serving_endpoint.as_deref().unwrap_or_default();
        let variable = endpoint.strip_prefix('{').and_then(|e| e.strip_suffix('}'));
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 256
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match variable {
            Some(var) if valid_name(var) => {
                PathPattern::ServingEndpoint(Segment::Variable(var.to_string()))
            }
            None if valid_name(endpoint) => {
                PathPattern::ServingEndpoint(Segment::Literal(endpoint.to_string()))
            }
            _ => {
                return Err(ConfigError::new(
                    format!("{field}.match.serving_endpoint"),
                    "an endpoint name ([A-Za-z0-9._-]) or {variable}",
                ));
            }
        }
    };
    let methods = match &matcher.methods {
        None => None,
        Some(list) => {
            // Any other method is refused before rules are matched (`bad_method`).
            let forwarded = crate::request_hygiene::FORWARDED_METHODS;
            let valid = !list.is_empty() && list.iter().all(|m| forwarded.contains(&m.as_str()));
            if !valid {
                return Err(ConfigError::new(
                    format!("{field}.match.methods"),
                    format!("must be a non-empty list of {}", forwarded.join(", ")),
                ));
            }
            Some(list.clone())
        }
    };
    let access = if raw.allow_anonymous {
        if raw.providers.is_some() || raw.require.is_some() {
            return Err(ConfigError::new(
                format!("{field}.allow_anonymous"),
                "cannot be combined with providers or require",
            ));
        }
        Access::Anonymous
    } else {
        let names = raw
            .providers
            .as_ref()
            .filter(|list| !list.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.providers"),
                    "required (or set \"allow_anonymous\": true)",
                )
            })?;
        let mut indices = Vec::new();
        for name in names {
            let index = providers
                .iter()
                .position(|p| &p.name == name)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{field}.providers"),
                        format!("unknown provider {name:?}"),
                    )
                })?;
            indices.push(index);
        }
        let require = raw
            .require
            .as_ref()
            .map(|r| compile_require(&field, r, &pattern))
            .transpose()?;
        Access::Token {
            providers: indices,
            require: require.unwrap_or_default(),
        }
    };
    Ok(Rule {
        name,
        pattern,
        methods,
        access,
    })
}

fn compile_require(
    field: &str,
    raw: &super::super::raw::RawRequire,
    pattern: &PathPattern,
) -> Result<Requirement> {
    let variables = pattern.variables();
    let scopes = |sub: &str, list: &[String]| -> Result<Vec<ScopeTemplate>> {
        list.iter()
            .map(|scope| {
                let field = format!("{field}.require.{sub}");
                if scope.is_empty() || scope.contains(' ') {
                    return Err(ConfigError::new(
                        field,
                        "scopes are non-empty and contain no spaces",
                    ));
                }
                let template = ScopeTemplate(scope.clone());
                if let Some(unbound) = template
                    .variables()
                    .into_iter()
                    .find(|v| !variables.contains(v))
                {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "{scope:?} uses {{{unbound}}}, which the rule's template does not bind"
                        ),
                    ));
                }
                Ok(template)
            })
            .collect()
    };
    if raw.groups_any.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            format!("{field}.require.groups_any"),
            "group names are non-empty",
        ));
    }
    Ok(Requirement {
        scopes_all: scopes("scopes_all", &raw.scopes_all)?,
        scopes_any: scopes("scopes_any", &raw.scopes_any)?,
        groups_any: raw.groups_any.clone(),
    })
}
