//! Secrets come from the Wasm VM's environment (Envoy's `vm_config.environment_variables`),
//! never from the plugin configuration, which Envoy's `/config_dump` shows to anyone with
//! admin access. A secret written into the configuration is refused unless the configuration
//! says `allow_inline_secrets: true` (development only).

use super::super::ConfigError;
use super::Result;

/// Reads an environment variable of the VM (`std::env::var` in the plugin and the CLI).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where the compiler may take secrets from.
#[derive(Clone, Copy)]
pub struct Secrets<'a> {
    pub env: EnvLookup<'a>,
    pub allow_inline: bool,
}

const MAX_ENV_NAME: usize = 128;

impl Secrets<'_> {
    /// The secret named by `{field}.{name}` (inline) or `{field}.{name}_env` (a variable).
    /// Errors name the field and the variable, never the value.
    pub fn read(
        &self,
        field: &str,
        name: &str,
        inline: Option<&str>,
        env_name: Option<&str>,
    ) -> Result<Option<String>> {
        match (inline, env_name) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                format!("{field}.{name}"),
                format!("give either {name} or {name}_env, not both"),
            )),
            (Some(_), None) if !self.allow_inline => Err(ConfigError::new(
                format!("{field}.{name}"),
                format!(
                    "a secret in the plugin configuration is shown by Envoy's /config_dump; \
                     put it in an environment variable of the Wasm VM \
                     (vm_config.environment_variables) and name it with {name}_env, \
                     or set \"allow_inline_secrets\": true for development"
                ),
            )),
            (Some(value), None) => Ok(Some(value.to_string()).filter(|v| !v.is_empty())),
            (None, Some(variable)) => {
                let env_field = format!("{field}.{name}_env");
                let valid = !variable.is_empty()
                    && variable.len() <= MAX_ENV_NAME
                    && variable
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(ConfigError::new(
                        env_field,
                        "an environment variable name: 1 to 128 of [A-Za-z0-9_]",
                    ));
                }
                match (self.env)(variable).filter(|value| !value.is_empty()) {
                    Some(value) => Ok(Some(value)),
                    None => Err(ConfigError::new(
                        env_field,
                        format!(
                            "environment variable {variable} is not set (or empty) in the Wasm VM; \
                             hand it over with vm_config.environment_variables \
                             (Istio: vmConfig.env, Envoy Gateway: env)"
                        ),
                    )),
                }
            }
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::Config;
    use crate::databricks::exchange::UpstreamMode;

    const SECRET: &str = "sp-secret-value-1234";

    fn config(upstream: serde_json::Value, allow_inline: bool) -> String {
        json!({
            "providers": {"idp": {"issuer": "https://idp.test", "audiences": ["api"],
                "jwks": {"remote": {"cluster": "idp", "uri": "https://idp.test/keys"}},
                "upstream": upstream}},
            "rules": [{"match": {"prefix": "/"}, "providers": ["idp"]}],
            "allow_inline_secrets": allow_inline
        })
        .to_string()
    }

    fn sp(secret: serde_json::Value) -> serde_json::Value {
        let mut upstream = json!({"mode": "service_principal", "cluster": "ws",
                                  "workspace_url": "https://ws.example", "client_id": "sp",
                                  "scopes": ["all-apis"]});
        for (key, value) in secret.as_object().unwrap() {
            upstream[key] = value.clone();
        }
        upstream
    }

    fn env(name: &str) -> Option<String> {
        (name == "SP_SECRET").then(|| SECRET.to_string())
    }

    fn secret_of(config: &Config) -> Option<String> {
        match &config.providers[0].upstream {
            UpstreamMode::ServicePrincipal(endpoint) => endpoint.client_secret.clone(),
            _ => None,
        }
    }

    #[test]
    fn the_secret_comes_from_the_environment_and_inline_only_when_allowed() {
        #[rustfmt::skip]
        let cases = [
            (json!({"client_secret_env": "SP_SECRET"}), false, Ok(SECRET)),
            (json!({"client_secret_env": "SP_SECRET"}), true, Ok(SECRET)),
            (json!({"client_secret": "inline-dev"}), true, Ok("inline-dev")),
            (json!({"client_secret": "inline-dev"}), false, Err(("providers.idp.upstream.client_secret", "/config_dump"))),
            (json!({"client_secret_env": "MISSING"}), false, Err(("providers.idp.upstream.client_secret_env", "MISSING is not set"))),
            (json!({"client_secret_env": "BAD-NAME"}), false, Err(("providers.idp.upstream.client_secret_env", "[A-Za-z0-9_]"))),
            (json!({"client_secret": "x", "client_secret_env": "SP_SECRET"}), true, Err(("providers.idp.upstream.client_secret", "not both"))),
            (json!({}), false, Err(("providers.idp.upstream", "needs client_id and client_secret"))),
        ];
        for (secret, allow_inline, expected) in cases {
            let text = config(sp(secret.clone()), allow_inline);
            let result = Config::from_json_with_env(text.as_bytes(), &env);
            match (result, expected) {
                (Ok(config), Ok(value)) => assert_eq!(secret_of(&config).as_deref(), Some(value)),
                (Err(error), Err((field, problem))) => {
                    assert_eq!(error.field, field, "{secret}");
                    assert!(error.to_string().contains(problem), "{error}");
                    assert!(
                        !error.to_string().contains(SECRET),
                        "errors never show the value"
                    );
                }
                (result, expected) => panic!("{secret}: {result:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn exchange_mode_takes_no_secret_from_anywhere() {
        let upstream = json!({"mode": "exchange", "cluster": "ws", "workspace_url": "https://ws.example",
                              "client_secret_env": "SP_SECRET"});
        let error =
            Config::from_json_with_env(config(upstream, false).as_bytes(), &env).unwrap_err();
        assert_eq!(error.field, "providers.idp.upstream.client_secret");
    }
}
