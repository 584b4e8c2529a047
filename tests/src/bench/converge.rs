//! `converge`: N servers declared at once, against the simulators' default (Proxmox-like)
//! profile scaled in time; wall time against the lower bound the simulator allows, and the
//! previous system's sequential algorithm on the same settings.

use super::harness::Bench;
use super::proc::{Cpu, peak_rss_mib, reset_peak_rss};
use super::report::{Table, secs};
use super::{assignment, baseline, catalog, percentile};
use model::Phase;
use std::time::{Duration, Instant};
use zlhd::sim::SimOptions;

/// 100 ms per DNS or proxy call (simulated).
pub const EDGE_CALL: Duration = Duration::from_millis(100);
/// Edge writes one server needs at least: Technitium A + SRV, Cloudflare A + SRV, the proxy
/// registration.
pub const EDGE_WRITES: u32 = 5;

#[derive(Debug, Clone)]
pub struct Args {
    pub n: usize,
    pub templates: Vec<usize>,
    pub time_scale: f64,
    /// Servers the baseline actually runs (it is strictly sequential, so its wall time is
    /// linear in N: the rest is extrapolated from the mean).
    pub baseline_n: usize,
    pub workers: usize,
}

/// The profile: simulator defaults (clone 20 s, start 3 s, IP 5 s, install 60 s) at `scale`.
pub fn profile(scale: f64) -> SimOptions {
    SimOptions {
        time_scale: scale,
        ..SimOptions::default()
    }
}

/// `ceil(N/templates)·Tclone + start + ip + install + edge writes`, in simulated seconds, from
/// the simulators' own settings.
pub fn lower_bound(b: &Bench, n: usize, templates: usize) -> (f64, f64) {
    let pve = b.sims.pve.as_ref().expect("proxmox sim");
    let t = &pve.config().timings;
    let tail = t.start.as_secs_f64()
        + t.ip_delay.as_secs_f64()
        + b.sims.options.install.as_secs_f64()
        + EDGE_WRITES as f64 * EDGE_CALL.as_secs_f64();
    let clones = n.div_ceil(templates) as f64 * t.clone.as_secs_f64();
    (clones + tail, tail)
}

pub struct ZlhResult {
    pub wall_sim: f64,
    pub wall_real: f64,
    pub lower_bound: f64,
    pub tail: f64,
    pub ttr: Vec<f64>,
    pub pve_calls: u64,
    pub lock_errors: u64,
    pub clone_calls: u64,
    pub edge_calls: usize,
    pub cpu: Cpu,
    pub peak_rss: f64,
    pub ready: usize,
    /// Proxmox requests per endpoint, most first.
    pub by_endpoint: Vec<(&'static str, u64)>,
}

pub async fn run_zlh(a: &Args, templates: usize) -> anyhow::Result<ZlhResult> {
    let scale = a.time_scale;
    let mut b = Bench::new(profile(scale), true).await?;
    b.cfg.templates = catalog(templates);
    b.cfg.controller.workers = a.workers;
    b.cfg.vmids.game = [5000, 5000 + (a.n as u32 * 2).max(999)];
    b.set_edge_latency(EDGE_CALL);
    let (lb, tail) = lower_bound(&b, a.n, templates);
    for i in 0..a.n {
        let (_, spec) = assignment(templates, i);
        b.create(&format!("cust-{}", i % 50), spec).await?;
    }
    let pve = b.sims.pve.clone().expect("proxmox sim");
    let (pve0, lock0, clone0) = (pve.requests_total(), pve.lock_errors(), pve.clone_calls());
    let ep0: Vec<u64> = proxmox_client::Endpoint::ALL
        .iter()
        .map(|e| pve.requests_for(e))
        .collect();
    let e0 = b.edge_requests();
    reset_peak_rss();
    let cpu0 = Cpu::now();
    let t0 = chrono::Utc::now();
    let real0 = Instant::now();
    let running = b.start_controller()?;
    // Generous: 3× the lower bound in real time, plus start-up.
    let deadline = real0 + Duration::from_secs_f64(lb * 3.0 / scale + 30.0);
    let servers = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = b.servers().await?;
        let ready = s.iter().filter(|s| s.phase().0 == Phase::Ready).count();
        let failed: Vec<_> = s
            .iter()
            .filter(|s| s.phase().0 == Phase::Failed)
            .map(|s| format!("{}: {:?}", s.id, s.status.failure))
            .collect();
        if !failed.is_empty() {
            anyhow::bail!("{} servers failed: {}", failed.len(), failed.join("; "));
        }
        if ready == a.n {
            break s;
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {ready} of {} servers Ready before the deadline", a.n);
        }
    };
    let cpu = Cpu::now().since(&cpu0);
    let peak_rss = peak_rss_mib();
    let real_done = real0.elapsed().as_secs_f64();
    running.stop().await;
    let ttr: Vec<f64> = servers
        .iter()
        .filter_map(|s| s.status.ready_since)
        .map(|r| (r - t0).num_microseconds().unwrap_or(0) as f64 / 1e6 * scale)
        .collect();
    let wall_sim = ttr.iter().cloned().fold(0.0, f64::max);
    let e1 = b.edge_requests();
    let mut by_endpoint: Vec<(&'static str, u64)> = proxmox_client::Endpoint::ALL
        .iter()
        .zip(ep0)
        .map(|(e, before)| (*e, pve.requests_for(e) - before))
        .filter(|(_, n)| *n > 0)
        .collect();
    by_endpoint.sort_by_key(|e| std::cmp::Reverse(e.1));
    Ok(ZlhResult {
        by_endpoint,
        wall_sim,
        wall_real: (wall_sim / scale).min(real_done),
        lower_bound: lb,
        tail,
        ttr,
        pve_calls: pve.requests_total() - pve0,
        lock_errors: pve.lock_errors() - lock0,
        clone_calls: pve.clone_calls() - clone0,
        edge_calls: (e1.0 + e1.1 + e1.2) - (e0.0 + e0.1 + e0.2),
        cpu,
        peak_rss,
        ready: servers.len(),
    })
}

pub async fn run(a: &Args) -> anyhow::Result<Vec<Table>> {
    let mut tables = Vec::new();
    for &t in &a.templates {
        eprintln!(
            "converge: N={} templates={t} time scale ×{}: zlh...",
            a.n, a.time_scale
        );
        let z = run_zlh(a, t).await?;
        let bn = a.baseline_n.min(a.n).max(1);
        eprintln!(
            "converge: baseline ({bn} of {} servers, sequential)...",
            a.n
        );
        let base = baseline::run(bn, t, a.time_scale).await?;
        let base_total = base.mean_per_server() * a.n as f64;
        let n = a.n as f64;
        let ratio = z.wall_sim / z.lower_bound;
        let mut tb = Table::new(format!(
            "converge N={} templates={t} (time scale ×{}, {} workers)",
            a.n, a.time_scale, a.workers
        ));
        tb.add("n", "servers", a.n, a.n.to_string());
        tb.add("templates", "templates", t, t.to_string());
        tb.add(
            "time_scale",
            "time scale",
            a.time_scale,
            format!("×{}", a.time_scale),
        );
        tb.add(
            "wall_sim_s",
            "wall time to all Ready (simulated)",
            z.wall_sim,
            secs(z.wall_sim),
        );
        tb.add(
            "wall_real_s",
            "wall time to all Ready (real)",
            z.wall_real,
            secs(z.wall_real),
        );
        tb.add(
            "lower_bound_s",
            "lower bound ceil(N/T)·Tclone + tail",
            z.lower_bound,
            format!("{} (tail {})", secs(z.lower_bound), secs(z.tail)),
        );
        tb.target(
            "wall_over_lower_bound",
            "wall / lower bound",
            ratio,
            format!("{ratio:.3}"),
            "<= 1.10 (N=200)",
            ratio <= 1.10,
        );
        let p50 = percentile(&z.ttr, 50.0);
        let p99 = percentile(&z.ttr, 99.0);
        tb.add("ttr_p50_s", "time to Ready p50 (simulated)", p50, secs(p50));
        tb.add("ttr_p99_s", "time to Ready p99 (simulated)", p99, secs(p99));
        tb.add(
            "pve_calls_per_server",
            "Proxmox calls per server",
            z.pve_calls as f64 / n,
            format!("{:.1} ({} total)", z.pve_calls as f64 / n, z.pve_calls),
        );
        let breakdown: Vec<String> = z
            .by_endpoint
            .iter()
            .take(5)
            .map(|(e, c)| format!("{e} {:.0}", *c as f64 / n))
            .collect();
        tb.add(
            "pve_calls_per_server_by_endpoint",
            "  of which per server",
            serde_json::json!(
                z.by_endpoint
                    .iter()
                    .map(|(e, c)| (e.to_string(), *c as f64 / n))
                    .collect::<std::collections::BTreeMap<_, _>>()
            ),
            breakdown.join(", "),
        );
        tb.add(
            "clone_calls",
            "clone calls (reached the clone logic)",
            z.clone_calls,
            z.clone_calls.to_string(),
        );
        tb.target(
            "lock_errors",
            "Proxmox lock errors",
            z.lock_errors,
            z.lock_errors.to_string(),
            "0",
            z.lock_errors == 0,
        );
        tb.add(
            "edge_calls_per_server",
            "DNS + proxy calls per server",
            z.edge_calls as f64 / n,
            format!("{:.1}", z.edge_calls as f64 / n),
        );
        tb.add(
            "controller_cpu_s",
            "controller CPU (process minus sim threads)",
            z.cpu.controller(),
            format!(
                "{} ({:.1} ms/server)",
                secs(z.cpu.controller()),
                z.cpu.controller() * 1000.0 / n
            ),
        );
        tb.add("sims_cpu_s", "simulators CPU", z.cpu.sims, secs(z.cpu.sims));
        tb.add(
            "peak_rss_mib",
            "peak RSS (process: controller + sims + store)",
            z.peak_rss,
            format!("{:.0} MiB", z.peak_rss),
        );
        tb.add(
            "baseline_servers_run",
            "baseline servers run",
            bn,
            if bn < a.n {
                format!("{bn} (linear: total = mean × N)")
            } else {
                bn.to_string()
            },
        );
        tb.add(
            "baseline_per_server_s",
            "baseline per server (simulated)",
            base.mean_per_server(),
            secs(base.mean_per_server()),
        );
        tb.add(
            "baseline_wall_sim_s",
            "baseline wall time (simulated)",
            base_total,
            secs(base_total),
        );
        tb.add(
            "baseline_pve_calls_per_server",
            "baseline Proxmox calls per server",
            base.pve_calls as f64 / bn as f64,
            format!("{:.1}", base.pve_calls as f64 / bn as f64),
        );
        let at_lb = base_total / z.lower_bound;
        tb.add(
            "baseline_over_zlh",
            "baseline / zlh",
            base_total / z.wall_sim,
            format!(
                "{:.2} (at the lower bound: {at_lb:.2})",
                base_total / z.wall_sim
            ),
        );
        tables.push(tb);
    }
    Ok(tables)
}
