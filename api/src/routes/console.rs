//! The console routes (issue 19): `POST /api/servers/{id}/console/ticket`, the WebSocket
//! `GET /api/servers/{id}/console`, and the one-shot `POST /api/servers/{id}/command`.
//!
//! The socket checks everything before it answers 101, so every refusal is an ordinary
//! problem+json response: the credential (ticket or bearer), the server and its
//! preconditions, the `Origin`, the session limits, and then the Agent is dialled; only an
//! open Agent stream is upgraded.

use crate::auth::{Principal, Reader, Writer};
use crate::console::Console;
use crate::console::relay::{self, Session, Upstream};
use crate::console::ticket::{self, TicketError};
use crate::extract::{ApiJson, ServerPath, ServerRef};
use crate::openapi::{AuthProblems, IdProblems};
use crate::problem::{ApiError, ApiResult, Problem, kind};
use crate::routes::servers::{SERVER_ID_DOC, visible_server};
use crate::state::Ctx;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt as _, StreamExt as _};
use model::store::Store;
use model::{Kind, Power, Role, Server, Standing};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// Refusals, as constants (tests match on them).
pub mod refusal {
    pub const NO_CREDENTIAL: &str =
        "a console needs ?ticket= (from POST .../console/ticket) or Authorization: Bearer";
    pub const WRONG_SERVER: &str = "the console ticket is for another server";
    pub const SUSPENDED: &str = "the customer is suspended: the console is closed";
    pub const ORIGIN: &str = "this Origin may not open a console; see [api] console_origins";
    pub const TOO_MANY: &str = "console sessions of this server or customer";
    pub const AGENT_UNREACHABLE: &str = "the server's Agent cannot be reached; try again shortly";
    pub const AGENT_TOKEN: &str = "the Agent refused zlh's token; check [agent] token_file";
    pub const AGENT_NOT_HERE: &str = "the Agent does not serve this server (VMID mismatch)";
    pub const AGENT_OTHER: &str = "the Agent refused the console stream";
    pub const NOT_A_WEBSOCKET: &str = "this route is a WebSocket: send an RFC 6455 upgrade";
    pub const NOT_RUNNING: &str = "the game process is not running";
}

/// How long the one-shot command waits for the Agent to answer its close (it has read the
/// line by then); the command was sent either way.
const COMMAND_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Seconds a client waits before retrying an unreachable Agent or a full session table.
const RETRY_AFTER_SECS: u64 = 5;

/// The answer to a ticket request.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleTicket {
    /// The ticket: single use, valid until `expiresAt`. A secret: never log it.
    pub ticket: String,
    /// Where to open the WebSocket (relative to the API; the ticket included).
    pub url: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// `console.read`, and `console.write` for a read-write session.
    pub permissions: Vec<String>,
    pub server_id: model::ServerId,
    pub vmid: u32,
}

/// The one-shot command.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandRequest {
    /// One console line, 1–1024 characters, no newline.
    pub command: String,
}

/// `GET /api/servers/{id}/console` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConsoleQuery {
    /// A ticket from `POST /api/servers/{id}/console/ticket` (browsers cannot set headers on
    /// a WebSocket); without it, `Authorization: Bearer`.
    pub ticket: Option<String>,
    /// `true`: a read-only session whatever the credential allows (`zctl console --read-only`).
    #[serde(default)]
    pub read_only: bool,
}

/// Whether `p` may write, given the customer's standing (`Err`: no console at all).
pub(crate) async fn access(ctx: &Ctx, p: &Principal, server: &Server) -> ApiResult<bool> {
    let mut rw = p.role != Role::Viewer;
    if p.role != Role::Operator {
        match ctx
            .app
            .store
            .get_customer(&server.customer_id)
            .await?
            .standing
        {
            Standing::Active => {}
            Standing::Overdue => rw = false,
            Standing::Suspended => return Err(ApiError::Forbidden(refusal::SUSPENDED.into())),
        }
    }
    Ok(rw)
}

/// Visible (404), not being deleted (409), a running container with an address (409).
fn ready_for_console(server: &Server) -> ApiResult<(u32, std::net::IpAddr)> {
    let conflict = |detail: String| ApiError::Conflict {
        kind: kind::CONFLICT,
        detail,
        operation: None,
    };
    if server.is_deleting() {
        return Err(conflict(format!("server {} is being deleted", server.id)));
    }
    let ip = server.status.ip.as_deref().and_then(|ip| ip.parse().ok());
    match (server.spec.power, server.status.vmid, ip) {
        (Power::Running, Some(vmid), Some(ip)) => Ok((vmid, ip)),
        _ => Err(conflict(format!(
            "server {} is {}: the console needs a running container with a known address",
            server.id,
            server.phase().0
        ))),
    }
}

/// Ask for a console ticket.
///
/// A short-lived (`[api.console] ticket_ttl`), single-use ticket bound to this server, to open
/// `GET /api/servers/{id}/console?ticket=...` from a browser. Operators, portal and customer
/// tokens get read-write, viewers read-only; a customer who is overdue gets read-only, a
/// suspended one 403.
#[utoipa::path(
    post, path = "/api/servers/{id}/console/ticket", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC)),
    responses(
        (status = 201, description = "The ticket (Cache-Control: no-store)", body = ConsoleTicket),
        (status = 409, description = "Being deleted, or not running with an address", body = Problem, content_type = "application/problem+json"),
        AuthProblems, IdProblems,
    ),
    security(("bearer" = []))
)]
pub async fn console_ticket(
    State(ctx): State<Arc<Ctx>>,
    Reader(p): Reader,
    ServerPath(r): ServerPath,
) -> ApiResult<Response> {
    let server = visible_server(&ctx, &p, r).await?;
    let (vmid, _) = ready_for_console(&server)?;
    let rw = access(&ctx, &p, &server).await?;
    let ttl = ctx.console.setup.config.ttl();
    let (t, exp) = ctx.console.tickets.issue(&p, server.id, vmid, rw, ttl);
    let mut permissions = vec![ticket::READ.to_string()];
    if rw {
        permissions.push(ticket::WRITE.to_string());
    }
    let body = ConsoleTicket {
        url: format!(
            "/api/servers/{}/console?ticket={}",
            server.id,
            t.expose_secret()
        ),
        ticket: t.expose_secret().to_string(),
        expires_at: chrono::DateTime::from_timestamp(exp as i64, 0).unwrap_or_default(),
        permissions,
        server_id: server.id,
        vmid,
    };
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

fn bad_gateway(detail: &str) -> Response {
    let mut res =
        Problem::new(kind::AGENT_UNREACHABLE, StatusCode::BAD_GATEWAY, detail).to_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    res
}

/// Open the Agent's console stream for `vmid` at `ip`; the refusal is the response.
async fn dial(console: &Console, ip: std::net::IpAddr, vmid: u32) -> Result<Upstream, Response> {
    let setup = &console.setup;
    let url = format!(
        "ws://{}/console/stream?serverId={vmid}",
        std::net::SocketAddr::new(ip, setup.agent_port)
    );
    let mut req = url
        .into_client_request()
        .map_err(|_| bad_gateway(refusal::AGENT_OTHER))?;
    if let Some(t) = &setup.agent_token {
        let v = HeaderValue::try_from(format!("Bearer {}", t.expose_secret()))
            .map_err(|_| bad_gateway(refusal::AGENT_TOKEN))?;
        req.headers_mut().insert(header::AUTHORIZATION, v);
    }
    let mut cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    cfg.max_message_size = Some(setup.config.agent_frame_max);
    cfg.max_frame_size = Some(setup.config.agent_frame_max);
    let dialled = tokio::time::timeout(
        setup.config.dial_timeout,
        tokio_tungstenite::connect_async_with_config(req, Some(cfg), true),
    )
    .await;
    use tokio_tungstenite::tungstenite::Error as E;
    match dialled {
        Ok(Ok((ws, _))) => Ok(ws),
        Err(_) => {
            relay::upstream_error("timeout");
            Err(bad_gateway(refusal::AGENT_UNREACHABLE))
        }
        Ok(Err(E::Http(res))) => {
            let status = res.status().as_u16();
            tracing::warn!(status, vmid, "the Agent refused the console stream");
            relay::upstream_error("refused");
            Err(bad_gateway(match status {
                401 | 403 => refusal::AGENT_TOKEN,
                404 => refusal::AGENT_NOT_HERE,
                _ => refusal::AGENT_OTHER,
            }))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, vmid, "console: the Agent is unreachable");
            relay::upstream_error("unreachable");
            Err(bad_gateway(refusal::AGENT_UNREACHABLE))
        }
    }
}

/// The allow-list: a listed origin, or the request's own host.
fn origin_allowed(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if ctx.console.setup.origins.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority = origin.split_once("://").map(|(_, a)| a);
    host.is_some() && authority == host
}

/// Open a console (WebSocket, RFC 6455).
///
/// Credentials: `?ticket=` (from `POST .../console/ticket`) or `Authorization: Bearer` (same
/// roles as the ticket). Every refusal comes before the upgrade as problem+json: 401 a
/// missing, bad, expired or reused ticket; 403 a ticket for another server, a suspended
/// customer or an `Origin` not in `[api] console_origins`; 404/409 as for the ticket; 429 too
/// many sessions (8 per server, 32 per customer; operators exempt); 502 the Agent refused or
/// is unreachable (`Retry-After`).
///
/// Framing: raw — frames are relayed unchanged both ways (send `"<line>\n"` text frames;
/// each received text frame is a line); zlh's own notices are text frames starting `[zlh] `.
/// A read-only session's input is dropped, and said so once.
///
/// Subprotocol `zlh.console.v1` (`Sec-WebSocket-Protocol`): every frame is JSON
/// `{"event": ..., "args": [...]}` (Pterodactyl's names). Client: `auth` [ticket] renews the
/// session with a fresh ticket (no reconnect); `send command` [line]; `send input` [text, sent
/// unchanged]; `set state` ["start" | "stop" | "restart"], the power route's spec change (game
/// servers only). Server: `console output` [line]; `status` [{phase, power, process}] on open
/// and on every change; `auth success`; `token expiring` [seconds left], `renew_notice`
/// before `max_session`; `token expired` before the 4001 close; `jwt error` [why] for a
/// refused `auth`; `daemon error` [why] for an event that could not be carried out.
///
/// Close codes: 1000 normal; 1001 server deleted or stopped, zlh shutting down, or no pong
/// for `pong_timeout`; 1009 a client frame over 16 KiB; 1011 the Agent closed abnormally;
/// 1012 the server's address changed; 1013 the client reads too slowly; 4001 the session is
/// older than `max_session` (JSON clients renew with `auth`); 4401 the token behind the
/// session was revoked; 4403 permissions lowered (standing changed).
#[utoipa::path(
    get, path = "/api/servers/{id}/console", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC), ConsoleQuery),
    responses(
        (status = 101, description = "Switching protocols: the console is open"),
        (status = 409, description = "Being deleted, or not running with an address", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many console sessions (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The Agent refused or is unreachable (Retry-After)", body = Problem, content_type = "application/problem+json"),
        AuthProblems, IdProblems,
    ),
    security((), ("bearer" = []))
)]
pub async fn console_socket(
    State(ctx): State<Arc<Ctx>>,
    ServerPath(r): ServerPath,
    Query(q): Query<ConsoleQuery>,
    bearer: Result<Principal, ApiError>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match open(ctx, r, q, bearer, headers, upgrade).await {
        Ok(res) | Err(res) => res,
    }
}

async fn open(
    ctx: Arc<Ctx>,
    r: ServerRef,
    q: ConsoleQuery,
    bearer: Result<Principal, ApiError>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Response> {
    let fail = |e: ApiError| e.into_response();
    // 1. The credential.
    let (p, ticket_rw) = match q.ticket.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => {
            let claims = ctx
                .console
                .tickets
                .redeem(t)
                .map_err(|e: TicketError| fail(ApiError::Unauthorized(e.to_string())))?;
            let same = match r {
                ServerRef::Id(id) => claims.server() == Some(id),
                ServerRef::Vmid(v) => claims.vmid == v,
            };
            if !same {
                return Err(fail(ApiError::Forbidden(refusal::WRONG_SERVER.into())));
            }
            (claims.principal(), Some(claims.rw))
        }
        None => match bearer {
            Ok(p) => (p, None),
            Err(ApiError::Unauthorized(_)) if !headers.contains_key(header::AUTHORIZATION) => {
                return Err(fail(ApiError::Unauthorized(refusal::NO_CREDENTIAL.into())));
            }
            Err(e) => return Err(fail(e)),
        },
    };
    // 2. The server and its preconditions; the standing now (it may have changed since the
    // ticket).
    let server = visible_server(&ctx, &p, r).await.map_err(fail)?;
    let (vmid, ip) = ready_for_console(&server).map_err(fail)?;
    let rw =
        access(&ctx, &p, &server).await.map_err(fail)? && ticket_rw.unwrap_or(true) && !q.read_only;
    // 3. The origin.
    if !origin_allowed(&ctx, &headers) {
        return Err(fail(ApiError::Forbidden(refusal::ORIGIN.into())));
    }
    let upgrade = upgrade.map_err(|_| {
        let mut res = Problem::new(
            kind::BAD_REQUEST,
            StatusCode::UPGRADE_REQUIRED,
            refusal::NOT_A_WEBSOCKET,
        )
        .to_response();
        res.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        res
    })?;
    // 4. The limits, then 5. the Agent.
    let slot = Console::admit(
        &ctx,
        server.id,
        &server.customer_id,
        p.role == Role::Operator,
    )
    .ok_or_else(|| {
        fail(ApiError::RateLimited {
            retry_after_secs: RETRY_AFTER_SECS,
            limited: refusal::TOO_MANY,
        })
    })?;
    let upstream = dial(&ctx.console, ip, vmid).await?;
    let cfg = &ctx.console.setup.config;
    // The socket's hard limit is above ours, so an oversized frame is read and closed with
    // 1009 rather than failing the read.
    let hard = cfg.client_frame_max.saturating_mul(2);
    let upgrade = upgrade.protocols([crate::console::SUBPROTOCOL_JSON]);
    let json = upgrade.selected_protocol().is_some();
    let session = Session {
        json,
        ctx: ctx.clone(),
        server,
        principal: p,
        read_only: !rw,
        slot,
    };
    Ok(upgrade
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| relay::run(session, socket, upstream)))
}

/// Send one line to the game's console.
///
/// zlh opens the Agent's console stream, sends the line and closes it: 204. Same roles and
/// standing rules as power; 409 unless the game process is running; 502 if the Agent cannot
/// be reached.
#[utoipa::path(
    post, path = "/api/servers/{id}/command", tag = "servers",
    params(("id" = String, Path, description = SERVER_ID_DOC)),
    request_body = CommandRequest,
    responses(
        (status = 204, description = "Sent"),
        (status = 409, description = "The game process is not running", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The Agent cannot be reached (Retry-After)", body = Problem, content_type = "application/problem+json"),
        AuthProblems, IdProblems,
    ),
    security(("bearer" = []))
)]
pub async fn send_command(
    State(ctx): State<Arc<Ctx>>,
    Writer(p): Writer,
    ServerPath(r): ServerPath,
    ApiJson(req): ApiJson<CommandRequest>,
) -> Response {
    let run = async {
        let n = req.command.chars().count();
        if !(1..=1024).contains(&n) || req.command.contains(['\n', '\r']) {
            return Err(fail_field());
        }
        let server = visible_server(&ctx, &p, r)
            .await
            .map_err(|e| e.into_response())?;
        crate::admission::check_standing(&ctx, &p, &server.customer_id)
            .await
            .map_err(|e| e.into_response())?;
        let (vmid, ip) = ready_for_console(&server).map_err(|e| e.into_response())?;
        if server.spec.kind != Kind::Game || server.spec.process() != model::Process::Running {
            return Err(ApiError::Conflict {
                kind: kind::CONFLICT,
                detail: refusal::NOT_RUNNING.into(),
                operation: None,
            }
            .into_response());
        }
        let mut ws = dial(&ctx.console, ip, vmid).await?;
        let line = format!("{}\n", req.command);
        if ws
            .send(tokio_tungstenite::tungstenite::Message::Text(line.into()))
            .await
            .is_err()
        {
            relay::upstream_error("send");
            return Err(bad_gateway(refusal::AGENT_UNREACHABLE));
        }
        let _ = ws.close(None).await;
        // Complete the closing handshake rather than drop the connection: the Agent reads our
        // line only after it has sent its backlog, and a connection dropped meanwhile loses
        // the line.
        let _ = tokio::time::timeout(COMMAND_CLOSE_WAIT, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        tracing::info!(server = %server.id, "console command sent");
        // The line itself may carry anything (a password for a plugin): only its length.
        let detail = format!("console command ({n} characters)");
        crate::audit::record(
            &ctx,
            &p,
            crate::audit::Action::ServerCommand,
            Some(server.id),
            &detail,
        )
        .await;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    match run.await {
        Ok(r) | Err(r) => r,
    }
}

fn fail_field() -> Response {
    ApiError::invalid_field("command", "1-1024 characters, without a newline").into_response()
}
