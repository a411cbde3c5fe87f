//! Databricks serves one operation under several spellings: its API version varies
//! (`/api/2.0/token/create`, `/api/2.1/token/create`, `/api/2.2/...`) and a `preview/` segment
//! may follow it (`/api/2.0/preview/token/create`). A catalogue entry therefore matches every
//! spelling of its family: the version segment matches any version, and `preview/` is optional.
//! An unknown version of a known family falls to the family (and a class refusal), never to
//! the `all-apis` default: no spelling is less restricted than the canonical one.

use crate::databricks::serving;

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

/// Databricks' REST paths start `/api/<version>/<family>`, `/api/<version>/preview/<family>` or
/// `/api/<api>/v<n>/…` (every one of the Go SDK's 1,245 routes does:
/// shared/design/databricks-rest-routes-from-sdk-go.tsv). A path that stacks versions or
/// `preview` before its family (`/api/2.0/preview/preview/…`, `/api/2.0/2.1/…`,
/// `/api/preview/2.0/…`, `/api/x/2.0/…`), or lacks its version (`/api/token/create`), is none of these: no catalogue family matches it, so it
/// would fall to the `all-apis` default while an upstream that skips the extra segments serves
/// the family. Brickgate cannot know how Databricks reads it, so it is refused. `path` is
/// normalised (decoded, dot segments resolved); letter case is ignored, as an upstream may.
/// Likewise the serving data plane spelled under `/api/` ([`invokes_under_api`]) is refused.
pub fn check_api_spelling(path: &str) -> Result<(), String> {
    let mut segments = path.split('/').skip(1);
    if !segments
        .next()
        .is_some_and(|s| s.eq_ignore_ascii_case("api"))
    {
        return Ok(());
    }
    let Some(first) = segments.next() else {
        return Ok(());
    };
    let stacked = if is_preview(first) {
        true
    } else if is_version_like(first) {
        // `/api/2.0/[preview/]<family>`: the family is neither a version nor `preview`.
        let mut family = segments.next();
        if family.is_some_and(is_preview) {
            family = segments.next();
        }
        family.is_some_and(|s| is_preview(s) || is_version_like(s))
    } else {
        // `/api/<api>/v<n>/<resource>`: a named API's version is `v<n>`, once. Without one
        // (`/api/token/create`) the path lacks its version, which is as unserved as a stack.
        match segments.next() {
            Some(second) if is_preview(second) || is_bare_version(second) => true,
            Some(second) if is_version_like(second) => segments
                .next()
                .is_some_and(|s| is_preview(s) || is_version_like(s)),
            Some(_) => true,
            None => !first.is_empty(),
        }
    };
    if stacked {
        return Err(stacked_message(path));
    }
    if invokes_under_api(path) {
        return Err(format!(
            "{:?} spells a serving endpoint's invocation (or an OpenAI-style or AI Gateway route) \
             under /api/; Databricks serves them at /serving-endpoints/… and /ai-gateway/…, \
             where brickgate applies the endpoint's rules",
            path.chars().take(200).collect::<String>()
        ));
    }
    Ok(())
}

/// Whether `path`, an `/api/<version>/[preview/]…` path, is a data-plane serving route under
/// the management API's prefix (`/api/2.0/serving-endpoints/fraud/invocations`): brickgate
/// would judge it by the catalogue's `model-serving` family, not by the endpoint's own rules.
/// Letter case is ignored.
fn invokes_under_api(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let Some((_, rest)) = lower
        .strip_prefix("/api/")
        .and_then(|after| after.split_once('/'))
    else {
        return false;
    };
    let rest = format!("/{}", rest.strip_prefix("preview/").unwrap_or(rest));
    serving::endpoint_in_body("POST", &rest) || serving::endpoint("POST", &rest, None).is_some()
}

fn stacked_message(path: &str) -> String {
    format!(
        "{:?} stacks API versions or `preview` segments; Databricks serves \
             /api/<version>/[preview/]<api>/… and /api/<api>/v<n>/…, and brickgate cannot know \
             how it would read this",
        path.chars().take(200).collect::<String>()
    )
}

fn is_preview(segment: &str) -> bool {
    segment.eq_ignore_ascii_case("preview")
}

/// `2`, `2.0`, `2.0.1`: digits and dots, starting with a digit.
fn is_bare_version(segment: &str) -> bool {
    segment.starts_with(|c: char| c.is_ascii_digit())
        && segment.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// A bare version or one with a `v` before it (`v1`, `V2.0`).
fn is_version_like(segment: &str) -> bool {
    let bare = segment.strip_prefix(['v', 'V']).unwrap_or(segment);
    is_bare_version(bare)
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
