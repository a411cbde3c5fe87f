//! Review R1's probes, as an attacker and as a Databricks user would send them: every spelling
//! of a guarded operation (letter case, escapes, dot segments, `;`, suffixes, look-alikes,
//! versions, extra segments), token swaps (`all-apis:read` writing, `sql:restricted-query` off
//! SQL), method overrides in the query, and serving bodies (a second `model` in any spelling).
//! Each row is the reason the engine gives (`allowed`: none), with every route class disabled.

use super::*;

/// method, path, caller (`admin`: all-apis, `reader`: all-apis:read, `sqlrq`:
/// sql:restricted-query, `none`: no token), reason. Paths hold no spaces.
const PATH_PROBES: &str = "
POST   /api/2.0/token/create                                          admin  route_disabled
POST   /api/2.0/token/create/                                         admin  route_disabled
POST   /api/2.0/token/create;x                                        admin  bad_path
POST   /api/2.0/token/create%3Bx                                      admin  route_disabled
POST   /api/2.0/token/create%3Fx                                      admin  route_disabled
POST   /api/2.0/token%2Fcreate                                        admin  bad_path
POST   /api/2.0/%74oken/create                                        admin  route_disabled
POST   /api/2.0/TOKEN/create                                          admin  bad_path
POST   /api/2.0/tok%C3%A9n/create                                     admin  allowed
POST   /api/2.0/%EF%BD%94oken/create                                  admin  bad_path
POST   /api/2.0/%2e/token/create                                      admin  bad_path
POST   /api/2.0/token-management/on-behalf-of/tokens                  admin  route_disabled
POST   /api/2.0/token/management/on-behalf-of/tokens                  admin  route_disabled
POST   /api/2.0/token_management/on-behalf-of/tokens                  admin  allowed
POST   /api/2.0/tokens/create                                         admin  allowed
GET    /api/2.0/secrets/get?scope=a&key=b                             admin  route_disabled
HEAD   /api/2.0/secrets/get?scope=a&key=b                             admin  route_disabled
GET    /api/2.0/secrets/get/                                          admin  route_disabled
GET    /api/2.0/secrets/get.json                                      admin  bad_path
GET    /api/2.0/secrets/get%3F                                        admin  bad_path
GET    /api/2.0/secrets/get%23                                        admin  bad_path
GET    /api/2.0/secrets/get%3B                                        admin  bad_path
GET    /api/2.0/secrets/Get                                           admin  bad_path
GET    /api/2.0/secrets/list?scope=a                                  reader allowed
GET    /api/2.0/secrets/get?scope=a&key=b                             reader route_disabled
POST   /api/2.0/secrets/get                                           admin  route_disabled
GET    /api/2.0/secrets/scopes/list                                   reader allowed
POST   /api/2.0/clusters/list                                         reader insufficient_scope
POST   /api/2.0/sql/statements                                        sqlrq  allowed
POST   /api/2.0/sql/statements/                                       sqlrq  allowed
POST   /api/2.0/sql/queries                                           sqlrq  insufficient_scope
GET    /api/2.0/sql/queries                                           sqlrq  insufficient_scope
POST   /api/2.0/clusters/create                                       sqlrq  insufficient_scope
POST   /sql/1.0/warehouses/abc                                        sqlrq  allowed
POST   /sql/1.0/warehouses/abc/x                                      sqlrq  no_matching_rule
POST   /sql/1.0/warehouses/                                           sqlrq  no_matching_rule
POST   /sql/protocolv1/o/1/abc                                        sqlrq  allowed
POST   /sql/1.0/warehouses/abc                                        reader insufficient_scope
POST   /api/2.0/mcp/sql/x                                             sqlrq  insufficient_scope
GET    /api/2.0/preview/scim/v2/Me                                    sqlrq  allowed
GET    /api/2.0/preview/scim/v2/Me/                                   sqlrq  allowed
GET    /api/2.0/preview/scim/v2/me                                    sqlrq  bad_path
GET    /api/2.0/scim/v2/Me                                            sqlrq  allowed
PATCH  /api/2.0/preview/scim/v2/Me                                    sqlrq  insufficient_scope
POST   /api/2.1/unity-catalog/temporary-table-credentials             admin  route_disabled
POST   /api/2.1/unity-catalog/temporary-table-credentials/            admin  route_disabled
POST   /api/2.0/unity-catalog/temporary-table-credentials             admin  route_disabled
POST   /api/2.2/unity-catalog/temporary-table-credentials             admin  route_disabled
POST   /api/3.0/unity-catalog/temporary-table-credentials             admin  route_disabled
GET    /api/2.1/unity-catalog/recipients/r1                           admin  route_disabled
GET    /api/2.2/unity-catalog/recipients/r1                           admin  route_disabled
GET    /api/2.0/unity-catalog/recipients/r1                           admin  route_disabled
GET    /api/2.0/unity-catalog/secrets/s1                              admin  route_disabled
GET    /api/2.2/unity-catalog/secrets/s1                              admin  route_disabled
POST   /api/1.2/commands/execute                                      admin  route_disabled
POST   /api/2.0/1.2/commands/execute                                  admin  bad_path
POST   /api/1.20/commands/execute                                     admin  route_disabled
POST   /api/1.2.0/commands/execute                                    admin  route_disabled
POST   /api/01.2/commands/execute                                     admin  route_disabled
POST   /api/2.0/commands/execute                                      admin  route_disabled
POST   /api/2.0/contexts/create                                       admin  route_disabled
POST   /api/1.2/contexts/create                                       admin  route_disabled
POST   /api/2.1/marketplace-consumer/listings/l/installations         admin  route_disabled
POST   /api/2.0/marketplace-consumer/listings/l/installations         admin  route_disabled
POST   /api/2.2/marketplace-consumer/listings/l/installations         admin  route_disabled
POST   /api/2.1/marketplace-provider/files                            admin  route_disabled
POST   /api/2.0/database/credentials                                  admin  route_disabled
POST   /api/2.0/database/credentials/                                 admin  route_disabled
POST   /api/2.0/accounts/abc/oauth2/custom-app-integrations           admin  route_disabled
POST   /api/2.0/accounts/abc/oauth2/custom-app-integrations/          admin  route_disabled
POST   /api/2.0/accounts/abc/oauth2/custom-app-integrations/x/secret  admin  allowed
POST   /api/2.0/accounts/servicePrincipals/1/credentials/secrets      admin  route_disabled
POST   /api/2.0/accounts/serviceprincipals/1/credentials/secrets      admin  bad_path
POST   /api/2.0/accounts/abc/servicePrincipals/1/credentials/secrets  admin  route_disabled
POST   /api/2.0/accounts/abc/servicePrincipals/1/credentials/secrets/ admin  route_disabled
PUT    /api/2.0/accounts/abc/servicePrincipals/1/credentials/secrets  admin  route_disabled
POST   /api/2.0/global-init-scripts                                   admin  route_disabled
POST   /spark.connect.SparkConnectService/ExecutePlan                 admin  route_disabled
POST   /spark.connect.sparkconnectservice/ExecutePlan                 admin  bad_path
POST   /api/2.0/credentials-manager/exchange-tokens/token             admin  route_disabled
POST   /api/2.0/git-credentials                                       reader insufficient_scope
GET    /api/2.0/oidc/v1/token                                         none   missing_token
POST   /oidc/v1/token                                                 none   allowed
POST   /oidc/../api/2.0/token/create                                  none   route_disabled
POST   /oidc/%2e%2e/api/2.0/token/create                              none   bad_path
POST   /oidc/v1/token/../../../api/2.0/token/create                   none   route_disabled
POST   /OIDC/v1/token                                                 none   bad_path
GET    /.well-known/databricks-config                                 none   allowed
GET    /.well-known/databricks-config/../../api/2.0/secrets/get       none   route_disabled
POST   /serving-endpoints/fraud/invocations                           admin  group_not_allowed
POST   /serving-endpoints/FRAUD/invocations                           admin  bad_path
POST   /serving-endpoints/fr%61ud/invocations                         admin  group_not_allowed
POST   /api/2.0/serving-endpoints/fraud/invocations                   admin  bad_path
POST   /serving-endpoints/fraud/served-models/m/invocations           admin  group_not_allowed
POST   /serving-endpoints/fraud/served-entities/m/invocations         admin  no_matching_rule
POST   /serving-endpoints/fraud/invocations/                          admin  group_not_allowed
POST   /serving-endpoints/fraud/invocations.json                      admin  bad_path
POST   /serving-endpoints/fraud/../fraud/invocations                  admin  group_not_allowed
POST   /serving-endpoints/x/../fraud/invocations                      admin  group_not_allowed
POST   /serving-endpoints/fraud/openai/v1/chat/completions            admin  no_matching_rule
POST   /ai-gateway/fraud/invocations                                  admin  bad_body
POST   /api/2.0/serving-endpoints/fraud/ai-gateway                    admin  allowed
PUT    /api/2.0/serving-endpoints/fraud/config                        admin  allowed
GET    /api/2.0/serving-endpoints/fraud/openapi                       admin  allowed
GET    /api/2.0/secrets/get/x                                         reader route_disabled
GET    /api/2.1/unity-catalog/secrets/s1/x                            reader route_disabled
POST   /api/2.0/database/credentials/x                                admin  route_disabled
POST   /api/2.1/unity-catalog/temporary-table-credentials/x           admin  route_disabled
GET    /api/2.1/unity-catalog/recipients/r1/x                         admin  route_disabled
GET    /api/2.1/unity-catalog/recipients/r1/share-permissions         reader allowed
DELETE /api/2.1/unity-catalog/recipients/r1                           admin  allowed
GET    /api/2.0/clusters/list?_method=POST                            reader method_override
GET    /api/2.0/clusters/list?_method=GET                             reader allowed
";

#[test]
fn review_probes_are_refused_or_decided_by_the_guarding_rule() {
    let engine = engine(json!({"mode": "pass_through"}));
    let caller = |scope: &str| format!("Bearer {}", token(json!({"scope": scope})));
    let callers = [
        ("admin", caller("all-apis")),
        ("reader", caller("all-apis:read")),
        ("sqlrq", caller("sql:restricted-query")),
    ];
    let mut probed = 0;
    for line in PATH_PROBES.lines().filter(|line| !line.trim().is_empty()) {
        let [method, path, who, reason] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("bad probe line {line:?}");
        };
        let headers: Vec<(&str, &str)> = callers
            .iter()
            .filter(|(name, _)| *name == who)
            .map(|(_, auth)| ("authorization", auth.as_str()))
            .collect();
        let decision = decide(&engine, method, path, &headers, Some(b""));
        let got = decision.audit().reason.unwrap_or("allowed");
        assert_eq!(got, reason, "{method} {path} [{who}]");
        probed += 1;
    }
    assert!(probed > 100, "read only {probed} probes");
}

#[test]
fn review_body_probes_cannot_name_another_endpoint() {
    let engine = engine(json!({"mode": "pass_through"}));
    let admin = format!("Bearer {}", token(json!({"scope": "all-apis"})));
    let cases: &[(&str, &str, Option<&[u8]>, &str)] = &[
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"fraud","Model":"x"}"#),
            "bad_body",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"x","MODEL":"fraud"}"#),
            "bad_body",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"x","\u006dodel":"fraud"}"#),
            "bad_body",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"x","extra":{"model":"fraud"}}"#),
            "insufficient_scope",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(b"\xef\xbb\xbf{\"model\":\"x\"}"),
            "bad_body",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"x"}"#),
            "insufficient_scope",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"x\u0000"}"#),
            "bad_body",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"x","model ":"fraud"}"#),
            "insufficient_scope",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"x","mod\u0065l":"fraud"}"#),
            "bad_body",
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            Some(br#"{"model":"Fraud"}"#),
            "bad_body",
        ),
        (
            "POST",
            "/serving-endpoints/Chat/completions",
            Some(br#"{"model":"x"}"#),
            "bad_path",
        ),
        (
            "POST",
            "/serving-endpoints/v1/chat/completions",
            Some(br#"{"model":"fraud"}"#),
            "no_matching_rule",
        ),
        (
            "POST",
            "/ai-gateway/mlflow/v1/chat/completions",
            Some(br#"{"model":"fraud"}"#),
            "group_not_allowed",
        ),
        (
            "POST",
            "/ai-gateway/anthropic/v1/messages",
            Some(br#"{"model":"fraud"}"#),
            "group_not_allowed",
        ),
        (
            "POST",
            "/ai-gateway/openai/v1/chat/completions",
            Some(br#"{"model":"fraud"}"#),
            "group_not_allowed",
        ),
        (
            "POST",
            "/serving-endpoints/responses",
            Some(br#"{"model":"fraud"}"#),
            "group_not_allowed",
        ),
        (
            "POST",
            "/serving-endpoints/embeddings",
            Some(br#"{"model":"fraud"}"#),
            "group_not_allowed",
        ),
    ];
    for (method, path, body, reason) in cases {
        let decision = decide(&engine, method, path, &[("authorization", &admin)], *body);
        let got = decision.audit().reason.unwrap_or("allowed");
        assert_eq!(got, *reason, "{method} {path} {body:?}");
    }
}
