//! `zlhd controller`'s own small listener (`[controller] metrics_listen`): `/metrics`,
//! `/healthz` and `/readyz`. In the split layout no API runs in the controller's process, so
//! without it nothing of the controller could be scraped or probed.
//!
//! Ready means the store answers and a resync round completed recently
//! (`controller::health`); a 503 says which of the two failed, as problem+json.

use anyhow::Context as _;
use api::problem::{Problem, kind};
use api::wire::Health as HealthBody;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use controller::config::ControllerSection;
use controller::health::Health;
use metrics_exporter_prometheus::PrometheusHandle;
use model::store::AnyStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The text exposition format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How often histograms are drained when nobody scrapes (the API does the same).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The log line that names the bound address (tests read it to find a port picked by 0).
pub const LISTENING: &str = "controller listener";

/// What the routes read.
#[derive(Clone)]
pub struct Probe {
    pub store: AnyStore,
    pub health: Arc<Health>,
    pub timing: ControllerSection,
    pub metrics: PrometheusHandle,
}

/// Bind `addr`; the error names it.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ([controller] metrics_listen)"))
}

pub fn router(probe: Probe) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(probe)
}

/// Serve until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    probe: Probe,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "{LISTENING}");
    }
    let handle = probe.metrics.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    });
    axum::serve(listener, router(probe))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("the controller listener failed")
}

async fn metrics(State(p): State<Probe>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        p.metrics.render(),
    )
        .into_response()
}

/// Alive: the process answers.
async fn healthz() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
    })
}

async fn readyz(State(p): State<Probe>, req: Request) -> Response {
    match p.health.readiness(&p.store, &p.timing).await {
        Ok(()) => Json(HealthBody {
            status: "ready".into(),
        })
        .into_response(),
        Err(why) => problem(
            kind::UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}"),
            &req,
        ),
    }
}

async fn not_found(req: Request) -> Response {
    let detail = format!(
        "no route for {} {} (this listener serves /metrics, /healthz and /readyz)",
        req.method(),
        req.uri().path()
    );
    problem(kind::NOT_FOUND, StatusCode::NOT_FOUND, detail, &req)
}

async fn method_not_allowed(req: Request) -> Response {
    let detail = format!("{} is not allowed here; use GET", req.method());
    problem(
        kind::METHOD_NOT_ALLOWED,
        StatusCode::METHOD_NOT_ALLOWED,
        detail,
        &req,
    )
}

fn problem(k: kind::ProblemKind, status: StatusCode, detail: String, req: &Request) -> Response {
    let mut p = Problem::new(k, status, detail);
    p.instance = Some(req.uri().path().to_string());
    let mut res = p.to_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}
