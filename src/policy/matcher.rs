//! Rules, matched in order by method and normalised path.

use crate::policy::require::Requirement;

/// Values bound by `{name}` template segments.
pub type Bindings = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Variable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    Prefix(String),
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
            } else if part.is_empty() || part.contains(['{', '}', '*']) {
                return Err(format!(
                    "bad segment {part:?} (use literal text, {{name}}, or a final **)"
                ));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(PathPattern::Template { segments, any_tail })
    }

    pub fn variables(&self) -> Vec<&str> {
        match self {
            PathPattern::Template { segments, .. } => segments
                .iter()
                .filter_map(|s| match s {
                    Segment::Variable(name) => Some(name.as_str()),
                    Segment::Literal(_) => None,
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
            PathPattern::Template { segments, any_tail } => {
                let mut parts = path.strip_prefix('/')?.split('/');
                let mut bindings = Vec::new();
                for segment in segments {
                    let part = parts.next()?;
                    match segment {
                        Segment::Literal(literal) if literal == part => {}
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
pub fn match_rule<'a>(rules: &'a [Rule], method: &str, path: &str) -> Option<(&'a Rule, Bindings)> {
    rules.iter().find_map(|rule| {
        let method_fits = rule
            .methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method));
        if !method_fits {
            return None;
        }
        rule.pattern.matches(path).map(|bindings| (rule, bindings))
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
            match_rule(&rules, method, path).map(|(r, _)| r.name.clone())
        };
        assert_eq!(name("GET", "/healthz").as_deref(), Some("health"));
        assert_eq!(name("POST", "/healthz"), None);
        assert_eq!(name("GET", "/api/x").as_deref(), Some("reads"));
        assert_eq!(name("POST", "/api/x").as_deref(), Some("api"));
        assert_eq!(name("GET", "/other"), None);
    }
}
