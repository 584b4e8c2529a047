//! One console session: the client's socket and the Agent's, relayed in raw framing (every
//! frame unchanged both ways; zlh's own notices are text frames starting `[zlh] `) or in the
//! `zlh.console.v1` JSON framing (`json.rs`: events, status on every change of the server,
//! renewal with `auth`).
//!
//! Towards the client frames go through a bounded queue drained by a writer task: a client
//! that does not read fills it and is closed with 1013, so a flood from the Agent costs at
//! most `outbound_queue` frames of memory. The server is re-read every `recheck_interval`:
//! deleted or stopped → 1001, a new address → 1012, a standing that no longer allows writing
//! → 4403, its token revoked → 4401.

use super::json::{self, Request};
use super::{Slot, close, event, metric, msg};
use crate::auth::Principal;
use crate::state::Ctx;
use axum::extract::ws::{self, WebSocket};
use futures::{SinkExt as _, StreamExt as _};
use model::store::Store;
use model::{EventType, Power, Role, Server, Standing};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Up;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as UpClose;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub(crate) type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Everything a session knows once both sockets are open.
pub(crate) struct Session {
    pub ctx: Arc<Ctx>,
    pub server: Server,
    pub principal: Principal,
    pub read_only: bool,
    pub slot: Slot,
    /// The `zlh.console.v1` subprotocol was chosen (else raw).
    pub json: bool,
}

/// How long the writer may take to deliver the close frame before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why the session ended: close code and reason.
struct End(u16, &'static str);

fn who(p: &Principal) -> String {
    match &p.scope {
        Some(c) => format!("{} {c} (token {})", p.role, p.token_name),
        None => format!("{} (token {})", p.role, p.token_name),
    }
}

pub(crate) async fn run(s: Session, client: WebSocket, upstream: Upstream) {
    let Session {
        ctx,
        mut server,
        mut principal,
        mut read_only,
        slot,
        json,
    } = s;
    let mode = if read_only { "read-only" } else { "read-write" };
    let _ = ctx
        .app
        .store
        .append_event(
            server.id,
            EventType::Normal,
            event::OPENED,
            &format!("console opened {mode} by {}", who(&principal)),
        )
        .await;
    tracing::info!(server = %server.id, mode, role = %principal.role, "console opened");
    let opened = Instant::now();
    let (mut c_tx, mut c_rx) = client.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    let cfg = ctx.console.setup.config.clone();
    let (q_tx, mut q_rx) = mpsc::channel::<ws::Message>(cfg.outbound_queue.max(1));
    // The close, and a last frame to send before it (the queue is cut short).
    let (close_tx, mut close_rx) = oneshot::channel::<(End, Option<ws::Message>)>();
    // The writer: queued frames in order, then the close frame; a close cuts the queue short.
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                end = &mut close_rx => {
                    if let Ok((End(code, reason), last)) = end {
                        if let Some(m) = last {
                            let _ = c_tx.send(m).await;
                        }
                        let frame = ws::CloseFrame { code, reason: reason.into() };
                        let _ = c_tx.send(ws::Message::Close(Some(frame))).await;
                    }
                    return;
                }
                m = q_rx.recv() => match m {
                    Some(m) => if c_tx.send(m).await.is_err() { return },
                    None => return,
                },
            }
        }
    });
    let (mut frames_in, mut frames_out) = (0u64, 0u64);
    let mut told_read_only = false;
    let mut last_pong = Instant::now();
    let mut ping = tokio::time::interval(cfg.ping_interval);
    ping.tick().await;
    let mut recheck = tokio::time::interval(cfg.recheck_interval);
    recheck.tick().await;
    let mut expires = tokio::time::Instant::now() + cfg.max_session;
    let notice = cfg.renew_notice.min(cfg.max_session / 2);
    let mut warned = false;
    // Woken by the store's notices of the server's writes (as `crate::watch` is): the
    // recheck at once, and JSON clients' `status`.
    let mut wake = ctx.app.store.subscribe();
    let mut status = None;
    if json {
        status = send_status(&q_tx, &server, None);
    }
    let end: End = loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break End(close::GOING_AWAY, msg::SHUTTING_DOWN),
            _ = tokio::time::sleep_until(expires) => {
                break End(close::SESSION_EXPIRED, msg::SESSION_EXPIRED)
            }
            _ = tokio::time::sleep_until(expires - notice), if json && !warned => {
                warned = true;
                let left = expires.saturating_duration_since(tokio::time::Instant::now());
                let f = json::frame(json::server::TOKEN_EXPIRING, vec![left.as_secs().into()]);
                let _ = q_tx.try_send(text(f));
            }
            n = wake.recv() => {
                match n {
                    Ok(n) if n.server_id != server.id => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        wake = ctx.app.store.subscribe();
                    }
                    _ => {}
                }
                if let Some(end) = recheck_server(&ctx, &server, &principal, read_only).await {
                    break end;
                }
                if json && let Ok(Some(now)) = ctx.app.store.get_server(server.id).await {
                    status = send_status(&q_tx, &now, status);
                }
            }
            m = c_rx.next() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    // A frame over the socket's hard limit fails the read.
                    Some(Err(e)) if is_capacity(&e) => break End(close::TOO_BIG, msg::TOO_BIG),
                    Some(Err(_)) | None => break End(close::NORMAL, msg::BYE),
                };
                let up = match m {
                    ws::Message::Text(t) if t.len() > cfg.client_frame_max => {
                        break End(close::TOO_BIG, msg::TOO_BIG)
                    }
                    ws::Message::Binary(b) if b.len() > cfg.client_frame_max => {
                        break End(close::TOO_BIG, msg::TOO_BIG)
                    }
                    ws::Message::Text(t) => Up::Text(t.as_str().into()),
                    ws::Message::Binary(b) => Up::Binary(b),
                    ws::Message::Pong(_) => {
                        last_pong = Instant::now();
                        continue;
                    }
                    ws::Message::Ping(_) => continue,
                    ws::Message::Close(_) => break End(close::NORMAL, msg::BYE),
                };
                frames_in += 1;
                count_frame("in");
                let up = if json {
                    let req = match &up {
                        Up::Text(t) => json::parse(t.as_str()),
                        _ => Request::Invalid(json::err::NOT_JSON),
                    };
                    let line = match req {
                        Request::Auth(t) => {
                            match renew(&ctx, &server, &t).await {
                                Ok((p, rw)) => {
                                    principal = p;
                                    read_only = !rw;
                                    expires = tokio::time::Instant::now() + cfg.max_session;
                                    warned = false;
                                    let f = json::frame(json::server::AUTH_SUCCESS, vec![]);
                                    let _ = q_tx.try_send(text(f));
                                }
                                Err(why) => {
                                    let f = json::frame(json::server::JWT_ERROR, vec![why.into()]);
                                    let _ = q_tx.try_send(text(f));
                                }
                            }
                            continue;
                        }
                        Request::Invalid(why) => Err(why.to_string()),
                        _ if read_only => Err(json::err::READ_ONLY.to_string()),
                        Request::Command(c) => Ok(format!("{c}\n")),
                        Request::Input(i) => Ok(i),
                        Request::SetState(sig) => {
                            if let Err(why) = set_state(&ctx, &principal, &server, sig).await {
                                let f = json::frame(json::server::DAEMON_ERROR, vec![why.into()]);
                                let _ = q_tx.try_send(text(f));
                            }
                            continue;
                        }
                    };
                    match line {
                        Ok(l) => Up::Text(l.into()),
                        Err(why) => {
                            let f = json::frame(json::server::DAEMON_ERROR, vec![why.into()]);
                            let _ = q_tx.try_send(text(f));
                            continue;
                        }
                    }
                } else {
                    up
                };
                if read_only {
                    if !told_read_only {
                        told_read_only = true;
                        let _ = q_tx.try_send(ws::Message::Text(msg::READ_ONLY.into()));
                    }
                    continue;
                }
                if u_tx.send(up).await.is_err() {
                    upstream_error("send");
                    break End(close::AGENT_FAILED, msg::AGENT_CLOSED);
                }
            }
            m = u_rx.next() => {
                let down = match m {
                    Some(Ok(Up::Text(t))) if json => output(t.as_str()),
                    Some(Ok(Up::Binary(b))) if json => output(&String::from_utf8_lossy(&b)),
                    Some(Ok(Up::Text(t))) => ws::Message::Text(t.as_str().into()),
                    Some(Ok(Up::Binary(b))) => ws::Message::Binary(b),
                    Some(Ok(Up::Close(f))) => {
                        let normal = f.as_ref().is_none_or(|f| f.code == CloseCode::Normal);
                        if normal {
                            break End(close::NORMAL, msg::AGENT_CLOSED);
                        }
                        break agent_gone(&ctx, &server, &principal, read_only, "closed").await;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        break agent_gone(&ctx, &server, &principal, read_only, "lost").await;
                    }
                };
                match q_tx.try_send(down) {
                    Ok(()) => {
                        frames_out += 1;
                        count_frame("out");
                    }
                    Err(_) => break End(close::TRY_AGAIN_LATER, msg::TOO_SLOW),
                }
            }
            _ = ping.tick() => {
                if last_pong.elapsed() > cfg.pong_timeout {
                    break End(close::GOING_AWAY, msg::NO_PONG);
                }
                let _ = q_tx.try_send(ws::Message::Ping(Default::default()));
                let _ = u_tx.send(Up::Ping(Default::default())).await;
            }
            _ = recheck.tick() => {
                match recheck_server(&ctx, &server, &principal, read_only).await {
                    Some(end) => break end,
                    None => {
                        // Keep the newest spec (for `set state`); an address change is
                        // the next round's 1012.
                        if let Ok(Some(now)) = ctx.app.store.get_server(server.id).await
                            && now.status.ip == server.status.ip
                        {
                            server = now;
                        }
                    }
                }
            }
        }
    };
    let last = (json && end.0 == close::SESSION_EXPIRED)
        .then(|| text(json::frame(json::server::TOKEN_EXPIRED, vec![])));
    let _ = close_tx.send((End(end.0, end.1), last));
    let _ = u_tx
        .send(Up::Close(Some(UpClose {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    drop(q_tx);
    let mut writer = writer;
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    drop(slot);
    let code = end.0;
    let warn = matches!(code, close::AGENT_FAILED | close::TRY_AGAIN_LATER);
    metrics::counter!(metric::SESSIONS, "code" => code.to_string()).increment(1);
    let message = format!(
        "console closed after {}s: {frames_in} frames in, {frames_out} out, code {code} ({})",
        opened.elapsed().as_secs(),
        end.1
    );
    let ty = if warn {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let _ = ctx
        .app
        .store
        .append_event(server.id, ty, event::CLOSED, &message)
        .await;
    tracing::info!(server = %server.id, code, frames_in, frames_out, "console closed");
}

fn text(s: String) -> ws::Message {
    ws::Message::Text(s.into())
}

fn output(line: &str) -> ws::Message {
    text(json::frame(json::server::CONSOLE_OUTPUT, vec![line.into()]))
}

/// Send `status` if it differs from `last`; the status now.
fn send_status(
    q: &mpsc::Sender<ws::Message>,
    s: &Server,
    last: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    let now = serde_json::json!({
        "phase": s.phase().0.to_string(),
        "power": s.spec.power,
        "process": s.spec.process(),
    });
    if last.as_ref() != Some(&now) {
        let _ = q.try_send(text(json::frame(json::server::STATUS, vec![now.clone()])));
    }
    Some(now)
}

/// `auth`: a fresh ticket for this server renews the session (its age starts again; its
/// permissions are the new ticket's and the standing's now). The error is `jwt error`'s text.
async fn renew(ctx: &Ctx, server: &Server, ticket: &str) -> Result<(Principal, bool), String> {
    let claims = ctx
        .console
        .tickets
        .redeem(ticket)
        .map_err(|e| e.to_string())?;
    if claims.server() != Some(server.id) {
        return Err(json::err::WRONG_SERVER.into());
    }
    let p = claims.principal();
    let rw = crate::routes::console::access(ctx, &p, server)
        .await
        .map_err(|e| e.to_string())?;
    Ok((p, rw && claims.rw))
}

/// `set state`: the power route's spec change (`crate::routes::power`); game servers only.
async fn set_state(
    ctx: &Ctx,
    p: &Principal,
    server: &Server,
    signal: crate::wire::PowerSignal,
) -> Result<(), String> {
    if server.spec.kind == model::Kind::Dev {
        return Err(json::err::DEV_STATE.into());
    }
    let r = crate::extract::ServerRef::Id(server.id);
    crate::routes::power::power(ctx, p, r, signal, None, None)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn is_capacity(e: &axum::Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

fn count_frame(direction: &'static str) {
    metrics::counter!(metric::FRAMES, "direction" => direction).increment(1);
}

pub(crate) fn upstream_error(reason: &'static str) {
    metrics::counter!(metric::UPSTREAM_ERRORS, "reason" => reason).increment(1);
}

/// The Agent's stream ended abnormally: because the server was deleted or stopped (its
/// container went with it: 1001), or on its own (1011).
async fn agent_gone(
    ctx: &Ctx,
    server: &Server,
    p: &Principal,
    read_only: bool,
    reason: &'static str,
) -> End {
    match recheck_server(ctx, server, p, read_only).await {
        Some(end) => end,
        None => {
            upstream_error(reason);
            End(close::AGENT_FAILED, msg::AGENT_CLOSED)
        }
    }
}

/// Re-read the server: `Some` when the session must end.
async fn recheck_server(ctx: &Ctx, server: &Server, p: &Principal, read_only: bool) -> Option<End> {
    let now = match ctx.app.store.get_server(server.id).await {
        Ok(Some(s)) => s,
        Ok(None) => return Some(End(close::GOING_AWAY, msg::DELETED)),
        // The store is away: keep the session, the next round decides.
        Err(_) => return None,
    };
    if now.is_deleting() {
        return Some(End(close::GOING_AWAY, msg::DELETED));
    }
    if now.spec.power != Power::Running {
        return Some(End(close::GOING_AWAY, msg::STOPPED));
    }
    if now.status.ip != server.status.ip {
        return Some(End(close::RESTART, msg::IP_CHANGED));
    }
    // A revoked token ends its sessions; JWT identities have no stored token
    // (`api/src/identity.rs` names them `jwt:...`).
    if !p.token_name.starts_with("jwt:")
        && let Ok(found) = ctx.app.store.get_token(p.token_id).await
        && found.is_none_or(|t| t.state(chrono::Utc::now()) != model::TokenState::Active)
    {
        return Some(End(close::TOKEN_REVOKED, msg::REVOKED));
    }
    if p.role != Role::Operator
        && let Ok(c) = ctx.app.store.get_customer(&now.customer_id).await
    {
        let lowered = match c.standing {
            Standing::Active => false,
            Standing::Overdue => !read_only,
            Standing::Suspended => true,
        };
        if lowered {
            return Some(End(close::PERMISSIONS_LOWERED, msg::LOWERED));
        }
    }
    None
}
