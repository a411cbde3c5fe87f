//! Comparing header names the way the most lenient upstream does: many servers (CGI, WSGI,
//! nginx's `underscores_in_headers`, Rails, PHP) read `X_Forwarded_User` as `x-forwarded-user`,
//! so a header brickgate strips must be recognised whatever its case and whether it is spelled
//! with `_` or `-`.

/// The byte an upstream may read in place of `byte`: lower case, `_` as `-`.
fn fold(byte: u8) -> u8 {
    match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

/// `a` and `b` name the same header for some upstream (case and `_`/`-` folded).
pub fn same_header_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// `name` starts with `prefix` for some upstream (case and `_`/`-` folded).
pub fn has_header_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(x, y)| fold(x) == fold(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_case_and_underscores() {
        let cases = [
            ("x-forwarded-user", "x-forwarded-user", true),
            ("X_Forwarded_User", "x-forwarded-user", true),
            ("x_forwarded-USER", "x-forwarded-user", true),
            ("x-forwarded-users", "x-forwarded-user", false),
            ("x.forwarded.user", "x-forwarded-user", false),
            ("", "", true),
        ];
        for (a, b, same) in cases {
            assert_eq!(same_header_name(a, b), same, "{a} vs {b}");
            assert_eq!(same_header_name(b, a), same, "{b} vs {a}");
        }
    }

    #[test]
    fn prefixes_fold_case_and_underscores() {
        let cases = [
            ("x-brickgate-subject", true),
            ("X_Brickgate_Subject", true),
            ("X-BRICKGATE_rule", true),
            ("x-brickgate-", true),
            ("x-brickgate", false),
            ("x-brickgatex", false),
            ("y-brickgate-subject", false),
        ];
        for (name, expected) in cases {
            assert_eq!(has_header_prefix(name, "x-brickgate-"), expected, "{name}");
        }
    }
}
