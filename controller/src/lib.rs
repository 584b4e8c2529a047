//! The reconcile engine: observe → decide → act, level-triggered, crash-safe.
//!
//! - `decide`: (desired, observed) → next action, pure and table-tested;
//! - `observe`: fills what `decide` asks for (snapshot first, then per server);
//! - `reconciler`: one reconcile of one server (the observe/decide loop, status, events);
//! - `act`: the one mutating call a reconcile makes, and what its answer means;
//! - `engine`: the work queue, workers, triggers, leases and shutdown;
//! - `queue`, `backoff`, `slots` (per-template clone serialization), `snapshot` + `resync`
//!   (batched fleet observation), `mirror` (the resync's copy of the store, kept up to date
//!   from the change feed), `orphans`, `metrics`;
//! - `config`, `backends`, `sim` (every simulator wired together), `run`, `dev`.

pub mod act;
pub mod backends;
pub mod backoff;
pub mod config;
pub mod decide;
pub mod dev;
pub mod engine;
pub mod metrics;
pub mod mirror;
pub mod observe;
pub mod orphans;
pub mod queue;
pub mod reason;
pub mod reconciler;
pub mod resync;
pub mod run;
pub mod sim;
pub mod slots;
pub mod snapshot;
