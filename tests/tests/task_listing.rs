//! End-to-end: servers waiting on their Proxmox tasks cost one task listing per node per
//! poll, not one status read each (the simulator's request counters).

use model::{ServerSpec, Template, Variant};
use proxmox_client::Endpoint;
use proxmox_client::sim::{SimConfig, SimTemplate};
use std::time::Duration;
use zlh_tests::{World, WorldOptions};
use zlhd::sim::SimOptions;

const N: u32 = 50;
const FIRST_TEMPLATE: u32 = 2000;

fn version(i: u32) -> String {
    format!("1.21.{}", 100 + i)
}

/// One template per server, so all fifty clones run at once (clones of one template queue).
fn fifty_templates(c: &mut SimConfig) {
    c.templates = (0..N)
        .map(|i| SimTemplate {
            node: "pve".into(),
            vmid: FIRST_TEMPLATE + i,
            hostname: format!("tpl-{i}"),
        })
        .collect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_servers_waiting_on_clones_cost_one_task_listing_per_poll_not_fifty_status_reads() {
    let w = World::new(WorldOptions {
        time_scale: 20.0,
        sims: SimOptions {
            // Long enough that every clone is still running through the measured window.
            clone: Duration::from_secs(1200),
            tune_pve: Some(fifty_templates),
            ..SimOptions::default()
        },
        ..WorldOptions::default()
    })
    .await;
    let mut cfg = w.cfg.clone();
    let proto = cfg.templates[0].clone();
    cfg.templates = (0..N)
        .map(|i| Template {
            versions: vec![version(i)],
            vmid: FIRST_TEMPLATE + i,
            ..proto.clone()
        })
        .collect();
    let ctl = w.start_controller_with(cfg);
    for i in 0..N {
        w.create(
            &format!("u{i:03}"),
            ServerSpec::minecraft(Variant::Paper, &version(i)),
        )
        .await;
    }
    let pve = w.sims.pve.clone().unwrap();
    w.wait_for(
        "fifty clones running",
        Duration::from_secs(60),
        async || pve.clone_calls() == u64::from(N) && pve.running_tasks() == N as usize,
    )
    .await;

    // Every server has looked at its clone since it started it.
    let warm = pve.requests_for(Endpoint::TASKS) + 5;
    w.wait_for("a few task listings", Duration::from_secs(30), async || {
        pve.requests_for(Endpoint::TASKS) >= warm
    })
    .await;
    let (status0, list0) = (
        pve.requests_for(Endpoint::TASK_STATUS),
        pve.requests_for(Endpoint::TASKS),
    );
    w.wait_for(
        "ten more task listings",
        Duration::from_secs(30),
        async || pve.requests_for(Endpoint::TASKS) >= list0 + 10,
    )
    .await;
    let (status1, list1) = (
        pve.requests_for(Endpoint::TASK_STATUS),
        pve.requests_for(Endpoint::TASKS),
    );
    assert_eq!(
        pve.running_tasks(),
        N as usize,
        "every clone still ran through the window"
    );
    assert_eq!(
        status1 - status0,
        0,
        "{} listings answered every wait: no status reads",
        list1 - list0
    );
    ctl.stop().await;
}
