//! Where keys are fetched from: an https URL split into the authority and path Envoy needs.
//! Plain http is accepted only for loopback addresses (tests and the dev stack).

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchLocation {
    pub authority: String,
    pub path: String,
}

impl FetchLocation {
    pub fn parse(url: &str) -> Result<FetchLocation, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "must be an absolute https URL".to_string())?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let bad = |c: char| c.is_whitespace() || c.is_control();
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(bad)
            || path.contains(bad)
            || path.contains('#')
        {
            return Err("must be an absolute https URL".to_string());
        }
        match scheme {
            "https" => {}
            "http" if is_loopback(authority) => {}
            "http" => {
                return Err("http is only accepted for loopback addresses; use https".to_string());
            }
            other => return Err(format!("scheme {other:?} is not https")),
        }
        Ok(FetchLocation {
            authority: authority.to_string(),
            path,
        })
    }

    /// `<this URL>/<suffix>`, as OIDC discovery and RFC 8414 (Databricks' form) append it.
    pub fn join(&self, suffix: &str) -> FetchLocation {
        FetchLocation {
            authority: self.authority.clone(),
            path: format!("{}/{suffix}", self.path.trim_end_matches('/')),
        }
    }
}

fn is_loopback(authority: &str) -> bool {
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_and_loopback_http_only() {
        let ok = [
            ("https://idp.example/keys", "idp.example", "/keys"),
            ("https://idp.example", "idp.example", "/"),
            (
                "https://idp.example:8443/a/b?x=1",
                "idp.example:8443",
                "/a/b?x=1",
            ),
            (
                "http://127.0.0.1:9400/jwks.json",
                "127.0.0.1:9400",
                "/jwks.json",
            ),
            ("http://localhost/k", "localhost", "/k"),
            ("http://[::1]:80/k", "[::1]:80", "/k"),
        ];
        for (url, authority, path) in ok {
            assert_eq!(
                FetchLocation::parse(url).unwrap(),
                FetchLocation {
                    authority: authority.into(),
                    path: path.into()
                },
                "{url}"
            );
        }
        let bad = [
            "/keys",
            "ftp://x/k",
            "http://idp.example/k",
            "https://user@idp/k",
            "https:///k",
            "https://idp/a b",
            "http://127.evil.example/k",
        ];
        for url in bad {
            assert!(FetchLocation::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn joins_well_known_paths() {
        let issuer = FetchLocation::parse("https://ws.example/oidc/").unwrap();
        assert_eq!(
            issuer.join(".well-known/openid-configuration").path,
            "/oidc/.well-known/openid-configuration"
        );
        let root = FetchLocation::parse("https://idp.example").unwrap();
        assert_eq!(
            root.join(".well-known/openid-configuration").path,
            "/.well-known/openid-configuration"
        );
    }
}
