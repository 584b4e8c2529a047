//! Panic isolation: a panic inside one server's reconcile (injected through a Proxmox client
//! that panics on that server's clone) is caught at the reconcile boundary. The other servers
//! converge, the panicking one shows Degraded with the event, and the controller lives on.

use controller::backends::{Backends, Live, Stack};
use controller::engine::Controller;
use controller::ownership::marker_line;
use model::store::Store;
use model::{ConditionType, Phase, ServerId, ServerSpec, SystemClock, Variant};
use proxmox_client::{
    CloneRequest, ClusterResource, ConfigUpdate, CtStatus, DeleteOptions, Interface, LxcConfig,
    Proxmox, PveClient, PveError, TaskEntry, TaskFilter, TaskStatus, Upid, Version,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zlh_tests::{World, WorldOptions};

const T: Duration = Duration::from_secs(60);

/// The real client, except that cloning for one server panics: a stand-in for a bug that
/// one backend answer triggers.
struct PanickyPve {
    inner: PveClient,
    /// The description marker of the server whose clone panics.
    victim: String,
}

impl Proxmox for PanickyPve {
    async fn version(&self) -> Result<Version, PveError> {
        self.inner.version().await
    }
    async fn cluster_resources(&self) -> Result<Vec<ClusterResource>, PveError> {
        self.inner.cluster_resources().await
    }
    async fn node_cts(&self, node: &str) -> Result<Vec<ClusterResource>, PveError> {
        self.inner.node_cts(node).await
    }
    async fn next_id(&self) -> Result<u32, PveError> {
        self.inner.next_id().await
    }
    async fn clone_ct(&self, node: &str, src: u32, req: &CloneRequest) -> Result<Upid, PveError> {
        if req.description.as_deref() == Some(self.victim.as_str()) {
            panic!("injected: a clone answer this build cannot handle");
        }
        self.inner.clone_ct(node, src, req).await
    }
    async fn ct_config(&self, node: &str, vmid: u32) -> Result<LxcConfig, PveError> {
        self.inner.ct_config(node, vmid).await
    }
    async fn update_ct_config(
        &self,
        node: &str,
        vmid: u32,
        u: &ConfigUpdate,
    ) -> Result<(), PveError> {
        self.inner.update_ct_config(node, vmid, u).await
    }
    async fn ct_status(&self, node: &str, vmid: u32) -> Result<CtStatus, PveError> {
        self.inner.ct_status(node, vmid).await
    }
    async fn start_ct(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.inner.start_ct(node, vmid).await
    }
    async fn stop_ct(&self, node: &str, vmid: u32) -> Result<Upid, PveError> {
        self.inner.stop_ct(node, vmid).await
    }
    async fn shutdown_ct(
        &self,
        node: &str,
        vmid: u32,
        t: Option<u32>,
        force: bool,
    ) -> Result<Upid, PveError> {
        self.inner.shutdown_ct(node, vmid, t, force).await
    }
    async fn reboot_ct(&self, node: &str, vmid: u32, t: Option<u32>) -> Result<Upid, PveError> {
        self.inner.reboot_ct(node, vmid, t).await
    }
    async fn delete_ct(&self, node: &str, vmid: u32, o: &DeleteOptions) -> Result<Upid, PveError> {
        self.inner.delete_ct(node, vmid, o).await
    }
    async fn ct_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Option<Vec<Interface>>, PveError> {
        self.inner.ct_interfaces(node, vmid).await
    }
    async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, PveError> {
        self.inner.task_status(upid).await
    }
    async fn task_log(&self, upid: &Upid, start: u32, limit: u32) -> Result<Vec<String>, PveError> {
        self.inner.task_log(upid, start, limit).await
    }
    async fn resize_ct(&self, node: &str, vmid: u32, size_gib: u32) -> Result<Upid, PveError> {
        self.inner.resize_ct(node, vmid, size_gib).await
    }
    async fn node_tasks(&self, node: &str, f: &TaskFilter) -> Result<Vec<TaskEntry>, PveError> {
        self.inner.node_tasks(node, f).await
    }
}

/// The simulated stack's clients, with the panicking Proxmox.
struct Panicky;

impl Stack for Panicky {
    type Pve = PanickyPve;
    type Agent = <Live as Stack>::Agent;
    type Technitium = <Live as Stack>::Technitium;
    type Cloudflare = <Live as Stack>::Cloudflare;
    type Proxy = <Live as Stack>::Proxy;
}

/// One server's reconcile panics every time; the rest of the fleet converges around it, it
/// shows `Degraded` (reason `ReconcilePanicked`) with a Warning event, and the controller keeps
/// running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_in_one_reconcile_leaves_the_fleet_converging() {
    let w = World::new(WorldOptions::default()).await;
    let victim = w
        .create("u1", ServerSpec::minecraft(Variant::Paper, "1.21.7"))
        .await;
    let others: Vec<ServerId> = vec![
        w.create("u2", ServerSpec::minecraft(Variant::Paper, "1.21.7"))
            .await,
        w.create("u3", ServerSpec::dev("node", "22")).await,
    ];
    let live = w.sims.backends(&w.cfg).expect("backends");
    let backends = Backends::<Panicky> {
        pve: PanickyPve {
            inner: live.pve,
            victim: marker_line(victim),
        },
        agent: live.agent,
        technitium: live.technitium,
        cloudflare: live.cloudflare,
        velocity: live.velocity,
        admin_secret: live.admin_secret,
    };
    let ctl = Arc::new(Controller::new(
        w.store.clone(),
        backends,
        w.cfg.clone(),
        Arc::new(SystemClock),
    ));
    let stop = CancellationToken::new();
    let run = tokio::spawn(ctl.clone().run(stop.clone()));

    w.wait_for(
        "the others Ready, the victim Degraded by its panic",
        T,
        async || {
            let mut ok = true;
            for id in &others {
                let s = w.store.get_server(*id).await.unwrap().unwrap();
                ok &= s.phase().0 == Phase::Ready;
            }
            let v = w.store.get_server(victim).await.unwrap().unwrap();
            let degraded = v
                .status
                .condition(ConditionType::Degraded)
                .is_some_and(|c| c.reason == "ReconcilePanicked" && c.message.contains("injected"));
            ok && degraded && v.phase().0 == Phase::Degraded
        },
    )
    .await;
    let events = w.store.list_events(victim, 50).await.unwrap();
    assert!(
        events.iter().any(|e| e.reason == "ReconcilePanicked"),
        "the panic is an event: {events:?}"
    );
    // Retried with backoff: it panics again.
    w.wait_for("the victim retried", T, async || {
        let events = w.store.list_events(victim, 50).await.unwrap();
        events
            .iter()
            .any(|e| e.reason == "ReconcilePanicked" && e.count >= 2)
    })
    .await;
    assert!(!run.is_finished(), "the controller is still running");
    stop.cancel();
    run.await.unwrap().expect("a clean shutdown");
}
