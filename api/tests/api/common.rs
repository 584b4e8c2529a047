//! A real API on 127.0.0.1 over a real SQLite store in a temp dir.

use api::client::ApiClient;
use api::{ApiConfig, AppState};
use model::customer::{new_token_secret, token_hash};
use model::store::{AnyStore, Store};
use model::{Catalog, Role, Server, ServerId, ServerSpec, SystemClock, Variant};
use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct Harness {
    pub store: AnyStore,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(ApiConfig::default()).await
    }

    pub async fn start_with(config: ApiConfig) -> Self {
        Self::start_full(config, None).await
    }

    pub async fn start_full(
        config: ApiConfig,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!("zlh-api-test-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/t.db", dir.display());
        let store = AnyStore::connect(&url, Arc::new(SystemClock))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState {
            store: store.clone(),
            catalog: Arc::new(Catalog::example()),
            config,
            metrics,
            sd: api::SdConfig::default(),
        };
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, state, async move {
            let _ = rx.await;
        }));
        Harness {
            store,
            base,
            http: reqwest::Client::new(),
            dir,
            stop: Some(tx),
            server: Some(server),
        }
    }

    /// A new token secret for this role (and customer scope).
    pub async fn token(&self, role: Role, customer: Option<&str>) -> String {
        let secret = new_token_secret();
        self.store
            .create_token(
                &format!("{role}-test"),
                &token_hash(&secret),
                role,
                customer,
            )
            .await
            .unwrap();
        secret
    }

    pub fn client(&self, token: &str) -> ApiClient {
        ApiClient::new(&self.base, Some(SecretString::from(token.to_string()))).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every server in the store (unfiltered), to check that nothing was written.
    pub async fn all_servers(&self) -> Vec<Server> {
        let ids = self.store.all_server_ids().await.unwrap();
        let mut out = Vec::new();
        for id in ids {
            if let Some(s) = self.store.get_server(id).await.unwrap() {
                out.push(s);
            }
        }
        out
    }

    /// A server created directly in the store (bypassing the API).
    pub async fn seed(&self, customer: &str, spec: ServerSpec) -> Server {
        self.store
            .create_server(model::store::NewServer {
                customer_id: customer.into(),
                spec,
                idempotency: Some(model::store::Idempotency {
                    key: uuid::Uuid::now_v7().to_string(),
                    request_hash: "seed".into(),
                    retention: model::store::DEFAULT_IDEMPOTENCY_RETENTION,
                }),
                enforce_quota: false,
            })
            .await
            .unwrap()
            .server
    }

    pub async fn get(&self, id: ServerId) -> Server {
        self.store.get_server(id).await.unwrap().unwrap()
    }

    /// Stop serving and wait for graceful shutdown.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.unwrap().unwrap();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

/// Assert a problem+json answer with this status; returns the problem body.
pub async fn expect_problem(
    res: reqwest::Response,
    status: u16,
    reason: &str,
) -> serde_json::Value {
    let got = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let has_request_id = res.headers().contains_key("x-request-id");
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "{reason}: status (body {body})");
    assert!(
        ct.starts_with("application/problem+json"),
        "{reason}: content-type {ct}"
    );
    assert!(has_request_id, "{reason}: x-request-id");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], status, "{reason}: {v}");
    assert!(
        v["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{reason}: type {v}"
    );
    assert!(
        v["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{reason}: title {v}"
    );
    assert!(v["instance"].as_str().is_some(), "{reason}: instance {v}");
    assert!(v["requestId"].as_str().is_some(), "{reason}: requestId {v}");
    v
}
