//! `zlhd dev` as a person runs it: one process with SQLite, simulators, API and controller on
//! free loopback ports. A server created through the API gets Ready; SIGTERM exits cleanly;
//! a restart on the same data directory resumes with the same data.

use api::ApiClient;
use api::wire::CreateServerRequest;
use model::{Phase, ServerSpec, Variant};
use secrecy::SecretString;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use zlh_tests::process::{spawn_dev, zlhd_path};

const T: Duration = Duration::from_secs(60);

/// Wait for `dev.json` newer than `after` and return (api_url, operator token).
async fn dev_state(dir: &Path, after: std::time::SystemTime) -> (String, String) {
    let path = dir.join("dev.json");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.modified().is_ok_and(|m| m >= after)
            && let Ok(text) = std::fs::read_to_string(&path)
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

async fn wait_ready(client: &ApiClient, id: model::ServerId) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Ok(s) = client.get(id).await
            && s.phase().0 == Phase::Ready
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "server {id} not Ready in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "zlhd dev did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zlhd_dev_runs_serves_stops_cleanly_and_resumes() {
    let dir = std::env::temp_dir().join(format!("zlh-dev-{}", model::ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let started = std::time::SystemTime::now();
    let mut child = spawn_dev(&dir, "first.log");
    let (url, token) = dev_state(&dir, started).await;
    assert!(url.starts_with("http://127.0.0.1:"), "loopback only: {url}");
    let client = ApiClient::new(&url, Some(SecretString::from(token))).unwrap();
    let accepted = client
        .create(
            &CreateServerRequest {
                customer_id: Some("u000".into()),
                spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
            },
            Some("dev-test-1"),
        )
        .await
        .expect("create through the API");
    let id = accepted.server.id;
    wait_ready(&client, id).await;

    let status = sigterm_and_wait(&mut child);
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap_or_default();
    assert!(
        status.success(),
        "clean exit after SIGTERM: {status:?}\n{log}"
    );

    // Same data directory: the server is still declared and converges again (the
    // simulators start empty, so it is provisioned anew).
    let restarted = std::time::SystemTime::now();
    let mut child = spawn_dev(&dir, "second.log");
    let (url, token) = dev_state(&dir, restarted).await;
    let client = ApiClient::new(&url, Some(SecretString::from(token))).unwrap();
    let s = client
        .get(id)
        .await
        .expect("the server survived the restart");
    assert_eq!(s.spec.variant, Some(Variant::Paper));
    wait_ready(&client, id).await;
    assert!(sigterm_and_wait(&mut child).success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `zlhd dev` simulates only what the config does not point at a real system: here a
/// "real" Technitium (another process's server, as far as zlh can tell) is configured, so dev
/// runs no Technitium simulator and the records land on the configured server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_uses_a_configured_backend_instead_of_its_simulator() {
    use controller::config::{Config, TechnitiumSection};
    use edge_client::sim::{TechnitiumSim, TechnitiumSimConfig};
    use zlhd::sim::{SimOptions, SimStack};

    let external = TechnitiumSim::start(TechnitiumSimConfig {
        zone: "example.test".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("zlh-devmix-{}", model::ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("technitium-token");
    std::fs::write(&token_file, external.token()).unwrap();
    let mut cfg = Config {
        database_url: format!("sqlite://{}/zlh.db", dir.display()),
        technitium: Some(TechnitiumSection {
            url: external.url(),
            token_file,
            requests_per_sec: 1000,
            timeout: TechnitiumSection::DEFAULT_TIMEOUT,
        }),
        ..Config::default()
    };
    cfg.edge.zone = "example.test".into();
    let options = SimOptions::for_config(&cfg, 200.0);
    let set = options.set;
    assert!(
        !set.technitium && set.proxmox && set.cloudflare,
        "only Technitium is real"
    );
    let sims = SimStack::start(options).await.unwrap();
    sims.configure(&mut cfg);
    assert_eq!(
        cfg.edge.zone, "example.test",
        "the real server's zone is kept"
    );
    let store = zlhd::run::open_store(&cfg).await.unwrap();
    let ctl = std::sync::Arc::new(controller::engine::Controller::new(
        store.clone(),
        sims.backends(&cfg).unwrap(),
        cfg.clone(),
        std::sync::Arc::new(model::SystemClock),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(ctl.clone().run(stop.clone()));
    use model::store::Store;
    let created = store
        .create_server(model::store::NewServer {
            customer_id: "u1".into(),
            spec: ServerSpec::minecraft(Variant::Paper, "1.21.7"),
            idempotency: None,
            enforce_quota: false,
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let s = store.get_server(created.server.id).await.unwrap().unwrap();
        if s.phase().0 == Phase::Ready {
            let fqdn = s.status.fqdn.unwrap();
            assert!(
                !external.observed(&fqdn).is_empty(),
                "records on the configured server"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not Ready: {:?}",
            s.phase()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad configuration is one clear message naming the key, and exit code 2; the effective
/// configuration prints without secrets.
#[test]
fn zlhd_config_errors_name_the_key_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("zlh-cfg-{}", model::ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &str, &[&str], &str)] = &[
        (
            "a typo in a section",
            "[controller]\nwrkers = 4\n",
            &["config", "print"],
            "wrkers",
        ),
        (
            "a wrong type",
            "[controller]\nworkers = \"x\"\n",
            &["config", "print"],
            "workers",
        ),
        (
            "an impossible range",
            "[vmids]\ngame = [7000, 6000]\n",
            &["migrate"],
            "vmids.game",
        ),
        (
            "a customer token needs its customer",
            "",
            &["token", "create", "--role", "customer"],
            "--customer",
        ),
    ];
    for (reason, toml, args, needle) in cases {
        let file = dir.join("zlh.toml");
        std::fs::write(&file, toml).unwrap();
        let out = Command::new(zlhd_path())
            .arg("--config")
            .arg(&file)
            .args(*args)
            .env(
                "ZLH_DATABASE_URL",
                format!("sqlite://{}/zlh.db", dir.display()),
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{reason}: {stderr}");
        assert!(stderr.contains(needle), "{reason}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{reason}: one line: {stderr}"
        );
    }
    let secret = dir.join("pve-secret");
    std::fs::write(&secret, "super-secret-value").unwrap();
    std::fs::write(
        dir.join("zlh.toml"),
        format!(
            "[proxmox]\nurl = \"https://127.0.0.1:8006\"\ntoken_secret_file = \"{}\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let out = Command::new(zlhd_path())
        .args(["--config"])
        .arg(dir.join("zlh.toml"))
        .args(["config", "print"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("token_secret_file") && !stdout.contains("super-secret-value"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: `zlhd sim --state-file` wrote the simulators' credentials world-readable (and
/// a file left from an earlier run kept its mode).
#[test]
fn zlhd_sim_writes_its_state_file_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("zlh-sim-{}", model::ServerId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("sim.json");
    std::fs::write(&state, "").unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = std::fs::File::create(dir.join("sim.log")).unwrap();
    let mut child = Command::new(zlhd_path())
        .arg("sim")
        .arg("--state-file")
        .arg(&state)
        .env_remove("ZLH_CONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn zlhd sim");
    let deadline = std::time::Instant::now() + T;
    let endpoints = loop {
        if let Ok(text) = std::fs::read_to_string(&state)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "zlhd sim did not write its state file"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(endpoints["proxmox_token_secret"].is_string(), "{endpoints}");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials are the owner's only");
    assert!(sigterm_and_wait(&mut child).success());
    std::fs::remove_dir_all(&dir).unwrap();
}
