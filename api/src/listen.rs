//! Accepting connections within bounds: at most `max_connections` open (more are closed as
//! soon as they are accepted), a header-read timeout and an idle keep-alive timeout. Without
//! them, idle connections pile up until the process runs out of file descriptors and answers
//! nothing. hyper's own header timer also runs while a kept-alive connection waits for its
//! next request, so both timeouts are kept here, from what the connection reads and serves.

use crate::config::ApiConfig;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Connections closed at accept because `max_connections` were open.
pub const CONNECTIONS_REFUSED: &str = "zlh_api_connections_refused_total";
/// Open client connections.
pub const CONNECTIONS_OPEN: &str = "zlh_api_connections_open";
/// Logged (at most every `REFUSAL_WARN_EVERY`) while connections are refused.
pub const LIMIT_REACHED: &str = "connection limit reached; closing new connections at once";

/// Pause after an accept error such as EMFILE, so a full file table does not spin the loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning per this while connections are being refused.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);

/// The bounds on client connections (from [`ApiConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
}

impl From<&ApiConfig> for Limits {
    fn from(c: &ApiConfig) -> Self {
        Limits {
            max_connections: c.max_connections,
            header_read_timeout: c.header_read_timeout,
            keep_alive_timeout: c.keep_alive_timeout,
        }
    }
}

/// Serve `app` on `listener` within `limits` until `shutdown` completes; then stop
/// accepting, close every connection once its request in progress is answered, and return
/// when all are closed. Each request carries `ConnectInfo<SocketAddr>` (the peer).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tasks = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!(CONNECTIONS_REFUSED).increment(1);
            if warned.is_none_or(|w| w.elapsed() >= REFUSAL_WARN_EVERY) {
                warned = Some(Instant::now());
                tracing::warn!(max_connections = limits.max_connections, "{LIMIT_REACHED}");
            }
            // Dropping the stream closes it: the client sees the connection end.
            continue;
        };
        tasks.spawn(connection(
            stream,
            peer,
            app.clone(),
            limits,
            closing.clone(),
            permit,
        ));
    }
    drop(listener);
    closing.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Errors that concern one connection only (the peer gave up while it waited in the
/// backlog); anything else (EMFILE, ENFILE, ENOBUFS) concerns the process.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What a connection's deadline does when it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Headers did not arrive in time: close at once.
    Cut,
    /// Idle between requests: close once hyper is between requests (it is).
    Idle,
}

struct State {
    /// Requests handed to the app whose response head is not sent yet.
    in_flight: usize,
    /// Requests answered on this connection.
    served: u64,
    /// Since when nothing has been in flight.
    quiet_since: Instant,
    /// When the first byte of the next request arrived, if it has.
    head_since: Option<Instant>,
}

/// A connection's activity, updated by its reads and its requests.
struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new(State {
                in_flight: 0,
                served: 0,
                quiet_since: Instant::now(),
                head_since: None,
            }),
            changed: Notify::new(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
    }

    fn on_read(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    fn started(self: &Arc<Self>) -> InFlight {
        self.update(|s| {
            s.in_flight += 1;
            s.head_since = None;
        });
        InFlight(self.clone())
    }

    /// The next deadline: none while a request is in flight (the app's request timeout
    /// bounds it; a watch stream may rightly last), the header-read timeout from the first
    /// byte of a request (or from accepting, before the first request), else the keep-alive
    /// timeout from the last answer.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.in_flight > 0 {
            None
        } else if let Some(t) = s.head_since {
            Some((t + limits.header_read_timeout, Expiry::Cut))
        } else if s.served == 0 {
            Some((s.quiet_since + limits.header_read_timeout, Expiry::Cut))
        } else {
            Some((s.quiet_since + limits.keep_alive_timeout, Expiry::Idle))
        }
    }
}

/// One request in flight; dropped when its response head is ready (or it is abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.in_flight -= 1;
            s.served += 1;
            if s.in_flight == 0 {
                s.quiet_since = Instant::now();
            }
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    closing: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = activity.started();
            let app = app.clone();
            async move {
                let res = app.oneshot(req).await;
                drop(in_flight);
                res
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Both timeouts are ours (see the module doc).
    builder.header_read_timeout(None);
    // Upgrades: the console's WebSocket (`crate::console`) takes the socket over.
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut closing_down = false;
    loop {
        let deadline = if closing_down {
            None
        } else {
            activity.deadline(&limits)
        };
        let changed = activity.changed.notified();
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                break;
            }
            _ = closing.cancelled(), if !closing_down => {
                conn.as_mut().graceful_shutdown();
                closing_down = true;
            }
            _ = changed => {}
            _ = sleep_until(deadline), if deadline.is_some() => match deadline {
                Some((_, Expiry::Cut)) => {
                    tracing::debug!(%peer, "no request headers in time; closing");
                    break;
                }
                _ => {
                    conn.as_mut().graceful_shutdown();
                    closing_down = true;
                }
            },
        }
    }
    metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
}

async fn sleep_until(deadline: Option<(Instant, Expiry)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The socket, telling `Activity` when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            me.activity.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
