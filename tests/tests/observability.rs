//! Observability against Prometheus's own tool, `promtool` (Debian's `prometheus` package;
//! these tests fail, never skip, without it): the `/metrics` of `zlhd serve`, `zlhd api` and
//! `zlhd controller` pass `promtool check metrics`; the shipped alert rules pass `promtool
//! check rules` and their unit tests; every query of the shipped dashboard is valid PromQL
//! naming a metric `/metrics` exports; `promtool check service-discovery`, run on the
//! shipped Prometheus config pointed at `zlhd dev`, lists each Ready server's exporters with
//! their labels and drops a deleted one; and a wedged store turns the controller listener's
//! `/readyz` unready and stops the watchdog's keep-alives.

use api::ApiClient;
use api::wire::CreateServerRequest;
use model::{Phase, ServerId, ServerSpec, Variant};
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use zlh_tests::process::{Zlhd, spawn_dev, write_config};
use zlh_tests::{World, WorldOptions};

const T: Duration = Duration::from_secs(60);
/// The child's log: warnings, and the lines that name the addresses it listens on.
const CHILD_LOG: &str = "warn,api::router=info,zlhd::listener=info";
const API_LISTENING: &str = "API listening";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `$PROMTOOL`, or `promtool` on the `PATH`.
fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return p.into();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "promtool is required (Debian's prometheus package: apt-get install prometheus; \
                 .ci/run installs it), or set PROMTOOL"
            )
        })
}

/// Run promtool; returns (success, stdout, stderr).
fn run_promtool(args: &[&std::ffi::OsStr], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `promtool check metrics` finds nothing to complain about in `text`.
fn assert_promtool_metrics(text: &str, what: &str) {
    assert!(
        text.contains("# HELP zlh_"),
        "{what}: some metrics:\n{text}"
    );
    let (ok, out, err) = run_promtool(&["check".as_ref(), "metrics".as_ref()], Some(text));
    assert!(
        ok && out.trim().is_empty() && err.trim().is_empty(),
        "{what}: promtool check metrics:\n{out}{err}"
    );
    // Every `_seconds` histogram has buckets: none is a summary.
    assert!(!text.contains("quantile=\""), "{what}: no summaries");
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET a `/metrics`: 200 in the text format.
async fn scrape(base: &str) -> String {
    let res = get(&format!("{base}/metrics")).await;
    assert_eq!(res.status(), 200, "{base}/metrics");
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    res.text().await.unwrap()
}

/// The sample names in an exposition (`zlh_x_bucket`, `zlh_y_total`, ...).
fn samples(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The `zlh_*` metric names a PromQL expression reads.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("zlh_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Every query of the shipped dashboard (rows' panels included), which must be JSON.
fn dashboard_exprs() -> Vec<String> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("every target has an expr");
                out.push(expr.to_string());
            }
            walk(&p["panels"], out);
        }
    }
    let text = std::fs::read_to_string(repo("deploy/grafana/zlh-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}
#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}
#[derive(Deserialize)]
struct Rule {
    alert: String,
    expr: String,
}

fn alert_rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(repo("deploy/prometheus/zlh-alerts.yml")).unwrap();
    let file: RuleFile = serde_saphyr::from_str(&text).expect("the rules are YAML");
    file.groups.into_iter().flat_map(|g| g.rules).collect()
}

/// Every `zlh_*` name the dashboard and the alerts read is a sample in `exported`.
fn assert_queries_name_exported_metrics(exported: &BTreeSet<String>) {
    let mut read: BTreeMap<String, String> = BTreeMap::new();
    for e in dashboard_exprs() {
        for n in names_in(&e) {
            read.insert(n, format!("dashboard: {e}"));
        }
    }
    for r in alert_rules() {
        for n in names_in(&r.expr) {
            read.insert(n, format!("alert {}", r.alert));
        }
    }
    assert!(read.len() >= 15, "the dashboard reads the fleet: {read:?}");
    let missing: Vec<String> = read
        .iter()
        .filter(|(n, _)| !exported.contains(*n))
        .map(|(n, w)| format!("{n} ({w})"))
        .collect();
    assert!(
        missing.is_empty(),
        "queries name metrics /metrics does not export:\n{}",
        missing.join("\n")
    );
}

/// The shipped alert rules pass `promtool check rules` and `promtool test rules` (each alert
/// fires on the series meant to raise it, after its `for`, and not before); the dashboard is
/// JSON whose every query is valid PromQL (checked as recording rules).
#[test]
fn the_alert_rules_and_the_dashboard_queries_pass_promtool() {
    let rules = repo("deploy/prometheus/zlh-alerts.yml");
    let (ok, out, err) = run_promtool(
        &["check".as_ref(), "rules".as_ref(), rules.as_os_str()],
        None,
    );
    assert!(ok, "promtool check rules:\n{out}{err}");
    let names: BTreeSet<String> = alert_rules().into_iter().map(|r| r.alert).collect();
    for want in [
        "ZlhServersDegraded",
        "ZlhServersFailed",
        "ZlhNoSuccessfulResync",
        "ZlhNoLiveController",
        "ZlhProxmoxErrorRate",
        "ZlhMirrorFeedLag",
    ] {
        assert!(names.contains(want), "{want} is shipped: {names:?}");
    }
    let tests = repo("deploy/prometheus/zlh-alerts.test.yml");
    let (ok, out, err) = run_promtool(
        &["test".as_ref(), "rules".as_ref(), tests.as_os_str()],
        None,
    );
    assert!(ok, "promtool test rules:\n{out}{err}");

    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let mut file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        // Grafana's variable is not PromQL; any range stands in for it.
        let e = e.replace("$__rate_interval", "5m");
        let quoted = serde_json::to_string(&e).unwrap();
        file.push_str(&format!(
            "      - record: zlh_dashboard_query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = std::env::temp_dir().join(format!("zlh-dash-{}", ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("queries.yml");
    std::fs::write(&path, &file).unwrap();
    let (ok, out, err) = run_promtool(
        &["check".as_ref(), "rules".as_ref(), path.as_os_str()],
        None,
    );
    assert!(
        ok,
        "the dashboard's queries are PromQL:\n{out}{err}\n{file}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `zlhd serve` (API and engine in one process, SQLite) with a server made Ready: its
/// `/metrics` passes `promtool check metrics`, and every metric the dashboard and the
/// alerts read is among what it exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_metrics_pass_promtool_and_cover_the_dashboard_and_the_alerts() {
    promtool();
    let w = World::new(WorldOptions::default()).await;
    let dir = std::env::temp_dir().join(format!("zlh-obs-serve-{}", ServerId::new()));
    let config = write_config(&w, &dir, |_| {});
    let log = dir.join("zlhd.log");
    let mut z = Zlhd::spawn_env(
        &config,
        &["--log-format", "json", "serve"],
        &log,
        &[("RUST_LOG", CHILD_LOG)],
    );
    let api = format!("http://{}", z.logged_addr(API_LISTENING, T).await);
    w.create("u1", ServerSpec::minecraft(Variant::Paper, "1.21.7"))
        .await;
    w.create("u2", ServerSpec::dev("node", "22")).await;
    w.wait_all(Some(Phase::Ready), T).await;
    assert_eq!(get(&format!("{api}/healthz")).await.status(), 200);
    // Wait for a resync after Ready, so the fleet gauges have seen the servers.
    let text = {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let text = scrape(&api).await;
            if text.contains("zlh_servers{phase=\"ready\"} 2") {
                break text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no resync counted the Ready servers:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_promtool_metrics(&text, "zlhd serve");
    let exported = samples(&text);
    for histogram in [
        "zlh_reconcile_duration_seconds_bucket",
        "zlh_backend_request_duration_seconds_bucket",
        "zlh_api_request_duration_seconds_bucket",
        "zlh_workqueue_wait_duration_seconds_bucket",
        "zlh_time_to_ready_seconds_bucket",
    ] {
        assert!(exported.contains(histogram), "{histogram} has buckets");
    }
    assert_queries_name_exported_metrics(&exported);
    z.kill9().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The split layout: `zlhd api` and `zlhd controller` as two processes. Both `/metrics` pass
/// `promtool check metrics`; the controller's own listener answers `/healthz`, `/readyz`
/// once a resync round completed, and problem+json for anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_layout_metrics_pass_promtool_and_the_controller_listener_answers() {
    promtool();
    let w = World::new(WorldOptions::default()).await;
    let dir = std::env::temp_dir().join(format!("zlh-obs-split-{}", ServerId::new()));
    let config = write_config(&w, &dir, |_| {});
    let env = [("RUST_LOG", CHILD_LOG)];
    let mut api_z = Zlhd::spawn_env(
        &config,
        &["--log-format", "json", "api"],
        &dir.join("api.log"),
        &env,
    );
    let mut ctl_z = Zlhd::spawn_env(
        &config,
        &["--log-format", "json", "controller"],
        &dir.join("controller.log"),
        &env,
    );
    let api = format!("http://{}", api_z.logged_addr(API_LISTENING, T).await);
    let ctl_addr = ctl_z.logged_addr(zlhd::listener::LISTENING, T).await;
    assert!(ctl_addr.ip().is_loopback(), "{ctl_addr}");
    let ctl = format!("http://{ctl_addr}");
    w.create("u1", ServerSpec::minecraft(Variant::Paper, "1.21.7"))
        .await;
    w.wait_all(Some(Phase::Ready), T).await;

    assert_eq!(get(&format!("{ctl}/healthz")).await.status(), 200);
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let res = get(&format!("{ctl}/readyz")).await;
        if res.status() == 200 {
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["status"], "ready");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the controller never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (method, path, status) in [
        (reqwest::Method::GET, "/nothing", 404),
        (reqwest::Method::POST, "/readyz", 405),
    ] {
        let res = reqwest::Client::new()
            .request(method.clone(), format!("{ctl}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{method} {path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/problem+json"), "{ct}");
        let p: serde_json::Value = res.json().await.unwrap();
        assert_eq!(p["status"], status);
    }

    let ctl_text = scrape(&ctl).await;
    assert_promtool_metrics(&ctl_text, "zlhd controller");
    let ctl_samples = samples(&ctl_text);
    for engine in [
        "zlh_reconcile_total",
        "zlh_controller_loop_timestamp_seconds",
        "zlh_backend_requests_total",
    ] {
        assert!(
            ctl_samples.contains(engine),
            "the controller exports {engine}"
        );
    }
    assert_eq!(get(&format!("{api}/healthz")).await.status(), 200);
    let api_text = scrape(&api).await;
    assert_promtool_metrics(&api_text, "zlhd api");
    assert!(samples(&api_text).contains("zlh_api_requests_total"));
    assert!(
        !samples(&api_text).contains("zlh_reconcile_total"),
        "the API process runs no engine"
    );
    ctl_z.kill9().await;
    api_z.kill9().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// (api_url, operator token) from `dev.json`, once written.
async fn dev_state(dir: &Path) -> (String, String) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("dev.json"))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            return (
                v["api_url"].as_str().unwrap().to_string(),
                v["operator_token"].as_str().unwrap().to_string(),
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "zlhd dev did not write dev.json"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `promtool check service-discovery` reports for one target.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Discovered {
    discovered_labels: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

/// The shipped Prometheus config, pointed at `api` with the token in `token_file`; each
/// replaced value must be in the example (so the example cannot drift from what is tested).
fn prometheus_config(api: &str, token_file: &Path) -> String {
    let example = std::fs::read_to_string(repo("deploy/prometheus/prometheus.yml")).unwrap();
    let rules = repo("deploy/prometheus/zlh-alerts.yml");
    let mut cfg = example;
    for (from, to) in [
        (
            "http://127.0.0.1:8080/api/sd/targets".to_string(),
            format!("{api}/api/sd/targets"),
        ),
        (
            "/etc/prometheus/zlh-token".to_string(),
            token_file.display().to_string(),
        ),
        (
            "- zlh-alerts.yml".to_string(),
            format!("- {}", rules.display()),
        ),
    ] {
        assert!(cfg.contains(&from), "the example config has {from}");
        cfg = cfg.replace(&from, &to);
    }
    cfg
}

/// `promtool check service-discovery` of the `zlh-servers` job. promtool always waits its
/// whole `--timeout` for updates; one HTTP discovery on loopback takes milliseconds.
fn discover(config: &Path) -> Vec<Discovered> {
    let (ok, out, err) = run_promtool(
        &[
            "check".as_ref(),
            "service-discovery".as_ref(),
            "--timeout=10s".as_ref(),
            config.as_os_str(),
            "zlh-servers".as_ref(),
        ],
        None,
    );
    assert!(ok, "promtool check service-discovery:\n{out}{err}");
    assert!(
        !err.contains("Unable to refresh"),
        "discovery failed:\n{err}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `zlhd dev` with a game and a dev server Ready; Prometheus's own discovery (promtool, on
/// the shipped config with a token file) lists node_exporter for both and the Minecraft
/// exporter for the game, each with its labels and the `instance` the config relabels; once
/// the dev server is deleted, its target is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_discovery_of_zlhd_dev_is_what_prometheus_reads() {
    promtool();
    let dir = std::env::temp_dir().join(format!("zlh-obs-sd-{}", ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = spawn_dev(&dir, "dev.log");
    let (api, token) = dev_state(&dir).await;
    assert!(api.starts_with("http://127.0.0.1:"), "loopback: {api}");
    let client = ApiClient::new(&api, Some(SecretString::from(token.clone()))).unwrap();
    let mut ids = Vec::new();
    for (customer, spec) in [
        ("u000", ServerSpec::minecraft(Variant::Paper, "1.21.7")),
        ("u001", ServerSpec::dev("node", "22")),
    ] {
        let req = CreateServerRequest {
            customer_id: Some(customer.into()),
            spec,
        };
        ids.push(client.create(&req, None).await.unwrap().server.id);
    }
    let deadline = tokio::time::Instant::now() + T;
    let servers = loop {
        let mut ready = Vec::new();
        for id in &ids {
            match client.get(*id).await {
                Ok(s) if s.phase().0 == Phase::Ready => ready.push(s),
                _ => {}
            }
        }
        if ready.len() == ids.len() {
            break ready;
        }
        assert!(tokio::time::Instant::now() < deadline, "not Ready in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (game, dev) = (&servers[0], &servers[1]);
    let ip = |s: &model::Server| s.status.ip.clone().expect("a Ready server has an IP");

    let token_file = dir.join("prometheus-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, prometheus_config(&api, &token_file)).unwrap();

    let found = discover(&config);
    let addrs: BTreeSet<String> = found
        .iter()
        .map(|d| d.labels["__address__"].clone())
        .collect();
    let want: BTreeSet<String> = [
        format!("{}:9100", ip(game)),
        format!("{}:9225", ip(game)),
        format!("{}:9100", ip(dev)),
    ]
    .into();
    assert_eq!(addrs, want, "{found:#?}");
    let mc = found
        .iter()
        .find(|d| d.labels["__address__"] == format!("{}:9225", ip(game)))
        .unwrap();
    let hostname = game.status.hostname.clone().unwrap();
    let expect = [
        ("job", "zlh-servers".to_string()),
        ("instance", format!("{hostname}:minecraft")),
        ("server_id", game.id.to_string()),
        ("vmid", game.status.vmid.unwrap().to_string()),
        ("hostname", hostname.clone()),
        ("customer", "u000".into()),
        ("kind", "game".into()),
        ("game", "minecraft".into()),
        ("variant", "paper".into()),
        ("version", "1.21.7".into()),
        ("node", game.status.node.clone().unwrap()),
        ("exporter", "minecraft".into()),
        ("__metrics_path__", "/metrics".into()),
        ("__scheme__", "http".into()),
    ];
    for (k, v) in &expect {
        assert_eq!(mc.labels.get(*k), Some(v), "label {k}: {mc:#?}");
    }
    for k in ["server_id", "hostname", "kind", "exporter"] {
        assert!(
            mc.discovered_labels
                .contains_key(&format!("__meta_zlh_{k}")),
            "__meta_zlh_{k} is offered to relabelling: {mc:#?}"
        );
    }
    assert!(
        !mc.labels.keys().any(|k| k.starts_with("__meta_")),
        "meta labels are dropped after relabelling"
    );

    client.delete(dev.id).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while !matches!(client.get(dev.id).await, Err(api::ClientError::NotFound(_))) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dev server was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addrs: BTreeSet<String> = discover(&config)
        .iter()
        .map(|d| d.labels["__address__"].clone())
        .collect();
    let want: BTreeSet<String> =
        [format!("{}:9100", ip(game)), format!("{}:9225", ip(game))].into();
    assert_eq!(addrs, want, "the deleted server's target is gone");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A wedged store (PostgreSQL; a transaction holds exclusive locks on the tables the resync
/// claim and the heartbeat write) stops the engine's resync rounds and main loop: `/readyz`
/// on the controller listener turns 503 naming the resync, and the watchdog withholds its
/// keep-alives. Once the lock goes, both recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wedged_store_turns_readyz_unready_and_stops_the_watchdog() {
    use sqlx::Connection;
    let db = zlh_tests::pg::fresh_database("zlh_obs").await;
    let w = World::new(WorldOptions {
        database_url: Some(db.url.clone()),
        ..Default::default()
    })
    .await;
    let running = w.start_controller();
    let health = running.controller.health.clone();
    let listener = zlhd::listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let probe = zlhd::listener::Probe {
        store: w.store.clone(),
        health: health.clone(),
        timing: w.cfg.controller.clone(),
        metrics: controller::metrics::install(),
    };
    tokio::spawn(zlhd::listener::serve(listener, probe, stop.clone()));
    // A watchdog period of many heartbeats (50 ms here) and few resync rounds.
    let period = w.cfg.controller.readiness_resync_max_age();
    let (tx, mut keepalives) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(zlhd::watchdog::run(
        Some(health.clone()),
        period,
        stop.clone(),
        move |ok| {
            let _ = tx.send(ok);
        },
    ));

    let readyz = async || {
        let res = get(&format!("{base}/readyz")).await;
        let status = res.status().as_u16();
        (status, res.text().await.unwrap())
    };
    let wait_status = async |want: u16, what: &str| {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let (status, body) = readyz().await;
            if status == want {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: /readyz stayed {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    // `n` keep-alive decisions in a row equal to `want`.
    let mut wait_keepalives = async |want: bool, n: usize| {
        let mut in_a_row = 0;
        while in_a_row < n {
            let ok = tokio::time::timeout(T, keepalives.recv())
                .await
                .expect("the watchdog decides every half period")
                .expect("the watchdog runs");
            in_a_row = if ok == want { in_a_row + 1 } else { 0 };
        }
    };
    wait_status(200, "a running controller").await;
    wait_keepalives(true, 2).await;

    let mut wedge = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut wedge).await.unwrap();
    sqlx::query("LOCK TABLE singletons, replicas IN ACCESS EXCLUSIVE MODE")
        .execute(&mut wedge)
        .await
        .unwrap();
    let body = wait_status(503, "a wedged store").await;
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    let detail = p["detail"].as_str().unwrap_or("");
    assert!(detail.contains("resync"), "the 503 names the resync: {p}");
    wait_keepalives(false, 3).await;

    sqlx::query("ROLLBACK").execute(&mut wedge).await.unwrap();
    wait_status(200, "the store answers again").await;
    wait_keepalives(true, 1).await;

    stop.cancel();
    running.stop().await;
    drop(w);
    let _ = wedge.close().await;
    db.drop_db().await;
}
