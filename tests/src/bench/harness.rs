//! A bench world: the simulators on their own runtime (threads `sim-*`, so their CPU is
//! accounted apart from the controller's), a store, a config, and controllers.

use chrono::{DateTime, Utc};
use controller::config::Config;
use controller::engine::Controller;
use model::store::{AnyStore, Idempotency, NewServer, ServerFilter, Store, list_all};
use model::{Clock, Server, ServerId, ServerSpec, SystemClock};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zlhd::sim::{SimOptions, SimStack};

/// The system clock plus an offset the bench can move forward (to make a resync find every
/// status stamp older than the resync interval, as in production, without waiting).
#[derive(Debug, Default)]
pub struct OffsetClock(AtomicI64);

impl OffsetClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_micros() as i64, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + chrono::Duration::microseconds(self.0.load(Ordering::SeqCst))
    }
}

pub struct SimRuntime(Option<tokio::runtime::Runtime>);

impl SimRuntime {
    pub fn new() -> SimRuntime {
        SimRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sim")
                .on_thread_start(super::proc::mark_sim_thread)
                .enable_all()
                .build()
                .expect("simulator runtime"),
        ))
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.0.as_ref().expect("runtime").handle().clone()
    }
}

impl Default for SimRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SimRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub struct Bench {
    pub sims: SimStack,
    pub cfg: Config,
    pub store: Option<AnyStore>,
    pub clock: Arc<OffsetClock>,
    dir: Option<PathBuf>,
    // Dropped last: the simulators' tasks live on it.
    _rt: SimRuntime,
}

pub struct Running {
    pub controller: Arc<Controller>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: CancellationToken,
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

impl Bench {
    /// Simulators scaled by `opts.time_scale`, a config pointing at them (engine timings
    /// scaled alike), and with `with_store` a fresh SQLite store.
    pub async fn new(opts: SimOptions, with_store: bool) -> anyhow::Result<Bench> {
        let rt = SimRuntime::new();
        let sims = rt.handle().spawn(SimStack::start(opts)).await??;
        let mut cfg = Config::default();
        sims.configure(&mut cfg);
        let (store, dir) = if with_store {
            let dir = std::env::temp_dir().join(format!("zlh-bench-{}", ServerId::new()));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}/zlh.db", dir.display());
            cfg.database_url = url.clone();
            let store = AnyStore::connect(&url, Arc::new(SystemClock)).await?;
            store.migrate().await?;
            (Some(store), Some(dir))
        } else {
            (None, None)
        };
        Ok(Bench {
            sims,
            cfg,
            store,
            clock: Arc::new(OffsetClock::default()),
            dir,
            _rt: rt,
        })
    }

    pub fn store(&self) -> &AnyStore {
        self.store.as_ref().expect("bench store")
    }

    /// Edge latency per DNS or proxy call (`d` simulated, scaled to real time).
    pub fn set_edge_latency(&self, d: Duration) {
        let real = d.div_f64(self.sims.options.time_scale);
        if let Some(t) = &self.sims.technitium {
            t.faults().set_latency(real);
        }
        if let Some(c) = &self.sims.cloudflare {
            c.faults().set_latency(real);
        }
        if let Some(v) = &self.sims.velocity {
            v.faults().set_latency(real);
        }
    }

    /// (Technitium, Cloudflare, Velocity) requests received so far.
    pub fn edge_requests(&self) -> (usize, usize, usize) {
        (
            self.sims
                .technitium
                .as_ref()
                .map(|t| t.request_count())
                .unwrap_or(0),
            self.sims
                .cloudflare
                .as_ref()
                .map(|c| c.request_count())
                .unwrap_or(0),
            self.sims
                .velocity
                .as_ref()
                .map(|v| v.request_count())
                .unwrap_or(0),
        )
    }

    /// Bring up the Agent of every running container that had none at the previous call too
    /// (`missing_before`, updated in place). The simulator stack's event forwarder now
    /// re-syncs the Agents when its broadcast lags, so this is only a safety net: a container
    /// is rebound only when its Agent is still missing one poll later (not while the forwarder
    /// is binding it), and the count says how many events were really lost.
    /// `container_started` is idempotent. Runs on the simulators' runtime.
    pub async fn rebind_agents(
        &self,
        missing_before: &mut std::collections::HashSet<std::net::Ipv4Addr>,
    ) -> usize {
        let (Some(pve), Some(agent)) = (&self.sims.pve, &self.sims.agent) else {
            return 0;
        };
        let have = agent.states();
        let missing_now: std::collections::HashSet<_> = pve
            .containers()
            .into_iter()
            .filter(|c| !c.template && c.status == proxmox_client::CtState::Running)
            .map(|c| c.ip)
            .filter(|ip| !have.contains_key(ip))
            .collect();
        let stuck: Vec<_> = missing_now
            .iter()
            .filter(|ip| missing_before.contains(ip))
            .copied()
            .collect();
        *missing_before = missing_now;
        let n = stuck.len();
        if n > 0 {
            let agent = agent.clone();
            let _ = self
                ._rt
                .handle()
                .spawn(async move {
                    for ip in stuck {
                        let _ = agent.container_started(ip).await;
                    }
                })
                .await;
        }
        n
    }

    pub fn agent_requests(&self) -> usize {
        self.sims
            .agent
            .as_ref()
            .map(|a| a.request_count())
            .unwrap_or(0)
    }

    pub fn start_controller(&self) -> anyhow::Result<Running> {
        let backends = self.sims.backends(&self.cfg)?;
        let controller = Arc::new(Controller::new(
            self.store().clone(),
            backends,
            self.cfg.clone(),
            self.clock.clone(),
        ));
        let stop = CancellationToken::new();
        let task = tokio::spawn(controller.clone().run(stop.clone()));
        Ok(Running {
            controller,
            task,
            stop,
        })
    }

    pub async fn create(&self, customer: &str, spec: ServerSpec) -> anyhow::Result<ServerId> {
        Ok(self
            .store()
            .create_server(NewServer {
                customer_id: customer.into(),
                spec,
                idempotency: Some(Idempotency {
                    key: ServerId::new().to_string(),
                    request_hash: "bench".into(),
                    retention: model::store::DEFAULT_IDEMPOTENCY_RETENTION,
                }),
                enforce_quota: false,
            })
            .await?
            .server
            .id)
    }

    pub async fn servers(&self) -> anyhow::Result<Vec<Server>> {
        Ok(list_all(self.store(), &ServerFilter::default()).await?)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
