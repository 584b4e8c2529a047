//! The zlh application shell: the `zlhd` binary's pieces, on top of the `controller` engine.
//!
//! - `run`: running the pieces (store, API server, controller) with logging, signals and
//!   sd_notify; shared by `zlhd serve|api|controller|dev`;
//! - `dev`: `zlhd dev`, everything in one process with SQLite and simulators;
//! - `sim`: every simulator wired together (`zlhd sim`, `zlhd dev`, tests and benchmarks);
//! - `listener`: `zlhd controller`'s own `/metrics`, `/healthz` and `/readyz`;
//! - `watchdog`: systemd's watchdog, fed while the engine's main loop goes round.
//! - `store`: opening the store (who migrates, the pools, the API's connection cap).

pub mod dev;
pub mod listener;
pub mod run;
pub mod sim;
pub mod store;
pub mod watchdog;
