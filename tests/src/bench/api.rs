//! `api`: POST and GET (one page of 100, one server) latency and throughput at a fixed offered
//! load (open loop: requests are sent on schedule whatever the answers; latency is measured
//! from the scheduled time, so a stall is not hidden), with N servers in the store, on SQLite
//! and on PostgreSQL, through `api::serve` on loopback.

use super::percentile;
use super::report::{Table, ms};
use api::{ApiConfig, AppState};
use model::customer::{new_token_secret, token_hash};
use model::store::{AnyStore, Idempotency, NewServer, Store};
use model::{
    Catalog, Clock, ConditionStatus, ConditionType, Role, ServerId, ServerSpec, SystemClock,
    Variant,
};
use sqlx::Connection;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Args {
    pub n: usize,
    pub rate: f64,
    /// Seconds of offered load per request kind.
    pub duration: f64,
    pub backends: Vec<String>,
    pub pg_admin_url: String,
}

enum Db {
    Sqlite(std::path::PathBuf),
    Pg { admin: String, db: String },
}

async fn open(kind: &str, admin: &str) -> anyhow::Result<(AnyStore, Db)> {
    let id = ServerId::new().0.simple().to_string();
    let (url, db) = match kind {
        "sqlite" => {
            let dir = std::env::temp_dir().join(format!("zlh-bench-api-{id}"));
            std::fs::create_dir_all(&dir)?;
            (
                format!("sqlite://{}/zlh.db", dir.display()),
                Db::Sqlite(dir),
            )
        }
        _ => {
            let name = format!("zlh_bench_{id}");
            let mut c = sqlx::PgConnection::connect(admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await?;
            let base = admin.trim_end_matches('/');
            let base = match base.rsplit_once('/') {
                // `postgres://u@h:p/dbname` → drop the database name.
                Some((b, last)) if !last.contains('@') && !b.ends_with('/') => b,
                _ => base,
            };
            (
                format!("{base}/{name}"),
                Db::Pg {
                    admin: admin.into(),
                    db: name,
                },
            )
        }
    };
    let store = AnyStore::connect(&url, Arc::new(SystemClock)).await?;
    store.migrate().await?;
    Ok((store, db))
}

async fn cleanup(db: Db) {
    match db {
        Db::Sqlite(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Db::Pg { admin, db } => {
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
            }
        }
    }
}

fn spec(i: usize) -> ServerSpec {
    ServerSpec::minecraft(Variant::ALL[i % Variant::ALL.len()], super::MC_VERSION)
}

/// N servers with a Ready status (conditions, addresses), as a converged fleet looks.
async fn seed(store: &AnyStore, n: usize) -> anyhow::Result<Vec<ServerId>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return Ok::<_, anyhow::Error>(ids);
                }
                let c = store
                    .create_server(NewServer {
                        customer_id: format!("cust-{}", i % 1000),
                        spec: spec(i),
                        idempotency: Some(Idempotency {
                            key: ServerId::new().to_string(),
                            request_hash: "seed".into(),
                            retention: model::store::DEFAULT_IDEMPOTENCY_RETENTION,
                        }),
                        enforce_quota: false,
                    })
                    .await?;
                let s = c.server;
                let now = SystemClock.now();
                let vmid = 5000 + i as u32;
                let mut st = s.status.clone();
                st.observed_generation = s.generation;
                st.vmid = Some(vmid);
                st.node = Some("pve".into());
                let host = format!("mc-paper-{vmid}");
                st.fqdn = Some(format!("{host}.zlh.test"));
                st.hostname = Some(host);
                st.ip = Some(format!("10.0.{}.{}", vmid / 256 % 256, vmid % 256));
                for t in ConditionType::CHAIN
                    .into_iter()
                    .chain([ConditionType::Ready])
                {
                    st.set_condition(t, ConditionStatus::True, "Ready", "", s.generation, now);
                }
                st.set_condition(
                    ConditionType::Degraded,
                    ConditionStatus::False,
                    "Healthy",
                    "",
                    s.generation,
                    now,
                );
                st.ready_since = Some(now);
                st.last_reconcile_at = Some(now);
                store
                    .write_status(s.id, &st, s.resource_version, None)
                    .await?;
                ids.push(s.id);
            }
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Post,
    Page,
    One,
}

struct LoadResult {
    lat: Vec<f64>,
    ok: usize,
    errors: usize,
    sent: usize,
    elapsed: f64,
}

async fn load(
    kind: Kind,
    base: &str,
    token: &str,
    ids: Arc<Vec<ServerId>>,
    rate: f64,
    duration: f64,
) -> LoadResult {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()
        .expect("http client");
    let count = (rate * duration).round().max(1.0) as usize;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(count);
    let run = ServerId::new().0.simple().to_string();
    for k in 0..count {
        let at = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(at).await;
        let http = http.clone();
        let url_base = base.to_string();
        let token = token.to_string();
        let ids = ids.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let pick = ids[rand::random_range(0..ids.len())];
            let req = match kind {
                Kind::Post => http
                    .post(format!("{url_base}/api/servers"))
                    .header("Idempotency-Key", format!("{run}-{k}"))
                    .json(&serde_json::json!({
                        "customerId": format!("bench-{run}-{k}"),
                        "spec": spec(k),
                    })),
                Kind::Page => http.get(format!("{url_base}/api/servers?limit=100&after={pick}")),
                Kind::One => http.get(format!("{url_base}/api/servers/{pick}")),
            };
            let res = req.bearer_auth(&token).send().await;
            let ok = match res {
                Ok(r) => {
                    let good = r.status().is_success();
                    let body = r.bytes().await;
                    good && body.is_ok()
                }
                Err(_) => false,
            };
            // From the scheduled time: open loop, no coordinated omission.
            (at.elapsed().as_secs_f64(), ok)
        }));
    }
    let mut lat = Vec::with_capacity(count);
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((l, good)) = t.await {
            if good {
                ok += 1;
                lat.push(l);
            } else {
                errors += 1;
            }
        } else {
            errors += 1;
        }
    }
    LoadResult {
        lat,
        ok,
        errors,
        sent: count,
        elapsed: start.elapsed().as_secs_f64(),
    }
}

pub async fn run(a: &Args) -> anyhow::Result<Vec<Table>> {
    let mut tables = Vec::new();
    for backend in &a.backends {
        eprintln!("api: {backend}: seeding {} servers...", a.n);
        let (store, db) = match open(backend, &a.pg_admin_url).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("api: {backend} unavailable: {e}");
                let mut tb = Table::new(format!("api on {backend}"));
                tb.note(&format!("skipped: {e}"));
                tables.push(tb);
                continue;
            }
        };
        let result = run_one(a, backend, &store).await;
        drop(store);
        cleanup(db).await;
        tables.push(result?);
    }
    Ok(tables)
}

async fn run_one(a: &Args, backend: &str, store: &AnyStore) -> anyhow::Result<Table> {
    let t = Instant::now();
    let ids = Arc::new(seed(store, a.n).await?);
    let seed_secs = t.elapsed().as_secs_f64();
    let secret = new_token_secret();
    store
        .create_token("bench", &token_hash(&secret), Role::Portal, None)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState {
        store: store.clone(),
        catalog: Arc::new(Catalog::example()),
        config: ApiConfig {
            // The per-token limit (20/s) is not what is measured here: one token offers the
            // whole load.
            rate_limit_per_second: 1_000_000,
            rate_limit_burst: 1_000_000,
            ..ApiConfig::default()
        },
        metrics: None,
        sd: api::SdConfig::default(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state, async move {
        let _ = rx.await;
    }));
    // Warm up connections and caches.
    let _ = load(Kind::One, &base, &secret, ids.clone(), 50.0, 0.5).await;
    let mut tb = Table::new(format!(
        "api on {backend}: N={} servers, {} req/s offered, {:.0} s per kind",
        a.n, a.rate, a.duration
    ));
    tb.add("n", "servers in the store", a.n, a.n.to_string());
    tb.add(
        "seed_s",
        "seeding time",
        seed_secs,
        format!("{seed_secs:.1} s"),
    );
    for (kind, key, name, target) in [
        (Kind::Post, "post", "POST /api/servers", Some(0.025)),
        (
            Kind::Page,
            "get_page",
            "GET /api/servers?limit=100",
            Some(0.020),
        ),
        (Kind::One, "get_one", "GET /api/servers/{id}", None),
    ] {
        eprintln!("api: {backend}: {name} at {} req/s...", a.rate);
        let r = load(kind, &base, &secret, ids.clone(), a.rate, a.duration).await;
        let p50 = percentile(&r.lat, 50.0);
        let p99 = percentile(&r.lat, 99.0);
        tb.add(
            &format!("{key}_p50_s"),
            &format!("{name} p50"),
            p50,
            ms(p50),
        );
        match target {
            // The same targets on both stores (issue 23: PostgreSQL too).
            Some(t) => tb.target(
                &format!("{key}_p99_s"),
                &format!("{name} p99"),
                p99,
                ms(p99),
                &format!("<= {:.0} ms", t * 1000.0),
                p99 <= t,
            ),
            None => tb.add(
                &format!("{key}_p99_s"),
                &format!("{name} p99"),
                p99,
                ms(p99),
            ),
        }
        let thr = r.ok as f64 / r.elapsed.max(1e-9);
        tb.add(
            &format!("{key}_throughput"),
            &format!("{name} throughput"),
            thr,
            format!(
                "{thr:.0}/s ({} ok, {} errors of {})",
                r.ok, r.errors, r.sent
            ),
        );
    }
    let _ = tx.send(());
    let _ = server.await;
    Ok(tb)
}
