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
//!
//! The health interval keeps the default's ratio to the resync interval, so each resync
//! probes the Agent and game of 1/`health_rounds()` of the fleet, as in production.
//! The Agent simulator serves SLP on the Agent's socket (one listening socket per container),
//! so 10,000 containers fit in this sandbox's open-file limit.

use super::harness::Bench;
use super::proc::{
    Cpu, freed_on_sims_mib, live_heap_mib, peak_rss_mib, raise_nofile, rss_mib, trim_heap,
};
use super::report::{Table, ms, secs};
use super::{assignment, catalog};
use model::Phase;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zlhd::sim::SimOptions;

#[derive(Debug, Clone)]
pub struct Args {
    pub n: usize,
    pub resyncs: usize,
    pub workers: usize,
    /// Servers declared at a time while building the fleet.
    pub batch: usize,
    /// Idle time after the resyncs before memory is measured (0: at once).
    pub idle_wait: Duration,
    /// Longest time to build the fleet (real).
    pub build_timeout: Duration,
}

const RESYNC_INTERVAL: Duration = Duration::from_secs(3600);
/// Resyncs per health interval with the default config (5 min / 60 s = 5).
pub fn health_rounds() -> u32 {
    let d = controller::config::ControllerSection::default();
    (d.health_interval.as_secs_f64() / d.resync_interval.as_secs_f64()).max(1.0) as u32
}
/// Open files per simulated server: the Agent's listening socket (SLP shares it). The Agent
/// client keeps no idle connection, so connections are only open while a call runs.
const FDS_PER_SERVER: u64 = 1;
/// Open files for everything else (store, simulators' own listeners, clients).
const FDS_SPARE: u64 = 2048;

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    pve: u64,
    dns: usize,
    proxy: usize,
    agent: usize,
    slp: u64,
}

fn counts(b: &Bench) -> Counts {
    let (t, c, v) = b.edge_requests();
    Counts {
        pve: b.sims.pve.as_ref().map(|p| p.requests_total()).unwrap_or(0),
        dns: t + c,
        proxy: v,
        agent: b.agent_requests(),
        slp: b.sims.agent.as_ref().map(|a| a.slp_answered()).unwrap_or(0),
    }
}

struct ResyncFig {
    pve: u64,
    dns: usize,
    proxy: usize,
    agent: usize,
    slp: u64,
    cpu: Cpu,
    wall: f64,
    /// `Controller::resync()` itself: the snapshot and the sweep (the requeued reconciles run
    /// on the workers meanwhile and after).
    call: f64,
}

pub async fn run(a: &Args) -> anyhow::Result<Vec<Table>> {
    let nofile = raise_nofile((a.n as u64 * FDS_PER_SERVER + FDS_SPARE).max(20_000));
    let fit = (nofile.saturating_sub(FDS_SPARE) / FDS_PER_SERVER) as usize;
    if a.n > fit {
        anyhow::bail!(
            "steady: N={} needs about {} open files ({FDS_PER_SERVER} per simulated server); \
             the limit here is {nofile} and cannot be raised (no CAP_SYS_RESOURCE): use --n {fit} or less",
            a.n,
            a.n as u64 * FDS_PER_SERVER + FDS_SPARE
        );
    }
    let scale = 1000.0;
    // The default profile at ×1000 (a clone takes 20 ms, the template locked meanwhile), so
    // the build exercises the clone slots as in production.
    let opts = SimOptions {
        time_scale: scale,
        share_agent_port: true,
        ..SimOptions::default()
    };
    let mut b = Bench::new(opts, true).await?;
    b.cfg.templates = catalog(4, model::CloneMode::Full);
    b.cfg.controller.workers = a.workers;
    b.cfg.controller.resync_interval = RESYNC_INTERVAL;
    b.cfg.controller.health_interval = RESYNC_INTERVAL * health_rounds();
    b.cfg.vmids.game = [5000, 5000 + a.n as u32 + 1000];
    let build0 = Instant::now();
    let batch = a.batch.clamp(1, a.n.max(1));
    eprintln!(
        "steady: provisioning {} servers through the engine, {batch} declared at a time \
         (default profile ×1000; open files {nofile})...",
        a.n
    );
    // Declared in batches, each once the previous one is Ready: the engine's time-scaled
    // waits (a clone waiter asks again every `lock_retry`, 5 ms at ×1000) make thousands of
    // waiters declared at once saturate the queue (see BENCHMARKS.md). The first batch is
    // declared before the controller starts (as in `converge`).
    let mut declared = 0;
    let declare = |from: usize, to: usize| {
        let b = &b;
        async move {
            for i in from..to {
                let (_, spec) = assignment(4, i);
                b.create(&format!("cust-{}", i % 500), spec).await?;
            }
            anyhow::Ok(())
        }
    };
    declare(0, batch).await?;
    declared += batch;
    let running = b.start_controller()?;
    let deadline = build0 + a.build_timeout;
    let mut last_print = Instant::now();
    let mut rebound = 0;
    let mut missing = std::collections::HashSet::new();
    let mut batch_start = Instant::now();
    let mut batch_secs: Vec<f64> = Vec::new();
    let ready = loop {
        let poll = if a.n > 1000 { 1000 } else { 250 };
        tokio::time::sleep(Duration::from_millis(poll)).await;
        rebound += b.rebind_agents(&mut missing).await;
        let s = b.servers().await?;
        let n_ready = s.iter().filter(|s| s.phase().0 == Phase::Ready).count();
        if n_ready == declared {
            batch_secs.push(batch_start.elapsed().as_secs_f64());
            if declared == a.n {
                break n_ready;
            }
            let next = (declared + batch).min(a.n);
            declare(declared, next).await?;
            declared = next;
            batch_start = Instant::now();
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "steady: {n_ready}/{} Ready ({declared} declared) after {:.0} s",
                a.n,
                build0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        if Instant::now() > deadline {
            eprintln!("steady: only {n_ready} of {} Ready; measuring those", a.n);
            // What the others wait for: phase and Ready reason, counted.
            let mut why: std::collections::BTreeMap<String, usize> = Default::default();
            for s in s.iter().filter(|s| s.phase().0 != Phase::Ready) {
                let reason = s
                    .status
                    .condition(model::ConditionType::Ready)
                    .map(|c| c.reason.clone())
                    .unwrap_or_default();
                *why.entry(format!("{:?} / {reason}", s.phase().0))
                    .or_default() += 1;
            }
            eprintln!("steady: not Ready: {why:?}");
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
    eprintln!(
        "steady: {ready} Ready after {:.0} s; measuring resyncs...",
        build0.elapsed().as_secs_f64()
    );
    let rss_ready = rss_mib();
    let mut heaps = vec![live_heap_mib()];
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
            let call = t.elapsed().as_secs_f64();
            // Wait for the queue to drain (then subtract the 200 ms quiet window).
            drain().await;
            let wall = (t.elapsed().as_secs_f64() - 0.2).max(0.0);
            let cpu = Cpu::now().since(&cpu0);
            let c1 = counts(&b);
            heaps.push(live_heap_mib());
            figs.push((
                kind,
                ResyncFig {
                    pve: c1.pve - c0.pve,
                    dns: c1.dns - c0.dns,
                    proxy: c1.proxy - c0.proxy,
                    agent: c1.agent - c0.agent,
                    slp: c1.slp - c0.slp,
                    cpu,
                    wall,
                    call,
                },
            ));
        }
    }
    // Where a resync's CPU goes: the snapshot alone, then the sweep alone with no health
    // probe due (every server checked in memory; only unsettled ones would be requeued).
    // The rest of a resync's CPU is the requeued reconciles: the health probes.
    let (mut snap_cpu, mut sweep_cpu, mut unsettled) = (0.0, 0.0, 0);
    for _ in 0..a.resyncs {
        let c0 = Cpu::now();
        let snap = controller::resync::take_snapshot(&ctl.ctx.backends).await;
        let c1 = Cpu::now();
        let mut mirror = ctl.mirror.lock().await;
        let sweep = controller::resync::sweep(&ctl.ctx, &mut mirror, &snap, 0, u64::MAX).await?;
        drop(mirror);
        snap_cpu += c1.since(&c0).controller();
        sweep_cpu += Cpu::now().since(&c1).controller();
        unsettled += sweep.requeue.len();
    }
    let parts = a.resyncs.max(1) as f64;
    let (snap_cpu, sweep_cpu) = (snap_cpu / parts, sweep_cpu / parts);
    // The snapshot's listings one at a time (each fetched and parsed as the snapshot does).
    let be = &ctl.ctx.backends;
    let mut listing_cpu = [0.0f64; 4];
    for _ in 0..a.resyncs {
        let c = Cpu::now();
        let _ = proxmox_client::Proxmox::cluster_resources(&be.pve).await;
        let c1 = Cpu::now();
        listing_cpu[0] += c1.since(&c).controller();
        if let Some(t) = &be.technitium {
            let _ = edge_client::dns::DnsProvider::list_zone(t).await;
        }
        let c2 = Cpu::now();
        listing_cpu[1] += c2.since(&c1).controller();
        if let Some(cf) = &be.cloudflare {
            let _ = edge_client::dns::DnsProvider::list_zone(cf).await;
        }
        let c3 = Cpu::now();
        listing_cpu[2] += c3.since(&c2).controller();
        if let Some(v) = &be.velocity {
            let _ = v.list().await;
        }
        listing_cpu[3] += Cpu::now().since(&c3).controller();
    }
    let listing_cpu = listing_cpu.map(|x| x / parts);
    let rss_end = rss_mib();
    let peak = peak_rss_mib();
    // The controller's own memory: what the process gives back once the controller and the
    // store are gone (the simulators keep every container).
    let heap_busy = live_heap_mib();
    if !a.idle_wait.is_zero() {
        // Idle pooled connections (the Agent client's) close after 90 s without use.
        eprintln!("steady: idle for {:.0} s...", a.idle_wait.as_secs_f64());
        tokio::time::sleep(a.idle_wait).await;
    }
    trim_heap();
    let (heap_with, rss_with) = (live_heap_mib(), rss_mib());
    let sims_freed0 = freed_on_sims_mib();
    running.stop().await;
    let ctl_refs = Arc::strong_count(&ctl);
    drop(ctl);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let heap_no_ctl = live_heap_mib();
    // Dropping the controller closes its pooled connections, so the simulators free their
    // ends too (on their own threads): that part is not the controller's memory.
    let sims_freed = freed_on_sims_mib() - sims_freed0;
    drop(b.store.take());
    tokio::time::sleep(Duration::from_secs(1)).await;
    trim_heap();
    let (heap_without, rss_without) = (live_heap_mib(), rss_mib());
    let ctl_heap = heap_with - heap_without;
    let ctl_only_heap = heap_with - heap_no_ctl;
    let ctl_rss = rss_with - rss_without;

    let mut tables = Vec::new();
    let mut tb = Table::new(format!("steady N={} ({} Ready)", a.n, ready));
    tb.add("n", "servers", a.n, a.n.to_string());
    tb.add("ready", "Ready when measured", ready, ready.to_string());
    tb.add(
        "agents_rebound",
        "Agents the bench had to bring up (still missing one poll later)",
        rebound,
        rebound.to_string(),
    );
    let worst_batch = batch_secs.iter().cloned().fold(0.0, f64::max);
    tb.add(
        "build_s",
        "fleet build through the engine (real)",
        build_secs,
        format!(
            "{} ({} batches of {batch}, slowest {})",
            secs(build_secs),
            batch_secs.len(),
            secs(worst_batch)
        ),
    );
    for kind in ["fresh", "interval elapsed"] {
        let xs: Vec<&ResyncFig> = figs.iter().filter(|f| f.0 == kind).map(|f| &f.1).collect();
        let k = xs.len().max(1) as f64;
        let key = if kind == "fresh" { "fresh" } else { "elapsed" };
        let pve = xs.iter().map(|f| f.pve).sum::<u64>() as f64 / k;
        let dns = xs.iter().map(|f| f.dns).sum::<usize>() as f64 / k;
        let proxy = xs.iter().map(|f| f.proxy).sum::<usize>() as f64 / k;
        let agent = xs.iter().map(|f| f.agent).sum::<usize>() as f64 / k;
        let slp = xs.iter().map(|f| f.slp).sum::<u64>() as f64 / k;
        let cpu = xs.iter().map(|f| f.cpu.controller()).sum::<f64>() / k;
        let cpu_max = xs.iter().map(|f| f.cpu.controller()).fold(0.0, f64::max);
        let sims = xs.iter().map(|f| f.cpu.sims).sum::<f64>() / k;
        let wall = xs.iter().map(|f| f.wall).sum::<f64>() / k;
        let call = xs.iter().map(|f| f.call).sum::<f64>() / k;
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
        tb.add(
            &format!("{key}_health_probes_per_resync"),
            "health probes per full resync (Server List Pings answered)",
            slp,
            format!("{slp:.1}"),
        );
        let scaled_cpu = cpu * 10_000.0 / ready.max(1) as f64;
        tb.target(
            &format!("{key}_controller_cpu_s"),
            "controller CPU per resync",
            cpu,
            format!(
                "{} (≈{} per 10k; most in one resync {})",
                ms(cpu),
                ms(scaled_cpu),
                ms(cpu_max)
            ),
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
        tb.add(
            &format!("{key}_call_s"),
            "  of which snapshot + sweep (real)",
            call,
            ms(call),
        );
    }
    let probes: f64 = figs.iter().map(|f| f.1.slp as f64).sum::<f64>() / figs.len().max(1) as f64;
    let resync_cpu =
        figs.iter().map(|f| f.1.cpu.controller()).sum::<f64>() / figs.len().max(1) as f64;
    let probe_cpu = (resync_cpu - snap_cpu - sweep_cpu).max(0.0);
    let per10k = |x: f64| x * 10_000.0 / ready.max(1) as f64;
    tb.note("controller CPU of a resync, by part (mean of both kinds)");
    tb.add(
        "snapshot_cpu_s",
        "snapshot alone (listings fetched and parsed)",
        snap_cpu,
        format!("{} (≈{} per 10k)", ms(snap_cpu), ms(per10k(snap_cpu))),
    );
    tb.add(
        "snapshot_listing_cpu_s",
        "  of which, each listing alone: Proxmox / Technitium / Cloudflare / proxy",
        serde_json::json!(listing_cpu),
        listing_cpu.map(ms).join(" / "),
    );
    tb.add(
        "sweep_cpu_s",
        "sweep alone, no probe due (change feed, changed rows + in-memory check of every server)",
        sweep_cpu,
        format!(
            "{} (≈{} per 10k; {} unsettled requeued)",
            ms(sweep_cpu),
            ms(per10k(sweep_cpu)),
            unsettled / a.resyncs.max(1)
        ),
    );
    tb.add(
        "probe_cpu_s",
        "health probes: resync − snapshot − sweep",
        probe_cpu,
        format!(
            "{} (≈{} per 10k; {:.0} µs per probe)",
            ms(probe_cpu),
            ms(per10k(probe_cpu)),
            probe_cpu * 1e6 / probes.max(1.0)
        ),
    );
    tb.note("memory: process = controller + simulators (1 listening socket per container) + store");
    tb.add(
        "rss_ready_mib",
        "RSS with the fleet Ready",
        rss_ready,
        format!("{rss_ready:.0} MiB"),
    );
    tb.add(
        "rss_end_mib",
        "RSS after the resyncs (process)",
        rss_end,
        format!("{rss_end:.0} MiB"),
    );
    tb.note("controller + store: given back when they are dropped (heap trimmed)");
    tb.add(
        "controller_heap_mib",
        "controller + store live heap",
        ctl_heap,
        format!(
            "{ctl_heap:.0} MiB (controller {ctl_only_heap:.0}, store {:.0}; {heap_with:.0} MiB live in the process)",
            ctl_heap - ctl_only_heap
        ),
    );
    let ctl_own = ctl_heap - sims_freed;
    tb.add(
        "heap_freed_by_sims_mib",
        "  of which freed by the simulators (their connection ends)",
        sims_freed,
        format!(
            "{sims_freed:.0} MiB: controller + store's own ≈ {ctl_own:.0} MiB ({:.1} KiB per server)",
            ctl_own * 1024.0 / ready.max(1) as f64
        ),
    );
    if !a.idle_wait.is_zero() {
        tb.add(
            "heap_idle_mib",
            "process live heap after the resyncs, then idle",
            heap_with,
            format!(
                "{heap_busy:.0} → {heap_with:.0} MiB after {:.0} s idle",
                a.idle_wait.as_secs_f64()
            ),
        );
    }
    tb.add(
        "heap_after_resyncs_mib",
        "process live heap: fleet Ready, then after each resync",
        serde_json::json!(heaps),
        heaps
            .iter()
            .map(|h| format!("{h:.0}"))
            .collect::<Vec<_>>()
            .join(" → ")
            + " MiB",
    );
    tb.target(
        "controller_rss_mib",
        "controller + store RSS",
        ctl_rss,
        format!(
            "{ctl_rss:.0} MiB (process {rss_with:.0} → {rss_without:.0} MiB{})",
            if ctl_refs > 1 {
                format!("; {} controller refs left", ctl_refs - 1)
            } else {
                String::new()
            }
        ),
        "<= 200 MB",
        ctl_rss <= 200.0 * 1e6 / (1024.0 * 1024.0),
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
