//! `zlh-bench`: convergence against the simulator's lower bound and the previous system's
//! sequential algorithm, steady-state cost of full resyncs, API latency, and the store's write
//! path (concurrent writers, VMID reservation, retention). Benchmarks print
//! figures; nothing here asserts timings.
//!
//! CPU is read per thread from `/proc/self/task/*/stat`: the simulators run on their own
//! runtime whose threads are named `sim-*`, so "controller CPU" is the process minus the
//! simulators (it includes the store's threads and the bench's own light polling).

pub mod api;
pub mod baseline;
pub mod converge;
pub mod harness;
pub mod pools;
pub mod proc;
pub mod report;
pub mod steady;
pub mod writes;

use model::{ServerSpec, Template, Variant};

/// Minecraft versions every bench template offers.
pub const MC_VERSIONS: [&str; 3] = ["1.20.4", "1.21.1", "1.21.7"];
pub const MC_VERSION: &str = "1.21.7";

/// The Proxmox simulator's default templates (`SimConfig::default()`): `SimOptions` does not
/// expose `SimConfig.templates`, so with four templates the catalog labels all four as game
/// templates (the simulator does not know what a template is for).
pub const SIM_TEMPLATES: [u32; 4] = [900, 901, 910, 911];

/// Variants per template: one template serves every variant; four templates split them.
pub fn template_groups(templates: usize) -> Vec<(u32, Vec<Variant>)> {
    use Variant::*;
    match templates {
        1 => vec![(900, Variant::ALL.to_vec())],
        _ => vec![
            (900, vec![Vanilla, Paper]),
            (901, vec![Purpur, Fabric]),
            (910, vec![Forge]),
            (911, vec![Neoforge]),
        ],
    }
}

/// The catalog for `templates` game templates.
pub fn catalog(templates: usize, clone_mode: model::CloneMode) -> Vec<Template> {
    template_groups(templates)
        .into_iter()
        .map(|(vmid, variants)| Template {
            kind: model::Kind::Game,
            variants,
            runtime: None,
            versions: MC_VERSIONS.map(String::from).to_vec(),
            node: "pve".into(),
            vmid,
            clone_mode,
            storage: None,
            pool: 0,
            pool_max_age: None,
            version: None,
        })
        .collect()
}

/// Server `i`'s template and spec: round-robin over templates, then over their variants, so
/// every template gets `ceil(N/templates)` servers at most.
pub fn assignment(templates: usize, i: usize) -> (u32, ServerSpec) {
    let groups = template_groups(templates);
    let (tpl, variants) = &groups[i % groups.len()];
    let v = variants[(i / groups.len()) % variants.len()];
    (*tpl, ServerSpec::minecraft(v, MC_VERSION))
}

/// Nearest-rank percentile of an unsorted sample (`p` in 0..=100); NaN if empty.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}
