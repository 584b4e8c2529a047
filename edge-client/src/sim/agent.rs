//! zpack Agent simulator serving many containers. Each started container (an address in
//! 127.0.0.0/8, told by the Proxmox simulator's owner through `container_started`) gets an
//! Agent on `ip:agent_port` and a Server List Ping responder on `ip:game_port`; both ports are
//! the same for every address, so `http://{ip}:{port}` stays meaningful. With `share_port`
//! both are served on one socket per address (the game port is the Agent port), which halves
//! the open files a large simulated fleet needs.
//!
//! Agent lifecycle per container: `idle` → (`POST /config`) `installing` (step, progress) →
//! `running` after `install_time` (scaled), or `error` with a message when failing is
//! configured. `crash` → `crashed`; `restart_agent` / a container restart → `idle` (config
//! forgotten). The SLP responder answers only while the Agent is `running`.
//!
//! `POST /start`, `/stop` and `/restart` (the game process's power) answer 200 and are
//! remembered per container (`power_requests`); they do not change the state yet.

use super::{Core, SimServer, middleware, plain_error};
use crate::agent::{AgentPayload, AgentState, StatusWire};
use crate::slp::{read_packet, varint_from, write_packet, write_string};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub const DEFAULT_INSTALL_FAILURE: &str = "install failed: artifact download returned 404";
const STEPS: [&str; 5] = [
    "download-artifact",
    "install-java",
    "install-server",
    "configure-world",
    "start-server",
];
/// Protocol number reported by the SLP responder (1.21.x).
const SIM_PROTOCOL: i32 = 767;

#[derive(Debug, Clone)]
pub struct AgentSimConfig {
    /// 0 = pick a free port once (by binding 127.0.0.1:0) and use it on every address.
    pub agent_port: u16,
    /// 0 = pick a free port once, like `agent_port`.
    pub game_port: u16,
    /// Required `Authorization: Bearer` token for `/config`, `/status` and the power routes,
    /// if set.
    pub token: Option<String>,
    /// Install duration in simulated time.
    pub install_time: Duration,
    /// Simulated seconds per real second (100 → a 30 s install takes 0.3 s).
    pub time_scale: f64,
    /// When set, every install ends in `error` with this message.
    pub failure: Option<String>,
    /// Installs on these addresses end in `error`.
    pub fail_ips: Vec<Ipv4Addr>,
    /// The next N installs (any address) end in `error`.
    pub fail_next: u32,
    /// Serve SLP on the Agent's socket (`game_port` = `agent_port`): one listening socket per
    /// container instead of two. An Agent outage then closes SLP too.
    pub share_port: bool,
}

impl Default for AgentSimConfig {
    fn default() -> Self {
        AgentSimConfig {
            agent_port: 0,
            game_port: 0,
            token: None,
            install_time: Duration::from_secs(30),
            time_scale: 100.0,
            failure: None,
            fail_ips: vec![],
            fail_next: 0,
            share_port: false,
        }
    }
}

enum Phase {
    Idle,
    Installing {
        started: Instant,
        failure: Option<String>,
    },
    Running,
    Crashed,
    Error(String),
}

struct Container {
    phase: Phase,
    configs: u32,
    last_config: Option<Value>,
    /// Power routes received, in order.
    power: Vec<AgentPower>,
    agent: Option<Arc<SimServer>>,
    game: Option<JoinHandle<()>>,
}

struct Inner {
    cfg: AgentSimConfig,
    containers: HashMap<Ipv4Addr, Container>,
    /// Server List Pings answered with a status, every container together.
    slp_answered: u64,
}

impl Inner {
    fn real_install(&self) -> Duration {
        self.cfg.install_time.div_f64(self.cfg.time_scale.max(1e-9))
    }

    /// Advance an installing container whose time is up; return its state.
    fn state(&mut self, ip: Ipv4Addr) -> Option<AgentState> {
        let total = self.real_install();
        let c = self.containers.get_mut(&ip)?;
        if let Phase::Installing { started, failure } = &c.phase {
            if started.elapsed() >= total {
                c.phase = match failure {
                    Some(m) => Phase::Error(m.clone()),
                    None => Phase::Running,
                };
            } else {
                let frac = started.elapsed().as_secs_f64() / total.as_secs_f64().max(1e-9);
                let progress = (frac * 100.0).min(99.0) as u8;
                let step = STEPS[((frac * STEPS.len() as f64) as usize).min(STEPS.len() - 1)];
                return Some(AgentState::Installing {
                    step: Some(step.into()),
                    progress: Some(progress),
                });
            }
        }
        Some(match &c.phase {
            Phase::Idle => AgentState::Idle,
            Phase::Installing { .. } => unreachable!("handled above"),
            Phase::Running => AgentState::Running,
            Phase::Crashed => AgentState::Crashed { count: None, message: None },
            Phase::Error(m) => AgentState::Error { message: m.clone() },
        })
    }
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct AgentSim {
    shared: Shared,
    core: Core,
    agent_port: u16,
    game_port: u16,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[derive(Clone)]
struct IpState {
    shared: Shared,
    ip: Ipv4Addr,
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    match &inner.cfg.token {
        None => true,
        Some(t) => {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                == Some(t.as_str())
        }
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "unauthorized"})),
    )
        .into_response()
}

async fn post_config(
    State(s): State<IpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = lock(&s.shared);
    if !authorized(&inner, &headers) {
        return unauthorized();
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid JSON"})),
        )
            .into_response();
    };
    if let Err(e) = serde_json::from_value::<AgentPayload>(value.clone()) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": format!("invalid payload: {e}")})),
        )
            .into_response();
    }
    let state = inner.state(s.ip);
    let fail = if let Some(m) = &inner.cfg.failure {
        Some(m.clone())
    } else if inner.cfg.fail_ips.contains(&s.ip) {
        Some(DEFAULT_INSTALL_FAILURE.to_string())
    } else if inner.cfg.fail_next > 0 {
        inner.cfg.fail_next -= 1;
        Some(DEFAULT_INSTALL_FAILURE.to_string())
    } else {
        None
    };
    let Some(c) = inner.containers.get_mut(&s.ip) else {
        return plain_error(503);
    };
    c.configs += 1;
    let same = c.last_config.as_ref() == Some(&value);
    c.last_config = Some(value);
    // Re-sending the same config to a running (or installing) Agent changes nothing;
    // anything else (re)starts the install.
    let keep = same
        && matches!(
            state,
            Some(AgentState::Running) | Some(AgentState::Installing { .. })
        );
    if !keep {
        c.phase = Phase::Installing {
            started: Instant::now(),
            failure: fail,
        };
    }
    (StatusCode::OK, axum::Json(json!({"status": "accepted"}))).into_response()
}

async fn get_status(State(s): State<IpState>, headers: HeaderMap) -> Response {
    let mut inner = lock(&s.shared);
    if !authorized(&inner, &headers) {
        return unauthorized();
    }
    match inner.state(s.ip) {
        Some(st) => axum::Json(StatusWire::from_state(&st)).into_response(),
        None => plain_error(503),
    }
}

/// A game-process power request (`POST /start`, `/stop`, `/restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentPower {
    Start,
    Stop,
    Restart,
}

impl AgentPower {
    pub fn path(self) -> &'static str {
        match self {
            AgentPower::Start => "/start",
            AgentPower::Stop => "/stop",
            AgentPower::Restart => "/restart",
        }
    }
}

/// Accepts and remembers the request; any body is ignored (the previous system sent none).
async fn post_power(s: IpState, headers: HeaderMap, p: AgentPower) -> Response {
    let mut inner = lock(&s.shared);
    if !authorized(&inner, &headers) {
        return unauthorized();
    }
    let Some(c) = inner.containers.get_mut(&s.ip) else {
        return plain_error(503);
    };
    c.power.push(p);
    (StatusCode::OK, axum::Json(json!({"status": "accepted"}))).into_response()
}

async fn get_health() -> Response {
    axum::Json(json!({"ok": true})).into_response()
}

/// One SLP connection: handshake, status, ping/pong; only while the Agent is `running`.
async fn serve_slp(mut stream: tokio::net::TcpStream, shared: Shared, ip: Ipv4Addr) {
    let status_json = {
        let mut inner = lock(&shared);
        if inner.state(ip) != Some(AgentState::Running) {
            // Nothing listens in a real container until the server runs: close at once.
            return;
        }
        let cfg = inner
            .containers
            .get(&ip)
            .and_then(|c| c.last_config.clone());
        let cfg = cfg.unwrap_or_default();
        inner.slp_answered += 1;
        let version = cfg["version"].as_str().unwrap_or("1.21.7").to_string();
        let name = format!(
            "zlh {} {}",
            cfg["variant"].as_str().unwrap_or("dev"),
            cfg["vmid"].as_u64().unwrap_or(0)
        );
        json!({
            "version": {"name": version, "protocol": SIM_PROTOCOL},
            "players": {"max": 20, "online": 0, "sample": []},
            "description": {"text": name},
            "enforcesSecureChat": false,
        })
        .to_string()
    };
    let Ok((0x00, hs)) = read_packet(&mut stream).await else {
        return;
    };
    // protocol, address, port, next state
    let Some((_proto, n)) = varint_from(&hs) else {
        return;
    };
    let Some((len, m)) = varint_from(&hs[n..]) else {
        return;
    };
    let rest = n + m + len.max(0) as usize + 2;
    let Some((next, _)) = hs.get(rest..).and_then(varint_from) else {
        return;
    };
    if next != 1 {
        return;
    }
    let Ok((0x00, _)) = read_packet(&mut stream).await else {
        return;
    };
    let mut data = Vec::new();
    write_string(&mut data, &status_json);
    if write_packet(&mut stream, 0x00, &data).await.is_err() {
        return;
    }
    if let Ok((0x01, payload)) = read_packet(&mut stream).await {
        let _ = write_packet(&mut stream, 0x01, &payload).await;
    }
}

impl AgentSim {
    pub async fn start(cfg: AgentSimConfig) -> std::io::Result<Self> {
        let agent_port = if cfg.agent_port == 0 {
            free_port()?
        } else {
            cfg.agent_port
        };
        let mut game_port = if cfg.game_port == 0 {
            free_port()?
        } else {
            cfg.game_port
        };
        if cfg.share_port {
            game_port = agent_port;
        }
        while game_port == agent_port && !cfg.share_port {
            game_port = free_port()?;
        }
        let core = Core::new(Arc::new(plain_error));
        Ok(AgentSim {
            shared: Arc::new(Mutex::new(Inner {
                cfg,
                containers: HashMap::new(),
                slp_answered: 0,
            })),
            core,
            agent_port,
            game_port,
        })
    }

    pub fn agent_port(&self) -> u16 {
        self.agent_port
    }
    pub fn game_port(&self) -> u16 {
        self.game_port
    }
    /// `http://{ip}:{agent_port}`.
    pub fn url(&self, ip: Ipv4Addr) -> String {
        format!("http://{ip}:{}", self.agent_port)
    }
    /// `ip:game_port` (the SLP responder).
    pub fn game_addr(&self, ip: Ipv4Addr) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(ip), self.game_port)
    }
    pub fn token(&self) -> Option<String> {
        lock(&self.shared).cfg.token.clone()
    }
    /// Faults apply to the Agent HTTP endpoints of every container.
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

    /// The container at `ip` started: its Agent comes up `idle` (listeners bound on
    /// `ip:agent_port` and `ip:game_port`). Idempotent while running.
    pub async fn container_started(&self, ip: Ipv4Addr) -> std::io::Result<()> {
        super::ensure_loopback(SocketAddr::new(IpAddr::V4(ip), 0))?;
        if lock(&self.shared).containers.contains_key(&ip) {
            return Ok(());
        }
        let core = Core {
            alive: Default::default(),
            ..self.core.clone()
        };
        let router = Router::new()
            .route("/config", post(post_config))
            .route("/status", get(get_status))
            .route("/health", get(get_health))
            .route(
                AgentPower::Start.path(),
                post(|State(s), h| post_power(s, h, AgentPower::Start)),
            )
            .route(
                AgentPower::Stop.path(),
                post(|State(s), h| post_power(s, h, AgentPower::Stop)),
            )
            .route(
                AgentPower::Restart.path(),
                post(|State(s), h| post_power(s, h, AgentPower::Restart)),
            )
            .with_state(IpState {
                shared: self.shared.clone(),
                ip,
            })
            .layer(axum::middleware::from_fn_with_state(
                core.clone(),
                middleware,
            ));
        let shared = self.shared.clone();
        let slp: super::OtherProtocol = Arc::new(move |stream| {
            tokio::spawn(serve_slp(stream, shared.clone(), ip));
        });
        let share = lock(&self.shared).cfg.share_port;
        let agent = SimServer::start_shared(
            SocketAddr::new(IpAddr::V4(ip), self.agent_port),
            router,
            core.alive.clone(),
            share.then(|| slp.clone()),
        )
        .await?;
        let game = if share {
            None
        } else {
            let game = tokio::net::TcpListener::bind(self.game_addr(ip)).await?;
            Some(tokio::spawn(async move {
                while let Ok((stream, _)) = game.accept().await {
                    slp(stream);
                }
            }))
        };
        lock(&self.shared).containers.insert(
            ip,
            Container {
                phase: Phase::Idle,
                configs: 0,
                last_config: None,
                power: Vec::new(),
                agent: Some(Arc::new(agent)),
                game,
            },
        );
        Ok(())
    }

    /// The container at `ip` stopped: both listeners close (connection refused); its state is
    /// forgotten except the config counter is reset too (a new container start is `idle`).
    pub async fn container_stopped(&self, ip: Ipv4Addr) {
        let c = lock(&self.shared).containers.remove(&ip);
        if let Some(mut c) = c {
            if let Some(g) = c.game.take() {
                g.abort();
                let _ = g.await;
            }
            if let Some(a) = c.agent.take() {
                a.stop().await;
            }
        }
    }

    /// The Agent process restarted (as after a container restart): `idle`, config forgotten.
    pub fn restart_agent(&self, ip: Ipv4Addr) {
        if let Some(c) = lock(&self.shared).containers.get_mut(&ip) {
            c.phase = Phase::Idle;
            c.last_config = None;
        }
    }

    /// The game server crashed: `crashed`, SLP stops answering.
    pub fn crash(&self, ip: Ipv4Addr) {
        if let Some(c) = lock(&self.shared).containers.get_mut(&ip) {
            c.phase = Phase::Crashed;
        }
    }

    /// Agent down while the container runs: `true` closes `ip:agent_port` (refused).
    pub async fn set_outage(&self, ip: Ipv4Addr, on: bool) -> std::io::Result<()> {
        let a = lock(&self.shared)
            .containers
            .get(&ip)
            .and_then(|c| c.agent.clone());
        match a {
            Some(a) => a.set_outage(on).await,
            None => Ok(()),
        }
    }

    /// Switch failing installs on (`Some(message)`) or off at run time.
    pub fn set_failure(&self, failure: Option<String>) {
        lock(&self.shared).cfg.failure = failure;
    }

    /// The next `n` installs end in `error`.
    pub fn fail_next_installs(&self, n: u32) {
        lock(&self.shared).cfg.fail_next = n;
    }

    /// Installs on `ip` end in `error` (`false` removes it).
    pub fn set_fail_ip(&self, ip: Ipv4Addr, fail: bool) {
        let mut i = lock(&self.shared);
        i.cfg.fail_ips.retain(|x| *x != ip);
        if fail {
            i.cfg.fail_ips.push(ip);
        }
    }

    pub fn set_install_time(&self, d: Duration) {
        lock(&self.shared).cfg.install_time = d;
    }

    /// `POST /config` requests received by the container at `ip` since it started.
    pub fn configs_received(&self, ip: Ipv4Addr) -> u32 {
        lock(&self.shared)
            .containers
            .get(&ip)
            .map(|c| c.configs)
            .unwrap_or(0)
    }

    /// Power requests the container at `ip` received since it started, oldest first.
    pub fn power_requests(&self, ip: Ipv4Addr) -> Vec<AgentPower> {
        lock(&self.shared)
            .containers
            .get(&ip)
            .map(|c| c.power.clone())
            .unwrap_or_default()
    }

    /// The last config (raw JSON) the Agent at `ip` holds.
    pub fn last_config(&self, ip: Ipv4Addr) -> Option<Value> {
        lock(&self.shared)
            .containers
            .get(&ip)
            .and_then(|c| c.last_config.clone())
    }

    pub fn state(&self, ip: Ipv4Addr) -> Option<AgentState> {
        lock(&self.shared).state(ip)
    }

    /// Server List Pings answered (by a running game), every container together.
    pub fn slp_answered(&self) -> u64 {
        lock(&self.shared).slp_answered
    }

    /// Every started container's Agent state.
    pub fn states(&self) -> HashMap<Ipv4Addr, AgentState> {
        let mut inner = lock(&self.shared);
        let ips: Vec<Ipv4Addr> = inner.containers.keys().copied().collect();
        ips.into_iter()
            .filter_map(|ip| inner.state(ip).map(|s| (ip, s)))
            .collect()
    }
}

impl Drop for AgentSim {
    fn drop(&mut self) {
        // The per-address routers hold `shared`, so nothing here drops by itself: stop all.
        for (_, mut c) in lock(&self.shared).containers.drain() {
            if let Some(g) = c.game.take() {
                g.abort();
            }
            if let Some(a) = c.agent.take() {
                a.abort();
            }
        }
    }
}
