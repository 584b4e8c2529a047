//! `zctl get servers -w` behind the change feed's retention horizon, on SQLite and
//! PostgreSQL: zctl follows the API through a loopback proxy the test stalls; meanwhile
//! servers change and the feed is pruned past zctl's position. When the proxy lets go,
//! zctl's resume is answered 410 Gone and, by itself, it says so, lists again (the new
//! server arrives as a listed item, not as a change it could have resumed to) and follows
//! the changes after that listing.

mod ops;

use model::Role;
use model::ServerId;
use model::store::{Prune, Store};
use ops::{Api, HANG, server, sqlite_store, store_at, token};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader, Lines};
use zlh_tests::pg::fresh_database;
use zlh_tests::tcp_proxy::TcpProxy;

/// What zctl prints on stderr when the API answers 410 to its resume (`wait.rs`).
const RELISTING: &str = "watch position too old";

/// One `-o json` document of the watch: `{type, seq, server | id}`.
struct Doc {
    kind: String,
    /// `None`: an item of a listing (no feed position).
    seq: Option<i64>,
    id: ServerId,
}

fn doc(line: &str) -> Doc {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let id = match v["type"].as_str() {
        Some("upsert") => &v["server"]["id"],
        _ => &v["id"],
    };
    Doc {
        kind: v["type"].as_str().unwrap_or_default().to_string(),
        seq: v["seq"].as_i64(),
        id: serde_json::from_value(id.clone()).unwrap_or_else(|e| panic!("{e}: {line}")),
    }
}

/// The next document for which `want` holds (others are skipped), within [`HANG`].
async fn until<R: AsyncRead + Unpin>(
    out: &mut Lines<BufReader<R>>,
    what: &str,
    want: impl Fn(&Doc) -> bool,
) -> Doc {
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let line = tokio::time::timeout_at(deadline, out.next_line())
            .await
            .unwrap_or_else(|_| panic!("zctl printed no {what}"))
            .unwrap()
            .unwrap_or_else(|| panic!("zctl ended before {what}"));
        let d = doc(&line);
        if want(&d) {
            return d;
        }
    }
}

async fn watch_relists_after_410(postgres: bool) {
    let db = match postgres {
        true => Some(fresh_database("zlh_zctl_watch").await),
        false => None,
    };
    let (store, dir) = match &db {
        Some(db) => (store_at(&db.url).await, None),
        None => {
            let (s, d) = sqlite_store().await;
            (s, Some(d))
        }
    };
    let first = server(&store, "u1").await;
    let api = Api::start(store.clone()).await;
    let proxy = TcpProxy::start(
        api.base
            .trim_start_matches("http://")
            .parse()
            .expect("the API's address"),
    )
    .await;
    let op = token(&store, "oncall", Role::Operator, None).await;
    let home = std::env::temp_dir().join(format!("zlh-zctl-{}", ServerId::new()));
    std::fs::create_dir_all(&home).unwrap();
    let mut child = tokio::process::Command::new(zlh_tests::process::zctl_path())
        .args(["get", "servers", "-w", "-o", "json"])
        .env_clear()
        .env("HOME", &home)
        .env("ZLH_API_URL", format!("http://{}", proxy.addr()))
        .env("ZLH_TOKEN", &op)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("zctl runs");
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let collect = {
        let stderr = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = err.next_line().await {
                let mut s = stderr.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        })
    };

    // The listing, then a change followed live: zctl's resume position is that change.
    until(&mut out, "the first server listed", |d| {
        d.id == first && d.seq.is_none()
    })
    .await;
    let changed = store.request_reconcile(first, false).await.unwrap();
    let followed = until(&mut out, "the first server's change", |d| {
        d.id == first && d.seq.is_some()
    })
    .await;
    assert_eq!(followed.seq, Some(changed.resource_version));

    // zctl hears nothing while a second server is created and the feed pruned past its
    // position (keep nothing old).
    proxy.stall();
    let second = server(&store, "u2").await;
    let mut pruned = 0;
    loop {
        let n = store
            .prune(
                Prune::ChangeFeed {
                    keep_for: Duration::ZERO,
                },
                100,
            )
            .await
            .unwrap();
        pruned += n;
        if n < 100 {
            break;
        }
    }
    assert!(pruned >= 2, "the feed up to the second server is pruned");
    match store.changes_since(changed.resource_version, 1).await {
        Err(model::store::StoreError::FeedGone { .. }) => {}
        other => panic!("zctl's position is behind the horizon, got {other:?}"),
    }

    // Let go: the stream breaks, the resume is answered 410, zctl lists again by itself.
    proxy.restore();
    // (Were the stall a moment late, the second server's change reached zctl first: that
    // is skipped, its position is behind the horizon all the same.)
    let listed = until(&mut out, "the second server in a new listing", |d| {
        d.id == second && d.seq.is_none()
    })
    .await;
    assert_eq!(listed.kind, "upsert", "a listed item is an upsert");
    // ... and follows what changes after it.
    let later = store.request_reconcile(second, false).await.unwrap();
    let next = until(&mut out, "the change after the new listing", |d| {
        d.seq.is_some()
    })
    .await;
    assert_eq!(
        (next.id, next.seq),
        (second, Some(later.resource_version)),
        "the first change followed after the new listing"
    );
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "zctl keeps watching through a 410"
    );
    child.kill().await.unwrap();
    let _ = tokio::time::timeout(HANG, collect).await;
    let stderr = stderr.lock().unwrap().clone();
    assert!(
        stderr.contains(RELISTING) && stderr.contains("re-list"),
        "zctl says why it lists again: {stderr}"
    );

    drop(api);
    let _ = std::fs::remove_dir_all(&home);
    if let Some(d) = dir {
        let _ = std::fs::remove_dir_all(d);
    }
    if let Some(db) = db {
        drop(store);
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_zctl_get_w_relists_and_resumes_after_410() {
    watch_relists_after_410(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_zctl_get_w_relists_and_resumes_after_410() {
    watch_relists_after_410(true).await;
}
