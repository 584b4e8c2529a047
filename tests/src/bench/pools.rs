//! `converge --pool P`: a burst of N servers on one template whose warm pool of P members is
//! full when the burst arrives (docs/pools.md), against the same burst without a pool. The
//! pool-aware lower bound: the first min(N, P) servers skip the clone (their tail only), the
//! rest follow the template's clone queue: `max(tail, (N − P)·Tclone + tail)`.

use super::converge::{EDGE_CALL, lower_bound, profile, times_to_ready};
use super::harness::Bench;
use super::report::{Table, secs};
use super::{assignment, catalog, percentile};
use model::Phase;
use model::store::Store;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Args {
    pub n: usize,
    pub pool: u32,
    pub time_scale: f64,
    pub workers: usize,
    pub clone: model::CloneMode,
}

/// One burst: wall time (simulated) to all Ready, times to Ready, clone calls, claims.
struct Burst {
    wall_sim: f64,
    ttr: Vec<f64>,
    fill_sim: f64,
    clone_calls: u64,
    claims: usize,
    lock_errors: u64,
}

async fn burst(a: &Args, pool: u32) -> anyhow::Result<(Burst, f64, f64)> {
    let scale = a.time_scale;
    let mut b = Bench::new(profile(scale, a.clone), true).await?;
    b.cfg.templates = catalog(1, a.clone);
    b.cfg.templates[0].pool = pool;
    b.cfg.controller.workers = a.workers;
    b.cfg.vmids.game = [5000, 5000 + ((a.n as u32 + pool) * 2).max(999)];
    b.set_edge_latency(EDGE_CALL);
    let lb = lower_bound(&b, a.n, 1, a.clone);
    let pve = b.sims.pve.clone().expect("proxmox sim");
    let running = b.start_controller()?;
    // The pool fills before the burst: the steady state a pool is sized for.
    let fill0 = Instant::now();
    let fill_deadline = fill0 + Duration::from_secs_f64(f64::from(pool) * 40.0 / scale + 30.0);
    loop {
        let m = b.store().list_pool_members().await?;
        let free = m
            .iter()
            .filter(|m| m.state == model::MemberState::Free)
            .count();
        if free == pool as usize {
            break;
        }
        if Instant::now() > fill_deadline {
            anyhow::bail!("the pool did not fill: {free} of {pool}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fill_sim = fill0.elapsed().as_secs_f64() * scale;
    let (clone0, lock0) = (pve.clone_calls(), pve.lock_errors());
    let t0 = chrono::Utc::now();
    let mut ids = Vec::new();
    for i in 0..a.n {
        let (_, spec) = assignment(1, i);
        ids.push(b.create(&format!("cust-{}", i % 50), spec).await?);
    }
    let clone_bound = a.n.saturating_sub(pool as usize) as f64 * clone_secs(&b, a.clone);
    let deadline =
        Instant::now() + Duration::from_secs_f64((clone_bound + lb.tail) * 3.0 / scale + 30.0);
    let servers = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = b.servers().await?;
        if let Some(f) = s.iter().find(|s| s.phase().0 == Phase::Failed) {
            anyhow::bail!("{} failed: {:?}", f.id, f.status.failure);
        }
        let ready = s.iter().filter(|s| s.phase().0 == Phase::Ready).count();
        if ready == a.n {
            break s;
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {ready} of {} servers Ready before the deadline", a.n);
        }
    };
    let clone_calls = pve.clone_calls() - clone0;
    let lock_errors = pve.lock_errors() - lock0;
    let mut claims = 0;
    for id in &ids {
        let ev = b.store().list_events(*id, 50).await?;
        if ev
            .iter()
            .any(|e| e.reason == controller::reason::EV_POOL_MEMBER_CLAIMED.as_str())
        {
            claims += 1;
        }
    }
    running.stop().await;
    let (ttr, wall_sim) = times_to_ready(&servers, t0, scale);
    let bound = (clone_bound + lb.tail).max(lb.tail);
    Ok((
        Burst {
            wall_sim,
            ttr,
            fill_sim,
            clone_calls,
            claims,
            lock_errors,
        },
        bound,
        lb.tail,
    ))
}

fn clone_secs(b: &Bench, mode: model::CloneMode) -> f64 {
    let t = &b.sims.pve.as_ref().expect("proxmox sim").config().timings;
    match mode {
        model::CloneMode::Full => t.clone.as_secs_f64(),
        model::CloneMode::Linked => t.linked_clone.as_secs_f64(),
    }
}

pub async fn run(a: &Args) -> anyhow::Result<Vec<Table>> {
    eprintln!(
        "converge --pool {}: N={} burst, time scale ×{}: with the pool...",
        a.pool, a.n, a.time_scale
    );
    let (with, bound, tail) = burst(a, a.pool).await?;
    eprintln!(
        "converge --pool {}: the same burst without a pool...",
        a.pool
    );
    let (without, bound0, _) = burst(a, 0).await?;
    let mut tb = Table::new(format!(
        "converge N={} pool={} clone={} (1 template, time scale ×{}, {} workers)",
        a.n,
        a.pool,
        a.clone.as_str(),
        a.time_scale,
        a.workers
    ));
    tb.add("n", "servers (one burst)", a.n, a.n.to_string());
    tb.add(
        "pool",
        "pool members (full before the burst)",
        a.pool,
        a.pool.to_string(),
    );
    tb.add(
        "pool_fill_sim_s",
        "pool fill before the burst (simulated)",
        with.fill_sim,
        secs(with.fill_sim),
    );
    tb.add(
        "wall_sim_s",
        "wall time to all Ready with the pool (simulated)",
        with.wall_sim,
        secs(with.wall_sim),
    );
    tb.add(
        "lower_bound_s",
        "pool-aware lower bound max(tail, (N−P)·Tclone + tail)",
        bound,
        format!("{} (tail {})", secs(bound), secs(tail)),
    );
    let ratio = with.wall_sim / bound;
    let (target, want) = if (a.n as u32) <= a.pool {
        ("<= 1.2 (of the tail)", 1.2)
    } else {
        ("<= 1.05", 1.05)
    };
    tb.target(
        "wall_over_lower_bound",
        "wall / pool-aware lower bound",
        ratio,
        format!("{ratio:.3}"),
        target,
        ratio <= want,
    );
    let p50 = percentile(&with.ttr, 50.0);
    let p50_0 = percentile(&without.ttr, 50.0);
    tb.add(
        "ttr_p50_s",
        "time to Ready p50 with the pool",
        p50,
        secs(p50),
    );
    tb.add(
        "ttr_p99_s",
        "time to Ready p99 with the pool",
        percentile(&with.ttr, 99.0),
        secs(percentile(&with.ttr, 99.0)),
    );
    tb.add(
        "claims",
        "servers that claimed a member",
        with.claims,
        with.claims.to_string(),
    );
    tb.add(
        "clone_calls",
        "clone calls during the burst (on-demand + refills)",
        with.clone_calls,
        with.clone_calls.to_string(),
    );
    tb.target(
        "lock_errors",
        "Proxmox lock errors",
        with.lock_errors,
        with.lock_errors.to_string(),
        "0",
        with.lock_errors == 0,
    );
    tb.add(
        "no_pool_wall_sim_s",
        "without a pool: wall time to all Ready",
        without.wall_sim,
        format!("{} (lower bound {})", secs(without.wall_sim), secs(bound0)),
    );
    tb.add(
        "no_pool_ttr_p50_s",
        "without a pool: time to Ready p50",
        p50_0,
        secs(p50_0),
    );
    tb.add(
        "speedup_wall",
        "wall without / with the pool",
        without.wall_sim / with.wall_sim,
        format!("{:.1}×", without.wall_sim / with.wall_sim),
    );
    Ok(vec![tb])
}
