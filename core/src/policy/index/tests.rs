//! The index answers exactly as the linear reference: same rule, same bindings, same conflict.

use proptest::prelude::*;

use super::*;
use crate::policy::match_rule;
use crate::policy::matcher::Access;

/// Few, colliding spellings, so that letter-case and suffix conflicts, shared prefixes and
/// overlapping rules are common.
const WORDS: &[&str] = &[
    "a", "A", "b", "api", "API", "2.0", "x", "x.json", "X.Json", "", "e",
];
const ENDPOINTS: &[&str] = &["e", "E", "f", "fraud", "Fraud"];

fn word() -> impl Strategy<Value = String> {
    proptest::sample::select(WORDS).prop_map(str::to_string)
}

fn path() -> impl Strategy<Value = String> {
    (proptest::collection::vec(word(), 0..5), any::<bool>()).prop_map(|(words, slash)| {
        let mut path = format!("/{}", words.join("/"));
        if slash {
            path.push('/');
        }
        path
    })
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        4 => word().prop_filter("non-empty", |w| !w.is_empty()).prop_map(Segment::Literal),
        1 => proptest::sample::select(&["[aA]", "x.[jJ]son", "[ab]"][..]).prop_map(|g| Segment::Glob(g.to_string())),
        1 => proptest::sample::select(&["v", "w"][..]).prop_map(|v| Segment::Variable(v.to_string())),
    ]
}

fn pattern() -> impl Strategy<Value = PathPattern> {
    prop_oneof![
        path().prop_map(PathPattern::Exact),
        (path(), 0usize..12).prop_map(|(path, cut)| {
            let cut = cut.min(path.len()).max(1);
            PathPattern::Prefix(path.get(..cut).unwrap_or("/").to_string())
        }),
        (proptest::collection::vec(segment(), 0..4), any::<bool>()).prop_map(|(mut segments, any_tail)| {
            // A variable may appear once (the template parser refuses repeats).
            let mut seen = Vec::new();
            segments.retain(|s| !matches!(s, Segment::Variable(v) if seen.contains(v) || { seen.push(v.clone()); false }));
            PathPattern::Template { segments, any_tail }
        }),
        proptest::sample::select(ENDPOINTS).prop_map(|e| PathPattern::ServingEndpoint(Segment::Literal(e.to_string()))),
        Just(PathPattern::ServingEndpoint(Segment::Variable("name".to_string()))),
    ]
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    let methods = proptest::sample::select(&[None, Some("GET"), Some("POST")][..]);
    proptest::collection::vec((pattern(), methods), 0..40).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (pattern, method))| Rule {
                name: format!("r{i}"),
                pattern,
                methods: method.map(|m| vec![m.to_string()]),
                access: Access::Anonymous,
            })
            .collect()
    })
}

type Answer = Result<Option<(usize, Bindings)>, RuleConflict>;

fn linear(rules: &[Rule], method: &str, path: &str, endpoint: Option<&str>) -> Answer {
    match_rule(rules, method, path, endpoint).map(|found| {
        found.map(|(rule, bindings)| {
            let index = rules
                .iter()
                .position(|r| std::ptr::eq(r, rule))
                .unwrap_or(usize::MAX);
            (index, bindings)
        })
    })
}

fn indexed(
    index: &RuleIndex,
    rules: &[Rule],
    method: &str,
    path: &str,
    endpoint: Option<&str>,
) -> Answer {
    index
        .match_rule(rules, method, path, endpoint)
        .map(|found| found.map(|(index, _, bindings)| (index, bindings)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn index_answers_as_the_linear_scan(
        rules in rules(),
        requests in proptest::collection::vec(
            (path(), proptest::sample::select(&["GET", "POST"][..]),
             proptest::option::of(proptest::sample::select(ENDPOINTS))),
            1..20),
    ) {
        let index = RuleIndex::new(&rules);
        for (path, method, endpoint) in requests {
            prop_assert_eq!(
                indexed(&index, &rules, method, &path, endpoint),
                linear(&rules, method, &path, endpoint),
                "{} {} endpoint {:?}", method, path, endpoint
            );
        }
    }
}

#[test]
fn candidates_skip_rules_of_other_paths_and_endpoints() {
    let rule = |name: &str, pattern: PathPattern| Rule {
        name: name.to_string(),
        pattern,
        methods: None,
        access: Access::Anonymous,
    };
    let rules = vec![
        rule(
            "jobs",
            PathPattern::template("/api/2.1/jobs/**").unwrap_or(PathPattern::Exact("/".into())),
        ),
        rule(
            "fraud",
            PathPattern::ServingEndpoint(Segment::Literal("fraud".into())),
        ),
        rule("clusters", PathPattern::Prefix("/api/2.0/clusters/".into())),
        rule("root", PathPattern::Prefix("/a".into())),
        rule(
            "api",
            PathPattern::template("/api/**").unwrap_or(PathPattern::Exact("/".into())),
        ),
        rule(
            "any-version-jobs",
            PathPattern::template("/api/{version}/jobs/**")
                .unwrap_or(PathPattern::Exact("/".into())),
        ),
        rule(
            "any-version-clusters",
            PathPattern::template("/api/2.[01]/preview/clusters/{id}")
                .unwrap_or(PathPattern::Exact("/".into())),
        ),
    ];
    let index = RuleIndex::new(&rules);
    assert_eq!(
        index.candidates("/api/2.0/clusters/list", None),
        vec![2, 3, 4]
    );
    assert_eq!(
        index.candidates("/API/2.0/Clusters/list", None),
        vec![2, 3, 4]
    );
    assert_eq!(
        index.candidates("/serving-endpoints/fraud/invocations", Some("fraud")),
        vec![1, 3]
    );
    assert_eq!(index.candidates("/other", Some("churn")), vec![3]);
    // A class or variable segment takes any path segment; the literals after it still narrow.
    assert_eq!(
        index.candidates("/api/2.1/jobs/list", None),
        vec![0, 3, 4, 5]
    );
    assert_eq!(index.candidates("/api/9.9/jobs/list", None), vec![3, 4, 5]);
    assert_eq!(
        index.candidates("/api/2.0/preview/clusters/c1", None),
        vec![3, 4, 6]
    );
}
