//! The simulator held against real PVE's behaviour and wording, over raw HTTP (so routes the
//! client does not use are covered too): clone modes, the task listing, resize, the node and
//! container listings, authentication and PVE's error shapes. Waits poll with a guard
//! deadline; "not yet" states come from hour-long simulated durations.
#![cfg(feature = "sim")]

use proxmox_client::sim::{PveSim, PveSimHandle, SimConfig, SimStorage, StorageKind};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// A raw PVE API caller: `(status, body)` for a method, a path under `/api2/json` and form or
/// query parameters.
struct Raw {
    http: reqwest::Client,
    base: String,
    auth: String,
}

struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
    fn data(&self) -> &Value {
        &self.body["data"]
    }
}

impl Raw {
    fn new(sim: &PveSimHandle) -> Self {
        Raw::with_auth(
            sim,
            format!("PVEAPIToken={}={}", sim.token_id(), sim.token_secret()),
        )
    }

    fn with_auth(sim: &PveSimHandle, auth: String) -> Self {
        Raw {
            http: reqwest::Client::new(),
            base: format!("{}/api2/json", sim.url()),
            auth,
        }
    }

    async fn call(&self, method: Method, path: &str, params: &[(&str, &str)]) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut rb = self
            .http
            .request(method.clone(), &url)
            .header("authorization", &self.auth);
        rb = if method == Method::GET || method == Method::DELETE {
            rb.query(params)
        } else {
            rb.form(params)
        };
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
        };
        Answer { status, body }
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Answer {
        self.call(Method::GET, path, params).await
    }

    /// A call that must answer 200 with a UPID.
    async fn task(&self, method: Method, path: &str, params: &[(&str, &str)]) -> String {
        let a = self.call(method, path, params).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        a.data().as_str().expect("a UPID").to_string()
    }

    /// Poll the task's status until it stops; its `exitstatus`.
    async fn wait(&self, upid: &str) -> String {
        let node = upid.split(':').nth(1).unwrap();
        for _ in 0..2000 {
            let a = self
                .get(&format!("/nodes/{node}/tasks/{upid}/status"), &[])
                .await;
            if a.data()["status"] == "stopped" {
                return a.data()["exitstatus"].as_str().unwrap().to_string();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("task {upid} never finished");
    }

    async fn log(&self, upid: &str) -> Vec<String> {
        let a = self.get(&format!("/nodes/pve/tasks/{upid}/log"), &[]).await;
        a.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["t"].as_str().unwrap().to_string())
            .collect()
    }

    async fn config(&self, vmid: u32) -> Value {
        let a = self
            .get(&format!("/nodes/pve/lxc/{vmid}/config"), &[])
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.data().clone()
    }
}

async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> (PveSimHandle, Raw) {
    let mut cfg = SimConfig::fast();
    f(&mut cfg);
    let sim = PveSim::start(cfg).await.unwrap();
    let raw = Raw::new(&sim);
    (sim, raw)
}

const CLONE: &str = "/nodes/pve/lxc/900/clone";

#[tokio::test]
async fn a_template_clones_linked_by_default_and_fast() {
    // A full clone would never end: only the linked timing can finish this one.
    let (sim, raw) = sim_with(|c| c.timings.clone = HOUR).await;
    let upid = raw
        .task(
            Method::POST,
            CLONE,
            &[("newid", "200"), ("hostname", "ct-200")],
        )
        .await;
    assert_eq!(raw.wait(&upid).await, "OK");
    let log = raw.log(&upid).await;
    assert!(
        log.iter()
            .any(|l| l == "create linked clone of mount point rootfs (local-lvm:base-900-disk-0)"),
        "{log:?}"
    );
    let cfg = raw.config(200).await;
    assert_eq!(cfg["rootfs"], "local-lvm:vm-200-disk-0,size=8G");
    assert_eq!(sim.container(900).unwrap().lock, None, "template unlocked");
    assert_eq!(sim.clone_calls(), 1);
}

#[tokio::test]
async fn the_template_stays_locked_for_a_linked_clone() {
    let (sim, raw) = sim_with(|c| c.timings.linked_clone = HOUR).await;
    raw.task(Method::POST, CLONE, &[("newid", "200")]).await;
    assert_eq!(sim.container(900).unwrap().lock.as_deref(), Some("disk"));
    let second = raw.call(Method::POST, CLONE, &[("newid", "201")]).await;
    assert_eq!(
        (second.status, second.message()),
        (500, "CT is locked (disk)\n")
    );
}

#[tokio::test]
async fn a_full_clone_copies_to_the_chosen_storage_with_the_template_locked() {
    let (sim, raw) = sim_with(|c| c.timings.clone = HOUR).await;
    let upid = raw
        .task(
            Method::POST,
            CLONE,
            &[("newid", "200"), ("full", "1"), ("storage", "local")],
        )
        .await;
    assert_eq!(sim.container(900).unwrap().lock.as_deref(), Some("disk"));
    let ct = sim.container(200).unwrap();
    assert_eq!(
        (ct.lock.as_deref(), ct.rootfs.as_str()),
        (Some("create"), "local:200/vm-200-disk-0.raw,size=8G")
    );
    let st = raw
        .get(&format!("/nodes/pve/tasks/{upid}/status"), &[])
        .await;
    assert_eq!(
        st.data()["status"],
        "running",
        "a full clone takes its time"
    );

    // Without `storage`, a full clone stays on the template's storage.
    let (_sim, raw) = sim_with(|_| {}).await;
    let upid = raw
        .task(Method::POST, CLONE, &[("newid", "200"), ("full", "1")])
        .await;
    assert_eq!(raw.wait(&upid).await, "OK");
    assert!(
        raw.log(&upid)
            .await
            .iter()
            .any(|l| l == "create full clone of mountpoint rootfs (local-lvm:base-900-disk-0)")
    );
    assert_eq!(
        raw.config(200).await["rootfs"],
        "local-lvm:vm-200-disk-0,size=8G"
    );
}

#[tokio::test]
async fn impossible_clones_fail_synchronously_with_pves_wording() {
    let on_dir = |c: &mut SimConfig| c.template_storage = "local".into();
    let on_lvm = |c: &mut SimConfig| {
        c.storages.push(SimStorage::new("thick", StorageKind::Lvm));
        c.template_storage = "thick".into();
    };
    let on_zfs = |c: &mut SimConfig| {
        c.storages
            .push(SimStorage::new("tank", StorageKind::ZfsPool));
        c.template_storage = "tank".into();
    };
    let plain = |_: &mut SimConfig| {};
    type Setup = fn(&mut SimConfig);
    // (setup, source, params, message, reason)
    let rows: [(Setup, u32, &[(&str, &str)], &str, &str); 6] = [
        (
            on_dir,
            900,
            &[("newid", "200")],
            "Linked clone feature for 'local:900/base-900-disk-0.raw' is not available",
            "a directory storage has no snapshots",
        ),
        (
            on_lvm,
            900,
            &[("newid", "200"), ("full", "0")],
            "Linked clone feature for 'thick:base-900-disk-0' is not available",
            "thick LVM has no snapshots",
        ),
        (
            plain,
            900,
            &[("newid", "200"), ("storage", "local")],
            "parameter 'storage' not allowed for linked clones",
            "a storage is for full clones only",
        ),
        (
            plain,
            900,
            &[("newid", "200"), ("full", "1"), ("storage", "nas")],
            "storage 'nas' does not exist",
            "an unknown target storage",
        ),
        (
            on_zfs,
            900,
            &[("newid", "900")],
            "CT 900 already exists on node 'pve'",
            "the new id is checked before the mode",
        ),
        (
            plain,
            150,
            &[("newid", "200"), ("full", "0")],
            "Linked clone feature for 'local-lvm:vm-150-disk-0' is not available",
            "only a template's base volume clones linked",
        ),
    ];
    for (setup, source, params, want, reason) in rows {
        let (sim, raw) = sim_with(setup).await;
        sim.add_foreign_ct("pve", 150, "plain-ct");
        let a = raw
            .call(
                Method::POST,
                &format!("/nodes/pve/lxc/{source}/clone"),
                params,
            )
            .await;
        assert_eq!(
            (a.status, a.message()),
            (500, format!("{want}\n").as_str()),
            "{reason}"
        );
        assert_eq!(sim.container(200), None, "{reason}: no half-made CT");
        assert_eq!(
            sim.container(source).unwrap().lock,
            None,
            "{reason}: source unlocked"
        );
        assert_eq!(sim.clone_calls(), 0, "{reason}: no task dispatched");
    }

    // A template on ZFS clones linked, its clone naming its origin.
    let (_sim, raw) = sim_with(on_zfs).await;
    let upid = raw.task(Method::POST, CLONE, &[("newid", "200")]).await;
    assert_eq!(raw.wait(&upid).await, "OK");
    assert_eq!(
        raw.config(200).await["rootfs"],
        "tank:basevol-900-disk-0/subvol-200-disk-0,size=8G"
    );
    // And on a directory storage a full clone still works.
    let (_sim, raw) = sim_with(on_dir).await;
    let upid = raw
        .task(Method::POST, CLONE, &[("newid", "200"), ("full", "1")])
        .await;
    assert_eq!(raw.wait(&upid).await, "OK");
}
