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
use zlh_tests::process::zlhd_path;

const T: Duration = Duration::from_secs(60);

fn spawn_dev(dir: &Path, log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    Command::new(zlhd_path())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--time-scale",
            "100",
            "--data-dir",
        ])
        .arg(dir)
        .env_remove("ZLH_CONFIG")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn zlhd dev")
}

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
