//! Typed Proxmox VE client for zlh: the [`Proxmox`] trait, its reqwest implementation
//! [`PveClient`], error classification ([`PveError`], [`classify`]), UPIDs, and (feature `sim`)
//! a stateful Proxmox simulator with fault injection ([`sim`]); (feature `fake`) an in-memory
//! `Proxmox` for unit tests (`fake`).
//!
//! Facts about the API come from `docs/proxmox-api.md`; quirks are commented where handled.

pub mod api;
pub mod client;
pub mod error;
pub mod request;
pub mod tls;
pub mod types;
pub mod upid;

#[cfg(feature = "fake")]
pub mod fake;
#[cfg(feature = "sim")]
pub mod sim;

pub use api::Proxmox;
pub use client::{PveClient, PveConfig};
pub use error::{ErrorKind, PveError, classify};
pub use model::ErrorClass;
pub use request::{Endpoint, Method, PveRequest};
pub use tls::TlsMode;
pub use types::*;
pub use upid::{Upid, UpidParseError};
