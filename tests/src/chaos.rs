//! Helpers shared by the chaos suites (`tests/tests/chaos*.rs`, `kill9.rs`, `scenario*.rs`):
//! seeds that can be replayed, the soak switch, fleet specs and the end-of-run assertions.

use crate::World;
use crate::invariants::{check_clones, check_deleted};
use model::store::Store;
use model::{Phase, ServerId, ServerSpec, Variant};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::time::Duration;

/// The seed of this run: `ZLH_SEED` if set (replay), else random. Printed either way, so a
/// failure's output always says how to replay it.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("ZLH_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("ZLH_SEED={s:?} is not a u64")),
        Err(_) => rand::random::<u64>(),
    };
    eprintln!(
        "{test}: seed={seed} (replay: ZLH_SEED={seed} cargo test -p zlh-tests --test <file> {test})"
    );
    seed
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `ZLH_SOAK=1`: longer runs, bigger fleets, more kills.
pub fn soak() -> bool {
    std::env::var("ZLH_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A mixed fleet: two game servers (all variants in turn) for every dev server.
pub fn mixed(i: usize) -> ServerSpec {
    if i % 3 == 2 {
        ServerSpec::dev(
            if i.is_multiple_of(2) {
                "node"
            } else {
                "python"
            },
            if i.is_multiple_of(2) { "22" } else { "3.12" },
        )
    } else {
        ServerSpec::minecraft(Variant::ALL[i % Variant::ALL.len()], "1.21.7")
    }
}

/// How many live servers are in each phase.
pub async fn phases(w: &World) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in w.servers().await {
        *m.entry(s.phase().0.as_str().to_string()).or_default() += 1;
    }
    m
}

/// The end-of-run checks every chaos test shares: the fleet invariants, every deleted server
/// gone without a trace, and no server cloned twice (`extra_clones` more clones per VMID
/// allowed where a test injects failed clone tasks).
pub async fn assert_fleet(w: &World, deleted: &[ServerId], extra_clones: u64, what: &str) {
    let mut v = crate::check_invariants(w).await;
    v.extend(check_deleted(w, deleted).await);
    v.extend(check_clones(w, deleted, extra_clones).await);
    assert!(
        v.is_empty(),
        "{what}: fleet invariants violated:\n{}",
        v.join("\n")
    );
}

/// Wait for every live server to be Ready; the panic names the stragglers.
pub async fn converge(w: &World, timeout: Duration) {
    w.wait_all(Some(Phase::Ready), timeout).await;
}

/// Requeue every live server (as `zctl reconcile --all` does).
pub async fn poke_all(w: &World) {
    for s in w.servers().await {
        let _ = w.store.request_reconcile(s.id, false).await;
    }
}
