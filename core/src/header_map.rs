//! Reading a header map as the proxy-wasm ABI serialises it (`proxy_get_header_map_pairs`):
//! a little-endian `u32` count, a `u32` name length and value length per pair, then each name
//! and value followed by a NUL byte.
//!
//! The bytes come from the client, through the host: HTTP/1.1 lets a header value carry any
//! byte from 0x80 up (RFC 9110 `obs-text`), so a value need not be UTF-8. The SDK's own reader
//! unwraps `String::from_utf8` and would panic, which kills the VM and with it every stream on
//! the worker: one request would be a denial of service. This reader never panics; a map that is
//! not UTF-8 text is reported with the name of the first header that is not, so the stream can be
//! refused (brickgate cannot tell how an upstream would read those bytes, and a lossy reading
//! could strip or check a different header than the one the upstream sees).

use crate::stream::Headers;

/// What is wrong with a serialised map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// The bytes do not follow the ABI's layout (a host bug): nothing in them can be trusted.
    Malformed(&'static str),
    /// A name or value is not UTF-8. `headers` is the map read with each invalid sequence
    /// replaced by U+FFFD, good enough for an audit record (method, path) and nothing else;
    /// `name` is the first such header's name, printable and safe to log.
    NotUtf8 { name: String, headers: Headers },
}

/// The map's pairs, in the host's order.
pub fn decode(bytes: &[u8]) -> Result<Headers, MapError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = read_u32(bytes, 0)
        .ok_or("shorter than its count")
        .map_err(MapError::Malformed)?;
    // Every pair takes at least 8 bytes of lengths and 2 NULs: a count beyond that is a lie,
    // and checking it first bounds the allocation below by the buffer's size.
    let count = usize::try_from(count).map_err(|_| MapError::Malformed("count"))?;
    let pairs_start = count
        .checked_mul(8)
        .and_then(|lengths| lengths.checked_add(4))
        .filter(|&start| count.saturating_mul(2) <= bytes.len().saturating_sub(start))
        .ok_or("count larger than the map")
        .map_err(MapError::Malformed)?;
    // One pass: names and values are copied out as they are read; after the first one that is
    // not UTF-8, the rest are read lossily for the audit record.
    let mut headers = Vec::with_capacity(count);
    let mut unreadable: Option<String> = None;
    let mut at = pairs_start;
    for index in 0..count {
        // The helpers fail with a `&'static str`, made a `MapError` only on failure: an error
        // value built eagerly was built, and dropped, for every pair (measured).
        let name_len = read_len(bytes, 4 + index * 8).map_err(MapError::Malformed)?;
        let value_len = read_len(bytes, 8 + index * 8).map_err(MapError::Malformed)?;
        let name = take(bytes, &mut at, name_len).map_err(MapError::Malformed)?;
        let value = take(bytes, &mut at, value_len).map_err(MapError::Malformed)?;
        match (std::str::from_utf8(name), std::str::from_utf8(value)) {
            (Ok(name), Ok(value)) => headers.push((name.to_string(), value.to_string())),
            _ => {
                unreadable.get_or_insert_with(|| printable_name(name));
                let lossy = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                headers.push((lossy(name), lossy(value)));
            }
        }
    }
    if at != bytes.len() {
        return Err(MapError::Malformed("bytes after the last pair"));
    }
    match unreadable {
        None => Ok(headers),
        Some(name) => Err(MapError::NotUtf8 { name, headers }),
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?))
}

fn read_len(bytes: &[u8], at: usize) -> Result<usize, &'static str> {
    read_u32(bytes, at)
        .and_then(|len| usize::try_from(len).ok())
        .ok_or("a length past the end")
}

/// The next `len` bytes and the NUL after them.
fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8], &'static str> {
    let end = at.checked_add(len).ok_or("a length past the end")?;
    let text = bytes.get(*at..end).ok_or("a length past the end")?;
    if bytes.get(end) != Some(&0) {
        return Err("a name or value without its NUL");
    }
    *at = end + 1;
    Ok(text)
}

/// A header name fit for a message: printable ASCII kept, every other byte as `\xNN`, at most
/// 64 bytes of it.
fn printable_name(name: &[u8]) -> String {
    let mut text = String::new();
    for &byte in name.iter().take(64) {
        if byte.is_ascii_graphic() {
            text.push(char::from(byte));
        } else {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    if name.len() > 64 {
        text.push('…');
    }
    text
}

/// Serialise pairs the way the host does (the inverse of [`decode`], for tests and fakes).
#[cfg(any(test, feature = "fuzzing"))]
pub fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let count = u32::try_from(pairs.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&count.to_le_bytes());
    for (name, value) in pairs {
        for part in [name, value] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&len.to_le_bytes());
        }
    }
    for (name, value) in pairs {
        for part in [name, value] {
            bytes.extend_from_slice(part);
            bytes.push(0);
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_what_the_host_writes() {
        let cases: &[&[(&[u8], &[u8])]] = &[
            &[],
            &[(b":path", b"/api/2.0/clusters/list")],
            &[(b":method", b"GET"), (b"x-empty", b""), (b"", b"")],
            &[(b"user-agent", "café ☕".as_bytes())],
        ];
        for pairs in cases {
            let expected: Headers = pairs
                .iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8(n.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    )
                })
                .collect();
            assert_eq!(decode(&encode(pairs)), Ok(expected), "{pairs:?}");
        }
        assert_eq!(decode(&[]), Ok(Vec::new()));
    }

    #[test]
    fn a_value_that_is_not_utf8_names_its_header() {
        let bytes = encode(&[
            (b":path", b"/x"),
            (b"x-note", b"caf\xe9"),
            (b"authorization", b"Bearer \xff"),
        ]);
        let Err(MapError::NotUtf8 { name, headers }) = decode(&bytes) else {
            panic!("decoded");
        };
        assert_eq!(name, "x-note");
        assert_eq!(
            headers,
            owned(&[
                (":path", "/x"),
                ("x-note", "caf\u{fffd}"),
                ("authorization", "Bearer \u{fffd}")
            ])
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_is_shown_escaped() {
        let bytes = encode(&[(b"x-\xc0\xafbrickgate", b"1")]);
        let Err(MapError::NotUtf8 { name, .. }) = decode(&bytes) else {
            panic!("decoded");
        };
        assert_eq!(name, "x-\\xc0\\xafbrickgate");
    }

    #[test]
    fn malformed_layouts_are_refused_without_panicking() {
        let good = encode(&[(b"a", b"b"), (b"cc", b"dd")]);
        let mut cases: Vec<Vec<u8>> = vec![
            vec![1, 0, 0],
            u32::MAX.to_le_bytes().to_vec(),
            [
                1u32.to_le_bytes(),
                u32::MAX.to_le_bytes(),
                0u32.to_le_bytes(),
            ]
            .concat(),
            [good.clone(), vec![0]].concat(),
        ];
        for cut in 1..good.len() {
            cases.push(good.get(..cut).unwrap().to_vec());
        }
        let mut no_nul = good.clone();
        *no_nul.last_mut().unwrap() = b'x';
        cases.push(no_nul);
        for bytes in cases {
            assert!(
                matches!(decode(&bytes), Err(MapError::Malformed(_))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A bounded deterministic sweep (the fuzz target covers the rest).
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = usize::try_from(seed % 48).unwrap();
            let bytes: Vec<u8> = (0..len)
                .map(|i| u8::try_from((seed >> (i % 8 * 8)) & 0x0f).unwrap())
                .collect();
            let _ = decode(&bytes);
        }
    }
}
