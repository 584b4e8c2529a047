//! Prometheus HTTP service discovery of the servers' exporters: `GET /api/sd/targets`, and
//! the previous system's `GET /sd/exporters` with the same content, so an existing Prometheus
//! config keeps working. Built from the store alone (the status the controller recorded), so
//! a discovery refresh never reaches a backend.

use crate::auth::OpsReader;
use crate::config::Exporter;
use crate::extract::{ApiQuery, check_customer_id};
use crate::openapi::{AuthProblems, QueryProblems};
use crate::problem::{ApiError, ApiResult};
use crate::state::Ctx;
use crate::wire::TargetGroup;
use axum::Json;
use axum::extract::State;
use model::store::{ServerFilter, list_all};
use model::{Kind, Phase, Server};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Labels Prometheus offers to relabelling and drops afterwards.
pub const META_PREFIX: &str = "__meta_zlh_";
/// Prometheus's own target labels (not `path`/`scheme`, which it ignores).
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCHEME_LABEL: &str = "__scheme__";

/// Query of the discovery routes.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SdQuery {
    /// Only servers of this kind.
    pub kind: Option<Kind>,
    /// Only this customer's servers.
    pub customer: Option<String>,
    /// Only this exporter (a name from `[sd] exporters`).
    pub exporter: Option<String>,
}

/// Prometheus HTTP service discovery (`http_sd_configs`): one target group per Ready server
/// and exporter of its kind, `[]` when there is none. Operator and viewer tokens.
#[utoipa::path(
    get, path = "/api/sd/targets", tag = "ops",
    params(SdQuery),
    responses(
        (status = 200, description = "Target groups in Prometheus's http_sd format", body = Vec<TargetGroup>),
        AuthProblems, QueryProblems,
    ),
    security(("bearer" = []))
)]
pub async fn sd_targets(
    State(ctx): State<Arc<Ctx>>,
    _caller: OpsReader,
    ApiQuery(q): ApiQuery<SdQuery>,
) -> ApiResult<Json<Vec<TargetGroup>>> {
    Ok(Json(discover(&ctx, q).await?))
}

/// The previous system's discovery path, for an existing Prometheus config: the same as
/// `GET /api/sd/targets`.
#[utoipa::path(
    get, path = "/sd/exporters", tag = "ops",
    params(SdQuery),
    responses(
        (status = 200, description = "Target groups in Prometheus's http_sd format (as /api/sd/targets)", body = Vec<TargetGroup>),
        AuthProblems, QueryProblems,
    ),
    security(("bearer" = []))
)]
pub async fn sd_exporters(
    State(ctx): State<Arc<Ctx>>,
    _caller: OpsReader,
    ApiQuery(q): ApiQuery<SdQuery>,
) -> ApiResult<Json<Vec<TargetGroup>>> {
    Ok(Json(discover(&ctx, q).await?))
}

async fn discover(ctx: &Ctx, q: SdQuery) -> ApiResult<Vec<TargetGroup>> {
    let sd = &ctx.app.sd;
    let exporters: Vec<&Exporter> = match &q.exporter {
        None => sd.exporters.iter().collect(),
        Some(name) => match sd.exporter(name) {
            Some(e) => vec![e],
            None => {
                let shown: String = name.chars().take(64).collect();
                let known: Vec<&str> = sd.exporters.iter().map(|e| e.name.as_str()).collect();
                return Err(ApiError::BadRequest(format!(
                    "exporter: '{shown}' is not configured (configured: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        },
    };
    if let Some(c) = &q.customer {
        check_customer_id("customer", c).map_err(|_| {
            let shown: String = c.chars().take(64).collect();
            ApiError::BadRequest(format!("customer: '{shown}' is not a valid customer id"))
        })?;
    }
    let filter = ServerFilter {
        customer_id: q.customer,
        kind: q.kind,
        phase: Some(Phase::Ready),
        ..Default::default()
    };
    let servers = list_all(&ctx.app.store, &filter).await?;
    Ok(groups(&servers, &exporters))
}

/// One group per Ready server with an address and exporter of its kind, in server order.
pub fn groups(servers: &[Server], exporters: &[&Exporter]) -> Vec<TargetGroup> {
    let mut out = Vec::new();
    for s in servers {
        let Some(ip) = s.status.ip.as_deref().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        if s.phase().0 != Phase::Ready {
            continue;
        }
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        let base = server_labels(s);
        for e in exporters.iter().filter(|e| e.kinds.contains(&s.spec.kind)) {
            let mut labels = BTreeMap::new();
            let exporter = ("exporter", e.name.clone());
            for (k, v) in base.iter().chain(std::iter::once(&exporter)) {
                labels.insert(format!("{META_PREFIX}{k}"), v.clone());
                labels.insert((*k).to_string(), v.clone());
            }
            if let Some(p) = &e.metrics_path {
                labels.insert(METRICS_PATH_LABEL.into(), p.clone());
            }
            if let Some(sc) = &e.scheme {
                labels.insert(SCHEME_LABEL.into(), sc.clone());
            }
            out.push(TargetGroup {
                targets: vec![format!("{host}:{}", e.port)],
                labels,
            });
        }
    }
    out
}

/// What identifies a server on a dashboard; a label that does not apply (a dev container's
/// game) is left out rather than sent empty.
fn server_labels(s: &Server) -> Vec<(&'static str, String)> {
    let spec = &s.spec;
    let vmid = s.status.vmid.or(s.reserved_vmid);
    [
        ("server_id", Some(s.id.to_string())),
        ("vmid", vmid.map(|v| v.to_string())),
        ("hostname", s.status.hostname.clone()),
        ("customer", Some(s.customer_id.clone())),
        ("kind", Some(spec.kind.as_str().to_string())),
        ("game", spec.game.clone()),
        ("variant", spec.variant.map(|v| v.as_str().to_string())),
        ("runtime", spec.runtime.clone()),
        ("version", Some(spec.version.clone())),
        ("node", s.status.node.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ConditionStatus, ConditionType, ServerId, ServerSpec, Variant};

    fn ready(ip: &str) -> Server {
        let at = chrono::Utc::now();
        let mut s = Server {
            id: ServerId::new(),
            customer_id: "u1".into(),
            spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
            generation: 1,
            resource_version: 1,
            reserved_vmid: Some(5001),
            deletion_requested_at: None,
            paused: false,
            retry_requested_at: None,
            created_at: at,
            updated_at: at,
            status: Default::default(),
        };
        s.status.ip = Some(ip.into());
        s.status.observed_generation = 1;
        s.status.set_condition(
            ConditionType::Ready,
            ConditionStatus::True,
            "Ready",
            "",
            1,
            at,
        );
        s
    }

    /// An exporter that needs them gets Prometheus's `__metrics_path__` and `__scheme__`; an
    /// IPv6 address is bracketed; a server without an address is left out.
    #[test]
    fn exporter_specifics_and_addresses() {
        let e = Exporter {
            name: "jmx".into(),
            kinds: vec![Kind::Game],
            port: 8443,
            metrics_path: Some("/probe/metrics".into()),
            scheme: Some("https".into()),
        };
        let mut no_ip = ready("10.0.0.1");
        no_ip.status.ip = None;
        let servers = [ready("10.0.0.9"), ready("fd00::7"), no_ip];
        let out = groups(&servers, &[&e]);
        let targets: Vec<&str> = out.iter().map(|g| g.targets[0].as_str()).collect();
        assert_eq!(targets, ["10.0.0.9:8443", "[fd00::7]:8443"]);
        let labels = &out[0].labels;
        assert_eq!(labels[METRICS_PATH_LABEL], "/probe/metrics");
        assert_eq!(labels[SCHEME_LABEL], "https");
        assert_eq!(
            labels["vmid"], "5001",
            "the reservation when nothing is observed"
        );
        assert_eq!(labels["__meta_zlh_exporter"], "jmx");
    }
}
