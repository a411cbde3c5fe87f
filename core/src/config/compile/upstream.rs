//! How allowed requests authenticate to Databricks, and the `databricks` section.

use super::super::held_bodies;
use super::super::raw::RawServingBodyLimit;
use super::super::raw::{RawDatabricks, RawUpstream};
use super::super::{ConfigError, Provider};
use super::secrets::Secrets;
use super::{Result, in_range};
use crate::databricks::DatabricksConfig;
use crate::databricks::body_limits::{PrefixLimit, SERVING_MAX_BODY_BYTES, ServingBodyLimits};
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
    let max_body_bytes = in_range(
        "databricks.max_body_bytes",
        raw.max_body_bytes,
        // Databricks' model-serving payload limit (foundation-model and agent endpoints: 4 MB).
        SERVING_MAX_BODY_BYTES,
        1024,
        SERVING_MAX_BODY_BYTES,
    )? as usize;
    let first_body_wait_ms = in_range(
        "databricks.first_body_wait_ms",
        raw.first_body_wait_ms,
        held_bodies::FIRST_BODY_WAIT_MS,
        100,
        60_000,
    )?;
    // At least the first-body wait, so that a host that never delivers bodies is still told
    // apart (503 and its warning) from a slow client (408); at most ten minutes.
    let body_deadline_ms = in_range(
        "databricks.body_deadline_ms",
        raw.body_deadline_ms,
        held_bodies::BODY_DEADLINE_MS.max(first_body_wait_ms),
        100,
        600_000,
    )?;
    if body_deadline_ms < first_body_wait_ms {
        return Err(ConfigError::new(
            "databricks.body_deadline_ms",
            format!(
                "{body_deadline_ms} is shorter than databricks.first_body_wait_ms ({first_body_wait_ms})"
            ),
        ));
    }
    Ok(Some(DatabricksConfig {
        route_catalogue: raw.route_catalogue,
        enabled_route_classes,
        catalogue_providers,
        max_body_bytes,
        serving_body_limits: compile_body_limits(
            raw.serving_body_limits.as_deref(),
            max_body_bytes,
        )?,
        first_body_wait_ms,
        body_deadline_ms,
        // At least one whole body; at most half the 1 GiB proxy-wasm-cpp-host gives a VM
        // (`PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES`), leaving room for everything else.
        max_held_body_bytes: in_range(
            "databricks.max_held_body_bytes",
            raw.max_held_body_bytes,
            held_bodies::MAX_HELD_BODY_BYTES as u64,
            max_body_bytes as u64,
            512 * 1024 * 1024,
        )? as usize,
    }))
}

/// `databricks.serving_body_limits`: absent means Databricks' own limits (4 MB for `databricks-*`
/// and `agents_*`); a list replaces them. No entry may exceed `max_body_bytes`, the most
/// brickgate reads to find a body's endpoint.
fn compile_body_limits(
    raw: Option<&[RawServingBodyLimit]>,
    max_body_bytes: usize,
) -> Result<ServingBodyLimits> {
    let Some(raw) = raw else {
        let mut limits = ServingBodyLimits::default();
        for prefix in &mut limits.prefixes {
            prefix.max_body_bytes = prefix.max_body_bytes.min(max_body_bytes);
        }
        limits.other = max_body_bytes;
        return Ok(limits);
    };
    let mut prefixes = Vec::with_capacity(raw.len());
    for (index, entry) in raw.iter().enumerate() {
        let field = format!("databricks.serving_body_limits[{index}]");
        let prefix = &entry.endpoint_prefix;
        // Endpoint names are `[A-Za-z0-9_.-]`, at most 256 characters (serving::model_from_body).
        let valid = !prefix.is_empty()
            && prefix.len() <= 256
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            return Err(ConfigError::new(
                format!("{field}.endpoint_prefix"),
                format!(
                    "{prefix:?} is not the start of a serving endpoint name ([A-Za-z0-9_.-], 1 to 256 characters)"
                ),
            ));
        }
        let bytes = in_range(
            &format!("{field}.max_body_bytes"),
            Some(entry.max_body_bytes),
            0,
            1024,
            max_body_bytes as u64,
        )?;
        prefixes.push(PrefixLimit {
            endpoint_prefix: prefix.clone(),
            max_body_bytes: bytes as usize,
        });
    }
    Ok(ServingBodyLimits {
        prefixes,
        configured: true,
        other: max_body_bytes,
    })
}
