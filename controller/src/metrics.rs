//! Prometheus names (controller-runtime style), their help texts and buckets, and the
//! recorder set-up: every histogram gets explicit buckets (so series aggregate across
//! replicas and work with `histogram_quantile`) and every metric a `# HELP` line.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use model::metrics::{MetricDef, MetricKind};

/// Reconciles finished, by `result` (`success`, `backoff`, `error`, `lease_lost`).
pub const RECONCILE_TOTAL: &str = "zlh_reconcile_total";
pub const RECONCILE_DURATION: &str = "zlh_reconcile_duration_seconds";
/// Reconciles that panicked (caught at the reconcile boundary; the server is retried).
pub const RECONCILE_PANICS: &str = "zlh_reconcile_panics_total";
/// Keys ready or scheduled in the work queue.
pub const WORKQUEUE_DEPTH: &str = "zlh_workqueue_depth";
/// How long the oldest ready key has waited for a worker.
pub const WORKQUEUE_OLDEST_AGE: &str = "zlh_workqueue_oldest_item_age_seconds";
/// How long each key waited, from ready to taken by a worker.
pub const WORKQUEUE_WAIT: &str = "zlh_workqueue_wait_duration_seconds";
pub const WORKQUEUE_RETRIES: &str = "zlh_workqueue_retries_total";
/// Reconciles running now (keys held by workers).
pub const RECONCILES_IN_FLIGHT: &str = "zlh_reconciles_in_flight";
/// Servers by `phase`, as of the last resync (0 on replicas that do not hold the resync).
pub const SERVERS: &str = "zlh_servers";
/// Degraded servers by `backend` (the family in the `Degraded` reason: proxmox, agent, dns,
/// proxy), as of the last resync.
pub const SERVERS_DEGRADED: &str = "zlh_servers_degraded";
/// Servers waiting on a Proxmox task, by task `kind`, as of the last resync.
pub const PROXMOX_TASKS_IN_FLIGHT: &str = "zlh_proxmox_tasks_in_flight";
pub const TIME_TO_READY: &str = "zlh_time_to_ready_seconds";
pub const ORPHANS: &str = "zlh_orphans";
/// Backend failures a reconcile recorded as its last error (and backed off on), by
/// `backend` and error `class`.
pub const BACKEND_ERRORS: &str = "zlh_backend_errors_total";
pub const RESYNC_TOTAL: &str = "zlh_resync_total";
/// Servers a resync sent to be reconciled (not settled, or due a health probe).
pub const RESYNC_REQUEUED: &str = "zlh_resync_requeued_total";
/// Unix time of the last resync that swept the fleet.
pub const RESYNC_LAST_SUCCESS: &str = "zlh_resync_last_success_timestamp_seconds";
/// Health probes a resync ran itself (a settled game's Server List Ping), by `result`
/// (`answered`; `unanswered` ones are requeued).
pub const HEALTH_PROBES: &str = "zlh_health_probes_total";
/// Lease claims by `result` (`claimed`, `held_elsewhere`, `error`).
pub const LEASE_CLAIMS: &str = "zlh_lease_claims_total";
/// Reconciles abandoned because their lease could not be renewed.
pub const LEASE_LOSSES: &str = "zlh_lease_losses_total";
/// Times a reconcile found its template's clone slot taken and waited.
pub const TEMPLATE_SLOT_WAITS: &str = "zlh_template_slot_waits_total";
/// How far behind the store the resync's mirror was when it last caught up: the age of the
/// oldest change it applied (0 when nothing had changed).
pub const MIRROR_FEED_LAG: &str = "zlh_mirror_feed_lag_seconds";
/// Unix time the engine's main loop last went round (its heartbeat).
pub const CONTROLLER_LOOP: &str = "zlh_controller_loop_timestamp_seconds";
/// Warm-pool members by `template` and `state` (cloning, free, retiring), as of the pool
/// loop's last pass (docs/pools.md).
pub const POOL_MEMBERS: &str = "zlh_pool_members";
/// The size each pool is declared with (`[[templates]] pool`), by `template`.
pub const POOL_DESIRED: &str = "zlh_pool_desired";
/// Servers that asked a pool for a member, by `result` (`claimed`, `empty`).
pub const POOL_CLAIMS: &str = "zlh_pool_claims_total";
/// Time from a member's reservation to it being free (its clone, queued behind the
/// template's other clones).
pub const POOL_REFILL: &str = "zlh_pool_refill_seconds";
/// 1, labelled with the `replica` id and the `version`: which replica a target is.
pub const CONTROLLER_INFO: &str = "zlh_controller_info";

/// The `result` labels of [`RECONCILE_TOTAL`].
pub const RECONCILE_RESULTS: [&str; 4] = ["success", "backoff", "error", "lease_lost"];
/// The `result` labels of [`LEASE_CLAIMS`].
pub const LEASE_CLAIMED: &str = "claimed";
pub const LEASE_HELD_ELSEWHERE: &str = "held_elsewhere";
pub const LEASE_ERROR: &str = "error";
/// The `result` labels of [`HEALTH_PROBES`].
pub const PROBE_ANSWERED: &str = "answered";
pub const PROBE_UNANSWERED: &str = "unanswered";

/// A reconcile is a few backend calls (it requeues instead of waiting on tasks); a slow
/// Proxmox can hold one up to its 35 s request timeout, more than once.
const RECONCILE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// A key usually waits milliseconds; a burst larger than the workers makes it seconds or
/// minutes.
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Convergence: a clone takes about 20 s, an Agent install a few minutes, a modded one up to
/// the 15 min deadline.
const TIME_TO_READY_BUCKETS: &[f64] = &[
    5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// The engine's metrics.
pub const DEFS: &[MetricDef] = &[
    MetricDef {
        name: POOL_MEMBERS,
        kind: MetricKind::Gauge,
        help: "Warm-pool members by template and state (cloning, free, retiring), as of the pool loop's last pass.",
    },
    MetricDef {
        name: POOL_DESIRED,
        kind: MetricKind::Gauge,
        help: "The size each warm pool is declared with, by template.",
    },
    MetricDef {
        name: POOL_CLAIMS,
        kind: MetricKind::Counter,
        help: "Servers that asked a warm pool for a member, by result (claimed, empty).",
    },
    MetricDef {
        name: POOL_REFILL,
        kind: MetricKind::Histogram(TIME_TO_READY_BUCKETS),
        help: "Time from a warm-pool member's reservation to it being free to claim.",
    },
    MetricDef {
        name: RECONCILE_TOTAL,
        kind: MetricKind::Counter,
        help: "Reconciles finished, by result (success, backoff, error, lease_lost).",
    },
    MetricDef {
        name: RECONCILE_DURATION,
        kind: MetricKind::Histogram(RECONCILE_BUCKETS),
        help: "Time one reconcile of one server took.",
    },
    MetricDef {
        name: RECONCILE_PANICS,
        kind: MetricKind::Counter,
        help: "Reconciles that panicked (caught at the reconcile boundary; the server is retried).",
    },
    MetricDef {
        name: WORKQUEUE_DEPTH,
        kind: MetricKind::Gauge,
        help: "Servers in the work queue: ready for a worker or scheduled for later.",
    },
    MetricDef {
        name: WORKQUEUE_OLDEST_AGE,
        kind: MetricKind::Gauge,
        help: "How long the oldest ready server in the work queue has waited for a worker.",
    },
    MetricDef {
        name: WORKQUEUE_WAIT,
        kind: MetricKind::Histogram(QUEUE_WAIT_BUCKETS),
        help: "How long a server waited in the work queue, from ready to taken by a worker.",
    },
    MetricDef {
        name: WORKQUEUE_RETRIES,
        kind: MetricKind::Counter,
        help: "Reconciles that ended in a backoff retry.",
    },
    MetricDef {
        name: RECONCILES_IN_FLIGHT,
        kind: MetricKind::Gauge,
        help: "Reconciles running now in this replica.",
    },
    MetricDef {
        name: SERVERS,
        kind: MetricKind::Gauge,
        help: "Servers by phase, as of the last resync (0 on replicas that do not hold the resync).",
    },
    MetricDef {
        name: SERVERS_DEGRADED,
        kind: MetricKind::Gauge,
        help: "Degraded servers by backend (proxmox, agent, dns, proxy, other), as of the last resync.",
    },
    MetricDef {
        name: PROXMOX_TASKS_IN_FLIGHT,
        kind: MetricKind::Gauge,
        help: "Servers waiting on a Proxmox task, by task kind, as of the last resync.",
    },
    MetricDef {
        name: TIME_TO_READY,
        kind: MetricKind::Histogram(TIME_TO_READY_BUCKETS),
        help: "Time from a server's creation (or spec change) to Ready.",
    },
    MetricDef {
        name: ORPHANS,
        kind: MetricKind::Gauge,
        help: "Containers with zlh's ownership marker that no server owns, as of the last resync.",
    },
    MetricDef {
        name: BACKEND_ERRORS,
        kind: MetricKind::Counter,
        help: "Backend failures a reconcile recorded and backed off on, by backend and error class.",
    },
    MetricDef {
        name: RESYNC_TOTAL,
        kind: MetricKind::Counter,
        help: "Resyncs this replica ran (it held the resync).",
    },
    MetricDef {
        name: RESYNC_REQUEUED,
        kind: MetricKind::Counter,
        help: "Servers a resync sent to be reconciled (not settled, or due a health probe nobody answered).",
    },
    MetricDef {
        name: RESYNC_LAST_SUCCESS,
        kind: MetricKind::Gauge,
        help: "Unix time of the last resync that swept the fleet in this replica.",
    },
    MetricDef {
        name: HEALTH_PROBES,
        kind: MetricKind::Counter,
        help: "Server List Pings a resync ran itself, by result (answered, unanswered).",
    },
    MetricDef {
        name: LEASE_CLAIMS,
        kind: MetricKind::Counter,
        help: "Server lease claims, by result (claimed, held_elsewhere, error).",
    },
    MetricDef {
        name: LEASE_LOSSES,
        kind: MetricKind::Counter,
        help: "Reconciles abandoned because their server's lease could not be renewed.",
    },
    MetricDef {
        name: TEMPLATE_SLOT_WAITS,
        kind: MetricKind::Counter,
        help: "Times a reconcile found its template's clone slot taken and waited.",
    },
    MetricDef {
        name: MIRROR_FEED_LAG,
        kind: MetricKind::Gauge,
        help: "Age of the oldest change the resync's mirror applied when it last caught up with the change feed (0 when nothing had changed).",
    },
    MetricDef {
        name: CONTROLLER_LOOP,
        kind: MetricKind::Gauge,
        help: "Unix time the engine's main loop last went round (its heartbeat).",
    },
    MetricDef {
        name: CONTROLLER_INFO,
        kind: MetricKind::Gauge,
        help: "1, labelled with the controller replica's id and zlh's version.",
    },
];

/// Every metric a zlhd process can export: the engine's, the API's and the backend clients'.
pub fn all() -> impl Iterator<Item = &'static MetricDef> {
    DEFS.iter()
        .chain(api::metrics::DEFS)
        .chain(model::metrics::DEFS)
}

/// A recorder with every histogram's buckets and every metric's help text.
pub fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    use metrics::Recorder as _;
    let mut b = PrometheusBuilder::new();
    for d in all() {
        if let MetricKind::Histogram(buckets) = d.kind {
            b = b
                .set_buckets_for_metric(Matcher::Full(d.name.to_string()), buckets)
                .expect("bucket lists are non-empty");
        }
    }
    let recorder = b.build_recorder();
    for d in all() {
        let (name, help) = (d.name.into(), d.help.into());
        match d.kind {
            MetricKind::Counter => recorder.describe_counter(name, None, help),
            MetricKind::Gauge => recorder.describe_gauge(name, None, help),
            MetricKind::Histogram(_) => recorder.describe_histogram(name, None, help),
        }
    }
    recorder
}

/// Install the global Prometheus recorder once per process; later calls return the same
/// handle (tests build several engines in one process).
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness): keep ours detached.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Give the engine's series with known labels their first sample, so a dashboard or alert
/// finds `0` instead of nothing before the first event (adding zero changes no value another
/// engine in the process recorded).
pub fn register_engine(replica: &str) {
    for result in RECONCILE_RESULTS {
        metrics::counter!(RECONCILE_TOTAL, "result" => result).increment(0);
    }
    for result in [LEASE_CLAIMED, LEASE_HELD_ELSEWHERE, LEASE_ERROR] {
        metrics::counter!(LEASE_CLAIMS, "result" => result).increment(0);
    }
    for result in [PROBE_ANSWERED, PROBE_UNANSWERED] {
        metrics::counter!(HEALTH_PROBES, "result" => result).increment(0);
    }
    for name in [
        RECONCILE_PANICS,
        WORKQUEUE_RETRIES,
        RESYNC_TOTAL,
        RESYNC_REQUEUED,
        LEASE_LOSSES,
        TEMPLATE_SLOT_WAITS,
    ] {
        metrics::counter!(name).increment(0);
    }
    for name in [
        WORKQUEUE_DEPTH,
        WORKQUEUE_OLDEST_AGE,
        RECONCILES_IN_FLIGHT,
        ORPHANS,
        MIRROR_FEED_LAG,
    ] {
        metrics::gauge!(name).increment(0.0);
    }
    metrics::gauge!(CONTROLLER_INFO, "replica" => replica.to_string(), "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
}

/// A lease claim's outcome.
pub fn lease_claim(result: &'static str) {
    metrics::counter!(LEASE_CLAIMS, "result" => result).increment(1);
}

/// Now as Unix seconds, for the `_timestamp_seconds` gauges.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The naming rules `promtool check metrics` enforces, and ours: unique names, a help
    /// text, `_total` on counters only, explicit buckets on every `_seconds` histogram, base
    /// units.
    #[test]
    fn every_definition_follows_the_naming_rules() {
        let mut seen = HashSet::new();
        for d in all() {
            assert!(seen.insert(d.name), "{} is defined twice", d.name);
            assert!(d.name.starts_with("zlh_"), "{}", d.name);
            assert!(
                d.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{} is snake_case",
                d.name
            );
            assert!(!d.help.trim().is_empty(), "{} has help", d.name);
            assert_eq!(
                d.name.ends_with("_total"),
                matches!(d.kind, MetricKind::Counter),
                "{}: _total exactly on counters",
                d.name
            );
            if let MetricKind::Histogram(b) = d.kind {
                assert!(d.name.ends_with("_seconds"), "{}: a duration", d.name);
                assert!(
                    !b.is_empty() && b.windows(2).all(|w| w[0] < w[1]),
                    "{}: increasing buckets",
                    d.name
                );
            }
            for unit in ["_milliseconds", "_ms", "_minutes", "_hours", "_bytes_kb"] {
                assert!(!d.name.contains(unit), "{}: base units", d.name);
            }
        }
    }

    /// A rendered recorder has a `# HELP` for every family and buckets (not quantiles) for
    /// every histogram.
    #[test]
    fn the_recorder_renders_help_and_buckets() {
        use metrics::Recorder as _;
        let rec = recorder();
        let handle = rec.handle();
        let meta = metrics::Metadata::new("t", metrics::Level::INFO, None);
        for d in all() {
            let key = metrics::Key::from_name(d.name);
            match d.kind {
                MetricKind::Counter => rec.register_counter(&key, &meta).increment(1),
                MetricKind::Gauge => rec.register_gauge(&key, &meta).set(1.0),
                MetricKind::Histogram(_) => rec.register_histogram(&key, &meta).record(0.2),
            }
        }
        let text = handle.render();
        for d in all() {
            assert!(
                text.contains(&format!("# HELP {} ", d.name)),
                "{}: help\n{text}",
                d.name
            );
            if matches!(d.kind, MetricKind::Histogram(_)) {
                assert!(
                    text.contains(&format!("{}_bucket{{le=\"+Inf\"}} 1", d.name)),
                    "{}: buckets\n{text}",
                    d.name
                );
            }
        }
        assert!(!text.contains("quantile="), "no summaries:\n{text}");
    }
}
