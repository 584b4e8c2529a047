//! A world: every simulator on loopback and a store (a SQLite file, or PostgreSQL), with
//! controllers started and killed at will. Simulators outlive controllers, as real backends
//! outlive a crashed control plane.

use controller::config::Config;
use controller::engine::Controller;
use model::store::{AnyStore, Idempotency, NewServer, ServerFilter, Store, list_all};
use model::{Phase, Server, ServerId, ServerSpec, SystemClock};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zlhd::sim::{SimOptions, SimStack};

pub struct WorldOptions {
    /// `None`: a fresh SQLite file. `Some(url)`: a PostgreSQL database (must be empty or
    /// created for this test).
    pub database_url: Option<String>,
    /// Simulated seconds per real second for simulators and engine timings alike.
    pub time_scale: f64,
    pub sims: SimOptions,
    pub workers: usize,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            database_url: None,
            time_scale: 200.0,
            sims: SimOptions::default(),
            workers: 16,
        }
    }
}

pub struct World {
    pub sims: SimStack,
    pub store: AnyStore,
    pub cfg: Config,
    dir: Option<PathBuf>,
}

/// A controller running in this process; `kill` drops it at whatever await point it is at,
/// like a SIGKILL (no lease release, no graceful anything).
pub struct Running {
    pub controller: Arc<Controller>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: CancellationToken,
}

impl Running {
    pub fn kill(self) {
        self.task.abort();
    }

    /// Graceful stop (SIGTERM path).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

impl World {
    pub async fn new(opts: WorldOptions) -> World {
        let sims = SimStack::start(SimOptions {
            time_scale: opts.time_scale,
            ..opts.sims
        })
        .await
        .expect("simulators start");
        let (url, dir) = match opts.database_url {
            Some(u) => (u, None),
            None => {
                let dir = std::env::temp_dir().join(format!("zlh-world-{}", uuid_like()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                (format!("sqlite://{}/zlh.db", dir.display()), Some(dir))
            }
        };
        let mut cfg = Config {
            database_url: url.clone(),
            ..Config::default()
        };
        cfg.controller.workers = opts.workers;
        sims.configure(&mut cfg);
        let store = AnyStore::connect(&url, Arc::new(SystemClock))
            .await
            .expect("store connects");
        store.migrate().await.expect("migrations apply");
        World {
            sims,
            store,
            cfg,
            dir,
        }
    }

    /// Start a controller (a new "process": fresh queue, slots and snapshot).
    pub fn start_controller(&self) -> Running {
        self.start_controller_with(self.cfg.clone())
    }

    pub fn start_controller_with(&self, cfg: Config) -> Running {
        self.start_controller_on(cfg, self.store.clone())
    }

    /// A controller with its own store connection (replicas in separate "processes" wake each
    /// other through LISTEN/NOTIFY, not through a shared in-process channel).
    pub fn start_controller_on(&self, cfg: Config, store: AnyStore) -> Running {
        let backends = self.sims.backends(&cfg).expect("backends");
        let controller = Arc::new(Controller::new(store, backends, cfg, Arc::new(SystemClock)));
        let stop = CancellationToken::new();
        let task = tokio::spawn(controller.clone().run(stop.clone()));
        Running {
            controller,
            task,
            stop,
        }
    }

    pub async fn create(&self, customer: &str, spec: ServerSpec) -> ServerId {
        self.store
            .create_server(NewServer {
                customer_id: customer.into(),
                spec,
                idempotency: Some(Idempotency {
                    key: uuid_like(),
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

    pub async fn servers(&self) -> Vec<Server> {
        list_all(&self.store, &ServerFilter::default())
            .await
            .expect("list servers")
    }

    /// Wait until every live server is in `phase` (with `None`: until no server is left),
    /// polling; panics with the stragglers after `timeout`.
    pub async fn wait_all(&self, phase: Option<Phase>, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let servers = self.servers().await;
            let pending: Vec<String> = servers
                .iter()
                .filter(|s| Some(s.phase().0) != phase)
                .map(|s| {
                    let (p, step) = s.phase();
                    format!(
                        "{} {p}/{} vmid={:?} err={:?} failure={:?}",
                        s.id,
                        step.map(|s| s.as_str()).unwrap_or("-"),
                        s.reserved_vmid,
                        s.status.last_error.as_ref().map(|e| &e.message),
                        s.status.failure.as_ref().map(|f| &f.message)
                    )
                })
                .collect();
            if pending.is_empty() {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} of {} servers not {:?} after {timeout:?}:\n{}",
                    pending.len(),
                    servers.len(),
                    phase,
                    pending
                        .iter()
                        .take(20)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl AsyncFnMut() -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !pred().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A unique name without pulling in a uuid dependency here.
pub fn uuid_like() -> String {
    ServerId::new().to_string()
}
