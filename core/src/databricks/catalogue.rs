//! The built-in catalogue of Databricks REST routes and the scopes they need, following
//! Databricks' own semantics: `all-apis` satisfies everything and `all-apis:read` every GET and
//! HEAD; a service scope `S` satisfies its routes; `S:read` satisfies only GET and HEAD reads;
//! `sql:restricted-query` only statement execution and the SQL drivers' Thrift endpoints.
//! Routes that mint credentials or run arbitrary code belong to a [`RouteClass`] and are
//! refused unless the configuration enables that class; any other `/api/**` route needs
//! `all-apis` (`all-apis:read` for reads). Every scope's source is in [`scopes::SCOPES`];
//! names prefixed `gw.` are brickgate's own, for services Databricks publishes no scope for.

pub mod classes;
mod entries;
pub mod scopes;
mod spellings;

pub use spellings::check_api_spelling;

pub use classes::RouteClass;

use crate::policy::{Access, PathPattern, Requirement, Rule, ScopeTemplate};
use Class::{Anonymous, AnyScope, Full, Read, Sensitive};
use entries::{Class, Methods};

/// The rule every unknown `/api/**` route falls to (reads: [`DEFAULT_READ_RULE`]).
pub const DEFAULT_RULE: &str = "databricks:default";
pub const DEFAULT_READ_RULE: &str = "databricks:default:read";

fn methods(group: Methods) -> Option<Vec<String>> {
    let names: &[&str] = match group {
        Methods::Read => &["GET", "HEAD"],
        Methods::Write => &["POST", "PUT", "PATCH", "DELETE"],
        Methods::Change => &["POST", "PUT", "PATCH"],
        Methods::NotDelete => &["GET", "HEAD", "POST", "PUT", "PATCH"],
        Methods::Post => &["POST"],
        Methods::Any => return None,
    };
    Some(names.iter().map(|m| m.to_string()).collect())
}

fn scopes(names: &[&str]) -> Vec<ScopeTemplate> {
    names.iter().map(|s| ScopeTemplate(s.to_string())).collect()
}

/// Every scope name the catalogue's rules can ask for (for the source check and the docs).
pub fn scope_names() -> Vec<String> {
    let mut names: Vec<String> = vec!["all-apis".into(), "all-apis:read".into()];
    for (_, _, list, class) in entries::entries() {
        for scope in list.split('|').filter(|s| !s.is_empty()) {
            names.push(scope.to_string());
            if *class == Read && !scope.contains(':') && list.split('|').next() == Some(scope) {
                names.push(format!("{scope}:read"));
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The route class of the catalogue entry that decides `method path`, if it is one of the
/// classes refused by default.
pub fn route_class(method: &str, path: &str) -> Option<RouteClass> {
    let rules = rules(&[0], &[]);
    let (rule, _) = crate::policy::match_rule(&rules, method, path, None).ok()??;
    RouteClass::ALL
        .into_iter()
        .find(|class| rule.name.ends_with(&format!(":{}", class.name())))
}

/// The catalogue as rules accepting `providers`, to be appended after the user's own rules.
/// Routes of a class not in `enabled` are refused, naming the class and the setting.
pub fn rules(providers: &[usize], enabled: &[RouteClass]) -> Vec<Rule> {
    let token = |scopes_any: Vec<ScopeTemplate>| Access::Token {
        providers: providers.to_vec(),
        require: Requirement {
            scopes_any,
            ..Requirement::default()
        },
    };
    let mut rules: Vec<Rule> = entries::entries()
        .flat_map(|(template, group, scope_list, class)| {
            let alternatives: Vec<&str> = scope_list.split('|').filter(|s| !s.is_empty()).collect();
            let service = alternatives.first().copied().unwrap_or(match class {
                Anonymous => "oauth",
                _ => "current-user",
            });
            // Least privilege first: a 403's `scope=` names the first alternative.
            let mut any: Vec<&str> = alternatives.clone();
            any.push("all-apis");
            let read_scope = format!("{service}:read");
            let (label, access) = match class {
                Anonymous => ("anonymous", Access::Anonymous),
                AnyScope => ("any-scope", token(Vec::new())),
                Read => {
                    let mut with_read: Vec<&str> = Vec::new();
                    if !service.contains(':') {
                        with_read.push(&read_scope);
                    }
                    with_read.extend(&alternatives);
                    with_read.extend(["all-apis:read", "all-apis"]);
                    ("read", token(scopes(&with_read)))
                }
                Full => ("full", token(scopes(&any))),
                Sensitive(class) if enabled.contains(class) => (class.name(), token(scopes(&any))),
                Sensitive(class) => (
                    class.name(),
                    Access::Refuse(format!(
                        "{template} is in route class {} (it {}); brickgate refuses it unless \
                         databricks.enable_route_classes includes \"{}\"",
                        class.name(),
                        class.what(),
                        class.name()
                    )),
                ),
            };
            let name = format!("databricks:{service}:{label}");
            spellings::spellings(template)
                .into_iter()
                .filter_map(|spelling| PathPattern::template(&spelling).ok())
                .map(|pattern| Rule {
                    name: name.clone(),
                    pattern,
                    methods: methods(*group),
                    access: access.clone(),
                })
                .collect::<Vec<Rule>>()
        })
        .collect();
    if let Ok(pattern) = PathPattern::template("/api/**") {
        rules.push(Rule {
            name: DEFAULT_READ_RULE.to_string(),
            pattern: pattern.clone(),
            methods: methods(Methods::Read),
            access: token(scopes(&["all-apis:read", "all-apis"])),
        });
        rules.push(Rule {
            name: DEFAULT_RULE.to_string(),
            pattern,
            methods: None,
            access: token(scopes(&["all-apis"])),
        });
    }
    rules
}

#[cfg(test)]
mod operations_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod walk_tests;
