//! SQLite on a disk that fills up and then has room again: writes answer 503 problem+json
//! (never the driver's text), `/readyz` is unready, and both recover by themselves once the disk does, without a restart. This is the regression test
//! of the pool wedged by a failed COMMIT: SQLite rolls a failed COMMIT back itself, sqlx's
//! ROLLBACK then fails, and the connection went back to the pool still counted as inside a
//! transaction, so every later `BEGIN` failed ("begin_with at non-zero transaction depth")
//! while `/readyz` (a plain write) said 200.
//!
//! The disk is "full" through `RLIMIT_FSIZE = 0`: every write to a file fails (EFBIG), so
//! SQLite's COMMIT fails writing the WAL, as on a full or read-only file system. The limit
//! is per process, hence this test's own binary with a single test.

use api::AppState;
use model::customer::{new_token_secret, token_hash};
use model::store::{AnyStore, ServerFilter, Store, StoreOptions, list_all};
use model::{Catalog, Role, SystemClock};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Set the soft file-size limit (`None`: back to the hard limit). SIGXFSZ is ignored so an
/// over-limit write fails with EFBIG instead of killing the process.
fn file_size_limit(bytes: Option<u64>) {
    // SAFETY: plain libc calls on a zeroed struct; signal() only changes a disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes.unwrap_or(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

fn create_body(customer: &str) -> Value {
    json!({
        "customerId": customer,
        "spec": {"kind": "game", "game": "minecraft", "variant": "paper", "version": "1.21.7"}
    })
}

/// Status and parsed body; every non-2xx must be problem+json.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.expect("the API answers (no hang)");
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert!(
            ct.starts_with(api::problem::PROBLEM_JSON),
            "{status} is problem+json, not {ct}"
        );
    }
    (status, body)
}

/// Nothing a client sees names the driver, the file or the error behind it.
fn assert_clean(problem: &Value) {
    let text = problem.to_string().to_lowercase();
    for leak in [
        "sqlite",
        "disk",
        "i/o",
        "commit",
        "transaction",
        "zlh.db",
        "/tmp",
    ] {
        assert!(!text.contains(leak), "leaks {leak:?}: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_readiness_recover_by_themselves_after_the_disk_was_full() {
    let dir = std::env::temp_dir().join(format!("zlh-disk-full-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/zlh.db", dir.display());
    // One connection: a connection left wedged would then fail every later write for sure.
    let opts = StoreOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let store = AnyStore::connect_with(&url, Arc::new(SystemClock), &opts)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let secret = new_token_secret();
    store
        .create_token("op", &token_hash(&secret), Role::Operator, None)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState {
        store: store.clone(),
        catalog: Arc::new(Catalog::example()),
        config: api::ApiConfig::default(),
        metrics: None,
        sd: api::SdConfig::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let post = |customer: &str| {
        http.post(format!("{base}/api/servers"))
            .bearer_auth(&secret)
            .json(&create_body(customer))
    };
    let readyz = || http.get(format!("{base}/readyz"));

    assert_eq!(send(post("c0")).await.0, 202, "a write with room on disk");
    assert_eq!(send(readyz()).await.0, 200);

    file_size_limit(Some(0));
    for customer in ["c1", "c2", "c3"] {
        let (status, problem) = send(post(customer)).await;
        assert_eq!(status, 503, "a write on a full disk: {problem}");
        assert_eq!(
            problem["type"],
            api::problem::kind::UNAVAILABLE.uri,
            "{problem}"
        );
        assert_clean(&problem);
    }
    let (status, problem) = send(readyz()).await;
    assert_eq!(
        status, 503,
        "a store that cannot write is not ready: {problem}"
    );
    assert_clean(&problem);

    file_size_limit(None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while send(readyz()).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never turned ready again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = send(post("c4")).await;
    assert_eq!(
        status, 202,
        "writes recover with the disk, no restart: {body}"
    );

    let servers = list_all(&store, &ServerFilter::default()).await.unwrap();
    let mut customers: Vec<_> = servers.iter().map(|s| s.customer_id.clone()).collect();
    customers.sort();
    assert_eq!(
        customers,
        ["c0", "c4"],
        "the refused writes left nothing behind"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
