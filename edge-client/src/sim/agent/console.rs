//! The Agent's console stream, `GET /console/stream?serverId=<vmid>` (a WebSocket; the
//! contract is in `docs/edge-apis.md` §6). Each container keeps the last [`BACKLOG`] lines,
//! replayed to every new session before the live output; every session sees every line.
//! Commands are answered with vanilla Minecraft's wording; a dev container echoes `$ <line>`.
//!
//! Fault knobs ([`ConsoleFaults`]): refuse the upgrade with a status, close every session
//! after N frames with a close code, flood each new session (backpressure tests).

use super::{IpState, authorized, lock, unauthorized};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use tokio::sync::broadcast;

/// Lines replayed to a new session (what the real Agent keeps).
pub const BACKLOG: usize = 100;
/// The console's answers, vanilla Minecraft's wording.
pub mod lines {
    pub const PLAYERS: &str = "There are 0 of a max of 20 players online:";
    pub const STOPPING: &str = "Stopping the server";
    pub const UNKNOWN: &str = "Unknown or incomplete command, see below for error";
    pub const HELP_HINT: &str = "For help, type \"help\"";
}
/// Refusals of the upgrade (plain text bodies, like the rest of the simulator).
pub mod refusal {
    pub const MISSING_SERVER_ID: &str = "serverId is required";
    pub const WRONG_SERVER: &str = "no such server on this Agent";
}

/// Test knobs of the console stream, every container together.
#[derive(Debug, Clone, Default)]
pub struct ConsoleFaults {
    /// Answer the upgrade with this status instead (401, 403, 404, 500 ...).
    pub refuse: Option<u16>,
    /// Close each session after this many frames sent to it, with this close code.
    pub close_after: Option<(usize, u16)>,
    /// Send each new session this many frames of `flood_bytes` bytes at once, after the
    /// backlog, as fast as the socket takes them.
    pub flood: Option<(usize, usize)>,
}

/// One container's console.
pub(super) struct ConsoleLog {
    backlog: VecDeque<String>,
    tx: broadcast::Sender<String>,
    /// Lines received from sessions, oldest first.
    input: Vec<String>,
    sessions: usize,
    /// Flood frames sent, every session together.
    flooded: usize,
}

impl Default for ConsoleLog {
    fn default() -> Self {
        ConsoleLog {
            backlog: VecDeque::with_capacity(BACKLOG),
            // Live lines beyond this per slow session are skipped (the backlog still has them).
            tx: broadcast::channel(1024).0,
            input: Vec::new(),
            sessions: 0,
            flooded: 0,
        }
    }
}

impl ConsoleLog {
    /// A line of output: kept in the backlog and sent to every session.
    pub(super) fn emit(&mut self, line: impl Into<String>) {
        let line = line.into();
        if self.backlog.len() == BACKLOG {
            self.backlog.pop_front();
        }
        self.backlog.push_back(line.clone());
        let _ = self.tx.send(line);
    }
}

/// The `Done` line a started server prints, with the (real) start time.
pub(super) fn done_line(took: std::time::Duration) -> String {
    format!("Done ({:.3}s)! {}", took.as_secs_f64(), lines::HELP_HINT)
}

pub(super) async fn stream(
    State(s): State<IpState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let rx = {
        let mut inner = lock(&s.shared);
        if !authorized(&inner, &headers) {
            return unauthorized();
        }
        if let Some(code) = inner.console_faults.refuse {
            return super::plain_error(code);
        }
        let Some(vmid) = q.get("serverId") else {
            return (StatusCode::BAD_REQUEST, refusal::MISSING_SERVER_ID).into_response();
        };
        // Advance the timed phases, so a server that came up has said so.
        let _ = inner.state(s.ip);
        let Some(c) = inner.containers.get_mut(&s.ip) else {
            return super::plain_error(503);
        };
        let ours = c
            .last_config
            .as_ref()
            .and_then(|v| v["vmid"].as_u64())
            .map(|v| v.to_string());
        if ours.as_deref() != Some(vmid.as_str()) {
            return (StatusCode::NOT_FOUND, refusal::WRONG_SERVER).into_response();
        }
        c.console.sessions += 1;
        // Subscribed under the lock with the backlog copied: no line is missed or doubled.
        let backlog: Vec<String> = c.console.backlog.iter().cloned().collect();
        (backlog, c.console.tx.subscribe())
    };
    ws.on_upgrade(move |socket| session(socket, s, rx))
}

async fn session(
    mut socket: WebSocket,
    s: IpState,
    (backlog, mut rx): (Vec<String>, broadcast::Receiver<String>),
) {
    let faults = lock(&s.shared).console_faults.clone();
    let mut sent = 0usize;
    // `Some(code)`: the fault's close is due.
    let mut out = async |socket: &mut WebSocket, line: String| -> Result<(), Option<u16>> {
        socket
            .send(Message::Text(line.into()))
            .await
            .map_err(|_| None)?;
        sent += 1;
        match faults.close_after {
            Some((n, code)) if sent >= n => Err(Some(code)),
            _ => Ok(()),
        }
    };
    let mut end: Result<(), Option<u16>> = Ok(());
    for line in backlog {
        end = out(&mut socket, line).await;
        if end.is_err() {
            break;
        }
    }
    if end.is_ok()
        && let Some((n, bytes)) = faults.flood
    {
        let payload = "f".repeat(bytes.max(1));
        for _ in 0..n {
            end = out(&mut socket, payload.clone()).await;
            if end.is_err() {
                break;
            }
            if let Some(c) = lock(&s.shared).containers.get_mut(&s.ip) {
                c.console.flooded += 1;
            }
        }
    }
    while end.is_ok() {
        tokio::select! {
            line = rx.recv() => match line {
                Ok(line) => end = out(&mut socket, line).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => end = Err(None),
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => command(&s, t.as_str()),
                Some(Ok(Message::Binary(b))) => command(&s, &String::from_utf8_lossy(&b)),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => end = Err(None),
                Some(Ok(_)) => {}
            },
        }
    }
    if let Err(Some(code)) = end {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: "simulated close".into(),
            })))
            .await;
    }
    if let Some(c) = lock(&s.shared).containers.get_mut(&s.ip) {
        c.console.sessions = c.console.sessions.saturating_sub(1);
    }
}

/// Lines typed at the console (a frame may carry several, each ending in `\n`).
fn command(s: &IpState, text: &str) {
    let mut inner = lock(&s.shared);
    let _ = inner.state(s.ip);
    let Some(c) = inner.containers.get_mut(&s.ip) else {
        return;
    };
    let dev = c
        .last_config
        .as_ref()
        .is_some_and(|v| v["container_type"] == "dev");
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        c.console.input.push(line.to_string());
        if dev {
            c.console.emit(format!("$ {line}"));
            continue;
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        match cmd {
            "list" => c.console.emit(lines::PLAYERS),
            "say" => c.console.emit(format!("[Server] {rest}")),
            "stop" => {
                c.console.emit(lines::STOPPING);
                c.stop_from_console();
            }
            _ => c.console.emit(lines::UNKNOWN),
        }
    }
}

impl super::AgentSim {
    /// Set the console stream's fault knobs (they apply to sessions opened from now on).
    pub fn set_console_faults(&self, f: ConsoleFaults) {
        lock(&self.shared).console_faults = f;
    }

    /// Lines the console at `ip` received since the container started, oldest first.
    pub fn console_input(&self, ip: std::net::Ipv4Addr) -> Vec<String> {
        lock(&self.shared)
            .containers
            .get(&ip)
            .map(|c| c.console.input.clone())
            .unwrap_or_default()
    }

    /// Open console sessions at `ip`.
    pub fn console_sessions(&self, ip: std::net::Ipv4Addr) -> usize {
        lock(&self.shared)
            .containers
            .get(&ip)
            .map_or(0, |c| c.console.sessions)
    }

    /// Flood frames sent by the console at `ip`, every session together.
    pub fn console_flooded(&self, ip: std::net::Ipv4Addr) -> usize {
        lock(&self.shared)
            .containers
            .get(&ip)
            .map_or(0, |c| c.console.flooded)
    }

    /// Write `line` to the console at `ip` as the game would (it reaches every session).
    pub fn console_emit(&self, ip: std::net::Ipv4Addr, line: &str) {
        if let Some(c) = lock(&self.shared).containers.get_mut(&ip) {
            c.console.emit(line);
        }
    }
}
