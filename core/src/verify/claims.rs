//! Claim checks with an injected clock: lifetime (`exp`, `nbf`, `iat`, maximum lifetime) and
//! audience, each failing with a message that names the values compared.

use serde_json::{Map, Value};

use crate::UnixTime;
use crate::error::{AuthError, Reason, echo_list};

type Claims = Map<String, Value>;

/// A NumericDate claim (RFC 7519 §2): a non-negative number of seconds, fractions dropped.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => match (number.as_u64(), number.as_f64()) {
            (Some(seconds), _) => Ok(Some(seconds)),
            (None, Some(seconds)) if seconds.is_finite() && seconds >= 0.0 => {
                Ok(Some(seconds as u64))
            }
            _ => Err(AuthError::new(
                Reason::MalformedToken,
                format!("claim {name} is not a valid NumericDate"),
            )),
        },
        Some(_) => Err(AuthError::new(
            Reason::MalformedToken,
            format!("claim {name} is not a number"),
        )),
    }
}

pub fn check_lifetime(
    claims: &Claims,
    now: UnixTime,
    skew: u64,
    max_lifetime: u64,
) -> Result<(), AuthError> {
    let times = token_times(claims)?;
    check_times(&times, now, skew, max_lifetime)
}

/// The time claims of a token, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTimes {
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
}

pub fn token_times(claims: &Claims) -> Result<TokenTimes, AuthError> {
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| {
        AuthError::new(
            Reason::Expired,
            "token has no exp claim; access tokens must expire",
        )
    })?;
    Ok(TokenTimes {
        exp,
        nbf: numeric_date(claims, "nbf")?,
        iat: numeric_date(claims, "iat")?,
    })
}

/// `exp`, `nbf`, `iat` against `now` with skew, and the maximum lifetime.
pub fn check_times(
    times: &TokenTimes,
    now: UnixTime,
    skew: u64,
    max_lifetime: u64,
) -> Result<(), AuthError> {
    let TokenTimes { exp, nbf, iat } = *times;
    if now >= exp.saturating_add(skew) {
        return Err(AuthError::new(
            Reason::Expired,
            format!(
                "token expired at {} ({} s ago; clock skew allowance {skew} s)",
                format_time(exp),
                now - exp
            ),
        ));
    }
    if let Some(nbf) = nbf.filter(|nbf| *nbf > now.saturating_add(skew)) {
        return Err(AuthError::new(
            Reason::NotYetValid,
            format!(
                "token not valid before {} ({} s from now; clock skew allowance {skew} s)",
                format_time(nbf),
                nbf - now
            ),
        ));
    }
    if let Some(iat) = iat.filter(|iat| *iat > now.saturating_add(skew)) {
        return Err(AuthError::new(
            Reason::IssuedInFuture,
            format!(
                "token issued in the future, at {} ({} s from now; clock skew allowance {skew} s)",
                format_time(iat),
                iat - now
            ),
        ));
    }
    let start = iat.or(nbf).ok_or_else(|| {
        AuthError::new(
            Reason::LifetimeTooLong,
            "token has neither iat nor nbf, so its lifetime cannot be bounded",
        )
    })?;
    let lifetime = exp.saturating_sub(start);
    if lifetime > max_lifetime {
        return Err(AuthError::new(
            Reason::LifetimeTooLong,
            format!(
                "token lifetime is {lifetime} s; this provider accepts at most {max_lifetime} s"
            ),
        ));
    }
    Ok(())
}

/// `aud` must hold at least one of `accepted` (RFC 7519 §4.1.3).
pub fn check_audience(claims: &Claims, accepted: &[String]) -> Result<(), AuthError> {
    let held = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                AuthError::new(Reason::MalformedToken, "claim aud holds a non-string")
            })?,
        Some(_) => {
            return Err(AuthError::new(
                Reason::MalformedToken,
                "claim aud is not a string or array",
            ));
        }
    };
    if held.iter().any(|aud| accepted.contains(aud)) {
        return Ok(());
    }
    Err(AuthError::new(
        Reason::AudienceMismatch,
        format!(
            "audience mismatch: token has [{}], this route accepts [{}]",
            echo_list(&held),
            echo_list(accepted)
        ),
    ))
}

/// Looks up a claim by dotted path (`realm_access.roles`).
pub fn claim_at<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let first = claims.get(parts.next()?)?;
    parts.try_fold(first, |value, part| value.get(part))
}

/// A scope claim read as a list: a string is space-delimited (`scope`, RFC 8693 §4.2, which
/// RFC 9068 §2.2.3 uses; Entra ID's `scp` is the same), an array is taken as is (non-strings
/// skipped). Anything else is empty.
pub fn scope_list(claims: &Claims, name: &str) -> Vec<String> {
    match claim_at(claims, name) {
        Some(Value::String(text)) => text.split_whitespace().map(str::to_string).collect(),
        other => array_of_strings(other),
    }
}

/// A group or role claim read as a list of names. IdPs send these as arrays (RFC 9068 §2.2.3.1
/// takes `groups` and `roles` from SCIM's multi-valued attributes, RFC 7643 §4.1.2; Entra ID's
/// `groups` and `roles`, Okta's and Keycloak's `groups` are JSON arrays), and a group name may
/// hold spaces (`Domain Admins`). So a string is ONE name, never split: splitting it would let
/// `"Domain Admins"` satisfy a rule or grant for `Admins`. An empty string is no name.
pub fn name_list(claims: &Claims, name: &str) -> Vec<String> {
    match claim_at(claims, name) {
        Some(Value::String(text)) if text.is_empty() => Vec::new(),
        Some(Value::String(text)) => vec![text.clone()],
        other => array_of_strings(other),
    }
}

/// An array's strings (non-strings skipped); anything else is empty.
fn array_of_strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

pub fn string_claim(claims: &Claims, name: &str) -> Option<String> {
    claim_at(claims, name)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// RFC 3339 in UTC, so messages say when a token expired in words people can check.
pub fn format_time(unix: UnixTime) -> String {
    let days = unix / 86_400;
    let seconds = unix % 86_400;
    // Civil-from-days (Howard Hinnant), valid for all dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn lifetime_table() {
        let cases: Vec<(Value, Option<Reason>)> = vec![
            (json!({"exp": NOW + 60, "iat": NOW}), None),
            (json!({"exp": NOW - 30, "iat": NOW - 100}), None), // within skew
            (
                json!({"exp": NOW - 60, "iat": NOW - 100}),
                Some(Reason::Expired),
            ),
            (json!({"iat": NOW}), Some(Reason::Expired)),
            (
                json!({"exp": "soon", "iat": NOW}),
                Some(Reason::MalformedToken),
            ),
            (json!({"exp": -5, "iat": NOW}), Some(Reason::MalformedToken)),
            (json!({"exp": (NOW + 60) as f64 + 0.5, "iat": NOW}), None),
            (
                json!({"exp": NOW + 600, "iat": NOW, "nbf": NOW + 61}),
                Some(Reason::NotYetValid),
            ),
            (json!({"exp": NOW + 600, "iat": NOW, "nbf": NOW + 60}), None),
            (
                json!({"exp": NOW + 600, "iat": NOW + 61}),
                Some(Reason::IssuedInFuture),
            ),
            (json!({"exp": NOW + 600}), Some(Reason::LifetimeTooLong)),
            (json!({"exp": NOW + 600, "nbf": NOW}), None),
            (
                json!({"exp": NOW + 3601, "iat": NOW}),
                Some(Reason::LifetimeTooLong),
            ),
            (
                json!({"exp": u64::MAX, "iat": NOW}),
                Some(Reason::LifetimeTooLong),
            ),
        ];
        for (value, expected) in cases {
            let got = check_lifetime(&claims(value.clone()), NOW, 60, 3600);
            assert_eq!(got.err().map(|e| e.reason), expected, "{value}");
        }
    }

    #[test]
    fn expiry_message_is_readable() {
        let error = check_lifetime(
            &claims(json!({"exp": NOW - 125, "iat": NOW - 500})),
            NOW,
            60,
            3600,
        )
        .unwrap_err();
        assert_eq!(
            error.detail,
            "token expired at 2027-01-15T07:57:55Z (125 s ago; clock skew allowance 60 s)"
        );
    }

    #[test]
    fn audience_table() {
        let accepted = vec!["api".to_string(), "other".to_string()];
        let cases: Vec<(Value, Option<Reason>)> = vec![
            (json!({"aud": "api"}), None),
            (json!({"aud": ["x", "other"]}), None),
            (json!({"aud": "x"}), Some(Reason::AudienceMismatch)),
            (json!({"aud": []}), Some(Reason::AudienceMismatch)),
            (json!({}), Some(Reason::AudienceMismatch)),
            (json!({"aud": [1]}), Some(Reason::MalformedToken)),
            (json!({"aud": {"a": 1}}), Some(Reason::MalformedToken)),
        ];
        for (value, expected) in cases {
            let got = check_audience(&claims(value.clone()), &accepted);
            assert_eq!(got.err().map(|e| e.reason), expected, "{value}");
        }
        let error = check_audience(&claims(json!({"aud": ["a"]})), &["b".to_string()]).unwrap_err();
        assert_eq!(
            error.detail,
            "audience mismatch: token has [a], this route accepts [b]"
        );
    }

    /// Scopes are space-delimited in a string; groups and roles are one name per string.
    #[test]
    fn scope_and_name_lists_table() {
        // (claim value, as scopes, as groups or roles)
        let cases: Vec<(Value, Vec<&str>, Vec<&str>)> = vec![
            (json!("a  b"), vec!["a", "b"], vec!["a  b"]),
            (
                json!("Domain Admins"),
                vec!["Domain", "Admins"],
                vec!["Domain Admins"],
            ),
            (json!("admins"), vec!["admins"], vec!["admins"]),
            (json!(""), vec![], vec![]),
            (json!(" "), vec![], vec![" "]),
            (
                json!(["Domain Admins", 1, "ops"]),
                vec!["Domain Admins", "ops"],
                vec!["Domain Admins", "ops"],
            ),
            (json!([]), vec![], vec![]),
            (json!(7), vec![], vec![]),
            (json!({"a": "b"}), vec![], vec![]),
            (json!(null), vec![], vec![]),
        ];
        for (value, scopes, names) in cases {
            let c = claims(json!({ "claim": value }));
            assert_eq!(scope_list(&c, "claim"), scopes, "scopes of {value}");
            assert_eq!(name_list(&c, "claim"), names, "names of {value}");
        }
        let c = claims(json!({"realm": {"roles": ["r s"]}}));
        assert_eq!(name_list(&c, "realm.roles"), ["r s"]);
        assert!(name_list(&c, "missing").is_empty());
        assert!(scope_list(&c, "missing").is_empty());
    }

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
