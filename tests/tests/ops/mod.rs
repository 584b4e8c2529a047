//! The harness of the operating tests (bulk reconcile, tokens, audit): an API served in this
//! process on a store of its own (SQLite in a temp dir, or a PostgreSQL database), tokens
//! written as `zlhd token create` writes them, and `zctl` run as a process.

#![allow(dead_code)] // each test file uses part of it

use model::customer::{new_token_secret, token_hash};
use model::store::{AnyStore, Idempotency, NewServer, Store};
use model::{Role, ServerId, ServerSpec, SystemClock, Variant};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A bound on any one wait or zctl run: a hang fails the test (no timing is asserted).
pub const HANG: Duration = Duration::from_secs(60);

/// A store on a fresh SQLite file, migrated.
pub async fn sqlite_store() -> (AnyStore, PathBuf) {
    let dir = std::env::temp_dir().join(format!("zlh-ops-{}", ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/zlh.db", dir.display());
    (store_at(&url).await, dir)
}

/// A store connected to `url` and migrated.
pub async fn store_at(url: &str) -> AnyStore {
    let store = AnyStore::connect(url, Arc::new(SystemClock))
        .await
        .expect("store connects");
    store.migrate().await.expect("migrations apply");
    store
}

/// An API serving `store` on a free loopback port until dropped.
pub struct Api {
    pub base: String,
    pub store: AnyStore,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Api {
    /// The default configuration: the production rate limits.
    pub async fn start(store: AnyStore) -> Api {
        Self::start_with(store, api::ApiConfig::default()).await
    }

    pub async fn start_with(store: AnyStore, config: api::ApiConfig) -> Api {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let state = api::AppState {
            store: store.clone(),
            catalog: Arc::new(model::Catalog::example()),
            config,
            metrics: None,
            sd: api::SdConfig::default(),
        };
        let s = stop.clone();
        tokio::spawn(api::serve(
            listener,
            state,
            async move { s.cancelled().await },
        ));
        Api {
            base,
            store,
            http: reqwest::Client::new(),
            stop,
        }
    }

    /// A typed client with `secret`.
    pub fn client(&self, secret: &str) -> api::ApiClient {
        api::ApiClient::new(&self.base, Some(secret.to_string().into())).unwrap()
    }

    /// `zctl ARGS` against this API with `secret`, no config file, no colour.
    pub async fn zctl(&self, secret: &str, args: &[&str]) -> Run {
        let home = std::env::temp_dir().join(format!("zlh-zctl-{}", ServerId::new()));
        std::fs::create_dir_all(&home).unwrap();
        let out = tokio::time::timeout(
            HANG,
            tokio::process::Command::new(zlh_tests::process::zctl_path())
                .args(args)
                .env_clear()
                .env("HOME", &home)
                .env("ZLH_API_URL", &self.base)
                .env("ZLH_TOKEN", secret)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("zctl {args:?} hung"))
        .expect("zctl runs");
        let _ = std::fs::remove_dir_all(&home);
        Run::from(out)
    }
}

/// What a zctl run printed, and its exit code.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A token as `zlhd token create` makes one: its secret.
pub async fn token(store: &AnyStore, name: &str, role: Role, customer: Option<&str>) -> String {
    let secret = new_token_secret();
    store
        .create_token(name, &token_hash(&secret), role, customer)
        .await
        .unwrap();
    secret
}

/// A Paper server of `customer`, recorded as the API would (no controller runs).
pub async fn server(store: &AnyStore, customer: &str) -> ServerId {
    store
        .create_server(NewServer {
            customer_id: customer.into(),
            spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
            idempotency: Some(Idempotency {
                key: ServerId::new().to_string(),
                request_hash: "h".into(),
                retention: model::store::DEFAULT_IDEMPOTENCY_RETENTION,
            }),
            enforce_quota: false,
        })
        .await
        .expect("create server")
        .server
        .id
}
