//! The simulator held against real PVE's behaviour and wording, over raw HTTP (so routes the
//! client does not use are covered too): clone modes, the task listing, resize, the node and
//! container listings, authentication and PVE's error shapes. Waits poll with a guard
//! deadline; "not yet" states come from hour-long simulated durations.
#![cfg(feature = "sim")]

use proxmox_client::sim::{PveSim, PveSimHandle, SimApiRate, SimConfig, SimStorage, StorageKind};
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

    async fn resize(&self, vmid: u32, size: &str) -> Answer {
        let path = format!("/nodes/pve/lxc/{vmid}/resize");
        self.call(Method::PUT, &path, &[("disk", "rootfs"), ("size", size)])
            .await
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

type Setup = fn(&mut SimConfig);
type Params = &'static [(&'static str, &'static str)];
type Row = (Setup, u32, Params, &'static str, &'static str);

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
    // (setup, source, params, message, reason)
    let rows: [Row; 7] = [
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
            900,
            &[("newid", "200"), ("snapname", "base")],
            "snapshot 'base' does not exist",
            "the simulator keeps no snapshots",
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

const TASKS: &str = "/nodes/pve/tasks";

fn upids(a: &Answer) -> Vec<String> {
    a.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["upid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn one_task_listing_answers_for_every_waiting_clone() {
    let (sim, raw) = sim_with(|c| c.timings.clone = HOUR).await;
    let mut dispatched = Vec::new();
    // A template clones one at a time, so fifty concurrent clones need fifty sources: plain
    // CTs, which clone full.
    for vmid in 200..250u32 {
        sim.add_foreign_ct("pve", vmid, &format!("ct-{vmid}"));
    }
    for vmid in 200..250u32 {
        dispatched.push(
            raw.task(
                Method::POST,
                CLONE.replace("900", &vmid.to_string()).as_str(),
                &[("newid", &(vmid + 1000).to_string()), ("full", "1")],
            )
            .await,
        );
    }
    let before = sim.requests_for("task_list");
    let a = raw
        .get(TASKS, &[("source", "active"), ("typefilter", "vzclone")])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut listed = upids(&a);
    listed.sort();
    dispatched.sort();
    assert_eq!(listed, dispatched, "every running clone, in one answer");
    assert_eq!(a.body["total"], 50);
    assert_eq!(sim.requests_for("task_list") - before, 1);
    assert_eq!(sim.requests_for("task_status"), 0, "no status read needed");
    for row in a.data().as_array().unwrap() {
        assert_eq!(row["status"], "RUNNING");
        assert_eq!(row["user"], "root@pam", "the token split off");
        assert_eq!(row["tokenid"], "zlh");
        assert!(row.get("endtime").is_none(), "running: no endtime");
        for k in ["node", "pid", "pstart", "starttime", "type", "id"] {
            assert!(row.get(k).is_some(), "row has {k}: {row}");
        }
    }
}

#[tokio::test]
async fn the_task_listing_filters_as_pve_does() {
    let (sim, raw) = sim_with(|c| c.timings.start = HOUR).await;
    sim.add_foreign_ct("pve", 300, "ct-300");
    let clone = raw.task(Method::POST, CLONE, &[("newid", "200")]).await;
    assert_eq!(raw.wait(&clone).await, "OK");
    sim.task_error("clone", "clone failed: boom");
    let failed = raw.task(Method::POST, CLONE, &[("newid", "201")]).await;
    assert_eq!(raw.wait(&failed).await, "clone failed: boom");
    let running = raw
        .task(Method::POST, "/nodes/pve/lxc/300/status/start", &[])
        .await;

    let all = raw.get(TASKS, &[("source", "all")]).await;
    assert_eq!(all.body["total"], 3, "{}", all.body);
    let archive = raw.get(TASKS, &[]).await;
    assert_eq!(
        upids(&archive),
        vec![failed.clone(), clone.clone()],
        "archive is the default source, newest first"
    );
    let row = &archive.data()[1];
    assert_eq!(row["status"], "OK");
    assert!(row["endtime"].as_i64().unwrap() >= row["starttime"].as_i64().unwrap());
    assert_eq!(archive.data()[0]["status"], "clone failed: boom");

    let (r, f, c) = (&running, &failed, &clone);
    // (params, expected upids, reason)
    let rows: Vec<(Params, Vec<&String>, &str)> = vec![
        (
            &[("source", "active"), ("vmid", "300")],
            vec![r],
            "vmid matches the UPID's id",
        ),
        (
            &[("source", "all"), ("typefilter", "vzclone")],
            vec![f, c],
            "typefilter is exact",
        ),
        (
            &[("source", "all"), ("typefilter", "vzclon")],
            vec![],
            "no prefix match",
        ),
        (
            &[("source", "all"), ("userfilter", "ROOT@")],
            vec![r, f, c],
            "userfilter is a case-insensitive substring",
        ),
        (
            &[("source", "all"), ("userfilter", "zlh")],
            vec![],
            "userfilter sees the user, not the token",
        ),
        (
            &[("source", "all"), ("since", "99999999999")],
            vec![],
            "since bounds starttime",
        ),
        (
            &[("source", "all"), ("limit", "1"), ("start", "1")],
            vec![f],
            "start and limit page",
        ),
        (
            &[("source", "all"), ("errors", "1")],
            vec![r, f],
            "errors drops only the OK ones; running counts as unknown",
        ),
        (
            &[("source", "all"), ("statusfilter", "ok")],
            vec![c],
            "statusfilter keeps the listed types",
        ),
        (
            &[("source", "all"), ("statusfilter", "error;unknown")],
            vec![r, f],
            "statusfilter is a list",
        ),
    ];
    for (params, want, reason) in rows {
        let a = raw.get(TASKS, params).await;
        assert_eq!(a.status, 200, "{reason}: {}", a.body);
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(upids(&a), want, "{reason}");
    }
    let bad = raw.get(TASKS, &[("source", "recent")]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body["errors"]["source"],
        "value 'recent' does not have a value in the enumeration 'archive, active, all'"
    );
}

#[tokio::test]
async fn resize_grows_the_rootfs_in_a_task_and_refuses_a_shrink() {
    let (sim, raw) = sim_with(|_| {}).await;
    let clone = raw.task(Method::POST, CLONE, &[("newid", "200")]).await;
    assert_eq!(raw.wait(&clone).await, "OK");
    const RESIZE: &str = "/nodes/pve/lxc/200/resize";
    let put = |size: &'static str| raw.resize(200, size);

    let upid = raw
        .task(Method::PUT, RESIZE, &[("disk", "rootfs"), ("size", "32G")])
        .await;
    assert!(upid.contains(":resize:200:"), "a resize task: {upid}");
    assert_eq!(raw.wait(&upid).await, "OK");
    assert_eq!(
        raw.config(200).await["rootfs"],
        "local-lvm:vm-200-disk-0,size=32G"
    );
    let upid = raw
        .task(Method::PUT, RESIZE, &[("disk", "rootfs"), ("size", "+4G")])
        .await;
    assert_eq!(raw.wait(&upid).await, "OK");
    let ct = sim.container(200).unwrap();
    assert_eq!(
        (ct.rootfs.as_str(), ct.rootfs_bytes),
        ("local-lvm:vm-200-disk-0,size=36G", 36 << 30)
    );
    let st = raw.get("/nodes/pve/lxc/200/status/current", &[]).await;
    assert_eq!(st.data()["maxdisk"], 36u64 << 30, "maxdisk follows");

    // (size, status, message or errors text, reason)
    let rows = [
        ("8G", 500, "unable to shrink disk size\n", "a shrink"),
        (
            "36G",
            500,
            "disk is already at specified size\n",
            "the same size",
        ),
        (
            "+0",
            500,
            "disk is already at specified size\n",
            "growing by nothing",
        ),
    ];
    for (size, status, want, reason) in rows {
        let a = put(size).await;
        assert_eq!((a.status, a.message()), (status, want), "{reason}");
    }
    let bad = put("-4G").await;
    assert_eq!(
        (bad.status, bad.body["errors"]["size"].as_str()),
        (400, Some("value does not match the regex pattern")),
        "the schema's pattern has no minus"
    );
    let locked = {
        sim.set_lock(200, Some("backup"));
        put("40G").await
    };
    assert_eq!(locked.message(), "CT is locked (backup)\n");
    assert_eq!(sim.requests_for("resize"), 7);
}

#[tokio::test]
async fn nodes_and_a_nodes_containers_are_listed() {
    let (sim, raw) = sim_with(|_| {}).await;
    let nodes = raw.get("/nodes", &[]).await;
    assert_eq!(nodes.status, 200);
    let n = &nodes.data()[0];
    assert_eq!(
        (n["node"].as_str(), n["status"].as_str()),
        (Some("pve"), Some("online"))
    );
    for k in ["cpu", "maxcpu", "mem", "maxmem", "uptime"] {
        assert!(n[k].is_number(), "node has {k}: {n}");
    }

    let clone = raw.task(Method::POST, CLONE, &[("newid", "200")]).await;
    assert_eq!(raw.wait(&clone).await, "OK");
    let start = raw
        .task(Method::POST, "/nodes/pve/lxc/200/status/start", &[])
        .await;
    assert_eq!(raw.wait(&start).await, "OK");
    let cts = raw.get("/nodes/pve/lxc", &[]).await;
    let list = cts.data().as_array().unwrap();
    assert_eq!(list.len(), 5, "four templates and the clone");
    let ct = list
        .iter()
        .find(|c| c["vmid"] == 200)
        .expect("vmid is a number");
    assert_eq!(
        (ct["status"].as_str(), ct["name"].as_str()),
        (Some("running"), Some("tpl-mc-vanilla"))
    );
    assert!(ct["mem"].as_u64().unwrap() > 0, "a running CT uses memory");
    assert!(list.iter().filter(|c| c["template"] == 1).count() == 4);
    assert_eq!(sim.requests_for("ct_list"), 1);

    // cluster/resources carries the usage of a running CT (once the RRD has caught up).
    let res = raw.get("/cluster/resources", &[("type", "vm")]).await;
    let tpl = res
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vmid"] == 900)
        .unwrap();
    for k in [
        "cpu", "mem", "maxmem", "disk", "maxdisk", "netin", "netout", "uptime",
    ] {
        assert!(tpl[k].is_number(), "cluster/resources has {k}: {tpl}");
    }
    let unknown = raw.get("/nodes/nope/lxc", &[]).await;
    assert_eq!(unknown.status, 500, "an unknown node");
}

#[tokio::test]
async fn every_route_authenticates_before_it_routes() {
    let (sim, _raw) = sim_with(|_| {}).await;
    let wrong = Raw::with_auth(&sim, format!("PVEAPIToken={}=wrong-secret", sim.token_id()));
    // (method, path, reason)
    let rows = [
        (Method::GET, "/version", "a known route"),
        (
            Method::GET,
            "/nodes/pve/lxc/100/nonsense",
            "an unknown route",
        ),
        (Method::DELETE, "/nodes", "a known path, an unknown method"),
        (Method::GET, TASKS, "the task listing"),
    ];
    for (method, path, reason) in rows {
        let a = wrong.call(method, path, &[]).await;
        assert_eq!(
            (a.status, &a.body),
            (401, &Value::Null),
            "{reason}: empty body"
        );
    }
    let good = Raw::new(&sim);
    let a = good.get("/nodes/pve/lxc/100/nonsense", &[]).await;
    assert_eq!(a.status, 501, "routing after authentication");
}

#[tokio::test]
async fn pve_words_parameter_errors_exactly() {
    let (_sim, raw) = sim_with(|_| {}).await;
    // (method, path, params, parameter, text, reason)
    let rows: [(Method, &str, Params, &str, &str, &str); 7] = [
        (
            Method::POST,
            CLONE,
            &[("newid", "99")],
            "newid",
            "invalid format - value does not look like a valid VM ID\n",
            "a format error ends in a newline",
        ),
        (
            Method::POST,
            CLONE,
            &[("newid", "0100")],
            "newid",
            "invalid format - value does not look like a valid VM ID\n",
            "no leading zero",
        ),
        (
            Method::POST,
            CLONE,
            &[("newid", "1000000000")],
            "newid",
            "invalid format - value does not look like a valid VM ID\n",
            "at most nine digits",
        ),
        (
            Method::POST,
            CLONE,
            &[("newid", "abc")],
            "newid",
            "type check ('integer') failed - got 'abc'",
            "a type error has no newline",
        ),
        (
            Method::POST,
            CLONE,
            &[("newid", "200"), ("hostname", "bad_name")],
            "hostname",
            "invalid format - value does not look like a valid DNS name\n",
            "no underscore in a DNS name",
        ),
        (
            Method::POST,
            CLONE,
            &[("newid", "200"), ("hostname", "-lead.example")],
            "hostname",
            "invalid format - value does not look like a valid DNS name\n",
            "no leading hyphen",
        ),
        (
            Method::POST,
            CLONE,
            &[],
            "newid",
            "property is missing and it is not optional",
            "a missing parameter has no newline",
        ),
    ];
    for (method, path, params, key, want, reason) in rows {
        let a = raw.call(method, path, params).await;
        assert_eq!(a.status, 400, "{reason}: {}", a.body);
        assert_eq!(a.message(), "Parameter verification failed.\n", "{reason}");
        assert_eq!(a.body["errors"][key], want, "{reason}");
    }
    let ok = raw
        .call(
            Method::POST,
            CLONE,
            &[("newid", "200"), ("hostname", "mc-1.example")],
        )
        .await;
    assert_eq!(ok.status, 200, "a dotted DNS name is fine: {}", ok.body);

    // A malformed UPID, in both task routes.
    for route in ["status", "log"] {
        let a = raw
            .get(&format!("/nodes/pve/tasks/UPID:garbage/{route}"), &[])
            .await;
        assert_eq!(
            (a.status, a.body["errors"]["upid"].as_str()),
            (400, Some("unable to parse worker upid")),
            "{route}"
        );
    }
}

#[tokio::test]
async fn the_rate_model_answers_as_an_overloaded_pveproxy() {
    // A simulated second lasts 1000 real ones, so the budget refills too slowly to matter
    // here: exactly the burst of three passes.
    let (sim, raw) = sim_with(|c| {
        c.time_scale = 1000.0;
        c.api_rate = Some(SimApiRate {
            per_node_per_sec: 5.0,
            burst: 3,
        });
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let a = raw.get("/nodes/pve/lxc", &[]).await;
        statuses.push((a.status, a.body.clone()));
    }
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 596).collect();
    assert_eq!(refused.len(), 7, "beyond the burst: {statuses:?}");
    assert!(
        refused.iter().all(|(_, b)| *b == Value::Null),
        "an empty body, as the proxy hop's"
    );
    assert_eq!(sim.rate_refused(), refused.len() as u64);
    assert_eq!(sim.requests_per_node("pve"), 10);
    assert_eq!(
        sim.peak_requests_per_sec("pve"),
        10,
        "all within one simulated second"
    );

    // Off by default: the same burst passes, and is measured.
    let (sim, raw) = sim_with(|_| {}).await;
    for _ in 0..10 {
        assert_eq!(raw.get("/cluster/resources", &[]).await.status, 200);
    }
    assert_eq!(
        (sim.rate_refused(), sim.requests_per_node("pve")),
        (0, 10),
        "cluster-wide routes count for the first node"
    );
}
