//! The zlh application shell: the `zlhd` binary's pieces, on top of the `controller` engine.
//!
//! - `run`: running the pieces (store, API server, controller) with logging, signals and
//!   sd_notify; shared by `zlhd serve|api|controller|dev`;
//! - `dev`: `zlhd dev`, everything in one process with SQLite and simulators;
//! - `sim`: every simulator wired together (`zlhd sim`, `zlhd dev`, tests and benchmarks).

pub mod dev;
pub mod run;
pub mod sim;
