use super::*;

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn hygiene_table() {
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Result<&'a [&'a str], Reason>,
    );
    let cases: &[Case] = &[
        ("nothing to remove", "GET", &[("accept", "*/*")], Ok(&[])),
        (
            "override naming the request's method",
            "GET",
            &[("x-http-method-override", "GET")],
            Ok(&["x-http-method-override"]),
        ),
        (
            "same method, other case",
            "POST",
            &[("x-http-method", "post")],
            Ok(&["x-http-method"]),
        ),
        (
            "same method, repeated headers joined",
            "GET",
            &[("x-method-override", "GET, get")],
            Ok(&["x-method-override"]),
        ),
        (
            "underscore and mixed-case spellings",
            "GET",
            &[
                ("X_HTTP_Method_Override", "GET"),
                ("X-Http_Method", "GET"),
                ("x_method_override", "GET"),
            ],
            Ok(&[
                "X_HTTP_Method_Override",
                "X-Http_Method",
                "x_method_override",
            ]),
        ),
        (
            "override naming another method",
            "GET",
            &[("x-http-method-override", "DELETE")],
            Err(Reason::MethodOverride),
        ),
        (
            "x-http-method naming another method",
            "POST",
            &[("x-http-method", "PUT")],
            Err(Reason::MethodOverride),
        ),
        (
            "x-method-override naming another method",
            "GET",
            &[("x-method-override", "PATCH")],
            Err(Reason::MethodOverride),
        ),
        (
            "underscore spelling naming another method",
            "GET",
            &[("X_HTTP_METHOD_OVERRIDE", "POST")],
            Err(Reason::MethodOverride),
        ),
        (
            "one of two joined values differs",
            "GET",
            &[("x-http-method-override", "GET, DELETE")],
            Err(Reason::MethodOverride),
        ),
        (
            "second of two headers differs",
            "GET",
            &[
                ("x-http-method", "GET"),
                ("x-http-method-override", "DELETE"),
            ],
            Err(Reason::MethodOverride),
        ),
        (
            "empty override",
            "GET",
            &[("x-http-method-override", "")],
            Err(Reason::MethodOverride),
        ),
        (
            "proxy credentials removed",
            "GET",
            &[
                ("proxy-authorization", "Basic dXNlcjpwdw=="),
                ("Proxy_Authorization", "x"),
            ],
            Ok(&["proxy-authorization", "Proxy_Authorization"]),
        ),
        (
            "look-alikes that are other headers",
            "GET",
            &[
                ("x-http-method-overrides", "DELETE"),
                ("x-method", "DELETE"),
            ],
            Ok(&[]),
        ),
    ];
    for (name, method, request, expected) in cases {
        let got = headers_to_remove(method, "/api/2.0/x", &headers(request));
        match expected {
            Ok(removed) => assert_eq!(got.unwrap(), *removed, "{name}"),
            Err(reason) => assert_eq!(got.unwrap_err().reason, *reason, "{name}"),
        }
    }
}

#[test]
fn refusal_names_header_and_method_but_echoes_nothing_unbounded() {
    let error = headers_to_remove(
        "GET",
        "/x",
        &headers(&[("x-http-method-override", "DELETE")]),
    )
    .unwrap_err();
    assert_eq!(
        error.detail,
        "header x-http-method-override asks for method DELETE on a GET request; send the method itself"
    );
    let long = "A".repeat(5000);
    let error = headers_to_remove("GET", "/x", &headers(&[("x-http-method", &long)])).unwrap_err();
    assert!(error.detail.len() < 200, "{}", error.detail);
    assert_eq!(error.to_response("r").status, 400);
}

#[test]
fn only_the_exact_upper_case_methods_pass() {
    let cases: &[(&str, Option<&str>)] = &[
        ("GET", None),
        ("HEAD", None),
        ("POST", None),
        ("PUT", None),
        ("PATCH", None),
        ("DELETE", None),
        ("OPTIONS", None),
        ("Post", Some("must be spelled in upper case")),
        ("post", Some("must be spelled in upper case")),
        ("gET", Some("must be spelled in upper case")),
        ("GET ", Some("must be spelled in upper case")),
        (" GET", Some("must be spelled in upper case")),
        ("pAtCh", Some("must be spelled in upper case")),
        ("CONNECT", Some("has no use behind a Databricks gateway")),
        ("TRACE", Some("has no use behind a Databricks gateway")),
        ("trace", Some("must be spelled in upper case")),
        ("PROPFIND", Some("is not a method the Databricks API uses")),
        ("GETS", Some("is not a method the Databricks API uses")),
        ("", Some("is not a method the Databricks API uses")),
    ];
    for (method, refusal) in cases {
        match (check_method(method), refusal) {
            (Ok(()), None) => {}
            (Err(error), Some(words)) => {
                assert_eq!(error.reason, Reason::BadMethod, "{method:?}");
                assert!(error.detail.contains(words), "{method:?}: {}", error.detail);
                assert_eq!(error.to_response("r").status, 400);
            }
            (got, _) => panic!("{method:?}: {got:?}"),
        }
    }
    let long = "P".repeat(5000);
    let detail = check_method(&long).unwrap_err().detail;
    assert!(detail.len() < 200, "{detail}");
}

#[test]
fn path_overrides_naming_the_matched_path_are_removed_others_refused() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Result<&'a [&'a str], ()>);
    let matched = "/api/2.0/clusters/list";
    let cases: &[Case] = &[
        (
            "the same path",
            &[("x-original-url", "/api/2.0/clusters/list")],
            Ok(&["x-original-url"]),
        ),
        (
            "the same path, with a query and another spelling",
            &[("x-rewrite-url", "//api/2.0/./clusters/list?a=1")],
            Ok(&["x-rewrite-url"]),
        ),
        (
            "the same path as an absolute URL",
            &[(
                "x-forwarded-uri",
                "https://gw.example/api/2.0/clusters/list",
            )],
            Ok(&["x-forwarded-uri"]),
        ),
        (
            "every spelling, underscores and case",
            &[
                ("X_Original_URL", matched),
                ("x-original-uri", matched),
                ("X-Forwarded-Path", matched),
                ("x-envoy-original-path", matched),
            ],
            Ok(&[
                "X_Original_URL",
                "x-original-uri",
                "X-Forwarded-Path",
                "x-envoy-original-path",
            ]),
        ),
        (
            "a prefix is removed whatever it says",
            &[("x-forwarded-prefix", "/api/2.0/token")],
            Ok(&["x-forwarded-prefix"]),
        ),
        (
            "another path",
            &[("x-original-url", "/api/2.0/token/create")],
            Err(()),
        ),
        (
            "another letter case",
            &[("x-rewrite-url", "/api/2.0/Clusters/list")],
            Err(()),
        ),
        (
            "another path in an absolute URL",
            &[("x-forwarded-uri", "http://h/api/2.0/secrets/get")],
            Err(()),
        ),
        (
            "an unreadable path",
            &[("x-original-uri", "/api/2.0/clusters;/list")],
            Err(()),
        ),
        (
            "not a path",
            &[("x-envoy-original-path", "clusters")],
            Err(()),
        ),
        ("empty", &[("x-forwarded-path", "")], Err(())),
        (
            "two values joined",
            &[(
                "x-original-url",
                "/api/2.0/clusters/list,/api/2.0/token/create",
            )],
            Err(()),
        ),
        (
            "look-alikes that are other headers",
            &[("x-original-urls", "/x"), ("x-url", "/x")],
            Ok(&[]),
        ),
    ];
    for (name, request, expected) in cases {
        let got = headers_to_remove("GET", matched, &headers(request));
        match expected {
            Ok(removed) => assert_eq!(got.unwrap(), *removed, "{name}"),
            Err(()) => assert_eq!(got.unwrap_err().reason, Reason::PathOverride, "{name}"),
        }
    }
    let error = headers_to_remove(
        "GET",
        matched,
        &headers(&[("x-original-url", "/api/2.0/token/create")]),
    )
    .unwrap_err();
    assert_eq!(
        error.detail,
        "header x-original-url names path /api/2.0/token/create, not the request's own path \
         /api/2.0/clusters/list; some upstreams route on it: send the path itself"
    );
}

#[test]
fn method_overrides_in_the_query_must_name_the_method_itself() {
    // Review R1: frameworks that honour `X-HTTP-Method-Override` often honour `_method` (or the
    // header's name) as a query parameter too, so a `:read` GET could run as a POST.
    let cases: &[(&str, Option<&str>, Option<Reason>)] = &[
        ("GET", None, None),
        ("GET", Some("scope=s&key=k"), None),
        ("GET", Some("_method=GET"), None),
        ("POST", Some("_method=post"), None),
        ("GET", Some("method=POST"), None),
        ("GET", Some("_method=POST"), Some(Reason::MethodOverride)),
        (
            "GET",
            Some("a=1&_METHOD=DELETE"),
            Some(Reason::MethodOverride),
        ),
        ("GET", Some("%5Fmethod=POST"), Some(Reason::MethodOverride)),
        ("GET", Some("_method=P%4FST"), Some(Reason::MethodOverride)),
        (
            "GET",
            Some("x-http-method-override=PUT"),
            Some(Reason::MethodOverride),
        ),
        (
            "GET",
            Some("X_HTTP_Method=PATCH"),
            Some(Reason::MethodOverride),
        ),
        ("GET", Some("_method"), Some(Reason::MethodOverride)),
        (
            "GET",
            Some("_method=GET&_method=DELETE"),
            Some(Reason::MethodOverride),
        ),
        (
            "GET",
            Some("a=1;_method=DELETE"),
            Some(Reason::MethodOverride),
        ),
    ];
    for (method, query, expected) in cases {
        let got = check_query_overrides(method, *query)
            .err()
            .map(|e| e.reason);
        assert_eq!(got, *expected, "{method} ?{query:?}");
    }
}
