//! The axum application: state, routes, middleware and graceful serving.
//!
//! Middleware, outermost first: sensitive headers (`Authorization`, `Cookie` are redacted in
//! traces) → request id (`x-request-id`, generated if absent) → trace span → propagate the
//! request id to the response → metrics → catch panics (500 problem) → problem+json for every
//! error response → timeout (503) → body limit (413).

use crate::limit::{AddressLimiter, RateLimiter};
use crate::problem::{KEPT_HEADERS, PROBLEM_JSON, Problem};
use crate::routes::{
    audit, catalog, console, customers, operations, ops, pools, power, sd, servers, tokens,
};
use crate::state::{AppState, Ctx};
use crate::{compat, portal, problem::ApiError};
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The whole document (the same one `/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = crate::router::api_routes().into_openapi();
    crate::openapi::add_derived_server_fields(&mut doc);
    doc
}

/// Every documented route, with its OpenAPI entry.
pub(crate) fn api_routes() -> OpenApiRouter<Arc<Ctx>> {
    OpenApiRouter::with_openapi(<crate::openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(servers::list_servers, servers::create_server))
        .routes(routes!(
            servers::get_server,
            servers::patch_server,
            servers::delete_server
        ))
        .routes(routes!(servers::reconcile_server))
        .routes(routes!(servers::reconcile_servers))
        .routes(routes!(servers::pause_server))
        .routes(routes!(servers::resume_server))
        .routes(routes!(servers::server_events))
        .routes(routes!(servers::server_stats))
        .routes(routes!(power::power_server))
        .routes(routes!(console::console_ticket))
        .routes(routes!(console::console_socket))
        .routes(routes!(console::send_command))
        .routes(routes!(portal::game_power))
        .routes(routes!(portal::host_power))
        .routes(routes!(operations::get_operation))
        .routes(routes!(ops::controller_status))
        .routes(routes!(ops::orphans))
        .routes(routes!(pools::list_pools))
        .routes(routes!(sd::sd_targets))
        .routes(routes!(sd::sd_exporters))
        .routes(routes!(customers::get_customer, customers::put_customer))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(audit::list_audit))
        .routes(routes!(catalog::get_game_catalog))
        .routes(routes!(catalog::get_dev_catalog))
        .routes(routes!(compat::list_instances, portal::create_instance))
        .routes(routes!(compat::delete_container))
        .routes(routes!(compat::api_health))
        .routes(routes!(portal::get_instance_operation))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
}

/// The browsable API page (Swagger UI, vendored: it loads nothing from the internet).
pub const DOCS_PATH: &str = "/docs";
/// Where the document is served (`ops::openapi_json`'s path; utoipa needs it as a literal there).
const OPENAPI_PATH: &str = "/openapi.json";

/// The application, with every route and layer. Watch streams end when `shutdown` fires.
fn build(state: AppState, shutdown: CancellationToken) -> Router {
    let (routes, mut doc) = api_routes().split_for_parts();
    crate::openapi::add_derived_server_fields(&mut doc);
    let cfg = state.config.clone();
    let ctx = Arc::new(Ctx {
        limiter: RateLimiter::new(cfg.rate_limit_per_second, cfg.rate_limit_burst),
        address_limiter: AddressLimiter::new(
            cfg.address_rate_limit_per_second,
            cfg.address_rate_limit_burst,
        ),
        shutdown,
        openapi_json: doc.to_json().unwrap_or_else(|_| "{}".into()),
        identity: crate::identity::from_config(cfg.identity.as_ref()),
        console: crate::console::Console::new(cfg.console.clone()),
        last_use: Default::default(),
        app: state,
    });
    // The browsable page reads the same document `/openapi.json` serves.
    let docs = utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .config(utoipa_swagger_ui::Config::from(OPENAPI_PATH));
    let app = routes
        .merge(docs)
        .fallback(not_found)
        .with_state(ctx)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let request_id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            tracing::info_span!(
                                "http",
                                method = %req.method(),
                                path = %req.uri().path(),
                                request_id,
                                token = tracing::field::Empty,
                                role = tracing::field::Empty,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn(record_metrics))
                .layer(CatchPanicLayer::custom(panic_problem))
                .layer(middleware::from_fn(problemify))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    cfg.request_timeout,
                ))
                .layer(RequestBodyLimitLayer::new(cfg.body_limit_bytes)),
        );
    // Outermost: preflights are answered before anything else, and every answer, problems
    // included, carries the CORS headers a page needs to read it.
    match crate::cors::layer(&cfg.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// The application router (watch streams live until their clients leave).
pub fn router(state: AppState) -> Router {
    build(state, CancellationToken::new())
}

/// Serve until `shutdown` completes, then stop accepting, end watch streams, and wait for
/// in-flight requests to finish. Connections are bounded by the config's `max_connections`,
/// `header_read_timeout` and `keep_alive_timeout` (see [`crate::listen`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cancel = CancellationToken::new();
    if let Some(handle) = state.metrics.clone() {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        });
    }
    let limits = crate::listen::Limits::from(&state.config);
    let app = build(state, cancel.clone());
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "API listening");
    }
    // Bounded connections; each request carries `ConnectInfo<SocketAddr>` (the per-address
    // limit keys on the peer address).
    crate::listen::serve(listener, app, limits, async move {
        shutdown.await;
        cancel.cancel();
    })
    .await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

fn panic_problem(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("?");
    tracing::error!(panic = msg, "handler panicked");
    Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR).to_response()
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| crate::metrics::UNMATCHED_ROUTE.into());
    let method = crate::metrics::method_label(req.method());
    let start = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!(crate::metrics::REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(crate::metrics::REQUEST_DURATION, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}

/// Largest error body re-read to add `instance` and `requestId`.
const PROBLEM_READ_LIMIT: usize = 256 * 1024;

/// Make every 4xx/5xx a problem+json body carrying `instance` (the path) and `requestId`,
/// whoever produced it (handlers, extractors, axum's 404/405, the body limit, the timeout).
async fn problemify(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(PROBLEM_JSON));
    let (parts, body) = res.into_parts();
    let mut problem = if is_problem {
        match axum::body::to_bytes(body, PROBLEM_READ_LIMIT).await {
            Ok(b) => serde_json::from_slice::<Problem>(&b)
                .unwrap_or_else(|_| Problem::for_status(status)),
            Err(_) => Problem::for_status(status),
        }
    } else {
        Problem::for_status(status)
    };
    problem.status = status.as_u16();
    problem.instance.get_or_insert(path);
    problem.request_id = request_id;
    let mut out = problem.to_response();
    for name in KEPT_HEADERS {
        if let Some(v) = parts.headers.get(name) {
            out.headers_mut().insert(name.clone(), v.clone());
        }
    }
    for (name, v) in parts.headers.iter() {
        if name.as_str().starts_with("x-") {
            out.headers_mut().insert(name.clone(), v.clone());
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE && !out.headers().contains_key(header::RETRY_AFTER)
    {
        out.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    out
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.to_response()
    }
}
