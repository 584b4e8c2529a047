//! Running the pieces: store, API server, controller, with logging, signals and sd_notify.
//! Shared by `zlhd serve|api|controller|dev`.

use anyhow::Context as _;
use controller::backends::Backends;
use controller::config::Config;
use controller::engine::Controller;
use model::SystemClock;
use model::store::AnyStore;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `RUST_LOG`-style filtering (default `info`), readable text or JSON lines.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log_colors())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

/// Colours in text logs only on a terminal: a journal, a file or a pipe gets plain text
/// (tracing-subscriber colours by default wherever it writes). `NO_COLOR` turns them off
/// on a terminal too.
fn log_colors() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Open the store and apply the migrations (`zlhd migrate`, `zlhd dev`; see
/// [`crate::store`] for who migrates).
pub async fn open_store(cfg: &Config) -> anyhow::Result<AnyStore> {
    crate::store::open(cfg, &cfg.database, crate::store::Schema::Migrate).await
}

/// Open the store for `roles` without touching the schema: it must be one this binary
/// understands. An API-only process takes the API's pool size.
pub async fn open_store_for(cfg: &Config, roles: &Roles) -> anyhow::Result<AnyStore> {
    let opts = if roles.controller {
        cfg.database.clone()
    } else {
        crate::store::api_options(cfg)
    };
    crate::store::open(cfg, &opts, crate::store::Schema::Check).await
}

/// SQLite runs one controller: a second one against the same file refuses to start. The lock
/// is an OS file lock, so a killed process releases it at once.
pub fn single_controller_lock(store: &AnyStore) -> anyhow::Result<Option<File>> {
    let Some(db) = store.sqlite_path() else {
        return Ok(None);
    };
    let mut path: PathBuf = db.clone();
    path.set_extension("controller.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another zlhd controller is already running against {} (SQLite allows one; use PostgreSQL for several replicas)",
            db.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// SIGHUP re-reads the identity keys' JWKS file (`api::identity::reload`), instead of
/// ending the process as its default action would.
fn spawn_hangup_handler() {
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot install the SIGHUP handler");
                return;
            }
        };
        while hup.recv().await.is_some() {
            info!("SIGHUP: the JWKS file is re-read at the next JWT");
            api::identity::reload();
        }
    });
}

/// SIGTERM/SIGINT cancel `token`; a second signal exits at once. SIGHUP reloads the JWKS
/// ([`spawn_hangup_handler`]).
pub fn spawn_signal_handler(token: CancellationToken) {
    spawn_hangup_handler();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "cannot install the SIGTERM handler");
                    return;
                }
            };
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            signals += 1;
            if signals == 1 {
                info!("signal received: shutting down (again to exit at once)");
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                token.cancel();
            } else {
                warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    });
}

pub fn notify_ready() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// What runs in this process.
pub struct Roles {
    pub api: bool,
    pub controller: bool,
}

/// Run the API and/or the controller until `shutdown`.
pub async fn run(
    cfg: Config,
    store: AnyStore,
    backends: Option<Backends>,
    roles: Roles,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = controller::metrics::install();
    let _lock = if roles.controller {
        single_controller_lock(&store)?
    } else {
        None
    };
    let mut tasks = tokio::task::JoinSet::new();
    if roles.api {
        let listener = match listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(cfg.api.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.api.listen))?,
        };
        // With the controller in this process the API gets a pool of its own, so API
        // clients can never hold the controller's connections.
        let api_store = if roles.controller {
            store.with_own_pool(&crate::store::api_options(&cfg))
        } else {
            store.clone()
        };
        // Unreadable identity keys stop start-up, naming the file, rather than refusing
        // every user's token later.
        if let Some(identity) = &cfg.api.identity {
            api::identity::Verifier::load(identity).context("[api.identity]")?;
        }
        let limits = api::ApiConfig {
            max_connections: crate::store::connection_cap(&cfg),
            cors_origins: cfg.api.cors_origins.clone(),
            identity: cfg.api.identity.clone(),
            console: console_setup(&cfg)?,
            ..cfg.api.limits.clone()
        };
        let state = api::AppState {
            store: api_store,
            catalog: Arc::new(cfg.catalog()),
            config: limits,
            metrics: Some(metrics.clone()),
            sd: cfg.sd.clone(),
        };
        let stop = shutdown.clone();
        tasks.spawn(async move {
            api::serve(listener, state, async move { stop.cancelled().await })
                .await
                .context("API server failed")
        });
    }
    let mut engine_health = None;
    if roles.controller {
        let backends = match backends {
            Some(b) => b,
            None => Backends::from_config(&cfg)?,
        };
        let ctl = Arc::new(Controller::new(
            store.clone(),
            backends,
            cfg.clone(),
            Arc::new(SystemClock),
        ));
        engine_health = Some(ctl.health.clone());
        if !roles.api {
            let listener = crate::listener::bind(cfg.controller.metrics_listen).await?;
            let probe = crate::listener::Probe {
                store: store.clone(),
                health: ctl.health.clone(),
                timing: cfg.controller.clone(),
                metrics: metrics.clone(),
            };
            tasks.spawn(crate::listener::serve(listener, probe, shutdown.clone()));
        }
        let stop = shutdown.clone();
        tasks.spawn(async move { ctl.run(stop).await });
    }
    crate::watchdog::spawn(engine_health, shutdown.clone());
    notify_ready();
    let mut result = Ok(());
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shutdown.cancel();
                if result.is_ok() {
                    result = Err(e);
                }
            }
            Err(e) => {
                shutdown.cancel();
                if result.is_ok() {
                    result = Err(anyhow::anyhow!("task panicked: {e}"));
                }
            }
        }
    }
    result
}

/// The start-up refusal of a PostgreSQL store without a console key.
pub const CONSOLE_KEY_REQUIRED: &str = "api.console.key_file is required with PostgreSQL \
     (several API replicas must verify each other's console tickets); set it, or \
     [api.console] single_process = true if only one API process runs";

/// The console's view of the config: `[api.console]`, `[api] console_origins`, and the Agent's
/// port and token (the API dials the Agents, so the split layout's API needs them too). A
/// configured key shorter than `api::console::ticket::MIN_KEY_BYTES` stops start-up.
fn console_setup(cfg: &Config) -> anyhow::Result<api::console::ConsoleSetup> {
    use secrecy::ExposeSecret as _;
    let read = |key: &'static str, f: &std::path::PathBuf| controller::config::read_secret(key, f);
    let key = cfg
        .api
        .console
        .key_file
        .as_ref()
        .map(|f| read("api.console.key_file", f))
        .transpose()?;
    if let Some(k) = &key {
        api::console::ticket::check_key(k.expose_secret().trim().as_bytes())
            .map_err(|e| anyhow::anyhow!("api.console.key_file: {e}"))?;
    }
    // zlhd cannot count the API replicas: PostgreSQL is where several are possible, and a
    // ticket is then verified by whichever replica the socket reaches.
    let postgres = cfg.database_url()?.starts_with("postgres");
    if key.is_none() && postgres && !cfg.api.console.single_process {
        anyhow::bail!(CONSOLE_KEY_REQUIRED);
    }
    Ok(api::console::ConsoleSetup {
        config: cfg.api.console.clone(),
        origins: cfg.api.console_origins.clone(),
        agent_port: cfg.agent.port,
        agent_token: cfg
            .agent
            .token_file
            .as_ref()
            .map(|f| read("agent.token_file", f))
            .transpose()?,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_needs_a_console_key_unless_one_process_runs() {
        let with = |url: &str, single: bool| {
            let mut cfg = Config {
                database_url: url.into(),
                ..Config::default()
            };
            cfg.api.console.single_process = single;
            console_setup(&cfg).map(|_| ()).map_err(|e| e.to_string())
        };
        assert_eq!(
            with("postgres://db/zlh", false),
            Err(CONSOLE_KEY_REQUIRED.to_string()),
            "replicas are possible: a random key per process would not verify across them"
        );
        assert!(
            with("postgres://db/zlh", true).is_ok(),
            "the operator says one process"
        );
        assert!(
            with("sqlite://zlh.db", false).is_ok(),
            "SQLite is one process"
        );
    }
}
