//! The console: an authenticated WebSocket proxy from the browser (or `zctl`) to the Agent's
//! `/console/stream` in the container (issue 19; the Agent's contract is in
//! `docs/edge-apis.md` §6). The browser never learns a container address: the API holds both
//! sockets and relays frames.
//!
//! - [`ticket`]: short-lived, single-use signed tickets (`POST .../console/ticket`), because a
//!   browser cannot set headers on a WebSocket.
//! - [`relay`]: one session, the two sockets and their limits.
//! - `crate::routes::console`: the routes.

pub mod json;
pub mod relay;
pub mod ticket;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Close codes a session ends with (RFC 6455 §7.4; 4xxx are zlh's own).
pub mod close {
    /// The client or the Agent ended the session normally.
    pub const NORMAL: u16 = 1000;
    /// The server was deleted or stopped, or zlh is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A client frame over `client_frame_max`.
    pub const TOO_BIG: u16 = 1009;
    /// The Agent closed abnormally (or its stream failed).
    pub const AGENT_FAILED: u16 = 1011;
    /// The server's address changed: reconnect.
    pub const RESTART: u16 = 1012;
    /// The client does not read fast enough (the outbound queue is full).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The session is older than `max_session`.
    pub const SESSION_EXPIRED: u16 = 4001;
    /// The token behind the session was revoked.
    pub const TOKEN_REVOKED: u16 = 4401;
    /// The session's permissions were lowered (the customer's standing changed).
    pub const PERMISSIONS_LOWERED: u16 = 4403;
}

/// Texts of the close frames and of zlh's own notices (text frames starting `[zlh] `).
pub mod msg {
    pub const NOTICE_PREFIX: &str = "[zlh] ";
    pub const READ_ONLY: &str = "[zlh] this console is read-only: input is not sent";
    pub const SHUTTING_DOWN: &str = "zlh is shutting down";
    pub const DELETED: &str = "the server was deleted";
    pub const STOPPED: &str = "the server was stopped";
    pub const IP_CHANGED: &str = "the server's address changed; reconnect";
    pub const TOO_BIG: &str = "frame too large";
    pub const TOO_SLOW: &str = "client too slow";
    pub const AGENT_CLOSED: &str = "the Agent closed the console";
    pub const SESSION_EXPIRED: &str = "session too old; open a new one";
    pub const LOWERED: &str = "permissions lowered";
    pub const REVOKED: &str = "the token was revoked";
    pub const NO_PONG: &str = "no pong in time";
    pub const BYE: &str = "bye";
}

/// The `zlh.console.v1` subprotocol (JSON frames, `json.rs`).
pub const SUBPROTOCOL_JSON: &str = "zlh.console.v1";

/// `[api.console]`: tickets and session limits. Every default is in `Default` with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// How long a ticket is valid (clamped to `ticket_ttl_max`).
    #[serde(with = "humantime_serde")]
    pub ticket_ttl: Duration,
    /// The longest `ticket_ttl` accepted.
    #[serde(with = "humantime_serde")]
    pub ticket_ttl_max: Duration,
    /// File with the ticket signing key. Without it each process signs with a random key,
    /// which is right only while one API process runs (a ticket is verified by the process
    /// that issued it).
    pub key_file: Option<std::path::PathBuf>,
    /// Dialling the Agent, connect and handshake together (longer → 502).
    #[serde(with = "humantime_serde")]
    pub dial_timeout: Duration,
    /// Ping the client and the Agent this often.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Close a client that answered no ping for this long.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// A session ends (4001) after this long; a JSON client's `auth` starts it again.
    #[serde(with = "humantime_serde")]
    pub max_session: Duration,
    /// JSON clients get `token expiring` this long before `max_session` (at most half of it).
    #[serde(with = "humantime_serde")]
    pub renew_notice: Duration,
    /// Only one API process runs: the random per-process key is allowed with PostgreSQL
    /// (where replicas are possible) too.
    pub single_process: bool,
    /// The server is re-read this often (deleted, stopped, address or standing changed).
    #[serde(with = "humantime_serde")]
    pub recheck_interval: Duration,
    /// Open sessions per server at most (operators exempt); more → 429.
    pub sessions_per_server: usize,
    /// Open sessions per customer at most (operators exempt); more → 429.
    pub sessions_per_customer: usize,
    /// Largest client frame (larger → close 1009).
    pub client_frame_max: usize,
    /// Largest Agent frame accepted.
    pub agent_frame_max: usize,
    /// Frames queued towards a client at most (full → close 1013).
    pub outbound_queue: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            // Long enough for the browser to open the socket after fetching it, short enough
            // that a ticket leaked from a page is useless soon after.
            ticket_ttl: Duration::from_secs(60),
            ticket_ttl_max: Duration::from_secs(300),
            key_file: None,
            // The Agent answers on a private bridge: 5 s means it is not there.
            dial_timeout: Duration::from_secs(5),
            // Below the idle timeouts of common proxies (60 s), twice per pong timeout.
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(60),
            // A working day; renewing is a reconnect.
            max_session: Duration::from_secs(12 * 3600),
            // Time for a client to fetch a ticket and send `auth`.
            renew_notice: Duration::from_secs(60),
            // SQLite is one process anyway; with PostgreSQL, replicas must share a key file
            // unless the operator says there is one API process.
            single_process: false,
            // A deleted or stopped server's sessions end within a second or so.
            recheck_interval: Duration::from_secs(1),
            // A few tabs and people per server, a few servers per customer.
            sessions_per_server: 8,
            sessions_per_customer: 32,
            // A command line is short; 16 KiB leaves room for a pasted block.
            client_frame_max: 16 * 1024,
            // A long stack trace is one line.
            agent_frame_max: 1024 * 1024,
            // A burst of log output fits; a client that falls this far behind is gone.
            outbound_queue: 1024,
        }
    }
}

impl ConsoleConfig {
    /// The ticket lifetime actually used.
    pub fn ttl(&self) -> Duration {
        self.ticket_ttl.min(self.ticket_ttl_max)
    }
}

/// What the console needs besides its config: where the Agents are and their token.
#[derive(Debug, Clone)]
pub struct ConsoleSetup {
    pub config: ConsoleConfig,
    /// `[api] console_origins`: browser origins allowed to open a console (an `Origin`
    /// header naming another is refused, 403; the request's own host is always allowed).
    pub origins: Vec<String>,
    /// The Agent's port in every container (`[agent] port`).
    pub agent_port: u16,
    /// The Agent's bearer token (`[agent] token_file`).
    pub agent_token: Option<SecretString>,
    /// The ticket signing key (`key_file`'s content); `None`: random per process.
    pub key: Option<SecretString>,
}

// By value, secrets included: `ApiConfig` compares configs (no secret is printed).
impl PartialEq for ConsoleSetup {
    fn eq(&self, o: &Self) -> bool {
        use secrecy::ExposeSecret as _;
        let secret = |a: &Option<SecretString>, b: &Option<SecretString>| {
            a.as_ref().map(|s| s.expose_secret()) == b.as_ref().map(|s| s.expose_secret())
        };
        self.config == o.config
            && self.origins == o.origins
            && self.agent_port == o.agent_port
            && secret(&self.agent_token, &o.agent_token)
            && secret(&self.key, &o.key)
    }
}

impl Eq for ConsoleSetup {}

impl Default for ConsoleSetup {
    fn default() -> Self {
        ConsoleSetup {
            config: ConsoleConfig::default(),
            origins: Vec::new(),
            // The Agent's registered port (`deploy/zlh.toml` `[agent] port`).
            agent_port: 18888,
            agent_token: None,
            key: None,
        }
    }
}

/// Metric names.
pub mod metric {
    pub const ACTIVE: &str = "zlh_console_sessions_active";
    pub const SESSIONS: &str = "zlh_console_sessions_total";
    pub const FRAMES: &str = "zlh_console_frames_total";
    pub const UPSTREAM_ERRORS: &str = "zlh_console_upstream_errors_total";
}

/// Events recorded per session.
pub mod event {
    pub const OPENED: &str = "ConsoleOpened";
    pub const CLOSED: &str = "ConsoleClosed";
}

/// The console's process-wide state: the ticket keys, used tickets and open sessions.
pub(crate) struct Console {
    pub(crate) setup: ConsoleSetup,
    pub(crate) tickets: ticket::Tickets,
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    per_server: HashMap<model::ServerId, usize>,
    per_customer: HashMap<String, usize>,
}

impl Console {
    pub(crate) fn new(setup: ConsoleSetup) -> Self {
        Console {
            tickets: ticket::Tickets::new(setup.key.as_ref()),
            setup,
            sessions: Mutex::new(Sessions::default()),
        }
    }

    /// Take a session slot; `None` when the server or customer is at its limit.
    pub(crate) fn admit(
        ctx: &Arc<crate::state::Ctx>,
        server: model::ServerId,
        customer: &str,
        exempt: bool,
    ) -> Option<Slot> {
        let console = &ctx.console;
        let cfg = &console.setup.config;
        let mut s = console.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let on_server = s.per_server.get(&server).copied().unwrap_or(0);
        let of_customer = s.per_customer.get(customer).copied().unwrap_or(0);
        if !exempt
            && (on_server >= cfg.sessions_per_server || of_customer >= cfg.sessions_per_customer)
        {
            return None;
        }
        *s.per_server.entry(server).or_default() += 1;
        *s.per_customer.entry(customer.to_string()).or_default() += 1;
        metrics::gauge!(metric::ACTIVE).increment(1.0);
        Some(Slot {
            ctx: ctx.clone(),
            server,
            customer: customer.to_string(),
        })
    }
}

/// A taken session slot, given back when dropped (however the session ends).
pub(crate) struct Slot {
    ctx: Arc<crate::state::Ctx>,
    server: model::ServerId,
    customer: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self
            .ctx
            .console
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dec = |n: Option<&mut usize>| {
            n.map(|n| {
                *n -= 1;
                *n == 0
            })
            .unwrap_or(false)
        };
        if dec(s.per_server.get_mut(&self.server)) {
            s.per_server.remove(&self.server);
        }
        if dec(s.per_customer.get_mut(&self.customer)) {
            s.per_customer.remove(&self.customer);
        }
        metrics::gauge!(metric::ACTIVE).decrement(1.0);
    }
}
