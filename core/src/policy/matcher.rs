//! Rules, matched in order by method and normalised path. A path whose letter case, extension
//! suffix, escaped delimiters or trailing dots would change which rule applies is refused
//! (docs/PATHS.md): brickgate cannot know whether the upstream routes case-insensitively,
//! strips suffixes or trailing dots, or decodes `%3F`, `%23` and `%3B` into structure.

use crate::error::{AuthError, Reason};
use crate::policy::path::{delimiter_readings, suffix_readings};
use crate::policy::require::Requirement;

/// Values bound by `{name}` template segments.
pub type Bindings = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// A literal with character classes, `2.[012]`: one character from the set each.
    Glob(String),
    Variable(String),
}

/// How rule literals compare with the path: as written, or ignoring ASCII letter case (the
/// reading of an upstream that routes case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LetterCase {
    Exact,
    Ignored,
}

impl LetterCase {
    fn same(self, a: &str, b: &str) -> bool {
        match self {
            LetterCase::Exact => a == b,
            LetterCase::Ignored => a.eq_ignore_ascii_case(b),
        }
    }

    fn same_char(self, a: char, b: char) -> bool {
        match self {
            LetterCase::Exact => a == b,
            LetterCase::Ignored => a.eq_ignore_ascii_case(&b),
        }
    }

    fn starts_with(self, text: &str, prefix: &str) -> bool {
        text.get(..prefix.len())
            .is_some_and(|head| self.same(head, prefix))
    }
}

/// Matches `text` against a segment with `[...]` character classes (validated at parse).
fn glob_matches(pattern: &str, text: &str, case: LetterCase) -> bool {
    let mut text = text.chars();
    let mut pattern = pattern.chars();
    while let Some(expected) = pattern.next() {
        let Some(actual) = text.next() else {
            return false;
        };
        if expected == '[' {
            let set: String = pattern.by_ref().take_while(|c| *c != ']').collect();
            if !set.chars().any(|c| case.same_char(c, actual)) {
                return false;
            }
        } else if !case.same_char(expected, actual) {
            return false;
        }
    }
    text.next().is_none()
}

fn valid_glob(part: &str) -> bool {
    let mut open = false;
    for c in part.chars() {
        match c {
            '[' if !open => open = true,
            ']' if open => open = false,
            '[' | ']' => return false,
            _ => {}
        }
    }
    !open
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    Prefix(String),
    /// A model-serving endpoint, named in the path or in an OpenAI-style body's `model`:
    /// a literal name, or a `{variable}` that binds it.
    ServingEndpoint(Segment),
    Template {
        segments: Vec<Segment>,
        any_tail: bool,
    },
}

impl PathPattern {
    /// Parses a template such as `/serving-endpoints/{name}/invocations` or `/api/**`.
    pub fn template(text: &str) -> Result<PathPattern, String> {
        let body = text
            .strip_prefix('/')
            .ok_or_else(|| "a template starts with /".to_string())?;
        let mut parts: Vec<&str> = body.split('/').collect();
        let any_tail = parts.last() == Some(&"**");
        if any_tail {
            parts.pop();
        }
        let mut segments = Vec::new();
        for part in parts {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!("bad variable segment {part:?}"));
                }
                if segments.contains(&Segment::Variable(name.to_string())) {
                    return Err(format!("variable {{{name}}} appears twice"));
                }
                segments.push(Segment::Variable(name.to_string()));
            } else if part.is_empty() || part.contains(['{', '}', '*']) || !valid_glob(part) {
                return Err(format!(
                    "bad segment {part:?} (use literal text, [abc] classes, {{name}}, or a final **)"
                ));
            } else if part.contains('[') {
                segments.push(Segment::Glob(part.to_string()));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(PathPattern::Template { segments, any_tail })
    }

    pub fn variables(&self) -> Vec<&str> {
        match self {
            PathPattern::ServingEndpoint(Segment::Variable(name)) => vec![name.as_str()],
            PathPattern::Template { segments, .. } => segments
                .iter()
                .filter_map(|s| match s {
                    Segment::Variable(name) => Some(name.as_str()),
                    Segment::Literal(_) | Segment::Glob(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Matches a normalised path, returning the variables it binds.
    pub fn matches(&self, path: &str) -> Option<Bindings> {
        self.matches_with(path, LetterCase::Exact)
    }

    fn matches_with(&self, path: &str, case: LetterCase) -> Option<Bindings> {
        match self {
            PathPattern::Exact(exact) => case.same(path, exact).then(Vec::new),
            PathPattern::Prefix(prefix) => case.starts_with(path, prefix).then(Vec::new),
            PathPattern::ServingEndpoint(_) => None,
            PathPattern::Template { segments, any_tail } => {
                let mut parts = path.strip_prefix('/')?.split('/');
                let mut bindings = Vec::new();
                for segment in segments {
                    let part = parts.next()?;
                    match segment {
                        Segment::Literal(literal) if case.same(literal, part) => {}
                        Segment::Glob(glob) if glob_matches(glob, part, case) => {}
                        Segment::Variable(name) if !part.is_empty() => {
                            bindings.push((name.clone(), part.to_string()));
                        }
                        _ => return None,
                    }
                }
                // A trailing slash yields one empty part; only `**` absorbs real segments.
                let nothing_left = match parts.next() {
                    None => true,
                    Some(last) => last.is_empty() && parts.next().is_none(),
                };
                (*any_tail || nothing_left).then_some(bindings)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Anonymous,
    /// Always refused (403), with this explanation.
    Refuse(String),
    Token {
        /// Indices into `Config::providers`.
        providers: Vec<usize>,
        require: Requirement,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub pattern: PathPattern,
    /// Upper-case methods; `None` matches any.
    pub methods: Option<Vec<String>>,
    pub access: Access,
}

/// Why a path or serving endpoint cannot be matched safely: read another way that some
/// upstream reads it, it falls under another rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleConflict {
    /// The path's letter case or extension suffix changes its rule.
    Path(String),
    /// The serving endpoint's name differs only in letter case from one a rule names.
    EndpointCase(String),
}

impl RuleConflict {
    /// `bad_path` for the path, and for an endpoint named in it; `bad_body` for a `model`.
    pub fn into_error(self, endpoint_from_body: bool) -> AuthError {
        match self {
            RuleConflict::Path(detail) => AuthError::new(Reason::BadPath, detail),
            RuleConflict::EndpointCase(detail) if endpoint_from_body => {
                AuthError::new(Reason::BadBody, detail)
            }
            RuleConflict::EndpointCase(detail) => AuthError::new(Reason::BadPath, detail),
        }
    }
}

/// The first rule that fits the method and the normalised path, provided every reading of the
/// path an upstream may make (letter case ignored, extension suffix stripped) picks the same.
/// `serving_endpoint` is the model-serving endpoint the request addresses, if any.
///
/// This scans every rule (the reference); the engine uses [`crate::policy::RuleIndex`], which
/// gives the same answers from an index built once per configuration.
pub fn match_rule<'a>(
    rules: &'a [Rule],
    method: &str,
    path: &str,
    serving_endpoint: Option<&str>,
) -> Result<Option<(&'a Rule, Bindings)>, RuleConflict> {
    let all = 0..rules.len();
    let found = match_rule_among(
        rules,
        method,
        path,
        serving_endpoint,
        |_| all.clone(),
        |endpoint| endpoint_case_conflict(rules, all.clone(), endpoint),
    )?;
    Ok(found.map(|(_, rule, bindings)| (rule, bindings)))
}

/// [`match_rule`] over candidate rules: `candidates(path)` yields, in increasing order, the
/// indices of at least every rule that could match `path` in either letter case (or a serving
/// endpoint rule for `serving_endpoint`); `endpoint_conflict` is [`endpoint_case_conflict`]
/// over candidates that include every literal endpoint rule equal to it ignoring case.
pub(super) fn match_rule_among<'a, I>(
    rules: &'a [Rule],
    method: &str,
    path: &str,
    serving_endpoint: Option<&str>,
    candidates: impl Fn(&str) -> I,
    endpoint_conflict: impl Fn(&str) -> Option<usize>,
) -> Result<Option<(usize, &'a Rule, Bindings)>, RuleConflict>
where
    I: IntoIterator<Item = usize>,
{
    if let Some(endpoint) = serving_endpoint
        && let Some(index) = endpoint_conflict(endpoint)
    {
        return Err(endpoint_case_error(rules, index, endpoint));
    }
    let first = |path: &str, case: LetterCase| {
        first_match(
            rules,
            candidates(path),
            method,
            path,
            serving_endpoint,
            case,
        )
    };
    let chosen = first(path, LetterCase::Exact);
    let chosen_index = chosen.as_ref().map(|(index, _)| *index);
    let name_of = |index: Option<usize>| {
        index
            .and_then(|i| rules.get(i))
            .map_or_else(|| "(none)".to_string(), |rule| rule.name.clone())
    };
    let shown = || truncate(path, 200);
    let case_index = first(path, LetterCase::Ignored).map(|(index, _)| index);
    if case_index != chosen_index {
        return Err(RuleConflict::Path(format!(
            "the letter case of {:?} decides its rule: {} as sent, {} ignoring case; send \
             the path in the case the API documents",
            shown(),
            name_of(chosen_index),
            name_of(case_index)
        )));
    }
    // What the other readings stand for, as the refusal says it.
    const SUFFIX: &str = "the extension suffix";
    const DELIMITER: &str = "an escaped ?, # or ; or a trailing dot or space";
    let readings = (suffix_readings(path)
        .into_iter()
        .map(|reading| (reading, SUFFIX)))
    .chain(
        delimiter_readings(path)
            .into_iter()
            .map(|reading| (reading, DELIMITER)),
    );
    for (reading, what) in readings {
        for case in [LetterCase::Exact, LetterCase::Ignored] {
            let other = first(&reading, case).map(|(index, _)| index);
            if other != chosen_index {
                return Err(RuleConflict::Path(format!(
                    "{what} in {:?} decides its rule: {} as sent, {} read as {:?}; brickgate \
                     cannot tell how the upstream reads it",
                    shown(),
                    name_of(chosen_index),
                    name_of(other),
                    truncate(&reading, 200)
                )));
            }
        }
    }
    Ok(chosen.and_then(|(index, bindings)| rules.get(index).map(|rule| (index, rule, bindings))))
}

/// Databricks does not document whether serving endpoint names are case-sensitive: a name
/// that differs only in case from one a rule names could be that endpoint, or another.
/// The first of `candidates` naming such an endpoint.
pub(super) fn endpoint_case_conflict(
    rules: &[Rule],
    candidates: impl IntoIterator<Item = usize>,
    endpoint: &str,
) -> Option<usize> {
    candidates.into_iter().find(|index| {
        matches!(
            rules.get(*index).map(|rule| &rule.pattern),
            Some(PathPattern::ServingEndpoint(Segment::Literal(name)))
                if name != endpoint && name.eq_ignore_ascii_case(endpoint)
        )
    })
}

fn endpoint_case_error(rules: &[Rule], index: usize, endpoint: &str) -> RuleConflict {
    let (rule_name, name) = match rules.get(index).map(|rule| (&rule.name, &rule.pattern)) {
        Some((rule_name, PathPattern::ServingEndpoint(Segment::Literal(name)))) => {
            (rule_name.as_str(), name.as_str())
        }
        _ => ("?", "?"),
    };
    RuleConflict::EndpointCase(format!(
        "serving endpoint {:?} differs only in letter case from {name:?}, which rule {rule_name} \
         names; use the endpoint's exact name",
        truncate(endpoint, 200),
    ))
}

/// Whether `rule` fits the request, and the variables it binds.
fn rule_fits(
    rule: &Rule,
    method: &str,
    path: &str,
    serving_endpoint: Option<&str>,
    case: LetterCase,
) -> Option<Bindings> {
    let method_fits = rule
        .methods
        .as_ref()
        .is_none_or(|methods| methods.iter().any(|m| m == method));
    if !method_fits {
        return None;
    }
    match (&rule.pattern, serving_endpoint) {
        (PathPattern::ServingEndpoint(Segment::Literal(name)), Some(endpoint)) => {
            (name == endpoint).then(Vec::new)
        }
        (PathPattern::ServingEndpoint(Segment::Variable(var)), Some(endpoint)) => {
            Some(vec![(var.clone(), endpoint.to_string())])
        }
        _ => rule.pattern.matches_with(path, case),
    }
}

fn first_match(
    rules: &[Rule],
    candidates: impl IntoIterator<Item = usize>,
    method: &str,
    path: &str,
    serving_endpoint: Option<&str>,
    case: LetterCase,
) -> Option<(usize, Bindings)> {
    candidates.into_iter().find_map(|index| {
        let rule = rules.get(index)?;
        rule_fits(rule, method, path, serving_endpoint, case).map(|bindings| (index, bindings))
    })
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        PathPattern::template(pattern).unwrap().matches(path)
    }

    #[test]
    fn templates_bind_variables_and_tails() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let cases = [
            (
                "/serving-endpoints/{name}/invocations",
                "/serving-endpoints/m1/invocations",
                Some(vec![pair("name", "m1")]),
            ),
            (
                "/serving-endpoints/{name}/invocations",
                "/serving-endpoints/m1/invocations/",
                Some(vec![pair("name", "m1")]),
            ),
            (
                "/serving-endpoints/{name}/invocations",
                "/serving-endpoints//invocations",
                None,
            ),
            (
                "/serving-endpoints/{name}/invocations",
                "/serving-endpoints/m1/invocations/x",
                None,
            ),
            (
                "/serving-endpoints/{name}/invocations",
                "/serving-endpoints/m1",
                None,
            ),
            ("/api/**", "/api", Some(vec![])),
            ("/api/**", "/api/2.0/clusters/list", Some(vec![])),
            ("/api/**", "/apix", None),
            (
                "/api/{v}/jobs/**",
                "/api/2.1/jobs/runs/list",
                Some(vec![pair("v", "2.1")]),
            ),
            ("/**", "/anything/at/all", Some(vec![])),
            ("/api/2.[012]/jobs/**", "/api/2.1/jobs/list", Some(vec![])),
            ("/api/2.[012]/jobs/**", "/api/2.3/jobs/list", None),
            ("/api/2.[012]/jobs/**", "/api/2.10/jobs/list", None),
            ("/api/[12].[09]/x", "/api/1.5/x", None),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(bound(pattern, path), expected, "{pattern} ~ {path}");
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "api/x",
            "/a/{}/b",
            "/a/{x}/{x}",
            "/a/**/b",
            "/a/*",
            "/a//b",
            "/a/{x-y}",
            "/a/b{c}",
        ] {
            assert!(PathPattern::template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn first_matching_rule_wins_and_methods_filter() {
        let rule = |name: &str, pattern: PathPattern, methods: Option<Vec<&str>>| Rule {
            name: name.to_string(),
            pattern,
            methods: methods.map(|m| m.into_iter().map(String::from).collect()),
            access: Access::Anonymous,
        };
        let rules = vec![
            rule(
                "health",
                PathPattern::Exact("/healthz".into()),
                Some(vec!["GET"]),
            ),
            rule(
                "reads",
                PathPattern::Prefix("/api/".into()),
                Some(vec!["GET", "HEAD"]),
            ),
            rule("api", PathPattern::template("/api/**").unwrap(), None),
        ];
        let name = |method: &str, path: &str| {
            match_rule(&rules, method, path, None)
                .unwrap()
                .map(|(r, _)| r.name.clone())
        };
        assert_eq!(name("GET", "/healthz").as_deref(), Some("health"));
        assert_eq!(name("POST", "/healthz"), None);
        assert_eq!(name("GET", "/api/x").as_deref(), Some("reads"));
        assert_eq!(name("POST", "/api/x").as_deref(), Some("api"));
        assert_eq!(name("GET", "/other"), None);
    }

    #[test]
    fn serving_endpoint_rules_match_by_name_or_bind_it() {
        let rule = |name: &str, endpoint: Segment| Rule {
            name: name.to_string(),
            pattern: PathPattern::ServingEndpoint(endpoint),
            methods: None,
            access: Access::Anonymous,
        };
        let rules = vec![
            rule("fraud", Segment::Literal("fraud".into())),
            rule("any", Segment::Variable("name".into())),
        ];
        let got = |endpoint: Option<&str>| {
            match_rule(&rules, "POST", "/x", endpoint)
                .unwrap()
                .map(|(r, b)| (r.name.clone(), b))
        };
        assert_eq!(got(Some("fraud")), Some(("fraud".to_string(), vec![])));
        assert_eq!(
            got(Some("churn")),
            Some((
                "any".to_string(),
                vec![("name".to_string(), "churn".to_string())]
            ))
        );
        assert_eq!(got(None), None);
    }

    fn token_rules() -> Vec<Rule> {
        let rule = |name: &str, template: &str, methods: Option<Vec<&str>>| Rule {
            name: name.to_string(),
            pattern: PathPattern::template(template).unwrap(),
            methods: methods.map(|m| m.into_iter().map(String::from).collect()),
            access: Access::Anonymous,
        };
        vec![
            rule("me", "/api/2.0/preview/scim/v2/Me", Some(vec!["GET"])),
            rule("scim", "/api/2.0/preview/scim/v2/**", None),
            rule("secret-value", "/api/2.0/secrets/get", Some(vec!["GET"])),
            rule("secrets-read", "/api/2.0/secrets/**", Some(vec!["GET"])),
            rule("token-list", "/api/2.0/token/list", Some(vec!["GET"])),
            rule("tokens", "/api/2.0/token/**", None),
            rule("jobs", "/api/2.[01]/jobs/**", None),
            rule("uc", "/api/2.1/unity-catalog/**", None),
            rule("default", "/api/**", None),
        ]
    }

    #[test]
    fn letter_case_and_suffixes_must_not_change_the_rule() {
        let rules = token_rules();
        // (method, path, the rule, or the words of the conflict)
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("GET", "/api/2.0/preview/scim/v2/Me", Ok("me")),
            ("GET", "/api/2.0/preview/scim/v2/Users", Ok("scim")),
            ("POST", "/api/2.0/token/create", Ok("tokens")),
            ("POST", "/api/2.0/Token/create", Err("letter case")),
            ("POST", "/API/2.0/token/create", Err("letter case")),
            ("GET", "/api/2.0/preview/scim/v2/me", Err("letter case")),
            ("GET", "/api/2.0/preview/scim/v2/ME", Err("letter case")),
            ("GET", "/api/2.0/Secrets/get", Err("letter case")),
            ("GET", "/API/2.1/JOBS/list", Err("letter case")),
            // Case that does not change the rule is the upstream's business.
            ("GET", "/api/2.1/jobs/List", Ok("jobs")),
            (
                "GET",
                "/api/2.1/unity-catalog/tables/Main.Default.T",
                Ok("uc"),
            ),
            // Suffixes: stripped, the last segment would fall under a stricter rule.
            ("GET", "/api/2.0/secrets/get.json", Err("extension suffix")),
            ("GET", "/api/2.0/secrets/get.json/", Err("extension suffix")),
            ("GET", "/api/2.0/secrets/get.a.b", Err("extension suffix")),
            ("GET", "/api/2.0/secrets/GET.json", Err("extension suffix")),
            ("GET", "/api/2.0/token/list.json", Err("extension suffix")),
            ("GET", "/api/2.0/secrets/list.json", Ok("secrets-read")),
            (
                "GET",
                "/api/2.1/unity-catalog/tables/main.default.t",
                Ok("uc"),
            ),
            (
                "GET",
                "/api/2.0/fs/files/Volumes/a/b/c/data.csv",
                Ok("default"),
            ),
        ];
        for (method, path, expected) in cases {
            let got = match_rule(&rules, method, path, None);
            match (expected, got) {
                (Ok(name), Ok(Some((rule, _)))) => assert_eq!(rule.name, *name, "{path}"),
                (Err(words), Err(RuleConflict::Path(detail))) => {
                    assert!(detail.contains(words), "{path}: {detail}")
                }
                (expected, got) => panic!("{method} {path}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn endpoint_names_differing_only_in_case_are_refused() {
        let rule = |name: &str, endpoint: Segment| Rule {
            name: name.to_string(),
            pattern: PathPattern::ServingEndpoint(endpoint),
            methods: None,
            access: Access::Anonymous,
        };
        let rules = vec![
            rule("fraud", Segment::Literal("fraud".into())),
            rule("any", Segment::Variable("name".into())),
        ];
        for name in ["FRAUD", "Fraud", "frauD"] {
            let conflict = match_rule(&rules, "POST", "/x", Some(name)).unwrap_err();
            let RuleConflict::EndpointCase(detail) = &conflict else {
                panic!("{conflict:?}")
            };
            assert!(detail.contains("rule fraud"), "{detail}");
            assert_eq!(conflict.clone().into_error(true).reason, Reason::BadBody);
            assert_eq!(conflict.into_error(false).reason, Reason::BadPath);
        }
        let got = match_rule(&rules, "POST", "/x", Some("fraud")).unwrap();
        assert_eq!(got.map(|(r, _)| r.name.clone()).as_deref(), Some("fraud"));
        let got = match_rule(&rules, "POST", "/x", Some("frauds")).unwrap();
        assert_eq!(got.map(|(r, _)| r.name.clone()).as_deref(), Some("any"));
    }

    #[test]
    fn globs_and_prefixes_ignore_case_only_when_asked() {
        assert!(glob_matches("2.[01]", "2.1", LetterCase::Exact));
        assert!(!glob_matches("[ab]x", "Ax", LetterCase::Exact));
        assert!(glob_matches("[ab]x", "AX", LetterCase::Ignored));
        let prefix = PathPattern::Prefix("/api/".into());
        assert!(prefix.matches("/API/x").is_none());
        assert!(prefix.matches_with("/API/x", LetterCase::Ignored).is_some());
        assert!(prefix.matches_with("/é", LetterCase::Ignored).is_none());
        let exact = PathPattern::Exact("/healthz".into());
        assert!(
            exact
                .matches_with("/HealthZ", LetterCase::Ignored)
                .is_some()
        );
    }
}
