//! Route handlers, one module per resource.

pub mod audit;
pub mod catalog;
pub mod console;
pub mod customers;
pub mod operations;
pub mod ops;
pub mod pools;
pub mod power;
pub mod sd;
pub mod servers;
pub mod tokens;
