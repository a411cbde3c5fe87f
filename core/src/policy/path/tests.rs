use super::*;
use crate::policy::SDK_FILE_NAMES;

/// (raw `:path`, path rules see, what `:path` becomes upstream when it changes).
const NORMALISED: &[(&str, &str, Option<&str>)] = &[
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
        "/api/2.0/clusters/list?x=1&y=%2F",
        "/api/2.0/clusters/list",
        None,
    ),
    (
        "/api/2.0/%63lusters/list?a=b",
        "/api/2.0/clusters/list",
        Some("/api/2.0/clusters/list?a=b"),
    ),
    // Escaped unreserved characters are decoded, in either hex case.
    (
        "/serving-endpoints/demo%2dmodel%5F1%7E/invocations",
        "/serving-endpoints/demo-model_1~/invocations",
        Some("/serving-endpoints/demo-model_1~/invocations"),
    ),
    ("/../../etc/passwd", "/etc/passwd", Some("/etc/passwd")),
    ("/api/", "/api/", None),
    ("/api/x/..", "/api/", Some("/api/")),
    ("/api/x/.", "/api/x/", Some("/api/x/")),
    ("/", "/", None),
    ("/..", "/", Some("/")),
    // A space is data (Files API names), forwarded escaped; `+` is a literal plus in a path.
    (
        "/api/2.0/fs/files/a%20b.csv",
        "/api/2.0/fs/files/a b.csv",
        None,
    ),
    ("/api/2.0/fs/files/a+b", "/api/2.0/fs/files/a+b", None),
    // Other reserved characters stay escaped (upper-case hex), decoded for matching only.
    ("/a%2bb%3a%3F%40", "/a+b:?@", Some("/a%2Bb%3A%3F%40")),
    // Escaped UTF-8 is data; raw it is refused.
    (
        "/api/2.0/fs/files/caf%C3%A9",
        "/api/2.0/fs/files/café",
        None,
    ),
    (
        "/api/2.0/fs/files/caf%c3%a9",
        "/api/2.0/fs/files/café",
        Some("/api/2.0/fs/files/caf%C3%A9"),
    ),
    // Dots inside a segment are data (Unity Catalog full names, file extensions, versions).
    (
        "/api/2.1/unity-catalog/tables/main.default.trips",
        "/api/2.1/unity-catalog/tables/main.default.trips",
        None,
    ),
    ("/api/2.0/.hidden", "/api/2.0/.hidden", None),
    ("/a/b..c", "/a/b..c", None),
    // Escaped `;`, `?`, `#` and `%` are data, forwarded escaped; the matcher checks that reading
    // them as structure does not change the rule (`delimiter_readings`).
    ("/a/b%3Bc", "/a/b;c", None),
    ("/a/b%3bc", "/a/b;c", Some("/a/b%3Bc")),
    ("/a/get%3F", "/a/get?", None),
    ("/a/x%23y", "/a/x#y", None),
    ("/a/100%25.csv", "/a/100%.csv", None),
    ("/a/50%25", "/a/50%", None),
    ("/a/%25%25", "/a/%%", None),
    ("/a/%25zz", "/a/%zz", None),
    ("/a/50%25used.csv", "/a/50%used.csv", None),
    ("/a/%25u12", "/a/%u12", None),
    ("/oidc/..%3B/x", "/oidc/..;/x", None),
    // Trailing dots and spaces are data too, checked the same way.
    ("/a/report.", "/a/report.", None),
    ("/a/token./create", "/a/token./create", None),
    ("/a/name%20", "/a/name ", None),
    ("/a/x.%20.", "/a/x. .", None),
];

#[test]
fn normalises_what_it_can_resolve_itself() {
    for (raw, path, rewritten) in NORMALISED {
        let got = normalize_path(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(got.path, *path, "{raw}");
        assert_eq!(got.rewritten.as_deref(), *rewritten, "{raw}");
    }
}

/// (raw `:path`, words the refusal must contain).
const REFUSED: &[(&str, &str)] = &[
    // `;` path parameters, raw or escaped: Tomcat-style servers drop `;...` from a segment.
    (
        "/oidc/..;/api/2.0/token/create",
        "path parameter separator ;",
    ),
    ("/api/2.0/token;/create", "path parameter separator ;"),
    ("/api/2.0/token;x=1/create", "path parameter separator ;"),
    // Backslashes, raw or escaped: some servers read them as `/`.
    ("/api/2.0\\token\\create", "backslash"),
    ("/oidc/..\\api/2.0/token/create", "backslash"),
    ("/a%5Cb", "escaped backslash %5C"),
    ("/a%5cb", "escaped backslash %5C"),
    // Slashes, dots and percent signs only mean one thing unescaped.
    ("/api%2Fx", "escaped slash %2F"),
    ("/api%2fx", "escaped slash %2F"),
    ("/api/2.0/%2e%2e/x", "escaped dot %2E"),
    ("/api/2.0/%2E/x", "escaped dot %2E"),
    ("/api/2.0/secrets/get%2Ejson", "escaped dot %2E"),
    // An escaped `%` followed by what reads as an escape once more: double encoding.
    ("/api/2.0/%252e%252e/x", "double encoding"),
    ("/api/2.0/%252F", "double encoding"),
    ("/api/2.0/fs/files/100%2541.csv", "double encoding"),
    ("/api/2.0/fs/files/100%25%34%31.csv", "double encoding"),
    ("/api/2.0/fs/files/a%25u002e", "double encoding"),
    ("/api/2.0/fs/files/a%25U002e", "double encoding"),
    // Segments of dots and spaces only: a dot segment or nothing to other servers.
    ("/api/2.0/.../create", "only dots and spaces"),
    ("/api/2.0/.%20./create", "only dots and spaces"),
    ("/api/2.0/..%20/create", "only dots and spaces"),
    ("/api/2.0/%20/create", "only dots and spaces"),
    // Controls, raw or escaped, NUL included.
    ("/a%00", "escaped control character"),
    ("/a%0A", "escaped control character"),
    ("/a%7f", "escaped control character"),
    ("/a\u{1}b", "control character"),
    ("/a\tb", "control character"),
    ("/a b", "unescaped space"),
    // Malformed escapes.
    ("/a%zz", "invalid percent-escape"),
    ("/a%2", "invalid percent-escape"),
    ("/a%", "invalid percent-escape"),
    ("/a%u002e", "invalid percent-escape"),
    ("/a%+1", "invalid percent-escape"),
    // Not UTF-8 once decoded, overlong forms of `.` and `/` included.
    ("/%ff", "not UTF-8"),
    ("/a%C0%AE%C0%AE/x", "not UTF-8"),
    ("/a%C0%AF", "not UTF-8"),
    ("/a%E0%80%AE", "not UTF-8"),
    ("/a%C3", "not UTF-8"),
    // Raw non-ASCII and characters outside RFC 3986 pchar.
    ("/caf\u{e9}", "non-ASCII"),
    ("/a\"b", "not allowed unescaped"),
    ("/a<b>", "not allowed unescaped"),
    ("/a{b}", "not allowed unescaped"),
    ("/a|b", "not allowed unescaped"),
    ("/a[b]", "not allowed unescaped"),
    ("/a`b", "not allowed unescaped"),
    ("/a^b", "not allowed unescaped"),
    ("/a#frag", "fragment marker #"),
    // Unicode that another server may fold into ASCII structure or letters.
    ("/api/2.0/%EF%BC%8E%EF%BC%8E/x", "U+FF0E"),
    ("/api/2.0%EF%BC%8Ftoken", "U+FF0F"),
    ("/api/2.0/token%EF%BC%9B/create", "U+FF1B"),
    ("/api/2.0/%E2%80%A5/x", "U+2025"),
    ("/api/2.0/to%E2%84%AAen/create", "U+212A"),
    ("/api/2.0/%C5%BFecrets/get", "U+017F"),
    ("/api/2.0/token%C2%A0/create", "U+00A0"),
    ("/api/2.0/token%E2%80%8B/create", "U+200B"),
    ("/api/2.0/token%C2%85/create", "U+0085"),
    // Not a path.
    ("relative", "does not start with /"),
    ("", "does not start with /"),
    ("*", "does not start with /"),
    ("http://host/api", "does not start with /"),
];

#[test]
fn refuses_what_an_upstream_may_read_differently() {
    for (raw, words) in REFUSED {
        match normalize_path(raw) {
            Ok(got) => panic!("{raw:?} was normalised to {:?}", got.path),
            Err(problem) => assert!(problem.contains(words), "{raw:?}: {problem}"),
        }
    }
}

#[test]
fn refusals_echo_at_most_a_short_quoted_excerpt() {
    let long = format!("/{};", "a".repeat(5000));
    let problem = normalize_path(&long).unwrap_err();
    assert!(problem.len() < 200, "{problem}");
    let too_long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    assert!(normalize_path(&too_long).unwrap_err().contains("exceeds"));
    assert!(normalize_path(&format!("{too_long}?q=1")).is_err());
    let problem = normalize_path("/a\u{1b}[31mred;").unwrap_err();
    assert!(!problem.contains('\u{1b}'), "{problem}");
}

#[test]
fn files_api_names_read_as_the_sdks_encode_them() {
    let base = "/api/2.0/fs/files/Volumes/main/default/vol";
    for (name, python, go) in SDK_FILE_NAMES {
        for encoded in [python, go] {
            let raw = format!("{base}/{encoded}");
            let got = normalize_path(&raw).unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(got.path, format!("{base}/{name}"), "{raw}");
            assert_eq!(got.rewritten, None, "{raw} is forwarded as the SDK sent it");
        }
    }
}

#[test]
fn delimiter_readings_read_escaped_delimiters_and_trailing_dots_as_structure() {
    let cases: &[(&str, &[&str])] = &[
        ("/api/2.0/secrets/list", &[]),
        ("/api/2.0/fs/files/a.csv", &[]),
        ("/api/2.0/secrets/get?", &["/api/2.0/secrets/get"]),
        ("/api/2.0/secrets/get?x/y", &["/api/2.0/secrets/get"]),
        ("/a/x#y/z", &["/a/x"]),
        ("/a/b;c/d", &["/a/b/d"]),
        ("/a/;c/d/", &["/a/d/"]),
        ("/oidc/..;/api/2.0/token/create", &["/api/2.0/token/create"]),
        ("/a/token./create", &["/a/token/create"]),
        ("/a/name ", &["/a/name"]),
        ("/a/..;x.", &["/", "/a/..;x", "/a/"]),
        ("/a/b?c.;d", &["/a/b", "/a/b?c.", "/a/b?c"]),
    ];
    for (path, expected) in cases {
        let mut got = delimiter_readings(path);
        got.sort();
        let mut expected: Vec<String> = expected.iter().map(|r| r.to_string()).collect();
        expected.sort();
        assert_eq!(got, expected, "{path}");
    }
}

#[test]
fn suffix_readings_strip_the_last_segment_at_its_first_and_last_dot() {
    let cases: &[(&str, &[&str])] = &[
        ("/api/2.0/secrets/get.json", &["/api/2.0/secrets/get"]),
        ("/api/2.0/secrets/get.json/", &["/api/2.0/secrets/get/"]),
        (
            "/api/2.1/unity-catalog/tables/main.default.t",
            &[
                "/api/2.1/unity-catalog/tables/main",
                "/api/2.1/unity-catalog/tables/main.default",
            ],
        ),
        ("/api/2.0/secrets/get", &[]),
        ("/api/2.0/.hidden", &[]),
        ("/", &[]),
        ("/api/2.0/x/", &[]),
    ];
    for (path, readings) in cases {
        assert_eq!(suffix_readings(path), *readings, "{path}");
    }
}

/// A small deterministic generator (no clock, no randomness from the host).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap() % bound
    }
}

const PIECES: &[&str] = &[
    "/",
    "/",
    "//",
    ".",
    "..",
    "api",
    "2.0",
    "Token",
    "a",
    "-",
    "~",
    "%41",
    "%2e",
    "%2F",
    "%3B",
    "%25",
    "%20",
    "%2B",
    "%7E",
    "%C3%A9",
    "%c3%a9",
    "%C0%AE",
    "%EF%BC%8E",
    ";",
    "\\",
    "+",
    "!",
    ":",
    "@",
    "=",
    "%",
    "%g1",
    "%00",
    "x.json",
    "é",
    "#",
];

#[test]
fn the_canonical_path_is_a_fixed_point_and_holds_no_refused_escape() {
    let mut random = Lcg(0x5eed);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut raw = String::from("/");
        for _ in 0..random.next(8) {
            raw.push_str(PIECES[random.next(PIECES.len())]);
        }
        let Ok(first) = normalize_path(&raw) else {
            continue;
        };
        accepted += 1;
        let again = normalize_path(&first.encoded)
            .unwrap_or_else(|e| panic!("{raw:?} → {:?} is refused: {e}", first.encoded));
        assert_eq!(again.path, first.path, "{raw:?}");
        assert_eq!(again.encoded, first.encoded, "{raw:?}");
        assert_eq!(again.rewritten, None, "{raw:?}");
        let lower = first.encoded.to_ascii_lowercase();
        for refused in ["%2f", "%5c", "%2e", "%00", "%0a", "%7f"] {
            assert!(!lower.contains(refused), "{raw:?} → {:?}", first.encoded);
        }
        let escape_once_more =
            first.path.split('%').skip(1).any(|after| {
                after.len() >= 2 && after.bytes().take(2).all(|b| b.is_ascii_hexdigit())
            });
        assert!(
            !escape_once_more,
            "{raw:?} → {:?} reads as an escape once more",
            first.path
        );
        assert!(
            !first.encoded.contains([';', '\\', '#', ' ']),
            "{raw:?} → {:?}",
            first.encoded
        );
        assert_eq!(
            first.rewritten.is_some(),
            first.encoded != raw.split('?').next().unwrap_or_default(),
            "{raw:?}"
        );
    }
    assert!(
        accepted > 1000,
        "only {accepted} generated paths were accepted"
    );
}

/// The shortcut for paths already canonical answers exactly as the general reading does.
#[test]
fn the_canonical_shortcut_agrees_with_the_general_reading() {
    use proptest::prelude::*;
    let alphabet = prop::sample::select(vec![
        "a", "B", "0", ".", "..", "/", "//", "%2e", "%41", "-", "~", ";", " ", "%2F", "é", "@",
    ]);
    let paths = prop::collection::vec(alphabet, 0..12).prop_map(|parts| parts.concat());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 4000,
        ..ProptestConfig::default()
    });
    runner
        .run(&paths, |tail| {
            let raw = format!("/{tail}");
            let relative = raw.strip_prefix('/').unwrap();
            let general = resolve(&raw, relative, Some("q=1".to_string()));
            let answer = normalize_path(&format!("{raw}?q=1"));
            prop_assert_eq!(answer, general, "{}", raw);
            Ok(())
        })
        .unwrap();
}
