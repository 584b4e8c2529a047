//! ZpackVelocityBridge simulator: `POST /zpack/register`, `POST /zpack/unregister`,
//! `GET /zpack/list`, `X-Zpack-Secret` = hex SHA-256 of the secret (missing → 401, wrong →
//! 403). Velocity's `ServerMap` semantics: case-insensitive names, same name + same address
//! is idempotent, same name + different address → 409 "already registered", unknown name on
//! unregister → 404. `restart()` forgets every registration (they live in proxy memory).

use super::{Core, SimServer, middleware, plain_message, random_token, with_fault_control};
use crate::velocity::{Registration, SECRET_HEADER, secret_header_value};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct VelocitySimConfig {
    /// Loopback address; port 0 = free port.
    pub addr: SocketAddr,
    /// The shared secret (clients send its hex SHA-256).
    pub secret: String,
}

impl Default for VelocitySimConfig {
    fn default() -> Self {
        VelocitySimConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            secret: random_token(),
        }
    }
}

/// Lower-cased name → registration (with the name as first registered).
type Servers = Arc<Mutex<BTreeMap<String, Registration>>>;

#[derive(Clone)]
struct AppState {
    expected: String,
    servers: Servers,
}

pub struct VelocitySim {
    server: SimServer,
    core: Core,
    cfg: VelocitySimConfig,
    servers: Servers,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

#[allow(clippy::result_large_err)]
fn check(st: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    match headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok()) {
        None => Err(error(StatusCode::UNAUTHORIZED, "missing secret")),
        Some(v) if !v.eq_ignore_ascii_case(&st.expected) => {
            Err(error(StatusCode::FORBIDDEN, "invalid secret"))
        }
        Some(_) => Ok(()),
    }
}

#[derive(Deserialize)]
struct RegisterBody {
    server_name: Option<String>,
    address: Option<String>,
    port: Option<u16>,
}

async fn register(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = check(&st, &headers) {
        return r;
    }
    let Ok(RegisterBody {
        server_name: Some(name),
        address: Some(address),
        port: Some(port),
    }) = serde_json::from_slice::<RegisterBody>(&body)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "server_name, address and port are required",
        );
    };
    let mut s = st.servers.lock().unwrap_or_else(|e| e.into_inner());
    let key = name.to_lowercase();
    match s.get(&key) {
        Some(r) if r.address == address && r.port == Some(port) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ok", "registered": name})),
        )
            .into_response(),
        Some(_) => error(
            StatusCode::CONFLICT,
            &format!("Server with name {name} already registered"),
        ),
        None => {
            s.insert(
                key,
                Registration {
                    name: name.clone(),
                    address,
                    port: Some(port),
                },
            );
            (
                StatusCode::OK,
                axum::Json(json!({"status": "ok", "registered": name})),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
struct UnregisterBody {
    server_name: Option<String>,
}

async fn unregister(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = check(&st, &headers) {
        return r;
    }
    let Ok(UnregisterBody {
        server_name: Some(name),
    }) = serde_json::from_slice(&body)
    else {
        return error(StatusCode::BAD_REQUEST, "server_name is required");
    };
    let mut s = st.servers.lock().unwrap_or_else(|e| e.into_inner());
    match s.remove(&name.to_lowercase()) {
        Some(_) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ok", "unregistered": name})),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("Server with name {name} is not registered!"),
        ),
    }
}

async fn list(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = check(&st, &headers) {
        return r;
    }
    let s = st.servers.lock().unwrap_or_else(|e| e.into_inner());
    let servers: Vec<_> = s
        .values()
        .map(|r| json!({"name": r.name, "address": r.address, "port": r.port}))
        .collect();
    axum::Json(json!({"servers": servers})).into_response()
}

impl VelocitySim {
    pub async fn start(cfg: VelocitySimConfig) -> std::io::Result<Self> {
        let servers: Servers = Arc::default();
        let core = Core::new(Arc::new(plain_message));
        let st = AppState {
            expected: secret_header_value(&cfg.secret),
            servers: servers.clone(),
        };
        let router = Router::new()
            .route("/zpack/register", post(register))
            .route("/zpack/unregister", post(unregister))
            .route("/zpack/list", get(list))
            .with_state(st)
            .layer(axum::middleware::from_fn_with_state(
                core.clone(),
                middleware,
            ));
        let router = with_fault_control(router, &core);
        let server = SimServer::start(cfg.addr, router, core.alive.clone()).await?;
        Ok(VelocitySim {
            server,
            core,
            cfg,
            servers,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }
    pub fn secret(&self) -> &str {
        &self.cfg.secret
    }
    pub fn faults(&self) -> &super::Faults {
        &self.core.faults
    }
    pub fn requests(&self) -> Vec<super::LoggedRequest> {
        self.core.log.all()
    }
    /// How many requests were received (without copying the log).
    pub fn request_count(&self) -> usize {
        self.core.log.len()
    }
    pub async fn set_outage(&self, on: bool) -> std::io::Result<()> {
        self.server.set_outage(on).await
    }

    /// Current registrations, sorted by lower-cased name.
    pub fn registrations(&self) -> Vec<Registration> {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A proxy restart: every dynamic registration is forgotten.
    pub fn restart(&self) {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Drift: register (or overwrite) behind the client's back.
    pub fn insert(&self, name: &str, address: &str, port: u16) {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_lowercase(),
                Registration {
                    name: name.into(),
                    address: address.into(),
                    port: Some(port),
                },
            );
    }
}
