//! zpack Agent simulator serving many containers. Each started container (an address in
//! 127.0.0.0/8, told by the Proxmox simulator's owner through `container_started`) gets an
//! Agent on `ip:agent_port` and a Server List Ping responder on `ip:game_port`; both ports are
//! the same for every address, so `http://{ip}:{port}` stays meaningful. With `share_port`
//! both are served on one socket per address (the game port is the Agent port), which halves
//! the open files a large simulated fleet needs.
//!
//! Agent lifecycle per container: `idle` → (`POST /config`) `installing` (step, progress) →
//! `running` after `install_time` (scaled), or `error` with a message when failing is
//! configured. `restart_agent` / a container restart → `idle` (config forgotten). The SLP
//! responder answers only while the Agent is `running`.
//!
//! Once installed, the game process has its own phases: `running`, `starting`, `stopping`,
//! `stopped` and `crashed` (with `crashCount` and an `error` message). `POST /start`, `/stop`
//! and `/restart` act on them with simulated timings (`start_time`, `stop_time`, scaled like
//! the install); before an install (`idle`, `installing`, `error`) they answer 409. Accepted
//! power requests are remembered per container (`power_requests`). Test handles: a `stop`
//! typed at the console (`console_stop`), a clean exit (`process_exit`), a crash (`crash`),
//! and every start ending in a crash (`set_crash_on_start`).
//!
//! Timed phases are evaluated lazily against the clock whenever the state is read (like the
//! install timer): nothing runs in the background, and a phase whose time is up has changed
//! by the next `GET /status`, SLP connection or `state()`.

mod console;

pub use console::{BACKLOG, ConsoleFaults, lines as console_lines, refusal as console_refusal};

use super::{Core, SimServer, middleware, plain_error, plain_message, with_fault_control};
use crate::agent::{AgentPayload, AgentState, StatusWire};
use crate::slp::{read_packet, varint_from, write_packet, write_string};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

pub const DEFAULT_INSTALL_FAILURE: &str = "install failed: artifact download returned 404";
/// The `error` reported with `crashed`.
pub const DEFAULT_CRASH_MESSAGE: &str = "the server process exited with code 1";
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
    /// How long the game process takes from `starting` to `running`, in simulated time.
    pub start_time: Duration,
    /// How long the game process takes from `stopping` to `stopped`, in simulated time.
    pub stop_time: Duration,
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
            start_time: Duration::from_secs(5),
            stop_time: Duration::from_secs(3),
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
    Error(String),
    // The game process, once installed.
    Running,
    /// `running` (or `crashed`, with crash-on-start) at `since + start_time`.
    Starting {
        since: Instant,
    },
    /// `stopped` at `since + stop_time`, then `starting` at once when `then_start` (a
    /// restart, or a start asked for while stopping).
    Stopping {
        since: Instant,
        then_start: bool,
    },
    Stopped,
    Crashed,
}

impl Phase {
    /// No game server installed: power is refused (409).
    fn before_install(&self) -> bool {
        matches!(
            self,
            Phase::Idle | Phase::Installing { .. } | Phase::Error(_)
        )
    }
    /// The game process exists (it can be stopped by a player, exit or crash).
    fn process_alive(&self) -> bool {
        matches!(
            self,
            Phase::Running | Phase::Starting { .. } | Phase::Stopping { .. }
        )
    }
}

/// A timed phase whose time is up.
enum Due {
    Installed(Option<String>),
    Started,
    Stopped { restart_at: Option<Instant> },
}

struct Container {
    phase: Phase,
    /// Crashes since the last requested stop or new config (`crashCount`).
    crashes: u32,
    configs: u32,
    last_config: Option<Value>,
    /// Power routes received, in order.
    power: Vec<AgentPower>,
    agent: Option<Arc<SimServer>>,
    game: Option<JoinHandle<()>>,
    console: console::ConsoleLog,
    /// Players online, by name: the SLP answer's `players.online` and `sample`.
    players: Vec<String>,
}

impl Container {
    /// A start completes: `running`, or `crashed` (count + 1) with crash-on-start.
    fn come_up(&mut self, crash: bool) {
        if crash {
            self.crash();
        } else {
            self.phase = Phase::Running;
        }
    }
    fn crash(&mut self) {
        self.crashes += 1;
        self.phase = Phase::Crashed;
        self.console.emit(DEFAULT_CRASH_MESSAGE);
    }
    /// A `stop` typed at the console (see `AgentSim::console_stop`); whether it applied.
    fn stop_from_console(&mut self) -> bool {
        let applies = matches!(self.phase, Phase::Running | Phase::Starting { .. });
        if applies {
            self.crashes = 0;
            self.phase = Phase::Stopping {
                since: Instant::now(),
                then_start: false,
            };
        }
        applies
    }
}

struct Inner {
    cfg: AgentSimConfig,
    containers: HashMap<Ipv4Addr, Container>,
    /// Every start (and restart, and the start ending an install) on these addresses ends in
    /// `crashed`. Kept across container restarts, like `fail_ips`.
    crash_on_start: HashSet<Ipv4Addr>,
    /// `GET /status` on these addresses answers this state verbatim (a newer Agent's state
    /// zlh has never seen), whatever the container is doing.
    unknown_state: HashMap<Ipv4Addr, String>,
    /// Server List Pings answered with a status, every container together.
    slp_answered: u64,
    console_faults: ConsoleFaults,
}

impl Inner {
    /// Simulated time → real time.
    fn real(&self, d: Duration) -> Duration {
        d.div_f64(self.cfg.time_scale.max(1e-9))
    }

    /// Move a container through every timed phase whose time is up. A phase that follows
    /// another one starts at the moment the previous one ended (not when it is observed), so
    /// a restart read late is as far along as it would be read early.
    fn advance(&mut self, ip: Ipv4Addr) {
        let install = self.real(self.cfg.install_time);
        let start = self.real(self.cfg.start_time);
        let stop = self.real(self.cfg.stop_time);
        let crash = self.crash_on_start.contains(&ip);
        let Some(c) = self.containers.get_mut(&ip) else {
            return;
        };
        loop {
            let due = match &c.phase {
                Phase::Installing { started, failure } if started.elapsed() >= install => {
                    Due::Installed(failure.clone())
                }
                Phase::Starting { since } if since.elapsed() >= start => Due::Started,
                Phase::Stopping { since, then_start } if since.elapsed() >= stop => Due::Stopped {
                    restart_at: then_start.then(|| *since + stop),
                },
                _ => break,
            };
            match due {
                Due::Installed(Some(m)) => {
                    c.console.emit(m.clone());
                    c.phase = Phase::Error(m)
                }
                Due::Installed(None) | Due::Started => {
                    c.come_up(crash);
                    if matches!(c.phase, Phase::Running) {
                        c.console.emit(console::done_line(start));
                    }
                }
                Due::Stopped { restart_at: None } => c.phase = Phase::Stopped,
                Due::Stopped {
                    restart_at: Some(since),
                } => c.phase = Phase::Starting { since },
            }
        }
    }

    /// Advance `ip`'s container (see `advance`); return its state.
    fn state(&mut self, ip: Ipv4Addr) -> Option<AgentState> {
        self.advance(ip);
        let total = self.real(self.cfg.install_time);
        let c = self.containers.get(&ip)?;
        Some(match &c.phase {
            Phase::Idle => AgentState::Idle,
            Phase::Installing { started, .. } => {
                let frac = started.elapsed().as_secs_f64() / total.as_secs_f64().max(1e-9);
                let progress = (frac * 100.0).min(99.0) as u8;
                let step = STEPS[((frac * STEPS.len() as f64) as usize).min(STEPS.len() - 1)];
                AgentState::Installing {
                    step: Some(step.into()),
                    progress: Some(progress),
                }
            }
            Phase::Error(m) => AgentState::Error { message: m.clone() },
            Phase::Running => AgentState::Running,
            Phase::Starting { .. } => AgentState::Starting,
            Phase::Stopping { .. } => AgentState::Stopping,
            Phase::Stopped => AgentState::Stopped,
            Phase::Crashed => AgentState::Crashed {
                count: Some(c.crashes),
                message: Some(DEFAULT_CRASH_MESSAGE.into()),
            },
        })
    }

    /// Advance `ip`'s container, then apply `f` to it.
    fn with<R>(&mut self, ip: Ipv4Addr, f: impl FnOnce(&mut Container) -> R) -> Option<R> {
        self.advance(ip);
        self.containers.get_mut(&ip).map(f)
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
    if !same {
        // A different server: its crashes are not this one's.
        c.crashes = 0;
    }
    // Re-sending the same config to a running, starting or installing Agent changes nothing;
    // anything else (re)starts the install (a crashed or stopped game is reinstalled, its
    // crash count kept).
    let keep = same
        && matches!(
            state,
            Some(AgentState::Running | AgentState::Starting | AgentState::Installing { .. })
        );
    if !keep {
        for step in STEPS {
            c.console.emit(format!("[zlh-agent] install step {step}"));
        }
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
    if let Some(state) = inner.unknown_state.get(&s.ip) {
        return axum::Json(serde_json::json!({ "state": state })).into_response();
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

/// Refusal of a power request before an install (409 with a JSON `error`).
pub const POWER_BEFORE_INSTALL: &str = "no game server is installed: send POST /config first";

/// Acts on the request (see the module doc) and remembers it when accepted; any body is
/// ignored (the previous system sent none). 409 before an install.
async fn post_power(s: IpState, headers: HeaderMap, p: AgentPower) -> Response {
    let mut inner = lock(&s.shared);
    if !authorized(&inner, &headers) {
        return unauthorized();
    }
    let state = inner.state(s.ip);
    let Some(c) = inner.containers.get_mut(&s.ip) else {
        return plain_error(503);
    };
    if c.phase.before_install() {
        let state = state.map(|s| s.as_str()).unwrap_or("idle");
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({"error": POWER_BEFORE_INSTALL, "state": state})),
        )
            .into_response();
    }
    c.power.push(p);
    let now = Instant::now();
    match (p, &mut c.phase) {
        // Already up or coming up.
        (AgentPower::Start, Phase::Running | Phase::Starting { .. }) => {}
        (AgentPower::Start | AgentPower::Restart, Phase::Stopping { then_start, .. }) => {
            *then_start = true
        }
        (AgentPower::Start | AgentPower::Restart, Phase::Stopped | Phase::Crashed) => {
            c.phase = Phase::Starting { since: now }
        }
        (AgentPower::Restart, Phase::Running | Phase::Starting { .. }) => {
            c.phase = Phase::Stopping {
                since: now,
                then_start: true,
            }
        }
        (AgentPower::Stop, phase) => {
            // A stop asked for ends a crash loop.
            c.crashes = 0;
            match phase {
                Phase::Running | Phase::Starting { .. } => {
                    *phase = Phase::Stopping {
                        since: now,
                        then_start: false,
                    }
                }
                Phase::Stopping { then_start, .. } => *then_start = false,
                // Nothing runs: stopped at once.
                Phase::Crashed => *phase = Phase::Stopped,
                _ => {}
            }
        }
        (_, Phase::Idle | Phase::Installing { .. } | Phase::Error(_)) => {
            unreachable!("refused above")
        }
    }
    (StatusCode::OK, axum::Json(json!({"status": "accepted"}))).into_response()
}

async fn get_health() -> Response {
    axum::Json(json!({"ok": true})).into_response()
}

/// One SLP connection: handshake, status, ping/pong; only while the Agent is `running`.
/// The SLP answer's `players.max`.
const SIM_MAX_PLAYERS: u32 = 20;
/// Every simulated player's UUID (the sample's `id`; nothing reads it).
const SIM_PLAYER_ID: &str = "00000000-0000-0000-0000-000000000000";

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
        let players = inner
            .containers
            .get(&ip)
            .map(|c| c.players.clone())
            .unwrap_or_default();
        let version = cfg["version"].as_str().unwrap_or("1.21.7").to_string();
        let name = format!(
            "zlh {} {}",
            cfg["variant"].as_str().unwrap_or("dev"),
            cfg["vmid"].as_u64().unwrap_or(0)
        );
        json!({
            "version": {"name": version, "protocol": SIM_PROTOCOL},
            "players": {
                "max": SIM_MAX_PLAYERS,
                "online": players.len(),
                "sample": players.iter().map(|n| json!({"name": n, "id": SIM_PLAYER_ID})).collect::<Vec<_>>(),
            },
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
        let core = Core::new(Arc::new(plain_message));
        Ok(AgentSim {
            shared: Arc::new(Mutex::new(Inner {
                cfg,
                containers: HashMap::new(),
                crash_on_start: HashSet::new(),
                unknown_state: HashMap::new(),
                slp_answered: 0,
                console_faults: ConsoleFaults::default(),
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
            .route("/console/stream", get(console::stream))
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
        let router = with_fault_control(router, &core);
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
                crashes: 0,
                configs: 0,
                last_config: None,
                power: Vec::new(),
                agent: Some(Arc::new(agent)),
                game,
                console: Default::default(),
                players: Vec::new(),
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

    /// The Agent process restarted (as after a container restart): `idle`, config and crash
    /// count forgotten.
    pub fn restart_agent(&self, ip: Ipv4Addr) {
        if let Some(c) = lock(&self.shared).containers.get_mut(&ip) {
            c.phase = Phase::Idle;
            c.last_config = None;
            c.crashes = 0;
        }
    }

    /// These players are online (the SLP answer lists them all in its sample).
    pub fn set_players(&self, ip: Ipv4Addr, names: &[&str]) {
        if let Some(c) = lock(&self.shared).containers.get_mut(&ip) {
            c.players = names.iter().map(|n| n.to_string()).collect();
        }
    }

    /// The game process crashed (while `running`, `starting` or `stopping`): `crashed` with
    /// `crashCount` + 1, SLP stops answering. Returns whether a process was there to crash.
    pub fn crash(&self, ip: Ipv4Addr) -> bool {
        lock(&self.shared)
            .with(ip, |c| {
                let alive = c.phase.process_alive();
                if alive {
                    c.crash();
                }
                alive
            })
            .unwrap_or(false)
    }

    /// A player typed `stop` at the console (while `running` or `starting`): `stopping`, then
    /// `stopped` after `stop_time`. Counts as a requested stop (the crash count is reset).
    /// Returns whether it applied.
    pub fn console_stop(&self, ip: Ipv4Addr) -> bool {
        lock(&self.shared)
            .with(ip, Container::stop_from_console)
            .unwrap_or(false)
    }

    /// The game process exited cleanly (while `running`, `starting` or `stopping`): `stopped`
    /// at once; a pending restart is dropped and the crash count kept. Returns whether it
    /// applied.
    pub fn process_exit(&self, ip: Ipv4Addr) -> bool {
        lock(&self.shared)
            .with(ip, |c| {
                let alive = c.phase.process_alive();
                if alive {
                    c.phase = Phase::Stopped;
                }
                alive
            })
            .unwrap_or(false)
    }

    /// With `true`, every start of the game process on `ip` (`POST /start`, `/restart`, and
    /// the start that ends an install) ends in `crashed` (`crashCount` + 1) instead of
    /// `running`, after the usual `start_time`. Kept across container restarts.
    pub fn set_crash_on_start(&self, ip: Ipv4Addr, on: bool) {
        let mut i = lock(&self.shared);
        if on {
            i.crash_on_start.insert(ip);
        } else {
            i.crash_on_start.remove(&ip);
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

    /// `GET /status` on `ip` answers `state` verbatim, a state the client does not know
    /// (`None`: the real state again).
    pub fn answer_unknown_state(&self, ip: Ipv4Addr, state: Option<&str>) {
        let mut i = lock(&self.shared);
        match state {
            Some(st) => i.unknown_state.insert(ip, st.to_string()),
            None => i.unknown_state.remove(&ip),
        };
    }

    /// Installs on `ip` end in `error` (`false` removes it).
    pub fn set_fail_ip(&self, ip: Ipv4Addr, fail: bool) {
        let mut i = lock(&self.shared);
        i.cfg.fail_ips.retain(|x| *x != ip);
        if fail {
            i.cfg.fail_ips.push(ip);
        }
    }

    /// Change the install time (simulated); an install in progress ends by the new one.
    pub fn set_install_time(&self, d: Duration) {
        lock(&self.shared).cfg.install_time = d;
    }

    /// Change `start_time` (simulated); a start in progress ends by the new one.
    pub fn set_start_time(&self, d: Duration) {
        lock(&self.shared).cfg.start_time = d;
    }

    /// Change `stop_time` (simulated); a stop in progress ends by the new one.
    pub fn set_stop_time(&self, d: Duration) {
        lock(&self.shared).cfg.stop_time = d;
    }

    /// `POST /config` requests received by the container at `ip` since it started.
    pub fn configs_received(&self, ip: Ipv4Addr) -> u32 {
        lock(&self.shared)
            .containers
            .get(&ip)
            .map(|c| c.configs)
            .unwrap_or(0)
    }

    /// Power requests the container at `ip` accepted since it started, oldest first (refused
    /// ones, 401 or 409, are not recorded).
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
