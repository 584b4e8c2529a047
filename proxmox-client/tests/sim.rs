//! The client against the simulator: every endpoint, the PVE semantics the simulator models,
//! and every fault kind. No timing assertions: waits poll with a generous guard deadline, and
//! "not yet" states are produced with hour-long simulated durations.
#![cfg(feature = "sim")]

use proxmox_client::sim::{
    CtEvent, FaultAction, FaultRule, FaultSpec, Outage, PveSim, PveSimHandle, SimConfig, Trigger,
};
use proxmox_client::*;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

async fn sim_with(f: impl FnOnce(&mut SimConfig)) -> (PveSimHandle, PveClient) {
    let mut cfg = SimConfig::fast();
    f(&mut cfg);
    let sim = PveSim::start(cfg).await.unwrap();
    let client = PveClient::new(sim.client_config()).unwrap();
    (sim, client)
}

async fn sim() -> (PveSimHandle, PveClient) {
    sim_with(|_| {}).await
}

/// Poll until the task stops (guard deadline only against hangs).
async fn wait_task(c: &PveClient, upid: &Upid) -> TaskExit {
    for _ in 0..2000 {
        let s = c.task_status(upid).await.unwrap();
        if !s.running {
            return s.exit.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("task {upid} never finished");
}

async fn clone_ready(c: &PveClient, newid: u32, hostname: &str) {
    let req = CloneRequest {
        newid,
        hostname: Some(hostname.into()),
        description: Some("zlh:server=abc".into()),
        ..CloneRequest::default()
    };
    let upid = c.clone_ct("pve", 900, &req).await.unwrap();
    assert_eq!(wait_task(c, &upid).await, TaskExit::Ok);
}

#[tokio::test]
async fn full_lifecycle_every_endpoint() {
    let (sim, c) = sim().await;
    let mut events = sim.subscribe();

    let v = c.version().await.unwrap();
    assert_eq!((v.version.as_str(), v.release.as_str()), ("9.1.9", "9.1"));
    let id = c.next_id().await.unwrap();
    assert_eq!(id, 100, "nextid (sent as a string) is the lowest free id");

    let req = CloneRequest {
        newid: id,
        hostname: Some("mc-paper-100".into()),
        description: Some("zlh:server=0190".into()),
        ..CloneRequest::default()
    };
    let upid = c.clone_ct("pve", 900, &req).await.unwrap();
    assert_eq!(
        (upid.task_type.as_str(), upid.id.as_str()),
        ("vzclone", "900"),
        "clone UPID names the source"
    );
    assert!(upid.to_string().ends_with(':'));
    assert_eq!(wait_task(&c, &upid).await, TaskExit::Ok);
    let log = c.task_log(&upid, 0, 50).await.unwrap();
    assert_eq!(log.last().map(String::as_str), Some("TASK OK"));

    let cfg = c.ct_config("pve", id).await.unwrap();
    assert_eq!(cfg.hostname.as_deref(), Some("mc-paper-100"));
    assert_eq!(
        cfg.description.as_deref(),
        Some("zlh:server=0190"),
        "trailing newline stripped"
    );
    assert_eq!(
        cfg.raw["description"], "zlh:server=0190\n",
        "PVE appends a newline"
    );
    assert_eq!(cfg.lock, None, "locks gone after the clone task");
    let tpl = c.ct_config("pve", 900).await.unwrap();
    assert!(tpl.template);
    let (mac, tpl_mac) = (
        cfg.net0_parsed.clone().unwrap().hwaddr,
        tpl.net0_parsed.unwrap().hwaddr,
    );
    assert!(mac.is_some() && mac != tpl_mac, "clone gets a new MAC");

    // Tags: lower-cased, sorted, de-duplicated; digest changes on every write.
    let up = ConfigUpdate {
        cores: Some(2),
        memory: Some(2048),
        swap: Some(0),
        tags: Some(vec!["ZLH".into(), "srv-0190".into(), "zlh".into()]),
        onboot: Some(true),
        net0: Some("name=eth0,bridge=vmbr0,ip=dhcp,type=veth".into()),
        digest: Some(cfg.digest.clone()),
        ..ConfigUpdate::default()
    };
    c.update_ct_config("pve", id, &up).await.unwrap();
    let cfg2 = c.ct_config("pve", id).await.unwrap();
    assert_eq!(cfg2.tags, vec!["srv-0190", "zlh"]);
    assert_eq!(cfg2.raw["tags"], "srv-0190;zlh");
    assert_eq!(
        (cfg2.cores, cfg2.memory, cfg2.swap, cfg2.onboot),
        (Some(2), Some(2048), Some(0), true)
    );
    assert_ne!(cfg2.digest, cfg.digest);
    let stale = c.update_ct_config("pve", id, &up).await.unwrap_err();
    assert!(
        stale.is_digest_mismatch() && stale.class == ErrorClass::Conflict,
        "{stale}"
    );

    // Start → running, interfaces, events.
    assert_eq!(
        c.ct_interfaces("pve", id).await.unwrap(),
        None,
        "null while stopped"
    );
    let st = c.ct_status("pve", id).await.unwrap();
    assert_eq!(st.status, CtState::Stopped);
    let up = c.start_ct("pve", id).await.unwrap();
    assert_eq!(wait_task(&c, &up).await, TaskExit::Ok);
    let st = c.ct_status("pve", id).await.unwrap();
    assert_eq!(
        (st.status, st.name.as_deref()),
        (CtState::Running, Some("mc-paper-100"))
    );
    assert_eq!(st.tags, vec!["srv-0190", "zlh"]);
    let ip = loop {
        let ifs = c.ct_interfaces("pve", id).await.unwrap().expect("running");
        if let Some(ip) = primary_ipv4(&ifs, None) {
            break ip;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(ip, sim.ip_for(id));
    assert_eq!(
        ip.octets()[..2],
        [127, sim.ip_base()],
        "loopback, per-instance base"
    );
    let ev = events.recv().await.unwrap();
    assert_eq!(ev, CtEvent::Started { vmid: id, ip });

    let again = c.start_ct("pve", id).await.unwrap_err();
    assert!(again.is_already_running(), "{again}");

    // Delete while running without force is refused; stop; stop again; delete.
    let e = c
        .delete_ct("pve", id, &DeleteOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_container_running(), "{e}");
    let up = c.shutdown_ct("pve", id, Some(30), true).await.unwrap();
    assert_eq!(up.task_type, "vzshutdown");
    assert_eq!(wait_task(&c, &up).await, TaskExit::Ok);
    assert_eq!(events.recv().await.unwrap(), CtEvent::Stopped { vmid: id });
    let e = c.stop_ct("pve", id).await.unwrap_err();
    assert!(e.is_not_running(), "{e}");
    let up = c.start_ct("pve", id).await.unwrap();
    wait_task(&c, &up).await;
    let up = c.stop_ct("pve", id).await.unwrap();
    assert_eq!(wait_task(&c, &up).await, TaskExit::Ok);

    let opts = DeleteOptions {
        purge: true,
        force: true,
        destroy_unreferenced_disks: true,
    };
    let up = c.delete_ct("pve", id, &opts).await.unwrap();
    assert_eq!(wait_task(&c, &up).await, TaskExit::Ok);
    let e = c.ct_config("pve", id).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = c
        .delete_ct("pve", id, &DeleteOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "idempotent delete sees NotFound: {e}");
    assert_eq!(
        (
            sim.clone_calls(),
            sim.clone_calls_for(id),
            sim.destroy_calls()
        ),
        (1, 1, 1)
    );
    assert_eq!(sim.start_calls(), 2);
    assert!(sim.requests_total() > 20 && sim.requests_for("task_status") > 0);
}

#[tokio::test]
async fn clone_locks_and_conflicts() {
    let (sim, c) = sim_with(|s| {
        s.timings.clone = HOUR;
        s.timings.linked_clone = HOUR;
    })
    .await;
    let req = |newid| CloneRequest {
        newid,
        hostname: Some(format!("ct-{newid}")),
        ..CloneRequest::default()
    };
    let upid = c.clone_ct("pve", 900, &req(200)).await.unwrap();
    let st = c.task_status(&upid).await.unwrap();
    assert!(st.running && st.exit.is_none());

    // (call, expected class, reason)
    let second = c.clone_ct("pve", 900, &req(201)).await.unwrap_err();
    assert_eq!(
        second.class,
        ErrorClass::Locked,
        "template locked `disk` while cloning: {second}"
    );
    assert_eq!(second.lock_name(), Some("disk"));
    let other_tpl = c.clone_ct("pve", 901, &req(200)).await.unwrap_err();
    assert!(other_tpl.is_already_exists(), "newid taken: {other_tpl}");
    assert!(
        other_tpl
            .message
            .contains("CT 200 already exists on node 'pve'")
    );
    let put = c
        .update_ct_config(
            "pve",
            200,
            &ConfigUpdate {
                cores: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (put.class, put.lock_name()),
        (ErrorClass::Locked, Some("create")),
        "{put}"
    );
    assert!(
        put.message.contains("CT is locked (create)") && !put.message.contains("200"),
        "no vmid in lock message"
    );
    let ct = sim.container(200).unwrap();
    assert_eq!(
        (ct.lock.as_deref(), ct.hostname.as_str()),
        (Some("create"), "ct-200"),
        "new CT exists at once"
    );
    assert_eq!(sim.container(900).unwrap().lock.as_deref(), Some("disk"));
    assert_eq!(sim.lock_errors(), 2);

    // cluster/resources lag: fresh CT has status unknown and no name; lock is fresh.
    let (sim2, c2) = sim_with(|s| s.timings.resources_lag = HOUR).await;
    clone_ready(&c2, 300, "fresh-300").await;
    let res = c2.cluster_resources().await.unwrap();
    let fresh = res.iter().find(|r| r.vmid == 300).unwrap();
    assert_eq!(
        (fresh.status.as_str(), fresh.name.as_deref(), fresh.kind),
        ("unknown", None, GuestType::Lxc)
    );
    assert_eq!(
        res.iter().filter(|r| r.template).count(),
        4,
        "pre-existing templates do not lag"
    );
    drop(sim2);

    let res = c.cluster_resources().await.unwrap();
    assert!(
        res.iter()
            .any(|r| r.vmid == 200 && r.lock.as_deref() == Some("create"))
    );
}

#[tokio::test]
async fn resources_ips_and_visibility() {
    // Steady state after the lag: names, templates, tags.
    let (sim, c) = sim_with(|s| s.timings.resources_lag = Duration::ZERO).await;
    clone_ready(&c, 150, "mc-150").await;
    c.update_ct_config(
        "pve",
        150,
        &ConfigUpdate {
            tags: Some(vec!["zlh".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    sim.add_foreign_ct("pve", 151, "intruder");
    let res = c.cluster_resources().await.unwrap();
    let mine = res.iter().find(|r| r.vmid == 150).unwrap();
    assert_eq!(
        (
            mine.name.as_deref(),
            mine.status.as_str(),
            mine.tags.clone()
        ),
        (Some("mc-150"), "stopped", vec!["zlh".to_string()])
    );
    let tpls: Vec<u32> = res.iter().filter(|r| r.template).map(|r| r.vmid).collect();
    assert_eq!(tpls, vec![900, 901, 910, 911]);
    let intruder = res.iter().find(|r| r.vmid == 151).unwrap();
    assert!(
        intruder.tags.is_empty() && c.ct_config("pve", 151).await.unwrap().description.is_none()
    );

    // IP not there yet after start (an hour of simulated DHCP).
    let (_s2, c2) = sim_with(|s| s.timings.ip_delay = HOUR).await;
    clone_ready(&c2, 160, "ct-160").await;
    wait_task(&c2, &c2.start_ct("pve", 160).await.unwrap()).await;
    let ifs = c2
        .ct_interfaces("pve", 160)
        .await
        .unwrap()
        .expect("running: not null");
    assert_eq!(primary_ipv4(&ifs, None), None, "no IPv4 yet");
    assert!(ifs.iter().any(|i| i.name == "lo"));

    // Task not visible yet right after dispatch: 400 `no such task` → running.
    let (_s3, c3) = sim_with(|s| s.timings.task_visible_after = HOUR).await;
    let up = c3
        .clone_ct(
            "pve",
            900,
            &CloneRequest {
                newid: 170,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let st = c3.task_status(&up).await.unwrap();
    assert!(st.running && st.not_visible_yet);

    // A CT on another node than the path's: PVE says the config does not exist.
    let (_s4, c4) = sim_with(|s| s.nodes = vec!["pve".into(), "pve2".into()]).await;
    let e = c4.ct_status("pve2", 900).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = c4.ct_status("nosuchnode", 900).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Invalid, "unknown node: {e}");
}

#[tokio::test]
async fn drift_helpers() {
    let (sim, c) = sim().await;
    let mut ev = sim.subscribe();
    clone_ready(&c, 120, "ct-120").await;
    wait_task(&c, &c.start_ct("pve", 120).await.unwrap()).await;
    assert!(matches!(
        ev.recv().await.unwrap(),
        CtEvent::Started { vmid: 120, .. }
    ));
    assert!(sim.stop_behind_back(120));
    assert_eq!(ev.recv().await.unwrap(), CtEvent::Stopped { vmid: 120 });
    assert_eq!(
        c.ct_status("pve", 120).await.unwrap().status,
        CtState::Stopped
    );
    assert!(sim.destroy_behind_back(120));
    assert_eq!(ev.recv().await.unwrap(), CtEvent::Destroyed { vmid: 120 });
    assert!(c.ct_status("pve", 120).await.unwrap_err().is_not_found());
    assert!(sim.set_lock(900, Some("backup")));
    let e = c
        .clone_ct(
            "pve",
            900,
            &CloneRequest {
                newid: 121,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.lock_name(), Some("backup"));
}

#[tokio::test]
async fn strict_parameters_and_auth() {
    let (sim, c) = sim().await;
    let base = request::build_config_put(
        "pve",
        900,
        &ConfigUpdate {
            cores: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    // (param, value, expected text in the errors map, reason)
    let rows = [
        (
            "bogus",
            "1",
            "property is not defined in schema",
            "unknown parameter",
        ),
        (
            "onboot",
            "true",
            "type check ('boolean') failed - got 'true'",
            "booleans must be 0/1",
        ),
        (
            "memory",
            "8",
            "value must have a minimum value of 16",
            "range check",
        ),
        (
            "net0",
            "bridge=vmbr0",
            "missing key in comma-separated list property",
            "netN needs name=",
        ),
    ];
    for (k, v, want, reason) in rows {
        let mut r = base.clone();
        r.params.push((k.into(), v.into()));
        let e = c.send(&r).await.unwrap_err();
        assert_eq!(
            (e.status, e.class),
            (Some(400), ErrorClass::Invalid),
            "{reason}: {e}"
        );
        assert!(
            e.message.contains(want) && e.message.contains(k),
            "{reason}: {}",
            e.message
        );
    }
    let mut no_newid = request::build_clone(
        "pve",
        900,
        &CloneRequest {
            newid: 100,
            ..Default::default()
        },
    )
    .unwrap();
    no_newid.params.clear();
    let e = c.send(&no_newid).await.unwrap_err();
    assert!(
        e.message.contains("newid: property is missing"),
        "{}",
        e.message
    );

    // Wrong token: 401 with an empty body; no token in any error or Debug output.
    let mut cfg = sim.client_config();
    cfg.token_secret = secrecy::SecretString::from("wrong-secret-value".to_string());
    let dbg = format!("{cfg:?}");
    let bad = PveClient::new(cfg).unwrap();
    let e = bad.version().await.unwrap_err();
    assert_eq!(
        (e.status, e.class),
        (Some(401), ErrorClass::Unauthorized),
        "{e}"
    );
    let good_cfg = sim.client_config();
    let texts = [
        dbg,
        format!("{good_cfg:?}"),
        format!("{c:?}"),
        e.to_string(),
        format!("{e:?}"),
    ];
    for t in texts {
        assert!(
            !t.contains("wrong-secret-value") && !t.contains(sim.token_secret()),
            "token leaked: {t}"
        );
    }
}

#[tokio::test]
async fn error_faults_and_rates() {
    let (sim, c) = sim().await;
    clone_ready(&c, 130, "ct-130").await;
    // (endpoint, code, message, class, reason)
    let rows = [
        (
            "status_current",
            500,
            "failed to read from command socket: Connection reset by peer",
            ErrorClass::Transient,
            "status racing start",
        ),
        (
            "config_put",
            500,
            "can't lock file '/run/lock/lxc/pve-config-130.lock' - got timeout",
            ErrorClass::Locked,
            "flock timeout",
        ),
        (
            "config_get",
            596,
            "Connection timed out",
            ErrorClass::Transient,
            "pvedaemon busy, empty body",
        ),
        (
            "cluster_resources",
            595,
            "Connection refused",
            ErrorClass::Transient,
            "node down",
        ),
        (
            "task_status",
            500,
            "got no worker upid - start worker failed",
            ErrorClass::Transient,
            "fork hiccup",
        ),
        (
            "start",
            500,
            "cluster not ready - no quorum?",
            ErrorClass::Transient,
            "no quorum",
        ),
        (
            "stop",
            403,
            "Permission check failed (/vms/130, VM.PowerMgmt)",
            ErrorClass::Unauthorized,
            "ACL",
        ),
        (
            "delete",
            500,
            "CT is locked (backup)",
            ErrorClass::Locked,
            "backup lock",
        ),
        (
            "interfaces",
            501,
            "Method 'GET /nodes/pve/lxc/130/interfaces' not implemented",
            ErrorClass::Invalid,
            "PVE < 8.1",
        ),
        (
            "clone",
            500,
            "CT 131 already exists on node 'pve'",
            ErrorClass::Conflict,
            "injected conflict",
        ),
    ];
    let upid: Upid = "UPID:pve:00000001:00000001:00000001:vzstart:130:root@pam!zlh:"
        .parse()
        .unwrap();
    for (ep, code, m, class, reason) in rows {
        sim.fail_next(ep, 2, code, m);
        for attempt in 0..2 {
            let r: Result<(), PveError> = match ep {
                "status_current" => c.ct_status("pve", 130).await.map(drop),
                "config_put" => {
                    c.update_ct_config(
                        "pve",
                        130,
                        &ConfigUpdate {
                            cores: Some(3),
                            ..Default::default()
                        },
                    )
                    .await
                }
                "config_get" => c.ct_config("pve", 130).await.map(drop),
                "cluster_resources" => c.cluster_resources().await.map(drop),
                "task_status" => c.task_status(&upid).await.map(drop),
                "start" => c.start_ct("pve", 130).await.map(drop),
                "stop" => c.stop_ct("pve", 130).await.map(drop),
                "delete" => c
                    .delete_ct("pve", 130, &DeleteOptions::default())
                    .await
                    .map(drop),
                "interfaces" => c.ct_interfaces("pve", 130).await.map(drop),
                "clone" => c
                    .clone_ct(
                        "pve",
                        900,
                        &CloneRequest {
                            newid: 131,
                            ..Default::default()
                        },
                    )
                    .await
                    .map(drop),
                _ => unreachable!(),
            };
            let e = r.expect_err(reason);
            assert_eq!(
                (e.status, e.class),
                (Some(code), class),
                "{reason} (attempt {attempt}): {e}"
            );
            assert_eq!(e.endpoint, ep, "{reason}");
        }
    }
    // next-N is spent: the CT is still there, untouched by faults.
    let ct = sim.container(130).unwrap();
    assert_eq!(
        (ct.cores, ct.status, ct.lock),
        (1, CtState::Stopped, None),
        "faults never change state"
    );
    assert_eq!(
        sim.clone_calls_for(131),
        0,
        "a faulted clone never reached the clone logic"
    );
    c.ct_status("pve", 130).await.unwrap();

    // Rates: 1.0 always, 0.0 never; `*` matches every endpoint.
    sim.fail_rate("*", 1.0, 503, "Service Unavailable");
    for _ in 0..3 {
        assert_eq!(c.version().await.unwrap_err().status, Some(503));
    }
    sim.clear_faults();
    sim.fail_rate("version", 0.0, 500, "never");
    for _ in 0..3 {
        c.version().await.unwrap();
    }
    sim.add_latency("version", Duration::from_millis(5));
    c.version().await.expect("latency only delays");
    sim.clear_faults();
    assert_eq!(
        sim.containers().len(),
        5,
        "templates + ct 130, nothing destroyed or recreated"
    );
}

#[tokio::test]
async fn hang_reset_and_outages() {
    let (sim, _) = sim().await;
    let mut cfg = sim.client_config();
    cfg.request_timeout = Duration::from_millis(300);
    let c = PveClient::new(cfg).unwrap();

    sim.hang_next("status_current", 1);
    let e = c.ct_status("pve", 900).await.unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Transient, ErrorKind::Timeout),
        "hang → timeout: {e}"
    );

    sim.reset_next("config_get", 1);
    let e = c.ct_config("pve", 900).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient, "reset: {e}");
    assert!(
        matches!(e.kind, ErrorKind::Io | ErrorKind::Connect),
        "reset is a transport error: {e:?}"
    );
    c.ct_config("pve", 900).await.expect("next request is fine");

    // (outage, reason)
    let rows = [
        (
            Outage::Status {
                code: 595,
                message: "Connection refused".into(),
            },
            "595 on everything",
        ),
        (
            Outage::Status {
                code: 503,
                message: "Service Unavailable".into(),
            },
            "503 on everything",
        ),
        (Outage::Refuse, "connections dropped"),
    ];
    for (o, reason) in rows {
        sim.set_outage(Some(o));
        for r in [
            c.version().await.map(drop),
            c.cluster_resources().await.map(drop),
            c.ct_status("pve", 900).await.map(drop),
        ] {
            let e = r.expect_err(reason);
            assert_eq!(e.class, ErrorClass::Transient, "{reason}: {e}");
        }
        sim.set_outage(None);
        c.version()
            .await
            .unwrap_or_else(|e| panic!("{reason}: recovers: {e}"));
    }
    assert_eq!(sim.containers().len(), 4, "outages never touch containers");
}

#[tokio::test]
async fn task_errors() {
    let (sim, c) = sim().await;
    let mut ev = sim.subscribe();
    sim.task_error(
        "clone",
        "clone failed: cfs-lock 'storage-local-lvm' error: got lock request timeout",
    );
    let up = c
        .clone_ct(
            "pve",
            900,
            &CloneRequest {
                newid: 140,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let exit = wait_task(&c, &up).await;
    let e = exit.clone().into_result("clone").unwrap_err();
    assert_eq!(
        (e.class, e.kind),
        (ErrorClass::Transient, ErrorKind::Task),
        "{e}"
    );
    assert!(
        c.task_log(&up, 0, 50)
            .await
            .unwrap()
            .last()
            .unwrap()
            .starts_with("TASK ERROR: clone failed")
    );
    assert!(
        sim.container(140).is_none(),
        "PVE destroys the half-made CT of a failed clone"
    );
    assert_eq!(sim.container(900).unwrap().lock, None, "source unlocked");
    clone_ready(&c, 140, "ct-140").await;

    sim.task_error("start", "startup for container '140' failed");
    let exit = wait_task(&c, &c.start_ct("pve", 140).await.unwrap()).await;
    assert!(
        matches!(exit, TaskExit::Error(ref m) if m.contains("startup")),
        "{exit:?}"
    );
    assert_eq!(sim.container(140).unwrap().status, CtState::Stopped);
    assert!(
        ev.try_recv().is_err(),
        "no Started event for a failed start"
    );

    // Lock checked inside the start task.
    sim.set_lock(140, Some("backup"));
    let exit = wait_task(&c, &c.start_ct("pve", 140).await.unwrap()).await;
    assert_eq!(
        exit.into_result("start").unwrap_err().class,
        ErrorClass::Locked
    );
    sim.set_lock(140, None);

    wait_task(&c, &c.start_ct("pve", 140).await.unwrap()).await;
    sim.task_error("shutdown", "container did not stop");
    let exit = wait_task(
        &c,
        &c.shutdown_ct("pve", 140, Some(1), false).await.unwrap(),
    )
    .await;
    assert_eq!(
        exit.into_result("shutdown").unwrap_err().class,
        ErrorClass::Transient
    );
    assert_eq!(sim.container(140).unwrap().status, CtState::Running);

    sim.task_error("delete", "some storage error");
    let exit = wait_task(
        &c,
        &c.delete_ct(
            "pve",
            140,
            &DeleteOptions {
                force: true,
                ..Default::default()
            },
        )
        .await
        .unwrap(),
    )
    .await;
    assert!(!exit.is_success());
    let ct = sim.container(140).expect("a failed destroy leaves the CT");
    assert_eq!(ct.lock, None);
}

/// Poll `interfaces` until the CT shows an IPv4 (guard deadline only against hangs).
async fn wait_ip(c: &PveClient, vmid: u32) -> std::net::Ipv4Addr {
    for _ in 0..2000 {
        if let Some(ifs) = c.ct_interfaces("pve", vmid).await.unwrap()
            && let Some(ip) = primary_ipv4(&ifs, None)
        {
            return ip;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("CT {vmid} never showed an IPv4");
}

/// A reboot is what the coming restart feature relies on: refused on a stopped CT as PVE does,
/// otherwise one task after which the CT runs again at the same address.
#[tokio::test]
async fn reboot_goes_down_and_comes_back() {
    let (sim, c) = sim().await;
    let mut ev = sim.subscribe();
    clone_ready(&c, 180, "ct-180").await;

    // Stopped: PVE refuses at once, with `VM` (not `CT`) in the text.
    let e = c.reboot_ct("pve", 180, None).await.unwrap_err();
    assert_eq!(
        (e.status, e.class, e.message.as_str()),
        (Some(500), ErrorClass::Conflict, "VM 180 not running"),
        "{e}"
    );
    assert!(e.is_not_running(), "same helper as stop/shutdown: {e}");
    assert!(
        c.reboot_ct("pve", 189, None)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Running → one vzreboot task → running again, through the Stopped and Started events the
    // Agent simulator follows, at the same address.
    wait_task(&c, &c.start_ct("pve", 180).await.unwrap()).await;
    let ip = wait_ip(&c, 180).await;
    assert!(matches!(
        ev.recv().await.unwrap(),
        CtEvent::Started { vmid: 180, .. }
    ));
    let up = c.reboot_ct("pve", 180, Some(30)).await.unwrap();
    assert_eq!((up.task_type.as_str(), up.id.as_str()), ("vzreboot", "180"));
    assert_eq!(wait_task(&c, &up).await, TaskExit::Ok);
    assert_eq!(ev.recv().await.unwrap(), CtEvent::Stopped { vmid: 180 });
    assert_eq!(ev.recv().await.unwrap(), CtEvent::Started { vmid: 180, ip });
    assert_eq!(
        c.ct_status("pve", 180).await.unwrap().status,
        CtState::Running
    );
    assert_eq!(wait_ip(&c, 180).await, ip);
    assert_eq!(
        c.task_log(&up, 0, 50)
            .await
            .unwrap()
            .last()
            .map(String::as_str),
        Some("TASK OK")
    );
    assert_eq!(sim.requests_for("reboot"), 3);
    assert_eq!(sim.start_calls(), 1, "a reboot is not a start request");

    // A failed start half (injected, or a lock) leaves the CT stopped.
    sim.task_error("reboot", "startup for container '180' failed");
    let exit = wait_task(&c, &c.reboot_ct("pve", 180, None).await.unwrap()).await;
    assert!(!exit.is_success(), "{exit:?}");
    assert_eq!(sim.container(180).unwrap().status, CtState::Stopped);
    wait_task(&c, &c.start_ct("pve", 180).await.unwrap()).await;
    sim.set_lock(180, Some("backup"));
    let exit = wait_task(&c, &c.reboot_ct("pve", 180, None).await.unwrap()).await;
    assert_eq!(
        exit.into_result("reboot").unwrap_err().class,
        ErrorClass::Locked
    );
    assert_eq!(sim.container(180).unwrap().status, CtState::Stopped);
    sim.set_lock(180, None);

    // Strict parameters: reboot has `timeout` only (it always kills after it).
    wait_task(&c, &c.start_ct("pve", 180).await.unwrap()).await;
    let mut r = request::build_reboot("pve", 180, Some(0));
    r.params.push(("forceStop".into(), "1".into()));
    let e = c.send(&r).await.unwrap_err();
    assert_eq!((e.status, e.class), (Some(400), ErrorClass::Invalid), "{e}");
}

/// The shutdown half lasts as a shutdown does, cut short by `timeout` (PVE then kills the CT).
#[tokio::test]
async fn reboot_timeout_cuts_the_shutdown_half() {
    let (_sim, c) = sim_with(|s| s.timings.shutdown = HOUR).await;
    for vmid in [181, 182] {
        clone_ready(&c, vmid, &format!("ct-{vmid}")).await;
        wait_task(&c, &c.start_ct("pve", vmid).await.unwrap()).await;
    }
    let slow = c.reboot_ct("pve", 181, None).await.unwrap();
    assert!(c.task_status(&slow).await.unwrap().running);
    assert_eq!(
        c.ct_status("pve", 181).await.unwrap().status,
        CtState::Running,
        "still shutting down"
    );
    let killed = c.reboot_ct("pve", 182, Some(0)).await.unwrap();
    assert_eq!(wait_task(&c, &killed).await, TaskExit::Ok);
    assert_eq!(
        c.ct_status("pve", 182).await.unwrap().status,
        CtState::Running
    );
}

#[tokio::test]
async fn control_endpoint() {
    let (sim, c) = sim().await;
    let http = reqwest::Client::new();
    let url = format!("{}/_sim/faults", sim.url());
    let spec = FaultSpec {
        rules: vec![FaultRule {
            endpoint: "version".into(),
            trigger: Trigger::Next(1),
            action: FaultAction::Error {
                code: 500,
                message: "can't lock file '/run/lock/lxc/pve-config-105.lock' - got timeout".into(),
            },
        }],
        outage: None,
        task_errors: vec![],
    };
    let body = serde_json::to_string(&spec).unwrap();
    assert!(body.contains(r#""next":1"#), "flattened trigger: {body}");
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(c.version().await.unwrap_err().class, ErrorClass::Locked);
    assert_eq!(sim.lock_errors(), 1);

    let raw = r#"{"outage":{"kind":"status","code":596,"message":"Broken pipe"},
                  "task_errors":[{"endpoint":"clone","message":"clone failed: boom"}]}"#;
    http.post(&url)
        .body(raw)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    assert_eq!(c.version().await.unwrap_err().status, Some(596));
    http.delete(&url)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    c.version().await.unwrap();
    let up = c
        .clone_ct(
            "pve",
            900,
            &CloneRequest {
                newid: 180,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        wait_task(&c, &up).await,
        TaskExit::Ok,
        "DELETE cleared the task error too"
    );
}

/// Regression: the `refuse` outage dropped every connection, the fault control's too, so an
/// outage started over HTTP could never be lifted over HTTP.
#[tokio::test]
async fn the_fault_control_answers_through_a_refuse_outage() {
    let (sim, c) = sim().await;
    let http = reqwest::Client::new();
    let url = format!("{}{}", sim.url(), model::faults::FAULTS_PATH);
    let post = |body: &'static str| {
        let rb = http.post(&url).body(body);
        async move { rb.send().await.unwrap().status() }
    };
    for (reason, lift) in [("outage: null", true), ("DELETE", false)] {
        assert!(post(r#"{"outage": {"kind": "refuse"}}"#).await.is_success());
        let e = c.version().await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient, "{reason}: refused: {e}");
        let status = if lift {
            post(r#"{"outage": null}"#).await
        } else {
            http.delete(&url).send().await.unwrap().status()
        };
        assert!(
            status.is_success(),
            "{reason}: the control answers: {status}"
        );
        c.version()
            .await
            .unwrap_or_else(|e| panic!("{reason}: lifted: {e}"));
    }
}
