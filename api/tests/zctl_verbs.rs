//! End-to-end tests of zctl's declarative and scripting verbs, run as a process against a
//! real API on 127.0.0.1 over SQLite in a temp dir: `get -o name`, `wait --for`, `apply -f`,
//! `patch`, `customer get|set` and the config file's contexts. The tests play the
//! controller where a verb waits for status.

use api::ApiConfig;
use chrono::Utc;
use model::status::Failure;
use model::store::{Idempotency, NewServer, Store};
use model::{ConditionStatus, ConditionType, Power, Role, Server, ServerId, ServerSpec, Variant};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

#[path = "api/common.rs"]
#[allow(dead_code)] // the API tests' harness; zctl uses part of it
mod common;

#[path = "api/zctl_run.rs"]
#[allow(dead_code)] // each binary uses part of it
mod zctl_run;
use zctl_run::{Run, finish, run};

const ZCTL: &str = env!("CARGO_BIN_EXE_zctl");

struct Api {
    h: common::Harness,
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

    /// `zctl ARGS` with this API and token in the environment, no colour, HOME in the
    /// temp dir (so no config file unless a test writes one).
    fn zctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(ZCTL);
        c.args(args)
            .env_clear()
            .env("HOME", &self.dir)
            .env("ZLH_API_URL", &self.base)
            .env("ZLH_TOKEN", &self.token)
            .env("NO_COLOR", "1")
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

    async fn get(&self, id: ServerId) -> Server {
        self.store.get_server(id).await.unwrap().unwrap()
    }

    /// Write status as the controller would.
    async fn drive(&self, id: ServerId, change: impl FnOnce(&Server, &mut model::ServerStatus)) {
        let s = self.get(id).await;
        let mut st = s.status.clone();
        change(&s, &mut st);
        self.store
            .write_status(id, &st, s.resource_version, None)
            .await
            .unwrap();
    }

    async fn make_ready(&self, id: ServerId) {
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
            st.observed_generation = s.generation;
        })
        .await;
    }

    async fn make_failed(&self, id: ServerId) {
        self.drive(id, |s, st| {
            let now = Utc::now();
            st.set_condition(
                ConditionType::VmidAllocated,
                ConditionStatus::True,
                "Reserved",
                "",
                s.generation,
                now,
            );
            st.failure = Some(Failure {
                step: "wait-for-agent".into(),
                message: "the agent never answered".into(),
                at: now,
                generation: s.generation,
            });
            st.observed_generation = s.generation;
        })
        .await;
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

async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

// --- get -o name, wait --for -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_o_name_prints_names_zctl_takes_back() {
    let api = Api::start().await;
    let a = api.seed("u1", paper()).await;
    let b = api.seed("u1", paper()).await;
    let r = api.run(&["get", "servers", "-o", "name"]).await;
    assert_eq!(r.code, 0, "{r}");
    let mut want = vec![format!("server/{}", a.id), format!("server/{}", b.id)];
    let mut got: Vec<String> = r.stdout.lines().map(str::to_string).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{r}");
    // A name from -o name names the server everywhere.
    let r = api
        .run(&["describe", "server", &want[0], "-o", "json"])
        .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        r.json()["server"]["id"].as_str(),
        Some(want[0].trim_start_matches("server/"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_phases_and_bad_expressions() {
    let api = Api::start().await;

    // Bad expressions: usage errors (exit 2) that say what is accepted.
    let s = api.seed("u1", paper()).await;
    let id = s.id.to_string();
    let cases: &[(&str, &str, &str)] = &[
        ("phase=bogus", "unknown phase 'bogus'", "an unknown phase"),
        (
            "condition=Ready",
            "unknown wait condition 'condition'",
            "an unknown key",
        ),
        ("ready", "is not a wait condition", "no key"),
    ];
    for (expr, part, why) in cases {
        let r = api.run(&["wait", &id, &format!("--for={expr}")]).await;
        assert_eq!(r.code, 2, "{why}: {r}");
        assert!(r.stderr.contains(part), "{why}: {r}");
        assert!(
            r.stderr.contains("phase=PHASE"),
            "{why}: lists the forms: {r}"
        );
    }

    // phase=ready: waits until the controller makes it Ready.
    let child = api
        .zctl(&[
            "wait",
            &format!("server/{id}"),
            "--for=phase=ready",
            "--timeout",
            "30s",
        ])
        .spawn()
        .unwrap();
    api.make_ready(s.id).await;
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("ready"), "{r}");

    // phase=failed is reached by a failure; waiting for ready on it exits 1.
    let f = api.seed("u1", paper()).await;
    let child = api
        .zctl(&[
            "wait",
            &f.id.to_string(),
            "--for=phase=failed",
            "--timeout",
            "30s",
        ])
        .spawn()
        .unwrap();
    api.make_failed(f.id).await;
    let r = finish(child).await;
    assert_eq!(r.code, 0, "{r}");
    let r = api
        .run(&["wait", &f.id.to_string(), "--timeout", "30s"])
        .await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("the agent never answered"), "{r}");

    // A phase not reached in time: exit 1, timed out.
    let q = api.seed("u1", paper()).await;
    let r = api
        .run(&[
            "wait",
            &q.id.to_string(),
            "--for=phase=degraded",
            "--timeout",
            "1s",
        ])
        .await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("timed out"), "{r}");

    // --for=delete of a server already gone (by full id) is done at once.
    let r = api
        .run(&["wait", &ServerId::new().to_string(), "--for=delete"])
        .await;
    assert_eq!(r.code, 0, "{r}");
}

// --- apply, patch ------------------------------------------------------------------------

const APPLY_YAML: &str = "customerId: u1\nspec:\n  kind: game\n  game: minecraft\n  variant: paper\n  version: \"1.21.7\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_once_then_updates_idempotently() {
    let api = Api::start().await;
    let file = api.write("s.yaml", APPLY_YAML);
    let f = file.to_str().unwrap();

    let r = api.run(&["apply", "-f", f]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("created"), "{r}");
    let name = r.stdout.split_whitespace().next().unwrap().to_string();
    assert!(name.starts_with("server/"), "{r}");
    let id: ServerId = name.trim_start_matches("server/").parse().unwrap();

    // The same file again: the same server, not a second one.
    let r = api.run(&["apply", "-f", f]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.starts_with(&name), "{r}");
    assert_eq!(api.store.all_server_ids().await.unwrap().len(), 1);
    let generation = api.get(id).await.generation;

    // Naming the server updates it: configured, then unchanged (nothing sent).
    let update = api.write(
        "u.yaml",
        &format!(
            "id: {id}\n{}  resources: {{ cores: 4, memoryMib: 2048, diskGib: 16 }}\n",
            APPLY_YAML
        ),
    );
    let u = update.to_str().unwrap();
    let r = api.run(&["apply", "-f", u]).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout.trim(), format!("{name} configured"), "{r}");
    let s = api.get(id).await;
    assert_eq!(s.spec.resources.cores, 4);
    assert_eq!(s.generation, generation + 1);
    let r = api.run(&["apply", "-f", u, "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["result"], "unchanged", "{r}");
    assert_eq!(
        api.get(id).await.generation,
        generation + 1,
        "no new generation"
    );

    // --id beats the file, and a customer that does not match is refused.
    let other = api.seed("u2", paper()).await;
    let r = api
        .run(&["apply", "-f", u, "--id", &other.id.to_string()])
        .await;
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("does not match"), "{r}");

    // Bad documents: exit 2, nothing written.
    let cases: &[(&str, &str, &str)] = &[
        (
            "status is not declared",
            "spec:\n  kind: dev\n  runtime: node\n  version: \"22\"\nstatus: {}\n",
            "unknown field `status`",
        ),
        ("not YAML", "spec: [\n", "not valid YAML"),
        ("a list", "- 1\n", "not a mapping"),
    ];
    for (why, text, part) in cases {
        let p = api.write("bad.yaml", text);
        let r = api.run(&["apply", "-f", p.to_str().unwrap()]).await;
        assert_eq!(r.code, 2, "{why}: {r}");
        assert!(r.stderr.contains(part), "{why}: {r}");
    }
    assert_eq!(api.store.all_server_ids().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_sets_fields_and_power_intent() {
    let api = Api::start().await;
    let s = api.seed("u1", paper()).await;
    let id = s.id.to_string();

    let r = api
        .run(&[
            "patch",
            &id,
            "--set",
            "resources.cores=4",
            "--set",
            "power=stopped",
        ])
        .await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("configured"), "{r}");
    let after = api.get(s.id).await;
    assert_eq!(after.spec.resources.cores, 4);
    assert_eq!(after.spec.power, Power::Stopped);
    assert_eq!(after.generation, s.generation + 1);

    let r = api
        .run(&[
            "patch",
            &id,
            "--merge",
            r#"{"resources":{"memoryMib":4096}}"#,
        ])
        .await;
    assert_eq!(r.code, 0, "{r}");
    let after = api.get(s.id).await;
    assert_eq!(after.spec.resources.memory_mib, 4096);
    assert_eq!(
        after.spec.resources.cores, 4,
        "the merge keeps other fields"
    );

    // The same value again changes nothing.
    let r = api.run(&["patch", &id, "--set", "resources.cores=4"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("unchanged"), "{r}");
    assert_eq!(api.get(s.id).await.generation, after.generation);

    // Bad edits: exit 2, the spec untouched.
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["--set", "resources.cores=four"],
            "expected a number",
            "a word for a number",
        ),
        (
            &["--set", "resourcez.cores=4"],
            "unknown field `resourcez`",
            "a misspelt field",
        ),
        (
            &["--set", "power=sleeping"],
            "not valid",
            "an unknown power state",
        ),
        (
            &["--merge", "[1]"],
            "a JSON object",
            "a merge patch that is not an object",
        ),
        (&[], "nothing to change", "no edit at all"),
    ];
    for (extra, part, why) in cases {
        let mut args = vec!["patch", id.as_str()];
        args.extend_from_slice(extra);
        let r = api.run(&args).await;
        assert_eq!(r.code, 2, "{why}: {r}");
        assert!(r.stderr.contains(part), "{why}: {r}");
    }
    assert_eq!(api.get(s.id).await.generation, after.generation);

    // An invalid spec by the API's rules: its field error, exit 1.
    let r = api.run(&["patch", &id, "--set", "resources.cores=0"]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("cores"), "{r}");
}

// --- customers ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_get_and_set() {
    let api = Api::start().await;
    let r = api.run(&["customer", "get", "u7", "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r}");
    let before = r.json();
    assert_eq!(before["standing"], "active", "{r}");

    let r = api
        .run(&[
            "customer",
            "set",
            "u7",
            "--max-servers",
            "9",
            "--standing",
            "overdue",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(r.code, 0, "{r}");
    let after = r.json();
    assert_eq!(after["quota"]["maxServers"], 9, "{r}");
    assert_eq!(
        after["quota"]["maxCores"], before["quota"]["maxCores"],
        "kept"
    );
    assert_eq!(after["standing"], "overdue", "{r}");

    let r = api.run(&["customer", "get", "u7"]).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("overdue") && r.stdout.contains('9'),
        "{r}"
    );

    let r = api.run(&["customer", "set", "u7"]).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("nothing to change"), "{r}");

    // A viewer may read but not set.
    let viewer = api.token(Role::Viewer, None).await;
    let mut c = api.zctl(&["customer", "set", "u7", "--max-servers", "1"]);
    c.env("ZLH_TOKEN", &viewer);
    let r = run(c).await;
    assert_eq!(r.code, 5, "{r}");
}

// --- contexts ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_pick_the_installation() {
    let api = Api::start().await;
    api.seed("u1", paper()).await;
    api.write("good.token", &api.token);
    let dead = closed_port().await;
    let cfg = api.write(
        "zctl.toml",
        &format!("# mine\napi_url = \"{dead}\"\ntoken_file = \"good.token\"\n"),
    );
    let cfg = cfg.to_str().unwrap().to_string();
    // Only the file says where the API is and which token to use.
    let zctl = |args: &[&str]| {
        let mut full = vec!["--config", cfg.as_str()];
        full.extend_from_slice(args);
        let mut c = api.zctl(&full);
        c.env_remove("ZLH_API_URL").env_remove("ZLH_TOKEN");
        c
    };

    // The flat keys as before: the dead URL.
    let r = run(zctl(&["get", "servers"])).await;
    assert_eq!(r.code, 3, "{r}");

    // set-context stores only what the command line gives (not ZLH_API_URL from the
    // environment), a token is refused.
    let mut c = zctl(&["config", "set-context", "good", "--api-url", &api.base]);
    c.env("ZLH_API_URL", &dead);
    assert_eq!(run(c).await.code, 0);
    let mut c = zctl(&["config", "set-context", "dead"]);
    c.env("ZLH_API_URL", &api.base);
    assert_eq!(run(c).await.code, 0);
    let r = run(zctl(&[
        "config",
        "set-context",
        "x",
        "--token",
        "zlh_secret",
    ]))
    .await;
    assert_eq!(r.code, 2, "{r}");
    assert!(!r.stderr.contains("zlh_secret"), "{r}");
    // A relative token file is taken from where the command runs.
    let sub = api.dir.join("elsewhere");
    std::fs::create_dir_all(&sub).unwrap();
    let mut c = zctl(&[
        "config",
        "set-context",
        "rel",
        "--api-url",
        &api.base,
        "--token-file",
        "t.token",
    ]);
    c.current_dir(&sub);
    assert_eq!(run(c).await.code, 0);
    std::fs::write(sub.join("t.token"), &api.token).unwrap();
    let r = run(zctl(&["--context", "rel", "get", "servers", "-o", "name"])).await;
    assert_eq!(r.code, 0, "{r}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.starts_with("# mine"), "comments are kept: {text}");
    assert!(!text.contains("zlh_"), "no token in the file: {text}");

    // use-context: the good one; its missing token_file comes from the flat key.
    let r = run(zctl(&["config", "use-context", "good"])).await;
    assert_eq!(r.code, 0, "{r}");
    let r = run(zctl(&["get", "servers", "-o", "name"])).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.stdout.lines().count(), 1, "{r}");
    let r = run(zctl(&["config", "current-context"])).await;
    assert_eq!(r.stdout.trim(), "good", "{r}");

    // --context and ZCTL_CONTEXT pick another for one command.
    let r = run(zctl(&["--context", "dead", "get", "servers"])).await;
    assert_eq!(r.code, 3, "the dead context has the flat URL: {r}");
    let mut c = zctl(&["get", "servers"]);
    c.env("ZCTL_CONTEXT", "dead");
    assert_eq!(run(c).await.code, 3);

    // get-contexts marks the current one.
    let r = run(zctl(&["config", "get-contexts"])).await;
    assert_eq!(r.code, 0, "{r}");
    let current: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{r}");
    assert!(current[0].contains("good"), "{r}");
    let r = run(zctl(&["config", "get-contexts", "-o", "json"])).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 3, "{r}");

    // Unknown contexts: exit 2 with the names there are.
    let r = run(zctl(&["config", "use-context", "nope"])).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("dead, good, rel"), "{r}");
    let r = run(zctl(&["--context", "nope", "get", "servers"])).await;
    assert_eq!(r.code, 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_verbs_have_examples() {
    let api = Api::start().await;
    for sub in ["wait", "apply", "patch", "customer", "config"] {
        let r = api.run(&[sub, "--help"]).await;
        assert_eq!(r.code, 0, "{sub}: {r}");
        assert!(r.stdout.contains("Example"), "{sub} has an example: {r}");
    }
    let r = api.run(&["--help"]).await;
    assert!(r.stdout.contains("--color <WHEN>"), "{r}");
    assert!(r.stdout.contains("--context <NAME>"), "{r}");
}
