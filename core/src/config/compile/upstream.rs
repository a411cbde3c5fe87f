//! How allowed requests authenticate to Databricks, and the `databricks` section.

use super::super::raw::{RawDatabricks, RawUpstream};
use super::super::{ConfigError, Provider};
use super::secrets::Secrets;
use super::{Result, in_range};
use crate::databricks::DatabricksConfig;
use crate::databricks::catalogue::RouteClass;
use crate::databricks::exchange::{TokenEndpoint, UpstreamMode};
use crate::jwks::FetchLocation;

pub(super) fn compile_upstream(
    field: &str,
    raw: Option<&RawUpstream>,
    secrets: Secrets<'_>,
) -> Result<UpstreamMode> {
    let Some(raw) = raw else {
        return Ok(UpstreamMode::PassThrough);
    };
    if raw.mode == "exchange" && (raw.client_secret.is_some() || raw.client_secret_env.is_some()) {
        return Err(ConfigError::new(
            format!("{field}.client_secret"),
            "token exchange sends no secret; client_id alone selects a service-principal federation policy",
        ));
    }
    if raw.subject_claim.is_some() && raw.mode != "exchange" {
        return Err(ConfigError::new(
            format!("{field}.subject_claim"),
            "only for mode exchange (the claim the federation policy maps)",
        ));
    }
    let client_secret = secrets.read(
        field,
        "client_secret",
        raw.client_secret.as_deref(),
        raw.client_secret_env.as_deref(),
    )?;
    let endpoint = || -> Result<TokenEndpoint> {
        let cluster = raw
            .cluster
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.cluster"),
                    "required: the Envoy cluster of the workspace",
                )
            })?;
        let workspace = raw.workspace_url.as_deref().ok_or_else(|| {
            ConfigError::new(
                format!("{field}.workspace_url"),
                "required, e.g. https://adb-123.4.azuredatabricks.net",
            )
        })?;
        let location = FetchLocation::parse(workspace)
            .map_err(|problem| ConfigError::new(format!("{field}.workspace_url"), problem))?;
        let scopes = raw
            .scopes
            .clone()
            .unwrap_or_else(|| vec!["all-apis".to_string()]);
        if scopes.is_empty() || scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(ConfigError::new(
                format!("{field}.scopes"),
                "a non-empty list of scopes without spaces",
            ));
        }
        Ok(TokenEndpoint {
            cluster,
            location: FetchLocation {
                authority: location.authority,
                path: "/oidc/v1/token".to_string(),
            },
            scopes,
            client_id: raw.client_id.clone().filter(|c| !c.is_empty()),
            client_secret: client_secret.clone(),
            timeout_ms: in_range(
                &format!("{field}.timeout_ms"),
                raw.timeout_ms,
                5000,
                100,
                60_000,
            )?,
        })
    };
    match raw.mode.as_str() {
        "pass_through" => Ok(UpstreamMode::PassThrough),
        "exchange" => {
            let subject_claim = raw
                .subject_claim
                .clone()
                .unwrap_or_else(|| "sub".to_string());
            if subject_claim.is_empty() || subject_claim.len() > 256 {
                return Err(ConfigError::new(
                    format!("{field}.subject_claim"),
                    "a claim name of 1 to 256 characters, as the federation policy's subject_claim",
                ));
            }
            Ok(UpstreamMode::Exchange {
                endpoint: endpoint()?,
                subject_claim,
            })
        }
        "service_principal" => {
            // A scoped OAuth secret not granted the requested scopes is refused by Databricks
            // ("Scopes 'all-apis' are not assigned"): the operator states what the secret holds.
            if raw.scopes.is_none() {
                return Err(ConfigError::new(
                    format!("{field}.scopes"),
                    "required for service_principal: the scopes granted to the OAuth secret \
                     (e.g. [\"all-apis\"], or the scoped secret's own list)",
                ));
            }
            let endpoint = endpoint()?;
            if endpoint.client_id.is_none() || endpoint.client_secret.is_none() {
                return Err(ConfigError::new(
                    field,
                    "service_principal needs client_id and client_secret",
                ));
            }
            Ok(UpstreamMode::ServicePrincipal(endpoint))
        }
        other => Err(ConfigError::new(
            format!("{field}.mode"),
            format!("{other:?} is not one of pass_through, exchange, service_principal"),
        )),
    }
}

pub(super) fn compile_databricks(
    raw: Option<&RawDatabricks>,
    providers: &[Provider],
) -> Result<Option<DatabricksConfig>> {
    let Some(raw) = raw else { return Ok(None) };
    let catalogue_providers = match &raw.catalogue_providers {
        None => (0..providers.len()).collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                providers
                    .iter()
                    .position(|p| &p.name == name)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "databricks.catalogue_providers",
                            format!("unknown provider {name:?}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    if catalogue_providers.is_empty() {
        return Err(ConfigError::new(
            "databricks.catalogue_providers",
            "must name at least one provider",
        ));
    }
    if raw.allow_sensitive_routes.is_some() {
        return Err(ConfigError::new(
            "databricks.allow_sensitive_routes",
            format!(
                "replaced by databricks.enable_route_classes, a list of the classes to allow: {}",
                RouteClass::ALL.map(RouteClass::name).join(", ")
            ),
        ));
    }
    let mut enabled_route_classes = Vec::new();
    for (index, name) in raw.enable_route_classes.iter().flatten().enumerate() {
        let class = RouteClass::from_name(name).ok_or_else(|| {
            ConfigError::new(
                format!("databricks.enable_route_classes[{index}]"),
                format!(
                    "{name:?} is not one of {}",
                    RouteClass::ALL.map(RouteClass::name).join(", ")
                ),
            )
        })?;
        enabled_route_classes.push(class);
    }
    Ok(Some(DatabricksConfig {
        route_catalogue: raw.route_catalogue,
        enabled_route_classes,
        catalogue_providers,
        max_body_bytes: in_range(
            "databricks.max_body_bytes",
            raw.max_body_bytes,
            // Databricks' model-serving payload limit (foundation-model and agent endpoints: 4 MB).
            16 << 20,
            1024,
            16 << 20,
        )? as usize,
        first_body_wait_ms: in_range(
            "databricks.first_body_wait_ms",
            raw.first_body_wait_ms,
            crate::stream::FIRST_BODY_WAIT_MS,
            100,
            60_000,
        )?,
    }))
}
