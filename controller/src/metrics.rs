//! Prometheus metric names (controller-runtime style) and the recorder set-up.

pub const RECONCILE_TOTAL: &str = "zlh_reconcile_total";
pub const RECONCILE_DURATION: &str = "zlh_reconcile_duration_seconds";
/// Reconciles that panicked (caught at the reconcile boundary; the server is retried).
pub const RECONCILE_PANICS: &str = "zlh_reconcile_panics_total";
pub const WORKQUEUE_DEPTH: &str = "zlh_workqueue_depth";
pub const WORKQUEUE_RETRIES: &str = "zlh_workqueue_retries_total";
pub const SERVERS: &str = "zlh_servers";
pub const TIME_TO_READY: &str = "zlh_time_to_ready_seconds";
pub const ORPHANS: &str = "zlh_orphans";
/// Backend failures a reconcile recorded as its last error (and backed off on), by
/// `backend` and error `class`.
pub const BACKEND_ERRORS: &str = "zlh_backend_errors_total";
pub const RESYNC_TOTAL: &str = "zlh_resync_total";
/// Servers a resync sent to be reconciled (not settled, or due a health probe).
pub const RESYNC_REQUEUED: &str = "zlh_resync_requeued_total";
/// Health probes a resync ran itself (a settled game's Server List Ping), by `result`
/// (`answered`; `unanswered` ones are requeued).
pub const HEALTH_PROBES: &str = "zlh_health_probes_total";

/// Install the global Prometheus recorder once per process; later calls return the same
/// handle (tests build several engines in one process).
pub fn install() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness): keep ours detached.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
