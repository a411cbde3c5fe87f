//! Signing keys for `explain`: fetched as the plugin fetches them (the same key store drives
//! discovery and the JWKS fetch; this tool only carries out its GETs), or read from a file.

use std::io::Read;
use std::time::Duration;

use brickgate_core::config::{Config, JwksSource};
use brickgate_core::jwks::schedule::max_age;
use brickgate_core::jwks::{
    FetchLocation, FetchOutcome, FetchRequest, JwksStore, KeyOrigin, StoreEvent, parse_jwks,
};
use brickgate_core::shared_data::InMemorySharedData;

use crate::args::read_file;

/// `--jwks FILE`: this key set stands for every provider's remote keys (offline).
pub fn use_file(config: &mut Config, path: &str) -> Result<(), String> {
    let bytes = read_file(path, "JWKS")?;
    let document: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("JWKS {path} is not JSON: {e}"))?;
    let keys = parse_jwks(&document, KeyOrigin::Remote).map_err(|e| format!("JWKS {path}: {e}"))?;
    for provider in &mut config.providers {
        if matches!(provider.jwks, JwksSource::Remote(_)) {
            provider.jwks = JwksSource::Inline(keys.clone());
        }
    }
    Ok(())
}

/// Builds the key store and runs every fetch it asks for until none is left; returns the
/// store and one line per provider fetch event.
pub fn fetch_all(config: &Config, now_ms: u64) -> (JwksStore, Vec<String>) {
    let shared = InMemorySharedData::default();
    let mut store = JwksStore::new(config, 1);
    let (mut pending, events) = store.tick(&shared, now_ms);
    let mut lines = describe_events(config, &events);
    // Discovery, the RFC 8414 fallback, then the JWKS: a few steps per provider at most.
    for _ in 0..8 {
        if pending.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for fetch in pending {
            let (outcome, redirect) = get(&store, &fetch);
            lines.extend(redirect);
            let (more, events) = store.on_fetch_outcome(&shared, fetch.provider, outcome, now_ms);
            lines.extend(describe_events(config, &events));
            next.extend(more);
        }
        pending = next;
    }
    (store, lines)
}

/// The URL the plugin's Envoy cluster would reach: plain http only on loopback (as the
/// configuration allows it only there), https otherwise.
fn url(fetch: &FetchRequest) -> String {
    // The core's own judgement: its URL parser takes plain http only for loopback hosts.
    let loopback = FetchLocation::parse(&format!("http://{}/", fetch.authority)).is_ok();
    let scheme = if loopback { "http" } else { "https" };
    format!("{scheme}://{}{}", fetch.authority, fetch.path)
}

/// One GET, as the plugin's `dispatch_http_call` makes it: a redirect is not followed (Envoy
/// hands the plugin the 3xx itself, and the key store refuses it as it refuses any answer but
/// 200), so an https URL can never lead this tool to plain http or to another host. The second
/// value says where a redirect pointed, by host only (its path or query may hold anything).
fn get(store: &JwksStore, fetch: &FetchRequest) -> (FetchOutcome, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(fetch.timeout_ms)))
        .http_status_as_error(false)
        // 0: the 3xx response is returned as it is, never followed.
        .max_redirects(0)
        .build()
        .into();
    let url = url(fetch);
    let mut response = match agent.get(&url).header("accept", "application/json").call() {
        Ok(response) => response,
        Err(e) => {
            return (
                FetchOutcome::TransportFailure(format!("GET {url}: {e}")),
                None,
            );
        }
    };
    let status = u32::from(response.status().as_u16());
    let redirect = response.status().is_redirection().then(|| {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok());
        format!(
            "keys: GET {url} answered HTTP {status}, a redirect to {}: not followed (the plugin \
             never follows redirects)",
            location_host(location)
        )
    });
    let max_age_s = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let limit = store.body_read_limit(fetch.provider) as u64;
    let mut body = Vec::new();
    let read = response
        .body_mut()
        .as_reader()
        .take(limit)
        .read_to_end(&mut body);
    let outcome = match read {
        Ok(_) => FetchOutcome::Response {
            status,
            body,
            max_age_s,
        },
        Err(e) => FetchOutcome::TransportFailure(format!("GET {url}: {e}")),
    };
    (outcome, redirect)
}

/// The host a `Location` names, and only that: `host x` for an absolute URL (scheme and
/// userinfo dropped), `the same host` for a relative one. A host that is not plain
/// letters, digits, `.`, `-`, `:`, `[`, `]`, or is longer than a DNS name, is not echoed.
fn location_host(location: Option<&str>) -> String {
    let Some(location) = location else {
        return "nowhere (no Location header)".to_string();
    };
    let after_scheme = match location.split_once("://") {
        Some((_, rest)) => rest,
        None => match location.strip_prefix("//") {
            Some(rest) => rest,
            None => return "the same host".to_string(),
        },
    };
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let plain = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if host.is_empty() || host.len() > 255 || !plain {
        return "a host it does not name readably".to_string();
    }
    format!("host {host}")
}

fn describe_events(config: &Config, events: &[StoreEvent]) -> Vec<String> {
    let name = |i: &usize| {
        config
            .providers
            .get(*i)
            .map_or("?", |p| p.name.as_str())
            .to_string()
    };
    events
        .iter()
        .filter_map(|event| match event {
            StoreEvent::KeysChanged {
                provider,
                added,
                skipped,
                ..
            } => Some(format!(
                "keys: provider {}: fetched [{}]{}",
                name(provider),
                added.join(", "),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(", skipped [{}]", skipped.join(", "))
                }
            )),
            StoreEvent::FetchFailed { provider, why } => {
                Some(format!("keys: provider {}: {why}", name(provider)))
            }
            StoreEvent::FetchSucceeded { .. } | StoreEvent::KidMissRefetch { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(authority: &str) -> FetchRequest {
        FetchRequest {
            provider: 0,
            cluster: "idp".into(),
            authority: authority.into(),
            path: "/jwks.json".into(),
            timeout_ms: 1000,
        }
    }

    #[test]
    fn a_redirect_names_only_the_host_it_points_at() {
        let cases = [
            (
                Some("http://evil.example/jwks?token=secret"),
                "host evil.example",
            ),
            (
                Some("https://user:pw@idp.example:8443/k"),
                "host idp.example:8443",
            ),
            (Some("//cdn.example/keys"), "host cdn.example"),
            (Some("/elsewhere?access_token=secret"), "the same host"),
            (Some("http://[::1]:9/x"), "host [::1]:9"),
            (
                Some("http://a b.example/"),
                "a host it does not name readably",
            ),
            (Some("http:///nohost"), "a host it does not name readably"),
            (None, "nowhere (no Location header)"),
        ];
        for (location, named) in cases {
            assert_eq!(location_host(location), named, "{location:?}");
        }
    }

    /// A loopback IdP whose JWKS URL redirects (here to another loopback port, plain http):
    /// the tool reports the redirect, with the host only, and never connects to its target.
    #[test]
    fn a_redirect_is_not_followed() {
        use std::io::{BufRead, BufReader, Write};
        use std::net::TcpListener;

        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let target_port = target.local_addr().unwrap().port();
        let idp = TcpListener::bind("127.0.0.1:0").unwrap();
        let idp_port = idp.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = idp.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{target_port}/jwks.json?token=secret\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            reader.get_mut().write_all(answer.as_bytes()).unwrap();
        });
        let config = brickgate_core::config::Config::from_json(
            serde_json::json!({
                "realm": "r",
                "providers": {"p": {
                    "issuer": "https://p.test",
                    "audiences": ["api"],
                    "jwks": {"remote": {"cluster": "idp", "uri": format!("http://127.0.0.1:{idp_port}/jwks.json")}}
                }},
                "rules": [{"name": "all", "match": {"template": "/**"}, "providers": ["p"]}]
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let (_, lines) = fetch_all(&config, 1_800_000_000_000);
        server.join().unwrap();
        assert!(
            lines.iter().any(|l| l.starts_with(&format!(
                "keys: GET http://127.0.0.1:{idp_port}/jwks.json answered HTTP 302, a redirect to host 127.0.0.1:{target_port}: not followed"
            ))),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("JWKS endpoint answered HTTP 302")),
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| !l.contains("secret")), "{lines:#?}");
        // Had the redirect been followed, its connection would be waiting here by now.
        target.set_nonblocking(true).unwrap();
        assert_eq!(
            target.accept().map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for (authority, url) in [
            ("127.0.0.1:9400", "http://127.0.0.1:9400/jwks.json"),
            ("localhost:8080", "http://localhost:8080/jwks.json"),
            ("[::1]:9400", "http://[::1]:9400/jwks.json"),
            ("login.example.com", "https://login.example.com/jwks.json"),
            (
                "127.0.0.1.evil.example",
                "https://127.0.0.1.evil.example/jwks.json",
            ),
        ] {
            assert_eq!(super::url(&fetch(authority)), url);
        }
    }
}
