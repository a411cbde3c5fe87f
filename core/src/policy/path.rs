//! Path normalisation before matching, so `/api/2.0/clusters/../secrets/get` is judged as
//! `/api/2.0/secrets/get`, exactly as the upstream will resolve it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// Decoded, with dot segments resolved and repeated slashes merged.
    pub path: String,
    /// The same path, percent-encoded where needed: what the upstream should see.
    pub encoded: String,
    /// The query string (without `?`), untouched.
    pub query: Option<String>,
    /// What `:path` should become so the upstream serves what was authorised, when it differs.
    pub rewritten: Option<String>,
}

/// Normalises a request's `:path`. Escapes that would change the path's structure once
/// decoded (`%2F`, `%5C`) or smuggle control bytes are refused rather than guessed at.
pub fn normalize_path(raw: &str) -> Result<NormalizedPath, String> {
    let (path_part, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (raw, None),
    };
    let path_part = path_part.split('#').next().unwrap_or_default();
    if !path_part.starts_with('/') {
        return Err("path does not start with /".to_string());
    }
    let decoded = percent_decode(path_part)?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let ends_like_directory = ["/", "/.", "/.."].iter().any(|end| decoded.ends_with(end));
    let mut path = format!("/{}", segments.join("/"));
    if ends_like_directory && path != "/" {
        path.push('/');
    }
    let encoded = percent_encode(&path);
    let rewritten = (encoded != path_part).then(|| match &query {
        Some(query) => format!("{encoded}?{query}"),
        None => encoded.clone(),
    });
    Ok(NormalizedPath {
        path,
        encoded,
        query,
        rewritten,
    })
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte != b'%' {
            if byte < 0x20 || byte == 0x7f {
                return Err("control character in path".to_string());
            }
            out.push(byte);
            index += 1;
            continue;
        }
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| "invalid percent-escape in path".to_string())?;
        match hex {
            b'/' | b'\\' => return Err("encoded slash or backslash in path".to_string()),
            0..=0x1f | 0x7f => return Err("encoded control character in path".to_string()),
            _ => out.push(hex),
        }
        index += 3;
    }
    String::from_utf8(out).map_err(|_| "path is not UTF-8 once decoded".to_string())
}

fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&byte);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_dot_segments_slashes_escapes_and_query() {
        let cases = [
            ("/api/2.0/clusters/list", "/api/2.0/clusters/list", None),
            (
                "/api/2.0/clusters/../secrets/get",
                "/api/2.0/secrets/get",
                Some("/api/2.0/secrets/get"),
            ),
            (
                "//api//2.0/./clusters/list",
                "/api/2.0/clusters/list",
                Some("/api/2.0/clusters/list"),
            ),
            (
                "/api/2.0/clusters/list?x=1&y=2",
                "/api/2.0/clusters/list",
                None,
            ),
            (
                "/api/2.0/%63lusters/list?a=b",
                "/api/2.0/clusters/list",
                Some("/api/2.0/clusters/list?a=b"),
            ),
            ("/api/2.0/%2e%2e/x", "/api/x", Some("/api/x")),
            ("/../../etc/passwd", "/etc/passwd", Some("/etc/passwd")),
            ("/api/", "/api/", None),
            ("/api/x/..", "/api/", Some("/api/")),
            ("/", "/", None),
            ("/a%20b", "/a b", None),
            (
                "/serving-endpoints/m/invocations#frag",
                "/serving-endpoints/m/invocations",
                None,
            ),
        ];
        for (raw, path, rewritten) in cases {
            let got = normalize_path(raw).unwrap();
            assert_eq!(got.path, path, "{raw}");
            assert_eq!(got.rewritten.as_deref(), rewritten, "{raw}");
        }
    }

    #[test]
    fn refuses_structure_changing_escapes() {
        for raw in [
            "/api%2Fx", "/api%2fx", "/a%5Cb", "/a%00", "/a%zz", "/a%2", "relative", "/a\u{1}b",
            "/%ff",
        ] {
            assert!(normalize_path(raw).is_err(), "{raw:?}");
        }
    }
}
