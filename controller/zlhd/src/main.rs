//! zlhd: the zlh daemon (API, controller, simulators, tools).

use clap::{Parser, Subcommand};
use controller::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use zlhd::run::{self, LogFormat, Roles};

#[derive(Parser)]
#[command(
    name = "zlhd",
    version,
    about = "zlh: the reconciling control plane for game and dev containers on Proxmox VE"
)]
struct Cli {
    /// Config file (TOML); `ZLH_*` environment variables override it.
    #[arg(long, short, env = "ZLH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log format (filter with RUST_LOG, e.g. RUST_LOG=info,controller=debug).
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// API and controller in one process (the default deployment).
    Serve,
    /// Only the API (split deployment).
    Api,
    /// Only the controller (split deployment; several replicas on PostgreSQL).
    Controller,
    /// Apply database migrations and exit: the only command that changes the schema (besides
    /// `dev`). Run it before restarting anything after an upgrade.
    Migrate,
    /// Run every simulator on loopback and print their URLs and credentials.
    Sim {
        /// Leave a simulator out (repeatable): proxmox, agent, technitium, cloudflare, velocity.
        #[arg(long = "without", value_delimiter = ',')]
        without: Vec<String>,
        /// Also write the URLs and credentials as JSON here.
        #[arg(long)]
        state_file: Option<PathBuf>,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 10.0)]
        time_scale: f64,
    },
    /// Everything in one process with SQLite and simulators: the zero-set-up way to try zlh.
    Dev {
        #[arg(long, default_value = "zlh-data")]
        data_dir: PathBuf,
        /// API address (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Also declare N servers and show them converge.
        #[arg(long, default_value_t = 0)]
        demo: u32,
        /// Simulated seconds per real second (10: a 20 s clone takes 2 s).
        #[arg(long, default_value_t = 10.0)]
        time_scale: f64,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  zlhd completions bash > ~/.local/share/bash-completion/completions/zlhd\n  zlhd completions zsh > ~/.zfunc/_zlhd"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (zlhd.1 and one per subcommand) into a directory.
    Manpages {
        /// Where to write them (created if missing).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// portal, operator, viewer or customer.
        #[arg(long)]
        role: model::Role,
        /// The customer a `customer` token is scoped to.
        #[arg(long)]
        customer: Option<String>,
        /// A name to recognise the token by (the audit log and events name its requests so).
        #[arg(long, default_value = "cli")]
        name: String,
        /// Refused after this long (e.g. 30d, 12h); without it the token never expires.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
    },
    /// Every token: id, name, role, customer, state, created, last used, expiry (never a
    /// secret).
    List,
    /// Revoke a token, named by its id or its (unique) name: refused from its next request on,
    /// by every API process.
    Revoke {
        #[arg(value_name = "TOKEN")]
        token: String,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the effective configuration (secrets appear only as the files they come from).
    Print,
}

/// Exit codes: 0 ok, 1 runtime failure, 2 configuration or usage error.
const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Neither needs a configuration, so both work on a machine without one (packaging).
    match &cli.cmd {
        Cmd::Completions { shell } => {
            // Into a buffer: clap_complete panics on a write error (`| head` closing the pipe).
            let mut script = Vec::new();
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "zlhd", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return ExitCode::SUCCESS;
        }
        Cmd::Manpages { dir } => {
            return match api::manpage::write_all(<Cli as clap::CommandFactory>::command(), dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("zlhd: cannot write the man pages to {}: {e}", dir.display());
                    ExitCode::from(EXIT_FAILURE)
                }
            };
        }
        _ => {}
    }
    run::init_logging(cli.log_format);
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zlhd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zlhd: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match rt.block_on(dispatch(cli.cmd, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zlhd: {e:#}");
            let config_error = e.chain().any(|c| {
                c.downcast_ref::<controller::config::ConfigError>()
                    .is_some()
            });
            ExitCode::from(if config_error {
                EXIT_CONFIG
            } else {
                EXIT_FAILURE
            })
        }
    }
}

async fn dispatch(cmd: Cmd, cfg: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    match cmd {
        Cmd::Serve | Cmd::Api | Cmd::Controller => {
            let roles = match cmd {
                Cmd::Api => Roles {
                    api: true,
                    controller: false,
                },
                Cmd::Controller => Roles {
                    api: false,
                    controller: true,
                },
                _ => Roles {
                    api: true,
                    controller: true,
                },
            };
            let store = run::open_store_for(&cfg, &roles).await?;
            run::spawn_signal_handler(shutdown.clone());
            run::run(cfg, store, None, roles, None, shutdown).await
        }
        Cmd::Migrate => {
            run::open_store(&cfg).await?;
            println!("migrations applied");
            Ok(())
        }
        Cmd::Sim {
            without,
            state_file,
            time_scale,
        } => {
            let mut set = zlhd::sim::SimSet::default();
            for w in &without {
                match w.as_str() {
                    "proxmox" => set.proxmox = false,
                    "agent" => set.agent = false,
                    "technitium" => set.technitium = false,
                    "cloudflare" => set.cloudflare = false,
                    "velocity" => set.velocity = false,
                    other => anyhow::bail!(controller::config::ConfigError::Invalid(format!(
                        "--without: unknown simulator '{other}' (proxmox, agent, technitium, cloudflare, velocity)"
                    ))),
                }
            }
            let sims = zlhd::sim::SimStack::start(zlhd::sim::SimOptions {
                set,
                time_scale,
                ..Default::default()
            })
            .await?;
            let endpoints = serde_json::to_string_pretty(&sims.endpoints())?;
            println!("{endpoints}");
            if let Some(p) = state_file {
                // Credentials of the simulators: owner-only, as `zlhd dev`'s state file.
                zlhd::dev::write_private(&p, &endpoints)?;
            }
            run::spawn_signal_handler(shutdown.clone());
            run::notify_ready();
            shutdown.cancelled().await;
            Ok(())
        }
        Cmd::Dev {
            data_dir,
            listen,
            demo,
            time_scale,
        } => {
            run::spawn_signal_handler(shutdown.clone());
            zlhd::dev::run(
                cfg,
                zlhd::dev::DevOptions {
                    data_dir,
                    listen,
                    demo,
                    time_scale,
                },
                shutdown,
            )
            .await
        }
        Cmd::Token { cmd } => token(cmd, &cfg).await,
        Cmd::Config {
            cmd: ConfigCmd::Print,
        } => {
            print!("{}", cfg.to_printable_toml());
            Ok(())
        }
        // Answered in `main`, before the configuration is loaded.
        Cmd::Completions { .. } | Cmd::Manpages { .. } => Ok(()),
    }
}

async fn token(cmd: TokenCmd, cfg: &Config) -> anyhow::Result<()> {
    use model::TokenState;
    use model::store::Store;
    let invalid = |m: String| anyhow::anyhow!(controller::config::ConfigError::Invalid(m));
    if let TokenCmd::Create {
        role,
        customer,
        name,
        expires,
    } = &cmd
    {
        if (*role == model::Role::Customer) != customer.is_some() {
            return Err(invalid(
                "--customer is required with --role customer, and only then".into(),
            ));
        }
        model::customer::check_token_name(name).map_err(|m| invalid(format!("--name: {m}")))?;
        if expires.is_some_and(|d| d.is_zero()) {
            return Err(invalid("--expires: must be longer than zero".into()));
        }
    }
    let store = zlhd::store::open(
        cfg,
        &zlhd::store::api_options(cfg),
        zlhd::store::Schema::Check,
    )
    .await?;
    let now = chrono::Utc::now();
    match cmd {
        TokenCmd::Create {
            role,
            customer,
            name,
            expires,
        } => {
            let expires_at = match expires {
                None => None,
                Some(d) => Some(
                    chrono::Duration::from_std(d)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                        .ok_or_else(|| invalid("--expires: too far in the future".into()))?,
                ),
            };
            let secret = model::customer::new_token_secret();
            store
                .create_token_expiring(
                    &name,
                    &model::customer::token_hash(&secret),
                    role,
                    customer.as_deref(),
                    expires_at,
                )
                .await?;
            println!("{secret}");
            let until = expires_at.map_or_else(String::new, |t| {
                format!(
                    ", expires {}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            });
            eprintln!("token '{name}' ({role}{until}) created; it is shown only once");
            Ok(())
        }
        TokenCmd::List => {
            let tokens = store.list_tokens().await?;
            if tokens.is_empty() {
                eprintln!("no tokens");
                return Ok(());
            }
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(
                    || "never".to_string(),
                    |t| t.format("%Y-%m-%d %H:%M").to_string(),
                )
            };
            println!(
                "{:<36}  {:<20}  {:<8}  {:<12}  {:<7}  {:<16}  {:<16}  EXPIRES",
                "ID", "NAME", "ROLE", "CUSTOMER", "STATE", "CREATED", "LAST USED"
            );
            for t in &tokens {
                let state: TokenState = t.state(now);
                println!(
                    "{:<36}  {:<20}  {:<8}  {:<12}  {:<7}  {:<16}  {:<16}  {}",
                    t.id,
                    t.name,
                    t.role.as_str(),
                    t.customer_id.as_deref().unwrap_or("-"),
                    state.as_str(),
                    when(Some(t.created_at)),
                    when(t.last_used_at),
                    when(t.expires_at),
                );
            }
            Ok(())
        }
        TokenCmd::Revoke { token } => {
            let tokens = store.list_tokens().await?;
            let found: Vec<_> = tokens
                .iter()
                .filter(|t| t.id.to_string() == token.to_ascii_lowercase() || t.name == token)
                .collect();
            let t = match found.as_slice() {
                [] => return Err(invalid(format!("no token with id or name '{token}'"))),
                [one] => *one,
                many => {
                    return Err(invalid(format!(
                        "{} tokens are named '{token}': revoke one by id (zlhd token list)",
                        many.len()
                    )));
                }
            };
            let t = store.revoke_token(t.id).await?;
            println!("token '{}' ({}) revoked", t.name, t.id);
            Ok(())
        }
    }
}
