//! The previous system's algorithm, as a baseline: one server at a time through the whole
//! pipeline (clone, poll the task, configure, start, poll the task, poll the IP, send the Agent
//! config, poll the Agent every fixed 3 s, publish DNS and proxy), with the same clients
//! against a fresh simulator stack with the same settings.

use super::assignment;
use super::converge::{EDGE_CALL, profile};
use super::harness::Bench;
use anyhow::{Context, bail};
use controller::backends::Backends;
use controller::observe::EdgeTarget;
use controller::ownership;
use edge_client::AgentState;
use edge_client::dns::DnsProvider;
use model::{Kind, ServerId, ServerSpec};
use proxmox_client::{Proxmox, Upid};
use std::time::{Duration, Instant};

pub struct BaselineResult {
    /// Simulated seconds per server, in order.
    pub per_server: Vec<f64>,
    pub pve_calls: u64,
    /// Proxmox requests per endpoint, most first.
    pub by_endpoint: Vec<(&'static str, u64)>,
    pub lock_errors: u64,
}

impl BaselineResult {
    pub fn mean_per_server(&self) -> f64 {
        self.per_server.iter().sum::<f64>() / self.per_server.len().max(1) as f64
    }
}

pub async fn run(
    n: usize,
    templates: usize,
    scale: f64,
    mode: model::CloneMode,
) -> anyhow::Result<BaselineResult> {
    let b = Bench::new(profile(scale, mode), false).await?;
    b.set_edge_latency(EDGE_CALL);
    let backends = b.sims.backends(&b.cfg)?;
    let pve = b.sims.pve.clone().expect("proxmox sim");
    // The old system polled tasks about every second and the IP and the Agent every 3 s.
    let task_poll = Duration::from_secs(1).div_f64(scale);
    let wait_poll = Duration::from_secs(3).div_f64(scale);
    let mut per_server = Vec::with_capacity(n);
    for i in 0..n {
        let (tpl, spec) = assignment(templates, i);
        let vmid = 5000 + i as u32;
        let t = Instant::now();
        provision_one(&b, &backends, tpl, vmid, &spec, task_poll, wait_poll, mode)
            .await
            .with_context(|| format!("baseline server {i} (vmid {vmid})"))?;
        per_server.push(t.elapsed().as_secs_f64() * scale);
    }
    Ok(BaselineResult {
        per_server,
        by_endpoint: super::converge::by_endpoint(&pve, None),
        pve_calls: pve.requests_total(),
        lock_errors: pve.lock_errors(),
    })
}

async fn wait_task(b: &Backends, upid: &Upid, poll: Duration) -> anyhow::Result<()> {
    loop {
        tokio::time::sleep(poll).await;
        let s = b.pve.task_status(upid).await?;
        if let Some(exit) = s.exit {
            if !exit.is_success() {
                bail!("task {upid} failed: {exit:?}");
            }
            return Ok(());
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn provision_one(
    bench: &Bench,
    b: &Backends,
    tpl: u32,
    vmid: u32,
    spec: &ServerSpec,
    task_poll: Duration,
    wait_poll: Duration,
    mode: model::CloneMode,
) -> anyhow::Result<()> {
    let cfg = &bench.cfg;
    let node = "pve";
    let id = ServerId::new();
    let hostname = ownership::hostname(Kind::Game, spec.variant, vmid);
    let fqdn = format!("{hostname}.{}", cfg.edge.zone);
    // clone → poll
    let upid = b
        .pve
        .clone_ct(
            node,
            tpl,
            &proxmox_client::CloneRequest {
                newid: vmid,
                hostname: Some(hostname.clone()),
                description: Some(ownership::marker_line(id)),
                // The previous system: `full: 1` (the same mode as zlh's run, for the linked
                // profile).
                full: Some(mode == model::CloneMode::Full),
                ..Default::default()
            },
        )
        .await?;
    wait_task(b, &upid, task_poll).await?;
    // configure
    b.pve
        .update_ct_config(
            node,
            vmid,
            &proxmox_client::ConfigUpdate {
                cores: Some(spec.resources.cores),
                memory: Some(u64::from(spec.resources.memory_mib)),
                swap: Some(u64::from(cfg.network.swap_mib)),
                tags: Some(vec![ownership::marker_tag(id)]),
                net0: Some(format!(
                    "name=eth0,bridge={},ip=dhcp,type=veth",
                    cfg.network.game_bridge
                )),
                onboot: Some(true),
                ..Default::default()
            },
        )
        .await?;
    // start → poll
    let upid = b.pve.start_ct(node, vmid).await?;
    wait_task(b, &upid, task_poll).await?;
    // poll the IP
    let ip = loop {
        let ifs = b.pve.ct_interfaces(node, vmid).await?;
        if let Some(ip) = proxmox_client::primary_ipv4(&ifs.unwrap_or_default(), None) {
            break ip.to_string();
        }
        tokio::time::sleep(wait_poll).await;
    };
    // send the Agent config (retry while its listener comes up)
    let payload = edge_client::AgentPayload::for_spec(
        vmid,
        spec,
        cfg.agent.game_port,
        "admin",
        b.admin_password(id),
    )?;
    let mut tries = 0;
    while let Err(e) = b.agent.send_config(&ip, &payload).await {
        tries += 1;
        if tries > 20 {
            bail!("agent config: {e}");
        }
        tokio::time::sleep(wait_poll).await;
    }
    // poll the Agent every fixed 3 s
    loop {
        tokio::time::sleep(wait_poll).await;
        match b.agent.status(&ip).await {
            Ok(s) if s.state == AgentState::Running => break,
            Ok(s) => {
                if let AgentState::Error { message } = s.state {
                    bail!("agent install: {message}");
                }
            }
            Err(_) => {}
        }
    }
    // publish DNS and the proxy
    let edge = EdgeTarget {
        fqdn: &fqdn,
        hostname: &hostname,
        internal_ip: cfg.edge.internal_ip,
        public_ip: cfg.edge.public_ip,
        proxy_port: cfg.edge.proxy_port,
        game_port: cfg.agent.game_port,
    };
    if let Some(t) = &b.technitium {
        t.ensure(&fqdn, &edge.records(false)).await?;
    }
    if let Some(c) = &b.cloudflare {
        c.ensure(&fqdn, &edge.records(true)).await?;
    }
    if let Some(v) = &b.velocity {
        v.ensure(&hostname, &ip, cfg.agent.game_port).await?;
    }
    Ok(())
}
