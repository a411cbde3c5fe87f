use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// A header map as a host keeps it, written from the proxy-wasm ABI's description of each
/// call (not from `applied_pairs`): removal drops every header of the name, replacing `:path`
/// changes it where it stands, adding appends.
fn apply(mut map: Vec<(String, String)>, edits: &[HeaderEdit<'_>]) -> Vec<(String, String)> {
    for edit in edits {
        match *edit {
            HeaderEdit::Remove(name) => map.retain(|(n, _)| !n.eq_ignore_ascii_case(name)),
            HeaderEdit::ReplacePath(path) => match map.iter_mut().find(|(n, _)| n == ":path") {
                Some(entry) => entry.1 = path.to_string(),
                None => map.push((":path".to_string(), path.to_string())),
            },
            HeaderEdit::Add(name, value) => map.push((name.to_string(), value.to_string())),
        }
    }
    map
}

type Headers = Vec<(String, String)>;

/// Pseudo-headers as a set (a host keeps them first, whatever the order of calls), the
/// others in order.
fn canonical(map: &[(impl AsRef<str>, impl AsRef<str>)]) -> (Headers, Headers) {
    let owned = map
        .iter()
        .map(|(n, v)| (n.as_ref().to_string(), v.as_ref().to_string()));
    let (mut pseudo, regular): (Vec<_>, Vec<_>) = owned.partition(|(n, _)| n.starts_with(':'));
    pseudo.sort();
    (pseudo, regular)
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "A",
        "b",
        "x-brickgate-subject",
        "authorization",
        "user-agent",
    ])
    .prop_map(str::to_string)
}

fn pairs(max: usize) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            name(),
            prop::sample::select(vec!["1", "2"]).prop_map(str::to_string),
        ),
        0..max,
    )
}

#[test]
fn the_edits_make_the_same_request_as_replacing_the_whole_map() {
    let cases = (
        pairs(6),
        prop::collection::vec(name(), 0..3),
        pairs(3),
        pairs(3),
        prop::option::of(prop::sample::select(vec!["/new", "/p?q"]).prop_map(str::to_string)),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 3000,
        ..ProptestConfig::default()
    });
    runner
        .run(&cases, |(regular, remove, set, verified, set_path)| {
            let mut original = vec![
                (":method".to_string(), "GET".to_string()),
                (":path".to_string(), "/old".to_string()),
            ];
            original.extend(regular);
            let rewrite = HeaderRewrite {
                original: original.clone(),
                mutations: Mutations {
                    remove_headers: remove,
                    set_headers: set,
                    verified_headers: Arc::from(verified),
                    set_path,
                    publish: None,
                },
            };
            let edits = rewrite.edits();
            prop_assert_eq!(rewrite.reselects_route(), !edits.is_empty());
            let edited = apply(original, &edits);
            prop_assert_eq!(canonical(&edited), canonical(&rewrite.pairs()));
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_request_that_only_gains_headers_costs_one_edit_per_header() {
    let rewrite = HeaderRewrite {
        original: vec![
            (":path".to_string(), "/a".to_string()),
            ("authorization".to_string(), "Bearer t".to_string()),
        ],
        mutations: Mutations {
            set_headers: vec![("x-brickgate-rule".to_string(), "r".to_string())],
            verified_headers: Arc::from(vec![("x-brickgate-subject".to_string(), "s".to_string())]),
            ..Mutations::default()
        },
    };
    assert_eq!(
        rewrite.edits(),
        [
            HeaderEdit::Add("x-brickgate-rule", "r"),
            HeaderEdit::Add("x-brickgate-subject", "s")
        ]
    );
}

/// A route can match on the path and on any request header: every rewrite that changes one
/// makes the host pick the route again; one that changes nothing the host holds does not.
#[test]
fn a_rewrite_that_changes_the_request_reselects_its_route() {
    let original = || {
        vec![
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), "//api/2.0/clusters/list".to_string()),
            ("x-forwarded-user".to_string(), "spoofed".to_string()),
        ]
    };
    let set = |name: &str| vec![(name.to_string(), "v".to_string())];
    let cases: [(&str, Mutations, bool); 6] = [
        (
            "canonical path",
            Mutations {
                set_path: Some("/api/2.0/clusters/list".to_string()),
                ..Mutations::default()
            },
            true,
        ),
        (
            "client header removed",
            Mutations {
                remove_headers: vec!["X-Forwarded-User".to_string()],
                ..Mutations::default()
            },
            true,
        ),
        (
            "header set",
            Mutations {
                set_headers: set("authorization"),
                ..Mutations::default()
            },
            true,
        ),
        (
            "verified identity added",
            Mutations {
                verified_headers: Arc::from(set("x-brickgate-subject")),
                ..Mutations::default()
            },
            true,
        ),
        (
            "removal of a header the request lacks",
            Mutations {
                remove_headers: vec!["x-original-url".to_string()],
                ..Mutations::default()
            },
            false,
        ),
        ("nothing", Mutations::default(), false),
    ];
    for (case, mutations, reselects) in cases {
        let rewrite = HeaderRewrite {
            original: original(),
            mutations,
        };
        assert_eq!(rewrite.reselects_route(), reselects, "{case}");
    }
}
