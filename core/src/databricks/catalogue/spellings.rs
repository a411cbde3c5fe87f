//! Databricks serves one operation under several spellings: its API version varies
//! (`/api/2.0/token/create`, `/api/2.1/token/create`, `/api/2.2/...`) and a `preview/` segment
//! may follow it (`/api/2.0/preview/token/create`). A catalogue entry therefore matches every
//! spelling of its family: the version segment matches any version, and `preview/` is optional.
//! An unknown version of a known family falls to the family (and a class refusal), never to
//! the `all-apis` default: no spelling is less restricted than the canonical one.

/// The templates an entry's template stands for: itself, or, for an `/api/<version>/<family>`
/// template, the family under any version, with and without `preview/`.
pub fn spellings(template: &str) -> Vec<String> {
    let Some(after_api) = template.strip_prefix("/api/") else {
        return vec![template.to_string()];
    };
    let Some((version, rest)) = after_api.split_once('/') else {
        return vec![template.to_string()];
    };
    let rest = rest.strip_prefix("preview/").unwrap_or(rest);
    // `/api/1.2/**` is a whole API version (command execution), not one family in it.
    if !is_version(version) || rest.starts_with("**") || rest.is_empty() {
        return vec![template.to_string()];
    }
    vec![
        format!("/api/{{api_version}}/{rest}"),
        format!("/api/{{api_version}}/preview/{rest}"),
    ]
}

/// `2.0`, `2.[01]`, `[23].0`: a version, possibly with character classes.
fn is_version(segment: &str) -> bool {
    segment.contains('.')
        && segment
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::spellings;

    #[test]
    fn families_match_every_version_with_and_without_preview() {
        let cases: &[(&str, &[&str])] = &[
            (
                "/api/2.0/token/create",
                &[
                    "/api/{api_version}/token/create",
                    "/api/{api_version}/preview/token/create",
                ],
            ),
            (
                "/api/2.0/preview/scim/v2/**",
                &[
                    "/api/{api_version}/scim/v2/**",
                    "/api/{api_version}/preview/scim/v2/**",
                ],
            ),
            (
                "/api/2.[01]/unity-catalog/**",
                &[
                    "/api/{api_version}/unity-catalog/**",
                    "/api/{api_version}/preview/unity-catalog/**",
                ],
            ),
            ("/api/1.2/**", &["/api/1.2/**"]),
            ("/api/warehouses/v1/**", &["/api/warehouses/v1/**"]),
            ("/oidc/**", &["/oidc/**"]),
            (
                "/serving-endpoints/{name}/invocations",
                &["/serving-endpoints/{name}/invocations"],
            ),
        ];
        for (template, expected) in cases {
            assert_eq!(spellings(template), *expected, "{template}");
        }
    }
}
