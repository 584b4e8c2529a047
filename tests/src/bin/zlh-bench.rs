//! zlh-bench: convergence, steady-state and API benchmarks against the simulators.
//!
//! ```text
//! zlh-bench converge [--n 200] [--templates 1|4] [--clone full|linked] [--time-scale 100]
//!                    [--pool P] [--quick] [--json]
//! zlh-bench steady   [--n 10000] [--quick] [--json]
//! zlh-bench api      [--n 10000] [--rate 200] [--quick] [--json]
//! zlh-bench writes   [--writers 1,4,16] [--duration 10] [--quick] [--json]
//! ```
//! Figures are printed, never asserted. See BENCHMARKS.md.

use clap::{Parser, Subcommand};
use std::time::Duration;
use zlh_tests::bench::{api, converge, pools, proc::CountingAlloc, report::Table, steady, writes};

/// Counts live heap bytes (the controller's share of memory in `steady`).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Parser)]
#[command(name = "zlh-bench", about = "zlh benchmarks against the simulators")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Also print the figures as JSON (one document on the last line).
    #[arg(long, global = true)]
    json: bool,
    /// Smaller N for regular use (finishes in under a minute).
    #[arg(long, global = true)]
    quick: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// N servers declared at once; wall time vs the lower bound and the sequential baseline.
    Converge {
        /// Servers (default 200; 20 with --quick).
        #[arg(long)]
        n: Option<usize>,
        /// 1 or 4 templates (default: both, one after the other).
        #[arg(long)]
        templates: Option<usize>,
        /// Simulated seconds per real second (default 100; 200 with --quick).
        #[arg(long)]
        time_scale: Option<f64>,
        /// Servers the sequential baseline runs; its total is mean × N (default min(N, 20)).
        #[arg(long)]
        baseline_n: Option<usize>,
        /// Controller workers.
        #[arg(long, default_value_t = 16)]
        workers: usize,
        /// The templates' clone mode: full (20 s) or linked (2 s).
        #[arg(long, default_value = "full", value_parser = parse_clone)]
        clone: model::CloneMode,
        /// A warm pool of P members on one template, full before the burst; compared with
        /// the same burst without a pool (docs/pools.md).
        #[arg(long)]
        pool: Option<u32>,
    },
    /// N Ready servers; Proxmox/DNS calls, CPU and wall time per full resync; RSS.
    Steady {
        /// Servers (default 10000; 300 with --quick).
        #[arg(long)]
        n: Option<usize>,
        /// Resyncs measured per kind (fresh stamps / interval elapsed); default: one health
        /// cycle (health_interval / resync_interval of the default config, 5), so every
        /// server's health probe is in the figures once.
        #[arg(long)]
        resyncs: Option<usize>,
        #[arg(long, default_value_t = 16)]
        workers: usize,
        /// Servers declared at a time while building the fleet (each batch once the previous
        /// one is Ready).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Seconds to stay idle after the resyncs before measuring memory (pooled Agent
        /// connections close after 90 s idle).
        #[arg(long, default_value_t = 0)]
        idle_wait: u64,
        /// Longest fleet build, seconds (real); 10,000 servers took ~1,330 s here.
        #[arg(long, default_value_t = 1800)]
        build_timeout: u64,
    },
    /// The store's write path on PostgreSQL (`DATABASE_URL`): K concurrent status writers
    /// with the feed read concurrently, VMID reservation at 10 and 900 reserved, a simulated
    /// hour with retention on.
    Writes {
        /// Writer counts to run, side by side.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        writers: Vec<usize>,
        /// Seconds of writing per writer count (default 10; 3 with --quick).
        #[arg(long)]
        duration: Option<f64>,
    },
    /// POST / GET page / GET one latency and throughput at a fixed offered load.
    Api {
        /// Servers in the store (default 10000; 1000 with --quick).
        #[arg(long)]
        n: Option<usize>,
        /// Offered requests per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Seconds of load per request kind (default 10; 3 with --quick).
        #[arg(long)]
        duration: Option<f64>,
        /// Store backends to run.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        backends: Vec<String>,
        /// A PostgreSQL role allowed to CREATE DATABASE (a fresh `zlh_bench_<id>` is created
        /// and dropped).
        #[arg(
            long,
            env = "ZLH_BENCH_PG",
            default_value = "postgres://postgres@127.0.0.1:5432/"
        )]
        pg: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZLH_BENCH_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ctl")
        .enable_all()
        .build()?;
    let tables = rt.block_on(run(&cli))?;
    rt.shutdown_timeout(Duration::from_secs(2));
    for t in &tables {
        t.print();
    }
    if cli.json {
        let doc: Vec<_> = tables.iter().map(Table::to_json).collect();
        println!("{}", serde_json::to_string(&doc)?);
    }
    Ok(())
}

fn parse_clone(s: &str) -> Result<model::CloneMode, String> {
    match s {
        "full" => Ok(model::CloneMode::Full),
        "linked" => Ok(model::CloneMode::Linked),
        other => Err(format!("'{other}' is not a clone mode (full or linked)")),
    }
}

async fn run(cli: &Cli) -> anyhow::Result<Vec<Table>> {
    let q = cli.quick;
    match &cli.cmd {
        Cmd::Converge {
            n,
            templates,
            time_scale,
            baseline_n,
            workers,
            clone,
            pool,
        } => {
            let n = n.unwrap_or(if q { 20 } else { 200 });
            if let Some(pool) = pool {
                return pools::run(&pools::Args {
                    n,
                    pool: *pool,
                    time_scale: time_scale.unwrap_or(if q { 200.0 } else { 100.0 }),
                    workers: *workers,
                    clone: *clone,
                })
                .await;
            }
            let templates = match templates {
                Some(t) if *t == 1 || *t == 4 => vec![*t],
                Some(t) => anyhow::bail!("--templates must be 1 or 4, not {t}"),
                None => vec![1, 4],
            };
            converge::run(&converge::Args {
                n,
                templates,
                time_scale: time_scale.unwrap_or(if q { 200.0 } else { 100.0 }),
                baseline_n: baseline_n.unwrap_or(n.min(20)),
                workers: *workers,
                clone: *clone,
            })
            .await
        }
        Cmd::Steady {
            n,
            resyncs,
            workers,
            batch,
            idle_wait,
            build_timeout,
        } => {
            steady::run(&steady::Args {
                n: n.unwrap_or(if q { 300 } else { 10_000 }),
                resyncs: resyncs.unwrap_or(steady::health_rounds() as usize).max(1),
                workers: *workers,
                batch: *batch,
                idle_wait: Duration::from_secs(*idle_wait),
                build_timeout: Duration::from_secs(*build_timeout),
            })
            .await
        }
        Cmd::Writes { writers, duration } => {
            writes::run(&writes::Args {
                writers: writers.clone(),
                duration: duration.unwrap_or(if q { 3.0 } else { 10.0 }),
            })
            .await
        }
        Cmd::Api {
            n,
            rate,
            duration,
            backends,
            pg,
        } => {
            api::run(&api::Args {
                n: n.unwrap_or(if q { 1000 } else { 10_000 }),
                rate: *rate,
                duration: duration.unwrap_or(if q { 3.0 } else { 10.0 }),
                backends: backends.clone(),
                pg_admin_url: pg.clone(),
            })
            .await
        }
    }
}
