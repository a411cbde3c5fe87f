//! The canonical path (docs/PATHS.md): one reading of `:path` that rules are matched against
//! and that the upstream receives. Whatever brickgate resolves itself (dot segments, repeated
//! slashes, escaped letters) it forwards resolved, so the upstream sees what was judged; whatever
//! an upstream might read differently in a way no rule can account for (raw `;` parameters,
//! backslashes, escaped dots and slashes, double encoding, Unicode look-alikes) is refused with
//! `bad_path`, never guessed at. Escaped `?`, `#`, `;` and `%` and dot- or space-ended segments
//! are data (file names in the Files API), forwarded as data; letter case, extension suffixes
//! and those data bytes read as structure depend on the rules, so the matcher checks them
//! ([`suffix_readings`], [`delimiter_readings`]).

/// Longest `:path` (query excluded) brickgate reads; Databricks paths are far shorter.
pub const MAX_PATH_BYTES: usize = 8192;

/// How much of an offending segment a refusal echoes.
const ECHO_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// Decoded, with dot segments resolved and repeated slashes merged: what rules match.
    pub path: String,
    /// The same path in canonical encoding: what the upstream should see.
    pub encoded: String,
    /// The query string (without `?`), untouched.
    pub query: Option<String>,
    /// What `:path` should become so the upstream serves what was authorised, when it differs.
    pub rewritten: Option<String>,
}

/// One path segment, decoded (for matching) and canonically encoded (for the upstream).
#[derive(Default)]
struct Segment {
    decoded: Vec<u8>,
    encoded: String,
}

/// Normalises a request's `:path`, or says precisely why it cannot be read safely.
pub fn normalize_path(raw: &str) -> Result<NormalizedPath, String> {
    let (path_part, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (raw, None),
    };
    if path_part.len() > MAX_PATH_BYTES {
        return Err(format!(
            "path of {} bytes exceeds the {MAX_PATH_BYTES} bytes brickgate reads",
            path_part.len()
        ));
    }
    let Some(relative) = path_part.strip_prefix('/') else {
        return Err(format!(
            "path {} does not start with /",
            echo(path_part.as_bytes())
        ));
    };
    if is_canonical(relative) {
        // Nearly every request: nothing to decode or resolve, the path reads as it is sent.
        return Ok(NormalizedPath {
            path: path_part.to_string(),
            encoded: path_part.to_string(),
            query,
            rewritten: None,
        });
    }
    resolve(path_part, relative, query)
}

/// Whether a path (after its leading `/`) is already in the form [`resolve`] would give it:
/// only unescaped `pchar` bytes, no empty segment but a trailing one, no dot segment and no
/// segment ending in a dot. One pass over its bytes, no allocation.
fn is_canonical(relative: &str) -> bool {
    let mut segment_start = 0;
    let bytes = relative.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'/' {
            let segment = bytes.get(segment_start..index).unwrap_or_default();
            if segment.is_empty() || segment.ends_with(b".") {
                return false;
            }
            segment_start = index + 1;
        } else if !is_plain_path_byte(byte) {
            return false;
        }
    }
    // The last segment may be empty (a trailing slash), never a dot segment or dot-ended.
    !bytes
        .get(segment_start..)
        .unwrap_or_default()
        .ends_with(b".")
}

/// `pchar` bytes that stand for themselves (no `%`): what [`check_raw_byte`] accepts.
fn is_plain_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&byte)
}

/// The general case: decode, check and resolve each segment.
fn resolve(
    path_part: &str,
    relative: &str,
    query: Option<String>,
) -> Result<NormalizedPath, String> {
    let mut decoded_segments: Vec<String> = Vec::new();
    let mut encoded_segments: Vec<String> = Vec::new();
    for raw_segment in relative.split('/') {
        let segment = read_segment(raw_segment)?;
        let decoded = String::from_utf8(segment.decoded).map_err(|_| {
            format!(
                "segment {} is not UTF-8 once decoded (invalid or overlong sequence)",
                echo(raw_segment.as_bytes())
            )
        })?;
        check_characters(&decoded, raw_segment)?;
        check_double_encoding(&decoded, raw_segment)?;
        match decoded.as_str() {
            "" | "." => {}
            ".." => {
                decoded_segments.pop();
                encoded_segments.pop();
            }
            _ if decoded.trim_end_matches(['.', ' ']).is_empty() => {
                return Err(format!(
                    "segment {} is only dots and spaces, which servers read as a dot segment \
                     or as nothing",
                    echo(raw_segment.as_bytes())
                ));
            }
            _ => {
                decoded_segments.push(decoded);
                encoded_segments.push(segment.encoded);
            }
        }
    }
    let last_raw = relative.rsplit('/').next().unwrap_or_default();
    let ends_like_directory = matches!(last_raw, "" | "." | "..") && !decoded_segments.is_empty();
    let mut path = format!("/{}", decoded_segments.join("/"));
    let mut encoded = format!("/{}", encoded_segments.join("/"));
    if ends_like_directory {
        path.push('/');
        encoded.push('/');
    }
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

/// Decodes one raw segment: escaped unreserved characters are decoded (RFC 3986 §6.2.2.2),
/// other escapes are kept (upper-case hex), escapes that change structure or smuggle bytes are
/// refused, and raw characters outside RFC 3986 `pchar` are refused.
fn read_segment(raw: &str) -> Result<Segment, String> {
    let bytes = raw.as_bytes();
    let mut segment = Segment::default();
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let rest = bytes.get(index..).unwrap_or_default();
            let escape = rest.get(..3).unwrap_or(rest);
            let value = escape
                .get(1..)
                .and_then(crate::encoding::hex_byte)
                .ok_or_else(|| format!("invalid percent-escape {}", echo(escape)))?;
            decode_escape(value, &mut segment)
                .map_err(|problem| format!("{problem} in segment {}", echo(bytes)))?;
            index += 3;
            continue;
        }
        check_raw_byte(byte).map_err(|problem| format!("{problem} in segment {}", echo(bytes)))?;
        segment.decoded.push(byte);
        segment.encoded.push(char::from(byte));
        index += 1;
    }
    Ok(segment)
}

fn decode_escape(value: u8, segment: &mut Segment) -> Result<(), String> {
    let refused = match value {
        b'/' => Some("escaped slash %2F"),
        b'\\' => Some("escaped backslash %5C"),
        b'.' => Some("escaped dot %2E"),
        0..=0x1f | 0x7f => Some("escaped control character"),
        _ => None,
    };
    if let Some(problem) = refused {
        return Err(problem.to_string());
    }
    segment.decoded.push(value);
    if value.is_ascii_alphanumeric() || b"-_~".contains(&value) {
        segment.encoded.push(char::from(value));
    } else {
        segment.encoded.push_str(&format!("%{value:02X}"));
    }
    Ok(())
}

/// An escaped `%` is data (a file named `100%.csv`), unless what follows it reads as an escape
/// once more (`%2541`, `%252e`, IIS-style `%25u002e`): an upstream that decodes twice would see
/// another name, or another path (`%252F`).
fn check_double_encoding(decoded: &str, raw: &str) -> Result<(), String> {
    let bytes = decoded.as_bytes();
    let hex_digits = |from: usize, count: usize| {
        bytes
            .get(from..from + count)
            .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
    };
    let escape_follows = |index: usize| {
        let unicode_escape = matches!(bytes.get(index + 1), Some(b'u' | b'U'));
        hex_digits(index + 1, 2) || (unicode_escape && hex_digits(index + 2, 4))
    };
    let double = bytes
        .iter()
        .enumerate()
        .any(|(index, &byte)| byte == b'%' && escape_follows(index));
    if double {
        return Err(format!(
            "escaped percent sign %25 followed by an escape (double encoding) in segment {}",
            echo(raw.as_bytes())
        ));
    }
    Ok(())
}

fn check_raw_byte(byte: u8) -> Result<(), &'static str> {
    match byte {
        b';' => Err("path parameter separator ;"),
        b'\\' => Err("backslash"),
        b'#' => Err("fragment marker #"),
        0..=0x1f | 0x7f => Err("control character"),
        b' ' => Err("unescaped space"),
        0x80.. => Err("unescaped non-ASCII byte (send it percent-encoded UTF-8)"),
        _ if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&byte) => Ok(()),
        _ => Err("character not allowed unescaped in a path (RFC 3986)"),
    }
}

/// Refuses decoded characters that another server may fold into something structural: C1
/// controls, invisible format characters, non-ASCII whitespace, look-alikes of `. / \ ; % ? #`
/// (NFKC or best-fit mappings), and letters whose case mapping is ASCII (`K` KELVIN SIGN,
/// `ſ`, `ı`), which a Unicode case-insensitive comparison equates with an ASCII letter.
fn check_characters(decoded: &str, raw: &str) -> Result<(), String> {
    let Some(bad) = decoded.chars().find(|c| !c.is_ascii() && is_confusable(*c)) else {
        return Ok(());
    };
    Err(format!(
        "character U+{:04X} in segment {} may be read as another character by the upstream",
        u32::from(bad),
        echo(raw.as_bytes())
    ))
}

fn is_confusable(c: char) -> bool {
    let folds_to_ascii = c
        .to_lowercase()
        .chain(c.to_uppercase())
        .any(|f| f.is_ascii());
    let look_alike = matches!(
        c,
        '\u{037E}'              // Greek question mark, NFC ;
            | '\u{2024}'..='\u{2026}' // dot leaders, ellipsis
            | '\u{2044}' | '\u{2215}' // fraction and division slashes
            | '\u{2488}'..='\u{249B}' // "1." … "20."
            | '\u{FE50}'..='\u{FE6F}' // small form variants
            | '\u{FF00}'..='\u{FFEF}' // half- and full-width forms
            | '\u{1F100}'..='\u{1F10A}' // "0." … "9,"
    );
    let invisible = matches!(
        c,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
    );
    c.is_control() || c.is_whitespace() || folds_to_ascii || look_alike || invisible
}

/// Other readings of a normalised path that some servers make: the last segment without its
/// extension suffix, up to its first dot (Spring's suffix patterns) or its last (format
/// suffixes). The matcher refuses a path whose readings fall under different rules.
pub fn suffix_readings(path: &str) -> Vec<String> {
    let trimmed = path.trim_end_matches('/');
    let trailing = path.get(trimmed.len()..).unwrap_or_default();
    let Some((parent, last)) = trimmed.rsplit_once('/') else {
        return Vec::new();
    };
    let mut readings = Vec::new();
    for cut in [last.find('.'), last.rfind('.')].into_iter().flatten() {
        let stem = last.get(..cut).unwrap_or_default();
        let reading = format!("{parent}/{stem}{trailing}");
        if !stem.is_empty() && !readings.contains(&reading) {
            readings.push(reading);
        }
    }
    readings
}

/// Other readings of a normalised path by servers that take data brickgate keeps inside a
/// segment for structure: an escaped `?` or `#` decoded and then read as the start of the query
/// or fragment (the path cut there), an escaped `;` read as a path parameter (`;…` dropped from
/// each segment, as Tomcat and Spring do), trailing dots and spaces stripped from each segment
/// (Windows-style servers), and each combination, with dot segments resolved again and the
/// extension suffix readings of each. The matcher refuses a path whose readings fall under
/// different rules, so such bytes stay data only where every reading is decided alike (a file
/// name under `/api/2.0/fs/files/**`), never in a segment that selects a rule (`get%3F`).
pub fn delimiter_readings(path: &str) -> Vec<String> {
    let has_delimiter = path.contains(['?', '#', ';']);
    let has_trailing = path.split('/').any(|segment| segment.ends_with(['.', ' ']));
    if !has_delimiter && !has_trailing {
        return Vec::new();
    }
    let mut readings: Vec<String> = Vec::new();
    for variant in 1..8u8 {
        let (cut, parameters, trailing) = (variant & 1 != 0, variant & 2 != 0, variant & 4 != 0);
        let mut reading = path;
        if cut && let Some(at) = reading.find(['?', '#']) {
            reading = reading.get(..at).unwrap_or_default();
        }
        let segments = reading.split('/').map(|segment| {
            let segment = match segment.split_once(';') {
                Some((kept, _)) if parameters => kept,
                _ => segment,
            };
            if trailing && !matches!(segment, "." | "..") {
                segment.trim_end_matches(['.', ' '])
            } else {
                segment
            }
        });
        let resolved = resolve_dot_segments(segments);
        let suffixes = suffix_readings(&resolved)
            .into_iter()
            .map(|reading| resolve_dot_segments(reading.split('/')));
        for other in std::iter::once(resolved.clone()).chain(suffixes) {
            if other != path && !readings.contains(&other) {
                readings.push(other);
            }
        }
    }
    readings
}

/// Joins the segments of an absolute path (the first is the empty one before its `/`),
/// dropping empty and `.` ones and resolving `..` (never above `/`), as [`normalize_path`] does.
fn resolve_dot_segments<'a>(segments: impl Iterator<Item = &'a str>) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut ends_like_directory = false;
    for segment in segments {
        ends_like_directory = false;
        match segment {
            "" | "." => ends_like_directory = true,
            ".." => {
                kept.pop();
                ends_like_directory = true;
            }
            _ => kept.push(segment),
        }
    }
    let mut path = format!("/{}", kept.join("/"));
    if ends_like_directory && !kept.is_empty() {
        path.push('/');
    }
    path
}

/// A short, quoted, escaped rendering of client input for a refusal message.
fn echo(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text.chars().take(ECHO_CHARS).collect();
    if text.chars().count() > ECHO_CHARS {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
pub mod sdk_file_names;

#[cfg(test)]
mod tests;
