//! The API's bounds on client connections (regression tests of the idle-connection flood):
//! a connection that sends no request headers is closed after the header-read timeout, an
//! idle kept-alive one after the keep-alive timeout, connections beyond the cap are closed
//! at once while those held keep working, and a watch stream is not cut for being "idle".
//! Each test sets the timeout it checks short and the other long, so only the one under test
//! can close the connection.

use api::wire::{ListFilter, WatchEvent};
use api::{ApiClient, ApiConfig, AppState};
use futures::StreamExt;
use model::customer::{new_token_secret, token_hash};
use model::store::{AnyStore, Idempotency, NewServer, Store};
use model::{Catalog, Role, ServerSpec, SystemClock, Variant};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(600);
/// Only keeps a broken test from hanging; no assertion is about time.
const SAFETY: Duration = Duration::from_secs(30);
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

struct Api {
    addr: std::net::SocketAddr,
    store: AnyStore,
    secret: String,
    dir: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(config: ApiConfig) -> Api {
    let dir = std::env::temp_dir().join(format!("zlh-conn-test-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/t.db", dir.display());
    let store = AnyStore::connect(&url, Arc::new(SystemClock))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let secret = new_token_secret();
    store
        .create_token("op", &token_hash(&secret), Role::Operator, None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState {
        store: store.clone(),
        catalog: Arc::new(Catalog::example()),
        config,
        metrics: None,
        sd: api::SdConfig::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Api {
        addr,
        store,
        secret,
        dir,
        _stop: stop,
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn limits(max_connections: usize, header_read: Duration, keep_alive: Duration) -> ApiConfig {
    ApiConfig {
        max_connections,
        header_read_timeout: header_read,
        keep_alive_timeout: keep_alive,
        ..ApiConfig::default()
    }
}

/// Read until the server closes the connection (EOF or reset); the bytes read before.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(SAFETY, s.read(&mut buf)).await {
            Err(_) => panic!("the server never closed the connection"),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One `GET /healthz` on an open connection; its complete response.
async fn healthz_on(s: &mut TcpStream) -> String {
    s.write_all(HEALTHZ).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(SAFETY, s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("readable");
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .expect("content-length");
            if body.len() >= len {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_no_request_headers_is_closed_after_the_header_read_timeout() {
    let api = start(limits(64, SHORT, LONG)).await;
    let mut silent = TcpStream::connect(api.addr).await.unwrap();
    assert!(
        read_until_closed(&mut silent).await.is_empty(),
        "closed without an answer"
    );
    // A slowloris: part of a request's headers, then nothing.
    let mut slow = TcpStream::connect(api.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    assert!(read_until_closed(&mut slow).await.is_empty());
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let api = start(limits(64, LONG, SHORT)).await;
    let mut s = TcpStream::connect(api.addr).await.unwrap();
    let answer = healthz_on(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        read_until_closed(&mut s).await.is_empty(),
        "closed while idle, with nothing more sent"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_those_held_keep_working() {
    const CAP: usize = 4;
    let api = start(limits(CAP, LONG, LONG)).await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut s = TcpStream::connect(api.addr).await.unwrap();
        assert!(healthz_on(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // Accepted (the kernel's backlog), then closed by the server without an answer.
    let mut extra = TcpStream::connect(api.addr).await.unwrap();
    let _ = extra.write_all(HEALTHZ).await;
    assert!(
        read_until_closed(&mut extra).await.is_empty(),
        "beyond the cap: closed unanswered"
    );
    for s in &mut held {
        assert!(
            healthz_on(s).await.starts_with("HTTP/1.1 200"),
            "held connections keep working"
        );
    }
    // One held connection goes: its slot is free again for a new client.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + SAFETY;
    loop {
        let mut s = TcpStream::connect(api.addr).await.unwrap();
        if s.write_all(HEALTHZ).await.is_ok() {
            let answer = read_first(&mut s).await;
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a freed slot is never given to a new client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first bytes the server sends back (empty if it closes first).
async fn read_first(s: &mut TcpStream) -> String {
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(SAFETY, s.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).to_string(),
        Ok(Err(_)) => String::new(),
        Err(_) => panic!("no answer and not closed"),
    }
}

async fn next<S>(w: &mut S) -> WatchEvent
where
    S: futures::Stream<Item = Result<WatchEvent, api::ClientError>> + Unpin,
{
    tokio::time::timeout(SAFETY, w.next())
        .await
        .expect("an event")
        .expect("the stream is open")
        .expect("a good event")
}

#[tokio::test]
async fn a_watch_stream_is_not_cut_by_the_keep_alive_timeout() {
    let api = start(limits(64, LONG, SHORT)).await;
    let client = ApiClient::new(
        &format!("http://{}", api.addr),
        Some(SecretString::from(api.secret.clone())),
    )
    .unwrap();
    let mut watch = Box::pin(client.watch(&ListFilter::default(), None));
    let first = next(&mut watch).await;
    assert!(matches!(first, WatchEvent::Bookmark { .. }), "{first:?}");
    // An idle connection opened after the watch started is closed by the keep-alive
    // timeout: by then the watch has been "idle" at least as long.
    let mut idle = TcpStream::connect(api.addr).await.unwrap();
    healthz_on(&mut idle).await;
    read_until_closed(&mut idle).await;
    let id = api
        .store
        .create_server(NewServer {
            customer_id: "u1".into(),
            spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
            idempotency: Some(Idempotency {
                key: "k".into(),
                request_hash: "h".into(),
                retention: model::store::DEFAULT_IDEMPOTENCY_RETENTION,
            }),
            enforce_quota: false,
        })
        .await
        .unwrap()
        .server
        .id;
    match next(&mut watch).await {
        WatchEvent::Upsert { server, .. } => assert_eq!(server.id, id),
        other => panic!("expected the new server on the open stream: {other:?}"),
    }
}
