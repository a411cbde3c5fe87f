//! Rules, matched in order by method and normalised path.

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

/// Matches `text` against a segment with `[...]` character classes (validated at parse).
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut text = text.chars();
    let mut pattern = pattern.chars();
    while let Some(expected) = pattern.next() {
        let Some(actual) = text.next() else {
            return false;
        };
        if expected == '[' {
            let set: String = pattern.by_ref().take_while(|c| *c != ']').collect();
            if !set.contains(actual) {
                return false;
            }
        } else if expected != actual {
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
        match self {
            PathPattern::Exact(exact) => (path == exact).then(Vec::new),
            PathPattern::Prefix(prefix) => path.starts_with(prefix.as_str()).then(Vec::new),
            PathPattern::ServingEndpoint(_) => None,
            PathPattern::Template { segments, any_tail } => {
                let mut parts = path.strip_prefix('/')?.split('/');
                let mut bindings = Vec::new();
                for segment in segments {
                    let part = parts.next()?;
                    match segment {
                        Segment::Literal(literal) if literal == part => {}
                        Segment::Glob(glob) if glob_matches(glob, part) => {}
                        Segment::Variable(name) if !part.is_empty() => {
                            bindings.push((name.clone(), part.to_string()));
                        }
                        _ => return None,
                    }
                }
                let rest: Vec<&str> = parts.collect();
                // A trailing slash yields one empty part; only `**` absorbs real segments.
                let nothing_left = rest.is_empty() || rest == [""];
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

/// The first rule that fits the method and the normalised path.
/// `serving_endpoint` is the model-serving endpoint the request addresses, if any.
pub fn match_rule<'a>(
    rules: &'a [Rule],
    method: &str,
    path: &str,
    serving_endpoint: Option<&str>,
) -> Option<(&'a Rule, Bindings)> {
    rules.iter().find_map(|rule| {
        let method_fits = rule
            .methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method));
        if !method_fits {
            return None;
        }
        match (&rule.pattern, serving_endpoint) {
            (PathPattern::ServingEndpoint(Segment::Literal(name)), Some(endpoint)) => {
                (name == endpoint).then(|| (rule, Vec::new()))
            }
            (PathPattern::ServingEndpoint(Segment::Variable(var)), Some(endpoint)) => {
                Some((rule, vec![(var.clone(), endpoint.to_string())]))
            }
            _ => rule.pattern.matches(path).map(|bindings| (rule, bindings)),
        }
    })
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
            match_rule(&rules, method, path, None).map(|(r, _)| r.name.clone())
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
            match_rule(&rules, "POST", "/x", endpoint).map(|(r, b)| (r.name.clone(), b))
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
}
