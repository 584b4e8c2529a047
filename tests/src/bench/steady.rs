//! `steady`: N Ready servers, then full resyncs (`Controller::resync()` and wait until the
//! queue drains); backend calls, controller CPU and wall time per resync, and RSS.
//!
//! The fleet is provisioned through the engine itself with the default profile scaled ×1000
//! (a clone takes 20 ms, the engine's polls are scaled alike), so every
//! server's status is exactly what the engine writes. The periodic resync is pushed out of
//! the way (1 h) so only the bench's resyncs run; two kinds are measured:
//! - "fresh": right after the fleet converged (status stamps younger than the interval);
//! - "interval elapsed": the controller's clock is moved past the resync interval first, as
//!   in production where each periodic resync finds every stamp one interval old.

use super::harness::Bench;
use super::proc::{Cpu, peak_rss_mib, raise_nofile, rss_mib};
use super::report::{Table, ms, secs};
use super::{assignment, catalog};
use controller::sim::SimOptions;
use model::Phase;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Args {
    pub n: usize,
    pub resyncs: usize,
    pub workers: usize,
    /// Longest time to build the fleet (real).
    pub build_timeout: Duration,
}

const RESYNC_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    pve: u64,
    dns: usize,
    proxy: usize,
    agent: usize,
}

fn counts(b: &Bench) -> Counts {
    let (t, c, v) = b.edge_requests();
    Counts {
        pve: b.sims.pve.as_ref().map(|p| p.requests_total()).unwrap_or(0),
        dns: t + c,
        proxy: v,
        agent: b.agent_requests(),
    }
}

struct ResyncFig {
    pve: u64,
    dns: usize,
    proxy: usize,
    agent: usize,
    cpu: Cpu,
    wall: f64,
}

pub async fn run(a: &Args) -> anyhow::Result<Vec<Table>> {
    // Two listeners per simulated container, plus pooled client connections.
    let nofile = raise_nofile((a.n as u64 * 6 + 4096).max(20_000));
    let scale = 1000.0;
    // The default profile at ×1000 (a clone takes 20 ms). With zero timings the build stalls:
    // a clone-slot holder can reach Ready without releasing its template slot (seen at
    // N=2000: every template held by a Ready server, the rest WaitingForTemplate).
    let opts = SimOptions {
        time_scale: scale,
        ..SimOptions::default()
    };
    let mut b = Bench::new(opts, true).await?;
    b.cfg.templates = catalog(4);
    b.cfg.controller.workers = a.workers;
    b.cfg.controller.resync_interval = RESYNC_INTERVAL;
    b.cfg.vmids.game = [5000, 5000 + a.n as u32 + 1000];
    let build0 = Instant::now();
    eprintln!(
        "steady: provisioning {} servers through the engine (default profile ×1000; open files {nofile})...",
        a.n
    );
    for i in 0..a.n {
        let (_, spec) = assignment(4, i);
        b.create(&format!("cust-{}", i % 500), spec).await?;
    }
    // Declared first, then the controller starts (as in `converge`).
    let running = b.start_controller()?;
    let deadline = build0 + a.build_timeout;
    let mut last_print = Instant::now();
    let mut rebound = 0;
    let ready = loop {
        let poll = if a.n > 1000 { 2000 } else { 250 };
        tokio::time::sleep(Duration::from_millis(poll)).await;
        rebound += b.rebind_agents().await;
        let s = b.servers().await?;
        let n_ready = s.iter().filter(|s| s.phase().0 == Phase::Ready).count();
        if n_ready == a.n {
            break n_ready;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "steady: {n_ready}/{} Ready after {:.0} s",
                a.n,
                build0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        if Instant::now() > deadline {
            eprintln!("steady: only {n_ready} of {} Ready; measuring those", a.n);
            break n_ready;
        }
    };
    let build_secs = build0.elapsed().as_secs_f64();
    let ctl = running.controller.clone();
    let drain = || async {
        // Drained: nothing queued or running for 200 ms in a row.
        let mut quiet = 0;
        let t = Instant::now();
        while quiet < 40 && t.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if ctl.queue.depth() == 0 && ctl.queue.running() == 0 {
                quiet += 1;
            } else {
                quiet = 0;
            }
        }
    };
    drain().await;
    let rss_ready = rss_mib();
    let mut figs: Vec<(&str, ResyncFig)> = Vec::new();
    for kind in ["fresh", "interval elapsed"] {
        for _ in 0..a.resyncs {
            if kind != "fresh" {
                b.clock.advance(RESYNC_INTERVAL + Duration::from_secs(1));
            }
            let c0 = counts(&b);
            let cpu0 = Cpu::now();
            let t = Instant::now();
            ctl.resync().await;
            // Wait for the queue to drain (then subtract the 200 ms quiet window).
            drain().await;
            let wall = (t.elapsed().as_secs_f64() - 0.2).max(0.0);
            let cpu = Cpu::now().since(&cpu0);
            let c1 = counts(&b);
            figs.push((
                kind,
                ResyncFig {
                    pve: c1.pve - c0.pve,
                    dns: c1.dns - c0.dns,
                    proxy: c1.proxy - c0.proxy,
                    agent: c1.agent - c0.agent,
                    cpu,
                    wall,
                },
            ));
        }
    }
    let rss_end = rss_mib();
    let peak = peak_rss_mib();
    running.stop().await;

    let mut tables = Vec::new();
    let mut tb = Table::new(format!("steady N={} ({} Ready)", a.n, ready));
    tb.add("n", "servers", a.n, a.n.to_string());
    tb.add("ready", "Ready when measured", ready, ready.to_string());
    tb.add(
        "agents_rebound",
        "Agents brought up by the bench (lost sim events)",
        rebound,
        rebound.to_string(),
    );
    tb.add(
        "build_s",
        "fleet build through the engine (real)",
        build_secs,
        secs(build_secs),
    );
    for kind in ["fresh", "interval elapsed"] {
        let xs: Vec<&ResyncFig> = figs.iter().filter(|f| f.0 == kind).map(|f| &f.1).collect();
        let k = xs.len().max(1) as f64;
        let key = if kind == "fresh" { "fresh" } else { "elapsed" };
        let pve = xs.iter().map(|f| f.pve).sum::<u64>() as f64 / k;
        let dns = xs.iter().map(|f| f.dns).sum::<usize>() as f64 / k;
        let proxy = xs.iter().map(|f| f.proxy).sum::<usize>() as f64 / k;
        let agent = xs.iter().map(|f| f.agent).sum::<usize>() as f64 / k;
        let cpu = xs.iter().map(|f| f.cpu.controller()).sum::<f64>() / k;
        let sims = xs.iter().map(|f| f.cpu.sims).sum::<f64>() / k;
        let wall = xs.iter().map(|f| f.wall).sum::<f64>() / k;
        tb.note(&format!("full resync, {kind} (mean of {})", xs.len()));
        tb.target(
            &format!("{key}_pve_calls_per_resync"),
            "Proxmox calls per full resync",
            pve,
            format!("{pve:.1}"),
            "<= 3",
            pve <= 3.0,
        );
        tb.add(
            &format!("{key}_dns_calls_per_resync"),
            "DNS calls per full resync",
            dns,
            format!("{dns:.1}"),
        );
        tb.add(
            &format!("{key}_proxy_calls_per_resync"),
            "proxy calls per full resync",
            proxy,
            format!("{proxy:.1}"),
        );
        tb.add(
            &format!("{key}_agent_calls_per_resync"),
            "Agent calls per full resync",
            agent,
            format!("{agent:.1}"),
        );
        let scaled_cpu = cpu * 10_000.0 / ready.max(1) as f64;
        tb.target(
            &format!("{key}_controller_cpu_s"),
            "controller CPU per resync",
            cpu,
            format!("{} (≈{} per 10k)", ms(cpu), ms(scaled_cpu)),
            "<= 500 ms per 10k",
            scaled_cpu <= 0.5,
        );
        tb.add(
            &format!("{key}_sims_cpu_s"),
            "simulators CPU per resync",
            sims,
            ms(sims),
        );
        tb.add(
            &format!("{key}_wall_s"),
            "resync to drained queue (real)",
            wall,
            ms(wall),
        );
    }
    tb.note("memory: process = controller + simulators (2 listeners per container) + store");
    tb.add(
        "rss_ready_mib",
        "RSS with the fleet Ready",
        rss_ready,
        format!("{rss_ready:.0} MiB"),
    );
    tb.target(
        "rss_end_mib",
        "RSS after the resyncs (process)",
        rss_end,
        format!("{rss_end:.0} MiB"),
        "<= 200 MB (controller)",
        rss_end <= 200.0,
    );
    tb.add(
        "peak_rss_mib",
        "peak RSS (process)",
        peak,
        format!("{peak:.0} MiB"),
    );
    tables.push(tb);
    Ok(tables)
}
