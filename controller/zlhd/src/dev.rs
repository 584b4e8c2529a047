//! `zlhd dev`: SQLite in a data directory, every simulator, the API and the controller in one
//! process, with a printed operator token and ready-to-paste commands.

use crate::run::{self, Roles};
use crate::sim::{SimOptions, SimStack};
use anyhow::Context as _;
use controller::config::Config;
use model::store::{NewServer, Store};
use model::{Role, ServerSpec, Variant};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

pub struct DevOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub demo: u32,
    pub time_scale: f64,
}

/// Written to `DATA_DIR/dev.json` for scripts and tests.
#[derive(Debug, Serialize)]
pub struct DevState {
    pub api_url: String,
    pub operator_token: String,
    pub portal_token: String,
    pub database_url: String,
    pub simulators: crate::sim::SimEndpoints,
}

pub async fn run(
    mut cfg: Config,
    opts: DevOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("cannot create {}", opts.data_dir.display()))?;
    let sims = SimStack::start(SimOptions::for_config(&cfg, opts.time_scale))
        .await
        .context("cannot start the simulators")?;
    cfg.database_url = format!("sqlite://{}/zlh.db", opts.data_dir.display());
    sims.configure(&mut cfg);
    let store = run::open_store(&cfg).await?;
    let backends = sims.backends(&cfg)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let operator_token = create_token(&store, "dev-operator", Role::Operator).await?;
    let portal_token = create_token(&store, "dev-portal", Role::Portal).await?;
    let state = DevState {
        api_url: api_url.clone(),
        operator_token: operator_token.clone(),
        portal_token,
        database_url: cfg.database_url.clone(),
        simulators: sims.endpoints(),
    };
    let state_path = opts.data_dir.join("dev.json");
    write_private(&state_path, &serde_json::to_string_pretty(&state)?)?;
    println!(
        "zlh dev is up (simulated Proxmox, Agent, Technitium, Cloudflare, Velocity; time x{})\n\
         \n  API:            {api_url}\n  operator token: {operator_token}\n  state:          {}\n\
         \nTry:\n  export ZLH_API_URL={api_url} ZLH_TOKEN={operator_token}\n  \
         zctl create -f - <<< '{{\"customerId\":\"u000\",\"spec\":{{\"kind\":\"game\",\"game\":\"minecraft\",\"variant\":\"paper\",\"version\":\"1.21.7\"}}}}'\n  \
         zctl get servers -w\n  \
         curl -s -H \"Authorization: Bearer $ZLH_TOKEN\" $ZLH_API_URL/api/servers\n",
        opts.time_scale,
        state_path.display()
    );
    if opts.demo > 0 {
        demo(&store, opts.demo).await?;
        let s = store.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { show_progress(s, stop).await });
    }
    run::run(
        cfg,
        store,
        Some(backends),
        Roles {
            api: true,
            controller: true,
        },
        Some(listener),
        shutdown,
    )
    .await?;
    drop(sims);
    Ok(())
}

async fn create_token(
    store: &model::store::AnyStore,
    name: &str,
    role: Role,
) -> anyhow::Result<String> {
    let secret = model::customer::new_token_secret();
    store
        .create_token(name, &model::customer::token_hash(&secret), role, None)
        .await?;
    Ok(secret)
}

/// State files hold tokens and credentials: readable by the owner only. `mode` applies only
/// when the file is created, so an existing file is narrowed before anything is written.
pub fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

async fn demo(store: &model::store::AnyStore, n: u32) -> anyhow::Result<()> {
    store
        .upsert_customer(
            "demo",
            Some(model::Quota {
                max_servers: n.max(1),
                max_memory_mib: u64::from(n.max(1)) * 65_536,
                max_cores: n.max(1) * model::spec::bounds::CORES.1,
                max_disk_gib: u64::from(n.max(1)) * u64::from(model::spec::bounds::DISK_GIB.1),
            }),
            None,
        )
        .await?;
    for i in 0..n {
        let spec = if i % 4 == 3 {
            ServerSpec::dev("node", "22")
        } else {
            ServerSpec::minecraft(Variant::ALL[i as usize % Variant::ALL.len()], "1.21.7")
        };
        store
            .create_server(NewServer {
                customer_id: "demo".into(),
                spec,
                idempotency: Some(model::store::Idempotency {
                    key: format!("demo-{i}"),
                    request_hash: format!("demo-{i}"),
                    retention: model::store::DEFAULT_IDEMPOTENCY_RETENTION,
                }),
                enforce_quota: false,
            })
            .await?;
    }
    println!("declared {n} demo servers; watching them converge");
    Ok(())
}

async fn show_progress(store: model::store::AnyStore, stop: CancellationToken) {
    let mut t = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = t.tick() => {}
        }
        let Ok(page) = store
            .list_servers(
                &model::store::ServerFilter::default(),
                model::store::PageRequest {
                    after: None,
                    limit: 500,
                },
            )
            .await
        else {
            continue;
        };
        let mut counts = std::collections::BTreeMap::<&str, u32>::new();
        for s in &page.items {
            *counts.entry(s.phase().0.as_str()).or_default() += 1;
        }
        let line: Vec<String> = counts.iter().map(|(p, n)| format!("{p}={n}")).collect();
        println!("servers: {}", line.join(" "));
        if counts.len() == 1 && counts.contains_key("ready") {
            println!("all demo servers are ready");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_files_are_owner_only_even_when_they_existed() {
        let dir = std::env::temp_dir().join(format!("zlh-private-{}", model::ServerId::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let (new, old) = (dir.join("new.json"), dir.join("old.json"));
        std::fs::write(&old, "stale").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        for p in [&new, &old] {
            write_private(p, "{}").unwrap();
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
            assert_eq!(std::fs::read_to_string(p).unwrap(), "{}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
