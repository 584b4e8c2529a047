//! The reconcile engine: observe → decide → act, level-triggered, crash-safe.
//!
//! - `decide`: (desired, observed) → next action, a chain of named layers, pure and
//!   table-tested;
//! - `observe`: fills what `decide` asks for (snapshot first, then per server);
//! - `ownership`: the markers that prove a container ours, and hostnames;
//! - `reconcile`: one reconcile of one server over the shared `Context` (the loop, `act`
//!   for the calls that change the world, `record` for status and events);
//! - `engine`: the work queue, workers, triggers, leases and shutdown;
//! - `pool`: warm pools, containers cloned ahead of demand for new servers to claim
//!   (docs/pools.md);
//! - `queue`, `backoff`, `slots` (per-template clone serialization), `snapshot` + `resync`
//!   (batched fleet observation), `task_listing` (one task listing per node per poll for
//!   every task waited on), `mirror` (the resync's copy of the store, kept up to date
//!   from the change feed), `orphans`, `metrics`, `health` (the engine's liveness and
//!   readiness, for the controller's listener and systemd's watchdog);
//! - `config` (the configuration, and every timing derived from it), `backends` (every
//!   external system behind a trait, the clients the config describes).
//!
//! The application shell (`run`, `dev`, `sim` and the `zlhd` binary) is the `zlhd` package
//! (`controller/zlhd/`).

pub mod backends;
pub mod backoff;
pub mod config;
pub mod decide;
pub mod engine;
pub mod health;
pub mod metrics;
pub mod mirror;
pub mod observe;
pub mod orphans;
pub mod ownership;
pub mod pool;
pub mod queue;
pub mod reason;
pub mod reconcile;
pub mod resync;
pub mod retention;
pub mod slots;
pub mod snapshot;
pub mod task_listing;
