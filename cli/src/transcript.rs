//! What `brickgate explain` prints, one line at a time, each line cleaned before it is written:
//! the token never appears, wherever the core's answer carries it (a path rewritten with the
//! token still in its query, a header value), and neither does the value of any query parameter
//! a provider reads tokens from (a token the user wrote into PATH). The fingerprint stands in.
//! With `--json` the checks and the fields set become one document, every string of it
//! cleaned the same way, printed by [`Transcript::finish`].

use std::cell::RefCell;

use brickgate_core::config::{Config, TokenSource};
use brickgate_core::error::AuthError;
use brickgate_core::identity::fingerprint;
use serde_json::{Map, Value, json};

use crate::{json, output};

pub struct Transcript {
    sink: Sink,
    token: String,
    /// What the token is replaced with.
    stand_in: String,
    /// Query parameters any provider reads a token from.
    token_params: Vec<String>,
    /// `--json`: the document being built (lines are then not printed).
    document: Option<RefCell<Map<String, Value>>>,
    /// Other credentials given on the command line (`--header Authorization: …`), hidden as
    /// the token is: (text, stand-in), longest first.
    others: Vec<(String, String)>,
}

impl Transcript {
    pub fn new(config: &Config, token: &str, as_json: bool) -> Self {
        let mut token_params: Vec<String> = Vec::new();
        for source in config.providers.iter().flat_map(|p| &p.token_sources) {
            if let TokenSource::Query { param } = source
                && !token_params.contains(param)
            {
                token_params.push(param.clone());
            }
        }
        Transcript {
            sink: Sink::Stdout,
            token: token.to_string(),
            stand_in: format!("[token {}]", fingerprint(token)),
            token_params,
            document: as_json.then(|| {
                let mut document = Map::new();
                document.insert("schema".into(), json!("brickgate.explain/v1"));
                document.insert("checks".into(), json!([]));
                RefCell::new(document)
            }),
            others: Vec::new(),
        }
    }

    /// Also hides the value of every header in `headers` that carries a credential: the
    /// Authorization headers and those any provider reads tokens from. The whole value and the
    /// part after the scheme (`Bearer `) are each replaced by the value's fingerprint.
    pub fn hiding_credentials_in(mut self, config: &Config, headers: &[(String, String)]) -> Self {
        let credential_header = |name: &str| {
            name == "authorization"
                || name == "proxy-authorization"
                || config.providers.iter().flat_map(|p| &p.token_sources).any(|source| {
                    matches!(source, TokenSource::Header { name: read, .. } if read.eq_ignore_ascii_case(name))
                })
        };
        for (_, value) in headers.iter().filter(|(name, _)| credential_header(name)) {
            let stand_in = format!("[credential {}]", fingerprint(value));
            let bare = value.split_once(' ').map(|(_, rest)| rest.trim());
            for secret in std::iter::once(value.as_str()).chain(bare) {
                if !secret.is_empty() {
                    self.others.push((secret.to_string(), stand_in.clone()));
                }
            }
        }
        self.others
            .sort_by_key(|(secret, _)| std::cmp::Reverse(secret.len()));
        self
    }

    pub fn is_json(&self) -> bool {
        self.document.is_some()
    }

    /// A field of the `--json` document (nothing without `--json`).
    pub fn set(&self, field: &str, value: Value) {
        if let Some(document) = &self.document {
            document.borrow_mut().insert(field.to_string(), value);
        }
    }

    /// Prints the `--json` document, every string in it cleaned.
    pub fn finish(&self) {
        if let Some(document) = &self.document {
            let document = Value::Object(document.borrow().clone());
            output::document(&json::cleaned(document, &|text| self.clean(text)));
        }
    }

    /// One check: a line for people, an entry of `checks` in the document.
    fn record(&self, what: &str, result: &str, detail: &str, reason: Option<&str>, line: String) {
        match &self.document {
            Some(document) => {
                let entry =
                    json!({"check": what, "result": result, "detail": detail, "reason": reason});
                if let Some(Value::Array(checks)) = document.borrow_mut().get_mut("checks") {
                    checks.push(entry);
                }
            }
            None => self.line(line),
        }
    }

    /// A transcript that keeps its lines (cleaned) instead of printing them.
    #[cfg(test)]
    pub fn kept(config: &Config, token: &str) -> Self {
        Transcript {
            sink: Sink::Kept(Default::default()),
            ..Transcript::new(config, token, false)
        }
    }

    /// The lines a [`Transcript::kept`] holds.
    #[cfg(test)]
    pub fn lines(&self) -> Vec<String> {
        match &self.sink {
            Sink::Kept(lines) => lines.borrow().clone(),
            Sink::Stdout => Vec::new(),
        }
    }

    /// The token being replayed, which every printed line hides.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `text` without the token and without any token parameter's value.
    pub fn clean(&self, text: &str) -> String {
        // Parameters first: the stand-in holds a space, which would end a parameter's value.
        let text = self
            .token_params
            .iter()
            .fold(text.to_string(), |text, param| {
                without_param_values(&text, param)
            });
        let text = if self.token.is_empty() {
            text
        } else {
            text.replace(&self.token, &self.stand_in)
        };
        self.others.iter().fold(text, |text, (secret, stand_in)| {
            text.replace(secret, stand_in)
        })
    }

    /// A line for people; `--json` documents carry the same facts as fields instead.
    pub fn line(&self, text: impl AsRef<str>) {
        if self.is_json() {
            return;
        }
        let line = self.clean(text.as_ref());
        match &self.sink {
            Sink::Stdout => output::line(&line),
            #[cfg(test)]
            Sink::Kept(lines) => lines.borrow_mut().push(line),
        }
    }

    pub fn pass(&self, what: &str, detail: impl AsRef<str>) {
        let detail = detail.as_ref();
        let line = format!("  ok    {what:<12} {detail}");
        self.record(what, "ok", detail, None, line);
    }

    pub fn fail(&self, what: &str, error: &AuthError) {
        let reason = error.reason.as_str();
        let line = format!("  FAIL  {what:<12} {} ({reason})", error.detail);
        self.record(what, "fail", &error.detail, Some(reason), line);
    }

    /// A failed check the core reports without an `AuthError` (printed in the info column).
    pub fn failed(&self, what: &str, detail: &str, reason: &str) {
        let line = format!("        {what:<12} FAIL {detail} ({reason})");
        self.record(what, "fail", detail, Some(reason), line);
    }

    pub fn info(&self, what: &str, detail: impl AsRef<str>) {
        let detail = detail.as_ref();
        let line = format!("        {what:<12} {detail}");
        self.record(what, "info", detail, None, line);
    }

    pub fn check(&self, what: &str, result: Result<String, AuthError>) -> bool {
        match result {
            Ok(detail) => {
                self.pass(what, detail);
                true
            }
            Err(error) => {
                self.fail(what, &error);
                false
            }
        }
    }
}

enum Sink {
    Stdout,
    #[cfg(test)]
    Kept(std::cell::RefCell<Vec<String>>),
}

/// Every `param=VALUE` that starts a query pair (after `?` or `&`) with VALUE replaced by
/// `[redacted]`; VALUE ends at `&`, `#`, whitespace, a quote or the end of the text.
fn without_param_values(text: &str, param: &str) -> String {
    let key = format!("{param}=");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&key) {
        let starts_pair = rest[..at].ends_with(['?', '&']);
        let (before, after) = rest.split_at(at + key.len());
        out.push_str(before);
        rest = after;
        if starts_pair {
            let end = rest
                .find(|c: char| matches!(c, '&' | '#' | '"' | '\'') || c.is_whitespace())
                .unwrap_or(rest.len());
            if end > 0 {
                out.push_str("[redacted]");
            }
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(params: &[&str], token: &str) -> Transcript {
        Transcript {
            sink: Sink::Stdout,
            token: token.to_string(),
            stand_in: format!("[token {}]", fingerprint(token)),
            token_params: params.iter().map(|p| p.to_string()).collect(),
            document: None,
            others: Vec::new(),
        }
    }

    #[test]
    fn neither_the_token_nor_a_token_parameter_survives() {
        let t = transcript(&["access_token"], "eyJ.abc.def");
        let fp = fingerprint("eyJ.abc.def");
        // (printed, written)
        let cases = [
            (
                "  path becomes /api/2.0/x?access_token=eyJ.abc.def".to_string(),
                "  path becomes /api/2.0/x?access_token=[redacted]".to_string(),
            ),
            (
                "request: GET /x?a=1&access_token=other.jwt.value&b=2 (fp)".to_string(),
                "request: GET /x?a=1&access_token=[redacted]&b=2 (fp)".to_string(),
            ),
            (
                "/x?my_access_token=keep&access_token=".to_string(),
                "/x?my_access_token=keep&access_token=".to_string(),
            ),
            (
                r#"{"path":"/x?access_token=v1#frag","q":"?access_token=v2"}"#.to_string(),
                r#"{"path":"/x?access_token=[redacted]#frag","q":"?access_token=[redacted]"}"#
                    .to_string(),
            ),
            (
                "header x-token: Bearer eyJ.abc.def, again eyJ.abc.def".to_string(),
                format!("header x-token: Bearer [token {fp}], again [token {fp}]"),
            ),
            (
                "access_token=not-a-query-pair".to_string(),
                "access_token=not-a-query-pair".to_string(),
            ),
            (
                "/é?access_token=ü€".to_string(),
                "/é?access_token=[redacted]".to_string(),
            ),
        ];
        for (printed, written) in cases {
            assert_eq!(t.clean(&printed), written, "{printed}");
        }
    }

    #[test]
    fn a_credential_given_as_a_header_is_hidden_too() {
        let config = Config::from_json(
            br#"{"providers": {"p": {"issuer": "https://i.example", "allow_any_audience": true,
                 "jwks": {"remote": {"cluster": "c", "uri": "https://i.example/k"}},
                 "token_sources": [{"header": "x-api-token"}]}},
                 "databricks": {"route_catalogue": true}}"#,
        )
        .unwrap();
        let headers = [
            (
                "authorization".to_string(),
                "Bearer second.jwt.value".to_string(),
            ),
            ("x-api-token".to_string(), "third".to_string()),
            ("origin".to_string(), "https://app.example".to_string()),
        ];
        let t = Transcript::new(&config, "first.jwt.value", false)
            .hiding_credentials_in(&config, &headers);
        let printed =
            t.clean("a Bearer second.jwt.value b second.jwt.value c third d https://app.example");
        assert!(
            !printed.contains("second.jwt.value") && !printed.contains("third"),
            "{printed}"
        );
        assert!(
            printed.contains("[credential ") && printed.contains("https://app.example"),
            "{printed}"
        );
    }
}
