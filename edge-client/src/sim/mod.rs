//! Loopback simulators of the edge backends (feature `sim`). Every server binds only to
//! 127.0.0.0/8; port 0 picks a free port.
//!
//! Common to all HTTP sims: a request log (`requests()`: method + path + query, to prove no
//! secret is ever sent in a URL), `faults()` (see `Faults`; also over HTTP at
//! `/_sim/faults`, in the vocabulary of `model::faults`), and `set_outage(bool)`, which closes
//! the listening socket (connection refused) and reopens it on the same address.

mod agent;
mod cloudflare;
pub mod faults;
mod technitium;
mod velocity;

pub use agent::{
    AgentPower, AgentSim, AgentSimConfig, BACKLOG, ConsoleFaults, DEFAULT_CRASH_MESSAGE,
    POWER_BEFORE_INSTALL, console_lines, console_refusal,
};
pub use cloudflare::{CfSimRecord, CloudflareSim, CloudflareSimConfig};
pub use faults::Faults;
pub use technitium::{SimRdata, SimRecord, TechnitiumSim, TechnitiumSimConfig};
pub use velocity::{VelocitySim, VelocitySimConfig};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use model::faults::{FAULTS_PATH, FaultAction, FaultSpec, Outage};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// One request as a simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query exactly as received.
    pub uri: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RequestLog(Arc<Mutex<Vec<LoggedRequest>>>);

impl RequestLog {
    pub(crate) fn push(&self, r: LoggedRequest) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }
    pub(crate) fn all(&self) -> Vec<LoggedRequest> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// An injected error in the sim's own format: status and message (empty: the sim's usual
/// text for that status).
pub(crate) type Render = Arc<dyn Fn(u16, &str) -> Response + Send + Sync>;

/// What the shared middleware needs: log, faults, liveness and the sim's error format.
#[derive(Clone)]
pub(crate) struct Core {
    pub faults: Faults,
    pub log: RequestLog,
    pub alive: Arc<AtomicBool>,
    pub render: Render,
}

impl Core {
    pub(crate) fn new(render: Render) -> Self {
        Core {
            faults: Faults::default(),
            log: RequestLog::default(),
            alive: Arc::new(AtomicBool::new(true)),
            render,
        }
    }
}

/// The fault control (`POST`/`DELETE /_sim/faults`), added outside the middleware: it is not
/// logged, and it answers whatever the faults and the outage say.
pub(crate) fn with_fault_control(router: Router, core: &Core) -> Router {
    let faults = core.faults.clone();
    router.route(
        FAULTS_PATH,
        axum::routing::any(move |method: Method, body: Bytes| async move {
            control(&faults, &method, &body)
        }),
    )
}

/// Messages of the fault control's answers.
pub(crate) mod control_msg {
    pub const BAD_SPEC: &str = "bad fault spec";
    pub const USE_POST_OR_DELETE: &str = "use POST or DELETE";
}

fn control(faults: &Faults, method: &Method, body: &[u8]) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m).into_response();
    match *method {
        Method::POST => match serde_json::from_slice::<FaultSpec>(body) {
            Ok(spec) => match faults.apply(spec) {
                Ok(()) => axum::Json(serde_json::json!({})).into_response(),
                Err(m) => bad(m.to_string()),
            },
            Err(e) => bad(format!("{}: {e}", control_msg::BAD_SPEC)),
        },
        Method::DELETE => {
            faults.clear();
            axum::Json(serde_json::json!({})).into_response()
        }
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            control_msg::USE_POST_OR_DELETE,
        )
            .into_response(),
    }
}

/// A response whose body fails: hyper aborts the connection, the client sees a reset.
fn reset() -> Response {
    let s = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated connection reset",
        ))
    });
    Body::from_stream(s).into_response()
}

/// Log, then refuse if stopped, then the outage, latency and injected failures.
pub(crate) async fn middleware(State(core): State<Core>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    core.log.push(LoggedRequest {
        method: method.clone(),
        uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| path.clone()),
    });
    if !core.alive.load(Ordering::SeqCst) {
        // A keep-alive connection accepted before the stop: answer 503 and close it.
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, "stopped").into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    match core.faults.outage() {
        Some(Outage::Status { code, message }) => return (core.render)(code, &message),
        Some(Outage::Refuse) => return reset(),
        None => {}
    }
    let fired = core.faults.check(&method, &path);
    let latency = core.faults.latency() + Duration::from_millis(fired.latency_ms);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fired.action {
        Some(FaultAction::Error { code, message }) => (core.render)(code, &message),
        Some(FaultAction::Hang) => std::future::pending().await,
        Some(FaultAction::Reset) => reset(),
        Some(FaultAction::LoseResponse) => {
            let _ = next.run(req).await;
            reset()
        }
        Some(FaultAction::Latency { .. }) | None => next.run(req).await,
    }
}

/// Plain-text error response (what a reverse proxy or a crashing server gives).
pub(crate) fn plain_error(status: u16) -> Response {
    plain_message(status, "")
}

/// Plain-text error response with this text (empty: the status's reason phrase).
pub(crate) fn plain_message(status: u16, message: &str) -> Response {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = match message {
        "" => s.canonical_reason().unwrap_or("error"),
        m => m,
    };
    (s, text.to_string()).into_response()
}

/// Serves a connection that is not HTTP (see `SimServer::start_shared`).
pub(crate) type OtherProtocol = Arc<dyn Fn(tokio::net::TcpStream) + Send + Sync>;

/// A listener that hands HTTP connections to axum and every other connection to `other`,
/// told apart by the first bytes: an HTTP/1 request starts with an upper-case method and a
/// space, a Minecraft handshake with a length varint and packet id 0.
struct SniffingListener {
    inner: tokio::net::TcpListener,
    other: OtherProtocol,
}

impl axum::serve::Listener for SniffingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let mut head = [0u8; 4];
            // Both clients speak first; one that says nothing for a second is served as HTTP
            // (hyper then times it out or closes it).
            let n = tokio::time::timeout(Duration::from_secs(1), stream.peek(&mut head))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let http = n < 2
                || head[..n]
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || *b == b' ');
            if http {
                return (stream, addr);
            }
            (self.other)(stream);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An axum server that can be stopped (connection refused) and restarted on the same address.
pub(crate) struct SimServer {
    addr: SocketAddr,
    router: Router,
    alive: Arc<AtomicBool>,
    other: Option<OtherProtocol>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SimServer {
    pub(crate) async fn start(
        addr: SocketAddr,
        router: Router,
        alive: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        Self::start_shared(addr, router, alive, None).await
    }

    /// Like `start`, and with `other` set, connections that are not HTTP go to `other`: two
    /// protocols on one listening socket.
    pub(crate) async fn start_shared(
        addr: SocketAddr,
        router: Router,
        alive: Arc<AtomicBool>,
        other: Option<OtherProtocol>,
    ) -> std::io::Result<Self> {
        ensure_loopback(addr)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let s = SimServer {
            addr,
            router,
            alive,
            other,
            task: Mutex::new(None),
        };
        s.spawn(listener);
        Ok(s)
    }

    fn spawn(&self, listener: tokio::net::TcpListener) {
        let router = self.router.clone();
        let other = self.other.clone();
        self.alive.store(true, Ordering::SeqCst);
        let t = tokio::spawn(async move {
            let _ = match other {
                Some(other) => {
                    axum::serve(
                        SniffingListener {
                            inner: listener,
                            other,
                        },
                        router,
                    )
                    .await
                }
                None => axum::serve(listener, router).await,
            };
        });
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Close the listener (new connections are refused); open connections get 503 + close.
    pub(crate) async fn stop(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let t = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            t.abort();
            let _ = t.await;
        }
    }

    /// Reopen on the same address (retrying briefly while the old socket is released).
    pub(crate) async fn resume(&self) -> std::io::Result<()> {
        if self
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let mut last = None;
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.spawn(l);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("cannot rebind")))
    }

    pub(crate) async fn set_outage(&self, on: bool) -> std::io::Result<()> {
        if on {
            self.stop().await;
            Ok(())
        } else {
            self.resume().await
        }
    }
}

impl SimServer {
    /// Synchronous stop (for `Drop` of owners that form reference cycles with the router).
    pub(crate) fn abort(&self) {
        self.alive.store(false, Ordering::SeqCst);
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.abort();
    }
}

pub(crate) fn ensure_loopback(addr: SocketAddr) -> std::io::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("simulators bind only to loopback, not {addr}"),
        ))
    }
}

/// Random 64-hex-digit token (like Technitium's API tokens).
pub(crate) fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Parse `application/x-www-form-urlencoded` (`+` is space, `%XX` escapes).
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing() {
        assert_eq!(
            parse_form("a=1&b=x+y&c=%2Fz&d"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "/z".into()),
                ("d".into(), "".into())
            ]
        );
    }
}
