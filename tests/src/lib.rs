//! Shared harness for the end-to-end suites: a `World` (simulators + store) in which
//! controllers can be started, crashed and restarted, and the fleet invariant checker.

pub mod chaos;
pub mod invariants;
pub mod pg;
pub mod process;
pub mod tcp_proxy;
pub mod world;

pub use invariants::check_invariants;
pub use world::{World, WorldOptions};
pub mod bench;
