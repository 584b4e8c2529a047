//! End-to-end tests of the `zctl` binary, run as a process against a real API on 127.0.0.1
//! over a real SQLite store in a temp dir. The tests play the controller: they write status
//! through the store as it would.

use api::ApiConfig;
use chrono::Utc;
use model::customer::new_token_secret;
use model::status::Failure;
use model::store::{Idempotency, NewServer, Orphan, ReplicaInfo, Store};
use model::{
    ConditionStatus, ConditionType, EventType, Role, Server, ServerId, ServerSpec, Variant,
};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[path = "api/common.rs"]
#[allow(dead_code)] // the API tests' harness; zctl uses part of it
mod common;

#[path = "api/zctl_run.rs"]
#[allow(dead_code)] // each binary uses part of it
mod zctl_run;
use zctl_run::{HANG, Run, finish, run};

const ZCTL: &str = env!("CARGO_BIN_EXE_zctl");

/// The API harness of the API tests, plus an operator token for `zctl`.
struct Api {
    h: common::Harness,
    /// An operator token.
    token: String,
}

impl std::ops::Deref for Api {
    type Target = common::Harness;
    fn deref(&self) -> &common::Harness {
        &self.h
    }
}

impl Api {
    async fn start() -> Self {
        let h = common::Harness::start_with(ApiConfig {
            watch_poll_interval: Duration::from_millis(50),
            ..ApiConfig::default()
        })
        .await;
        let token = h.token(Role::Operator, None).await;
        Api { h, token }
    }

    /// `zctl` with this API and the operator token in the environment, no config file, no
    /// color.
    fn zctl(&self, args: &[&str]) -> Command {
        self.zctl_with(args, &self.token)
    }

    fn zctl_with(&self, args: &[&str], token: &str) -> Command {
        let mut c = Command::new(ZCTL);
        c.args(args)
            .env_clear()
            .env("HOME", &self.dir)
            .env("ZLH_API_URL", &self.base)
            .env("ZLH_TOKEN", token)
            .env("NO_COLOR", "1")
            .env("ZCTL_RECONNECT_DELAY_MS", "20")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Run {
        run(self.zctl(args)).await
    }

    async fn seed(&self, customer: &str, spec: ServerSpec) -> Server {
        self.store
            .create_server(NewServer {
                customer_id: customer.into(),
                spec,
                idempotency: Some(Idempotency {
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

    async fn get(&self, id: ServerId) -> Option<Server> {
        self.store.get_server(id).await.unwrap()
    }

    /// Write status as the controller would (read the row, change, write at its version).
    async fn drive(&self, id: ServerId, change: impl FnOnce(&Server, &mut model::ServerStatus)) {
        let s = self.get(id).await.unwrap();
        let mut st = s.status.clone();
        change(&s, &mut st);
        self.store
            .write_status(id, &st, s.resource_version, None)
            .await
            .unwrap();
    }

    /// Provisioned: every condition True for the current generation, with identity.
    async fn make_ready(&self, id: ServerId, vmid: u32) {
        self.drive(id, |s, st| {
            let now = Utc::now();
            for t in ConditionType::CHAIN {
                st.set_condition(t, ConditionStatus::True, "Done", "", s.generation, now);
            }
            st.set_condition(
                ConditionType::Ready,
                ConditionStatus::True,
                "Ready",
                "the server is ready",
                s.generation,
                now,
            );
            st.set_condition(
                ConditionType::Degraded,
                ConditionStatus::False,
                "AsExpected",
                "",
                s.generation,
                now,
            );
            st.failure = None;
            st.observed_generation = s.generation;
            st.vmid = Some(vmid);
            st.node = Some("pve1".into());
            st.hostname = Some(format!("mc-paper-{vmid}"));
            st.fqdn = Some(format!("mc-paper-{vmid}.zlh.test"));
            st.ip = Some("127.0.0.7".into());
        })
        .await;
    }

    /// A terminal failure for the current generation.
    async fn make_failed(&self, id: ServerId, message: &str) {
        let message = message.to_string();
        self.drive(id, move |s, st| {
            let now = Utc::now();
            st.set_condition(
                ConditionType::VmidAllocated,
                ConditionStatus::True,
                "Reserved",
                "",
                s.generation,
                now,
            );
            st.set_condition(
                ConditionType::AgentReady,
                ConditionStatus::False,
                "AgentError",
                message.clone(),
                s.generation,
                now,
            );
            st.set_condition(
                ConditionType::Ready,
                ConditionStatus::False,
                "Failed",
                message.clone(),
                s.generation,
                now,
            );
            st.failure = Some(Failure {
                step: "wait-for-agent".into(),
                message,
                at: now,
                generation: s.generation,
            });
            st.observed_generation = s.generation;
        })
        .await;
    }

    /// Poll the store until `f` holds for some server (the zctl process acts meanwhile).
    async fn until<F: Fn(&Server) -> bool>(&self, f: F) -> Server {
        tokio::time::timeout(HANG, async {
            loop {
                for id in self.store.all_server_ids().await.unwrap() {
                    if let Some(s) = self.get(id).await
                        && f(&s)
                    {
                        return s;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the store never reached the expected state")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn paper() -> ServerSpec {
    ServerSpec::minecraft(Variant::Paper, "1.21.7")
}

const SPEC_YAML: &str = r#"customerId: u000
spec:
  kind: game
  game: minecraft
  variant: paper
  version: "1.21.7"
  resources: { cores: 2, memoryMib: 2048, diskGib: 16 }
"#;

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The next line zctl prints.
async fn next_line(lines: &mut Lines) -> String {
    tokio::time::timeout(HANG, lines.next_line())
        .await
        .expect("no line")
        .unwrap()
        .expect("stdout closed")
}

/// A 127.0.0.1 port nothing listens on.
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

// --- get -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_servers_shows_the_fleet_in_every_format() {
    let api = Api::start().await;
    let ready = api.seed("u1", paper()).await;
    api.make_ready(ready.id, 101).await;
    let failed = api.seed("u2", paper()).await;
    api.make_failed(failed.id, "agent install exploded").await;
    let queued = api.seed("u1", ServerSpec::dev("node", "22")).await;

    let r = api.run(&["get", "servers"]).await;
    assert_eq!(r.code, 0, "{r}");
    let header = r.stdout.lines().next().unwrap();
    for col in ["ID", "HOSTNAME", "VMID", "PHASE", "READY", "AGE", "MESSAGE"] {
        assert!(header.contains(col), "header has {col}: {r}");
    }
    assert!(r.stdout.contains("mc-paper-101"), "{r}");
    assert!(r.stdout.contains("ready"), "{r}");
    assert!(r.stdout.contains("queued"), "{r}");
    assert!(
        r.stdout.contains("wait-for-agent: agent install exploded"),
        "{r}"
    );
    let short = &queued.id.to_string()[28..];
    assert!(r.stdout.contains(short), "short id (last 8): {r}");
    assert!(!r.stdout.contains("\x1b["), "no color off a terminal: {r}");

    let r = api.run(&["get", "servers", "-o", "wide"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains(&ready.id.to_string()), "full id: {r}");
    assert!(
        r.stdout.contains("pve1") && r.stdout.contains("127.0.0.7"),
        "{r}"
    );

    let r = api.run(&["get", "servers", "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r}");
    let v = r.json();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let phase_of = |id: ServerId| {
        items
            .iter()
            .find(|i| i["id"] == id.to_string())
            .map(|i| i["phase"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(phase_of(ready.id), "ready");
    assert_eq!(phase_of(failed.id), "failed");
    assert_eq!(phase_of(queued.id), "queued");

    let r = api.run(&["get", "servers", "-o", "yaml"]).await;
    assert_eq!(r.code, 0, "{r}");
    let y: serde_json::Value = serde_saphyr::from_str(&r.stdout).unwrap();
    assert_eq!(y["items"].as_array().unwrap().len(), 3, "{r}");

    type Case = (&'static str, &'static [&'static str], usize);
    let cases: &[Case] = &[
        ("phase filter", &["--phase", "failed"], 1),
        ("customer filter", &["--customer", "u1"], 2),
        ("kind filter", &["--kind", "dev"], 1),
        (
            "filters combine",
            &["--customer", "u1", "--phase", "ready"],
            1,
        ),
        ("a customer with nothing", &["--customer", "nobody"], 0),
    ];
    for (reason, flags, n) in cases {
        let mut args = vec!["get", "servers", "-o", "json"];
        args.extend_from_slice(flags);
        let r = api.run(&args).await;
        assert_eq!(r.code, 0, "{reason}: {r}");
        assert_eq!(
            r.json()["items"].as_array().unwrap().len(),
            *n,
            "{reason}: {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_servers_watch_follows_changes() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;

    // Documents, one per line.
    let mut child = api
        .zctl(&["get", "servers", "-w", "-o", "json"])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let next = async |lines: &mut Lines| -> serde_json::Value {
        serde_json::from_str(&next_line(lines).await).unwrap()
    };
    let first = next(&mut lines).await;
    assert_eq!(first["type"], "upsert");
    assert_eq!(first["server"]["phase"], "queued");
    api.make_ready(s.id, 101).await;
    let second = next(&mut lines).await;
    assert_eq!(second["type"], "upsert", "{second}");
    assert_eq!(second["server"]["phase"], "ready", "{second}");
    assert!(second["seq"].as_i64().is_some(), "{second}");
    api.store.request_deletion(s.id).await.unwrap();
    let third = next(&mut lines).await;
    assert_eq!(third["server"]["phase"], "deleting", "{third}");
    api.store.archive_and_delete(s.id, None).await.unwrap();
    let fourth = next(&mut lines).await;
    assert_eq!(fourth["type"], "delete", "{fourth}");
    assert_eq!(fourth["id"], s.id.to_string());
    child.kill().await.unwrap();

    // The table, then a row per change.
    let s2 = api.seed("u1", paper()).await;
    let mut child = api.zctl(&["get", "servers", "-w"]).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(next_line(&mut lines).await.starts_with("ID"));
    assert!(next_line(&mut lines).await.contains("queued"));
    api.make_ready(s2.id, 102).await;
    let row = next_line(&mut lines).await;
    assert!(
        row.contains("mc-paper-102") && row.contains("ready"),
        "{row}"
    );
    child.kill().await.unwrap();
}

// --- describe and events -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_resolves_every_kind_of_name_and_shows_why() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;
    api.make_failed(s.id, "Agent reported error: no space left")
        .await;
    api.drive(s.id, |_, st| {
        st.vmid = Some(105);
        st.hostname = Some("mc-paper-105".into());
        st.attempts = 3;
        st.last_error = Some(model::LastError {
            class: model::ErrorClass::Transient,
            step: "wait-for-agent".into(),
            message: "agent unreachable: connection refused".into(),
            at: Utc::now(),
        });
        st.in_flight_task = Some(model::status::InFlightTask {
            upid: "UPID:pve1:00001234:00ABCDEF:65000000:vzstart:105:root@pam:".into(),
            action: model::TaskKind::Start,
            started_at: Utc::now(),
        });
    })
    .await;
    for _ in 0..3 {
        api.store
            .append_event(
                s.id,
                EventType::Warning,
                "AgentInstallFailed",
                "attempt 1: no space left",
            )
            .await
            .unwrap();
    }
    let id = s.id.to_string();
    let cases: &[(&str, &str)] = &[
        ("the full id", &id),
        ("the hostname", "mc-paper-105"),
        ("the vmid", "105"),
        ("the end of the id, as the table shows it", &id[28..]),
        ("the start of the id", &id[..13]),
    ];
    for (reason, name) in cases {
        let r = api.run(&["describe", "server", name]).await;
        assert_eq!(r.code, 0, "{reason}: {r}");
        for want in [
            id.as_str(),
            "failed",
            "Conditions:",
            "AgentReady",
            "AgentError",
            "Agent reported error: no space left",
            "transient",
            "agent unreachable: connection refused",
            "Attempts:",
            "vzstart",
            "AgentInstallFailed",
            "kind: game",
            "variant: paper",
        ] {
            assert!(r.stdout.contains(want), "{reason}: wants {want}: {r}");
        }
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains("AgentInstallFailed") && l.contains(" 3 ")),
            "{reason}: the folded count: {r}"
        );
    }

    let r = api.run(&["describe", "server", &id, "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r}");
    let v = r.json();
    assert_eq!(v["server"]["phase"], "failed");
    assert_eq!(v["server"]["status"]["failure"]["step"], "wait-for-agent");
    assert_eq!(v["events"][0]["count"], 3);

    let r = api.run(&["events", "mc-paper-105"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("AgentInstallFailed"), "{r}");
    assert!(
        r.stdout.lines().next().unwrap().contains("LAST SEEN"),
        "{r}"
    );
    let r = api.run(&["events", &id, "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["items"][0]["reason"], "AgentInstallFailed");
}

// --- create --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_wait_ends_when_ready() {
    let api = Api::start().await;
    let file = api.write("spec.yaml", SPEC_YAML);
    let child = api
        .zctl(&["create", "-f", file.to_str().unwrap(), "--wait"])
        .spawn()
        .unwrap();
    let s = api.until(|s| s.customer_id == "u000").await;
    api.drive(s.id, |s, st| {
        st.set_condition(
            ConditionType::VmidAllocated,
            ConditionStatus::False,
            "Allocating",
            "",
            s.generation,
            Utc::now(),
        );
    })
    .await;
    api.make_ready(s.id, 110).await;
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains(&s.id.to_string()), "{r}");
    assert!(r.stderr.contains("ready"), "progress ends ready: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_wait_of_a_failing_server_exits_1() {
    let api = Api::start().await;
    let file = api.write("spec.yaml", SPEC_YAML);
    let child = api
        .zctl(&["create", "-f", file.to_str().unwrap(), "--wait"])
        .spawn()
        .unwrap();
    let s = api.until(|s| s.customer_id == "u000").await;
    api.make_failed(s.id, "Agent install did not finish before the deadline")
        .await;
    let r = finish(child).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr
            .contains("Agent install did not finish before the deadline"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_reads_json_yaml_and_stdin_with_options() {
    let api = Api::start().await;
    // A bare JSON spec with --customer and an idempotency key, twice: the same server.
    let json = api.write(
        "spec.json",
        r#"{"kind":"game","game":"minecraft","variant":"paper","version":"1.21.7"}"#,
    );
    let args = [
        "create",
        "-f",
        json.to_str().unwrap(),
        "--customer",
        "u7",
        "--idempotency-key",
        "k-1",
        "-o",
        "json",
    ];
    let a = api.run(&args).await;
    assert_eq!(a.code, 0, "{a}");
    let b = api.run(&args).await;
    assert_eq!(b.code, 0, "{b}");
    assert_eq!(a.json()["server"]["id"], b.json()["server"]["id"]);
    assert_eq!(a.json()["server"]["customerId"], "u7");
    assert!(a.json()["operationId"].is_string());

    // Standard input.
    let mut c = api.zctl(&["create", "-f", "-", "--customer", "u8"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"kind: dev\nruntime: node\nversion: \"22\"\n")
            .await
            .unwrap();
    }
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("accepted"), "{r}");
}

// --- reconcile -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_wait_reports_each_outcome() {
    let api = Api::start().await;
    let ready = api.seed("u1", paper()).await;
    api.make_ready(ready.id, 120).await;
    let failed = api.seed("u1", paper()).await;
    api.make_failed(failed.id, "boom").await;
    let queued = api.seed("u1", paper()).await;

    type Case = (&'static str, Vec<String>, i32);
    let cases: Vec<Case> = vec![
        (
            "a Ready server is Ready at once",
            vec!["mc-paper-120".into()],
            0,
        ),
        (
            "a failed server without --retry stays failed",
            vec![failed.id.to_string()],
            1,
        ),
        (
            "one failed among several fails the whole",
            vec![ready.id.to_string(), failed.id.to_string()],
            1,
        ),
        (
            "a server that never gets Ready times out",
            vec![queued.id.to_string(), "--timeout".into(), "300ms".into()],
            1,
        ),
    ];
    for (reason, ids, code) in cases {
        let mut args = vec!["reconcile", "--wait"];
        args.extend(ids.iter().map(String::as_str));
        let r = api.run(&args).await;
        assert_eq!(r.code, code, "{reason}: {r}");
        assert!(r.stdout.contains("reconcile requested"), "{reason}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_retry_wait_follows_the_retry_to_ready() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;
    api.make_failed(s.id, "boom").await;
    let child = api
        .zctl(&["reconcile", &s.id.to_string(), "--retry", "--wait"])
        .spawn()
        .unwrap();
    // The controller sees the retry request, clears the failure and provisions.
    let seen = api.until(|x| x.retry_requested_at.is_some()).await;
    assert_eq!(seen.id, s.id);
    api.make_ready(s.id, 121).await;
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("with retry"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_all_touches_every_matching_server() {
    let api = Api::start().await;
    let a = api.seed("u1", paper()).await;
    let b = api.seed("u2", paper()).await;
    let r = api.run(&["reconcile", "--all", "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["queued"], 2, "{r}");
    let r = api
        .run(&["reconcile", "--all", "--customer", "u2", "-o", "json"])
        .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["ids"], serde_json::json!([b.id]), "{r}");
    assert!(!r.stdout.contains(&a.id.to_string()), "{r}");
    let r = api.run(&["reconcile", "--all", "--customer", "u2"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("requested for 1 server(s)"), "{r}");
}

/// `reconcile --all --wait` waits for exactly the servers the bulk call queued: all Ready
/// (already) → exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_all_wait_follows_the_queued_servers() {
    let api = Api::start().await;
    let a = api.seed("u1", paper()).await;
    let b = api.seed("u1", paper()).await;
    api.make_ready(a.id, 141).await;
    api.make_ready(b.id, 142).await;
    let r = api
        .run(&["reconcile", "--all", "--wait", "--timeout", "30s"])
        .await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("requested for 2 server(s)"), "{r}");
}

// --- delete, pause, resume -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_wait_ends_when_the_server_is_gone() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;
    api.make_ready(s.id, 130).await;
    let child = api
        .zctl(&["delete", "mc-paper-130", "--wait"])
        .spawn()
        .unwrap();
    api.until(|x| x.id == s.id && x.is_deleting()).await;
    // The controller tears down and archives the row.
    api.store.archive_and_delete(s.id, None).await.unwrap();
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("deletion requested"), "{r}");
    assert!(api.get(s.id).await.is_none());

    // Deleting without --wait answers at once; the row stays until the controller acts.
    let s = api.seed("u1", paper()).await;
    let r = api.run(&["delete", &s.id.to_string()]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(api.get(s.id).await.unwrap().is_deleting());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;
    let id = s.id.to_string();
    let r = api.run(&["pause", &id]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("paused"), "{r}");
    assert!(api.get(s.id).await.unwrap().paused);
    let r = api.run(&["get", "servers"]).await;
    assert!(r.stdout.contains("paused"), "{r}");
    let r = api.run(&["resume", &id, "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["paused"], false);
    assert!(!api.get(s.id).await.unwrap().paused);
}

// --- start, stop, restart ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_restart_change_the_spec() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;
    api.make_ready(s.id, 140).await;

    let r = api.run(&["stop", "mc-paper-140"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("stop game requested"), "{r}");
    let after = api.get(s.id).await.unwrap();
    assert_eq!(after.spec.process, Some(model::Process::Stopped));
    assert_eq!(after.generation, s.generation + 1);

    // Already stopped: said so, nothing written.
    let r = api.run(&["stop", &s.id.to_string()]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("game already stopped"), "{r}");
    assert_eq!(api.get(s.id).await.unwrap(), after);

    let r = api
        .run(&["restart", &s.id.to_string(), "--container", "-o", "json"])
        .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["changed"], true, "{r}");
    let rebooted = api.get(s.id).await.unwrap();
    assert_eq!(rebooted.spec.restarts.container, 1);
    assert_eq!(rebooted.spec.restarts.game, 0);
    assert_eq!(rebooted.spec.power, model::Power::Running);
    assert_eq!(
        rebooted.spec.process,
        Some(model::Process::Stopped),
        "the game stays as asked"
    );
    assert_eq!(rebooted.generation, after.generation + 1);
    let events = api.store.list_events(s.id, 10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason == "PowerRequested" && e.message.starts_with("restart container")),
        "{events:?}"
    );

    // A viewer may not; a dev container has no game to start.
    let viewer = api.h.token(Role::Viewer, None).await;
    let r = run(api.zctl_with(&["start", &s.id.to_string()], &viewer)).await;
    assert_eq!(r.code, 5, "{r}");
    let dev = api.seed("u1", ServerSpec::dev("node", "22")).await;
    let r = api.run(&["stop", &dev.id.to_string()]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("stop container requested"), "{r}");
    assert_eq!(
        api.get(dev.id).await.unwrap().spec.power,
        model::Power::Stopped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_wait_follows_the_new_generation_to_ready() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;
    api.make_ready(s.id, 141).await;
    let child = api
        .zctl(&["restart", "mc-paper-141", "--wait"])
        .spawn()
        .unwrap();
    // The old generation's Ready does not end the wait; the controller's new one does.
    let bumped = api
        .until(|x| x.id == s.id && x.spec.restarts.game == 1)
        .await;
    assert_eq!(bumped.generation, s.generation + 1);
    api.make_ready(s.id, 141).await;
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("restart game requested"), "{r}");
    assert!(r.stderr.contains("ready"), "{r}");
}

// --- orphans and status --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_and_controller_status() {
    let api = Api::start().await;
    let r = api.run(&["orphans"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("No orphans"), "{r}");

    let marker = ServerId::new().to_string();
    api.store
        .replace_orphans(&[Orphan {
            vmid: 4242,
            node: "pve2".into(),
            marker: marker.clone(),
            name: Some("mc-paper-4242".into()),
            first_seen: Utc::now(),
            last_seen: Utc::now(),
        }])
        .await
        .unwrap();
    let r = api.run(&["orphans"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("4242") && r.stdout.contains(&marker),
        "{r}"
    );
    let r = api.run(&["orphans", "-o", "json"]).await;
    assert_eq!(r.json()["items"][0]["vmid"], 4242);

    let r = api.run(&["status"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("0 replica(s)"), "{r}");
    api.store
        .heartbeat(&ReplicaInfo {
            id: "ctl-a".into(),
            started_at: Utc::now(),
            last_seen: Utc::now(),
            queue_depth: 7,
            workers_busy: 2,
            leases_held: 0,
        })
        .await
        .unwrap();
    let r = api.run(&["status"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("ctl-a"), "{r}");
    assert!(r.stdout.contains("queue depth 7"), "{r}");
    let r = api.run(&["status", "-o", "json"]).await;
    assert_eq!(r.json()["queueDepth"], 7, "{r}");
    assert_eq!(r.json()["replicas"][0]["id"], "ctl-a", "{r}");
}

// --- warm pools ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pools_shows_counts_and_members() {
    let api = Api::start().await;
    let r = api.run(&["get", "pools"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("No warm pools"), "{r}");
    let new = model::NewPoolMember {
        template: 900,
        node: "pve".into(),
        template_digest: "f1".into(),
        template_version: None,
    };
    let range = model::store::VmidRange {
        min: 5000,
        max: 5999,
    };
    let m = api
        .store
        .reserve_pool_member(&new, model::Kind::Game, range, &[])
        .await
        .unwrap();
    api.store.member_ready(m.vmid).await.unwrap();
    let r = api.run(&["get", "pools"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("TEMPLATE") && r.stdout.contains("900") && r.stdout.contains("FREE"),
        "{r}"
    );
    let r = api.run(&["get", "pools", "-o", "json"]).await;
    assert_eq!(r.json()["items"][0]["free"], 1, "{r}");
    assert_eq!(r.json()["items"][0]["members"][0]["vmid"], 5000, "{r}");
}

// --- exit codes and errors -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;
    let id = s.id.to_string();
    let viewer = api.h.token(Role::Viewer, None).await;
    let wrong = new_token_secret();
    let closed = closed_port().await;
    let bad_spec = api.write("bad.yaml", "kind: game\nversion: 1\nmemory: lots\n");
    let unoffered = api.write(
        "unoffered.yaml",
        "customerId: u1\nspec:\n  kind: game\n  game: minecraft\n  variant: paper\n  version: \"0.0.1\"\n",
    );
    let bad_config = api.write("bad.toml", "api_url = 3\n");
    let unknown = ServerId::new().to_string();

    struct Case<'a> {
        reason: &'a str,
        args: Vec<&'a str>,
        token: &'a str,
        url: Option<&'a str>,
        code: i32,
        stderr: &'a str,
    }
    let op = api.token.as_str();
    let cases = vec![
        Case {
            reason: "an unknown server id is not found",
            args: vec!["describe", "server", &unknown],
            token: op,
            url: None,
            code: 4,
            stderr: "not found",
        },
        Case {
            reason: "an unknown hostname is not found",
            args: vec!["events", "mc-nothing-1"],
            token: op,
            url: None,
            code: 4,
            stderr: "no server matches",
        },
        Case {
            reason: "reconciling an unknown server is not found",
            args: vec!["reconcile", &unknown, "--wait"],
            token: op,
            url: None,
            code: 4,
            stderr: "not found",
        },
        Case {
            reason: "a wrong token is not allowed",
            args: vec!["get", "servers"],
            token: &wrong,
            url: None,
            code: 5,
            stderr: "Authentication required",
        },
        Case {
            reason: "a missing token is not allowed",
            args: vec!["get", "servers"],
            token: "",
            url: None,
            code: 5,
            stderr: "ZLH_TOKEN",
        },
        Case {
            reason: "a viewer may not pause",
            args: vec!["pause", &id],
            token: &viewer,
            url: None,
            code: 5,
            stderr: "Not allowed",
        },
        Case {
            reason: "a closed port is unreachable",
            args: vec!["get", "servers"],
            token: op,
            url: Some(&closed),
            code: 3,
            stderr: "cannot reach the API",
        },
        Case {
            reason: "unreachable while watching too",
            args: vec!["get", "servers", "-w"],
            token: op,
            url: Some(&closed),
            code: 3,
            stderr: "cannot reach the API",
        },
        Case {
            reason: "an unusable URL is a configuration error",
            args: vec!["status"],
            token: op,
            url: Some("ftp://127.0.0.1"),
            code: 2,
            stderr: "not usable",
        },
        Case {
            reason: "an unknown flag is a usage error",
            args: vec!["get", "servers", "--frobnicate"],
            token: op,
            url: None,
            code: 2,
            stderr: "--frobnicate",
        },
        Case {
            reason: "reconcile needs ids or --all",
            args: vec!["reconcile"],
            token: op,
            url: None,
            code: 2,
            stderr: "required",
        },
        Case {
            reason: "an unknown phase is a usage error",
            args: vec!["get", "servers", "--phase", "sleepy"],
            token: op,
            url: None,
            code: 2,
            stderr: "sleepy",
        },
        Case {
            reason: "a spec file that is not a spec is a usage error",
            args: vec!["create", "-f", bad_spec.to_str().unwrap()],
            token: op,
            url: None,
            code: 2,
            stderr: "bad.yaml",
        },
        Case {
            reason: "a missing spec file is a usage error",
            args: vec!["create", "-f", "/nonexistent/spec.yaml"],
            token: op,
            url: None,
            code: 2,
            stderr: "cannot read",
        },
        Case {
            reason: "a spec the API refuses fails, naming the field",
            args: vec!["create", "-f", unoffered.to_str().unwrap()],
            token: op,
            url: None,
            code: 1,
            stderr: "spec.version",
        },
        Case {
            reason: "a broken config file is a configuration error",
            args: vec!["--config", bad_config.to_str().unwrap(), "status"],
            token: op,
            url: None,
            code: 2,
            stderr: "bad.toml",
        },
        Case {
            reason: "a missing config file named explicitly is a configuration error",
            args: vec!["--config", "/nonexistent/zctl.toml", "status"],
            token: op,
            url: None,
            code: 2,
            stderr: "cannot read the config file",
        },
        Case {
            reason: "an unreadable token file is a configuration error",
            args: vec!["--token-file", "/nonexistent/token", "status"],
            token: "",
            url: None,
            code: 2,
            stderr: "token file",
        },
    ];
    for c in cases {
        let mut cmd = api.zctl_with(&c.args, c.token);
        if c.token.is_empty() {
            cmd.env_remove("ZLH_TOKEN");
        }
        if let Some(u) = c.url {
            cmd.env("ZLH_API_URL", u);
        }
        let r = run(cmd).await;
        assert_eq!(r.code, c.code, "{}: {r}", c.reason);
        assert!(r.stderr.contains(c.stderr), "{}: {r}", c.reason);
        for secret in [op, viewer.as_str(), wrong.as_str()] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{}: the token leaked: {r}",
                c.reason
            );
        }
        if c.code != 2 {
            assert!(
                r.stderr.starts_with("error: ") && r.stderr.lines().count() <= 6,
                "{}: one readable line plus details: {r}",
                c.reason
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_names_the_api_and_the_token_file() {
    let api = Api::start().await;
    api.seed("u1", paper()).await;
    let token_file = api.write("token", &format!("{}\n", api.token));
    let cfg = api.write(
        "zctl.toml",
        &format!(
            "api_url = \"{}\"\ntoken_file = \"{}\"\n",
            api.base,
            token_file.display()
        ),
    );
    // Explicit --config, no ZLH_* variables.
    let mut c = api.zctl(&["--config", cfg.to_str().unwrap(), "get", "servers"]);
    c.env_remove("ZLH_TOKEN").env_remove("ZLH_API_URL");
    let r = run(c).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("queued"), "{r}");

    // The default location, with a token file relative to the config file.
    let dir = api.dir.join(".config/zlh");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), &api.token).unwrap();
    std::fs::write(
        dir.join("zctl.toml"),
        format!("api_url = \"{}\"\ntoken_file = \"token\"\n", api.base),
    )
    .unwrap();
    let mut c = api.zctl(&["get", "servers"]);
    c.env_remove("ZLH_TOKEN").env_remove("ZLH_API_URL");
    let r = run(c).await;
    assert_eq!(r.code, 0, "{r}");

    // Flags and environment win over the file.
    let mut c = api.zctl(&["get", "servers"]);
    c.env("ZLH_TOKEN", "zlh_wrong");
    let r = run(c).await;
    assert_eq!(r.code, 5, "{r}");
}

// --- help and completions ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_has_examples_and_never_shows_the_token() {
    let api = Api::start().await;
    let r = api.run(&["--help"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("Exit codes"), "{r}");
    assert!(
        !r.stdout.contains(&api.token),
        "the env token is hidden: {r}"
    );
    let subcommands: &[&[&str]] = &[
        &["get", "servers"],
        &["describe", "server"],
        &["reconcile"],
        &["create"],
        &["delete"],
        &["events"],
        &["pause"],
        &["resume"],
        &["start"],
        &["stop"],
        &["restart"],
        &["orphans"],
        &["get", "pools"],
        &["status"],
        &["completions"],
    ];
    for sub in subcommands {
        let mut args = sub.to_vec();
        args.push("--help");
        let r = api.run(&args).await;
        assert_eq!(r.code, 0, "{sub:?}: {r}");
        assert!(r.stdout.contains("Example"), "{sub:?} has an example: {r}");
        assert!(!r.stdout.contains(&api.token), "{sub:?}: {r}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let r = api.run(&["completions", shell]).await;
        assert_eq!(r.code, 0, "{shell}: {r}");
        assert!(r.stdout.contains("zctl"), "{shell}: {r}");
    }
}
