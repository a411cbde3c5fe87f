//! Bounding what a refusal repeats back. Token headers and claims (`alg`, `typ`, `kid`, `iss`,
//! `aud`, scopes, groups) are chosen by whoever sent the token: a message may name them, so the
//! caller sees what was compared, but only bounded, printable and in a few items, so a token
//! cannot blow up a `WWW-Authenticate` header, a body or a log line.

/// The most characters of one echoed value.
pub const MAX_ECHO_CHARS: usize = 64;
/// The most items of an echoed list.
pub const MAX_ECHO_ITEMS: usize = 8;

/// `text` as a message may repeat it: at most `MAX_ECHO_CHARS` characters (then `...`), and
/// only printable ASCII (anything else becomes `?`).
pub fn echo(text: &str) -> String {
    echo_at_most(text, MAX_ECHO_CHARS)
}

/// `echo` with another bound, for texts longer by nature (a parser's error message).
pub fn echo_at_most(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars) + 3);
    for (index, c) in text.chars().enumerate() {
        if index == max_chars {
            out.push_str("...");
            break;
        }
        out.push(if (' '..='~').contains(&c) { c } else { '?' });
    }
    out
}

/// A list as a message may repeat it: the first `MAX_ECHO_ITEMS` items, each `echo`ed, joined
/// by `, `, then `and N more`.
pub fn echo_list<S: AsRef<str>>(items: &[S]) -> String {
    let mut shown: Vec<String> = items
        .iter()
        .take(MAX_ECHO_ITEMS)
        .map(|item| echo(item.as_ref()))
        .collect();
    if items.len() > MAX_ECHO_ITEMS {
        shown.push(format!("and {} more", items.len() - MAX_ECHO_ITEMS));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_bounds_and_cleans_one_value() {
        let long = "a".repeat(MAX_ECHO_CHARS + 1);
        let cases: &[(&str, String)] = &[
            ("RS256", "RS256".to_string()),
            ("", String::new()),
            ("a\"b\\c", "a\"b\\c".to_string()),
            ("tab\there\r\n", "tab?here??".to_string()),
            ("é😀", "??".to_string()),
            (&long[..MAX_ECHO_CHARS], "a".repeat(MAX_ECHO_CHARS)),
            (&long, format!("{}...", "a".repeat(MAX_ECHO_CHARS))),
        ];
        for (text, expected) in cases {
            assert_eq!(&echo(text), expected, "{text:?}");
        }
        let huge = "é".repeat(100_000);
        assert_eq!(echo(&huge).len(), MAX_ECHO_CHARS + 3);
    }

    #[test]
    fn echo_list_bounds_items_and_each_item() {
        let many: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
        let long = vec!["x".repeat(1000)];
        let cases: Vec<(&[String], String)> = vec![
            (&[], String::new()),
            (&many[..2], "s0, s1".to_string()),
            (
                &many[..MAX_ECHO_ITEMS],
                "s0, s1, s2, s3, s4, s5, s6, s7".to_string(),
            ),
            (
                &many[..9],
                "s0, s1, s2, s3, s4, s5, s6, s7, and 1 more".to_string(),
            ),
            (
                &many,
                "s0, s1, s2, s3, s4, s5, s6, s7, and 12 more".to_string(),
            ),
            (&long, format!("{}...", "x".repeat(MAX_ECHO_CHARS))),
        ];
        for (items, expected) in cases {
            assert_eq!(echo_list(items), expected, "{} items", items.len());
        }
    }
}
