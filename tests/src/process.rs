//! Running `zlhd` as a child process against a `World`'s simulators (which stay in the test
//! process, so their state survives the daemon being killed)..

use crate::World;
use controller::config::{
    AgentSection, CloudflareSection, Config, TechnitiumSection, VelocitySection,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The `zlhd` binary: `$CARGO_BIN_EXE_zlhd` or `$ZLHD` if set, else `<target>/<profile>/zlhd`
/// next to this test binary (`<target>/<profile>/deps/<test>`), built with
/// `cargo build -p zlhd --bin zlhd` first (a test run does not build other packages'
/// binaries, and one left from an earlier build may be stale).
pub fn zlhd_path() -> PathBuf {
    for var in ["CARGO_BIN_EXE_zlhd", "ZLHD"] {
        if let Ok(p) = std::env::var(var) {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let path = profile_dir.join(format!("zlhd{}", std::env::consts::EXE_SUFFIX));
    // Always (re)build: a stale binary would test old code. Up to date, this is a no-op;
    // one build per test process.
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| build_zlhd(profile_dir));
    assert!(path.exists(), "zlhd not found at {}", path.display());
    path
}

/// The `zctl` binary, found and (re)built like [`zlhd_path`] (`$ZCTL` if set).
pub fn zctl_path() -> PathBuf {
    if let Ok(p) = std::env::var("ZCTL") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let path = profile_dir.join(format!("zctl{}", std::env::consts::EXE_SUFFIX));
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| build_bin(profile_dir, "api", "zctl"));
    assert!(path.exists(), "zctl not found at {}", path.display());
    path
}

fn build_zlhd(profile_dir: &Path) {
    build_bin(profile_dir, "zlhd", "zlhd")
}

fn build_bin(profile_dir: &Path, package: &str, bin: &str) {
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-p", package, "--bin", bin, "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("building {bin}: {cmd:?}");
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
}

/// Write `zlhd`'s config for `w` into `dir`: the World's store and engine timings (scaled
/// like the simulators' clocks), every backend pointing at the World's simulators, secrets
/// in files. `edit` adjusts the result.
pub fn write_config(w: &World, dir: &Path, edit: impl FnOnce(&mut Config)) -> PathBuf {
    std::fs::create_dir_all(dir).expect("config dir");
    let secret = |name: &str, value: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{value}\n")).expect("write secret");
        p
    };
    let mut cfg = w.cfg.clone();
    cfg.api.listen = "127.0.0.1:0".parse().unwrap();
    // Several controllers run at once (replicas, restarts): each picks a free port.
    cfg.controller.metrics_listen = "127.0.0.1:0".parse().unwrap();
    let pve = w.sims.pve.as_ref().expect("Proxmox simulator");
    cfg.proxmox.url = pve.url();
    cfg.proxmox.token_id = pve.token_id().to_string();
    cfg.proxmox.token_secret_file = Some(secret("pve-token", pve.token_secret()));
    // The simulator is on loopback; the production default (20/s per node) would make the
    // test measure our rate limiter instead of crash safety.
    cfg.proxmox.rate_per_node = 10_000;
    cfg.proxmox.connect_timeout = Duration::from_secs(2);
    cfg.proxmox.request_timeout = Duration::from_secs(10);
    cfg.agent.admin_secret_file = Some(secret("admin-secret", "zlh-kill9-admin-secret"));
    // Pacing follows the simulators' clock: the defaults, scaled like every other timing.
    let scaled = |per_sec: u32| (f64::from(per_sec) * w.sims.options.time_scale) as u32;
    cfg.agent.requests_per_sec = scaled(AgentSection::default().requests_per_sec);
    if let Some(t) = w.sims.agent.as_ref().and_then(|a| a.token()) {
        cfg.agent.token_file = Some(secret("agent-token", &t));
    }
    if let Some(t) = &w.sims.technitium {
        cfg.technitium = Some(TechnitiumSection {
            url: t.url(),
            token_file: secret("technitium-token", t.token()),
            requests_per_sec: scaled(TechnitiumSection::DEFAULT_REQUESTS_PER_SEC),
            timeout: TechnitiumSection::DEFAULT_TIMEOUT,
        });
    }
    if let Some(c) = &w.sims.cloudflare {
        cfg.cloudflare = Some(CloudflareSection {
            url: c.url(),
            zone_id: c.zone_id().to_string(),
            token_file: secret("cloudflare-token", c.token()),
            // The simulator's 5-minute window is shorter by the time scale; so is ours.
            requests_per_5min: scaled(CloudflareSection::DEFAULT_REQUESTS_PER_5MIN),
            timeout: CloudflareSection::DEFAULT_TIMEOUT,
        });
    }
    if let Some(v) = &w.sims.velocity {
        cfg.velocity = Some(VelocitySection {
            url: v.url(),
            secret_file: secret("velocity-secret", v.secret()),
            requests_per_sec: scaled(VelocitySection::DEFAULT_REQUESTS_PER_SEC),
            timeout: VelocitySection::DEFAULT_TIMEOUT,
        });
    }
    edit(&mut cfg);
    let path = dir.join("zlh.toml");
    std::fs::write(&path, cfg.to_toml()).expect("write config");
    path
}

/// One `zlhd` process; killed (SIGKILL) when dropped.
pub struct Zlhd {
    child: tokio::process::Child,
    pub log: PathBuf,
}

impl Zlhd {
    /// `zlhd --config <config> <args...>`, stderr appended to `log`.
    pub fn spawn(config: &Path, args: &[&str], log: &Path) -> Zlhd {
        Self::spawn_env(config, args, log, &[])
    }

    /// [`spawn`](Self::spawn) with extra environment variables (they win over the defaults,
    /// e.g. `RUST_LOG`).
    pub fn spawn_env(config: &Path, args: &[&str], log: &Path, env: &[(&str, &str)]) -> Zlhd {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let mut cmd = tokio::process::Command::new(zlhd_path());
        // `ZLH_*` variables are config overrides to zlhd (and an unknown one is refused):
        // the test's own (`ZLH_SEED`, `ZLH_SOAK`) must not leak into it.
        for (k, _) in std::env::vars() {
            if k.starts_with("ZLH_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("--config")
            .arg(config)
            .args(args)
            .env_remove("DATABASE_URL")
            .env(
                "RUST_LOG",
                std::env::var("ZLH_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn zlhd");
        Zlhd {
            child,
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL, then reap. Panics if the process had already exited (it must not die on its
    /// own).
    pub async fn kill9(mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "zlhd exited on its own ({status}) before being killed; log tail:\n{}",
                tail(&self.log, 40)
            );
        }
        self.child.start_kill().expect("SIGKILL zlhd");
        let _ = self.child.wait().await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The address in the `addr` field of the first JSON log line (`--log-format json`)
    /// whose message is `message` (e.g. "API listening"): how a test finds a port zlhd picked
    /// itself. Waits for it; panics with the log's tail if zlhd exits or `timeout` passes.
    pub async fn logged_addr(&mut self, message: &str, timeout: Duration) -> std::net::SocketAddr {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let found = text.lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let fields = v.get("fields")?;
                (fields.get("message")?.as_str()? == message)
                    .then(|| fields.get("addr")?.as_str()?.parse().ok())
                    .flatten()
            });
            if let Some(addr) = found {
                return addr;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "zlhd exited ({status}) before logging '{message}':\n{}",
                    tail(&self.log, 40)
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "zlhd did not log '{message}' within {timeout:?}:\n{}",
                tail(&self.log, 40)
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The last `n` lines of a file.
/// `zlhd dev` as a child process on a free loopback port at time scale 100, its data in
/// `dir` and its output in `dir/<log>`.
pub fn spawn_dev(dir: &Path, log: &str) -> std::process::Child {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    std::process::Command::new(zlhd_path())
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

pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
