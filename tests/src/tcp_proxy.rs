//! A loopback TCP proxy the test controls: point a store at it instead of PostgreSQL, then
//! `cut` it (every open connection is closed and new ones are accepted and closed at once,
//! as while a database restarts), or `stall` it (connections stay open and nothing gets
//! through, as in a network partition), and `restore` it. Failing the proxy, not the shared
//! cluster, keeps other tests' databases up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const OPEN: u8 = 0;
const CUT: u8 = 1;
const STALLED: u8 = 2;

pub struct TcpProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Bumped by every change of mode; forwarding connections look at the mode again.
    generation: watch::Sender<u64>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listen on `127.0.0.1:0` and forward every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(AtomicU8::new(OPEN));
        let refused = Arc::new(AtomicU64::new(0));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let (mode, refused, generation) = (mode.clone(), refused.clone(), generation.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let changes = generation.subscribe();
                    match mode.load(Ordering::SeqCst) {
                        OPEN => {
                            tokio::spawn(forward(client, upstream, changes, mode.clone()));
                        }
                        CUT => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            refused.fetch_add(1, Ordering::SeqCst);
                            tokio::spawn(hold(client, changes));
                        }
                    }
                }
            })
        };
        TcpProxy {
            addr,
            mode,
            generation,
            refused,
            task,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Close every open connection and refuse new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.set(CUT);
    }

    /// Let nothing through, closing nothing: open connections and new ones stay silent
    /// until [`restore`](Self::restore), which closes them (the partition healed, their
    /// sessions are gone).
    pub fn stall(&self) {
        self.set(STALLED);
    }

    pub fn restore(&self) {
        self.set(OPEN);
    }

    /// Connections refused (or held silent) while cut or stalled: proof that a client keeps
    /// trying.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// Forward until the mode changes; a stalled client is then held open, silent.
async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut changes: watch::Receiver<u64>,
    mode: Arc<AtomicU8>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        _ = changes.changed() => {}
    }
    drop(server);
    if mode.load(Ordering::SeqCst) == STALLED {
        hold(client, changes).await;
    }
}

/// Keep `client` open, reading nothing, until the mode changes again.
async fn hold(client: TcpStream, mut changes: watch::Receiver<u64>) {
    let _ = changes.changed().await;
    drop(client);
}

/// `url` with its host and port replaced by `addr` (a PostgreSQL URL through the proxy).
pub fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let userinfo = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{userinfo}{addr}{path}")
}

/// The host and port of a URL, resolved (loopback in the tests).
pub fn upstream_of(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    hostport
        .to_socket_addrs()
        .expect("resolvable database host")
        .next()
        .expect("an address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_pointed_at_the_proxy() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            via(
                "postgres://postgres@127.0.0.1:5432/zlh_x?sslmode=disable",
                addr
            ),
            "postgres://postgres@127.0.0.1:4000/zlh_x?sslmode=disable"
        );
        assert_eq!(
            upstream_of("postgres://u:p@127.0.0.1:5433/db"),
            "127.0.0.1:5433".parse().unwrap()
        );
    }
}
