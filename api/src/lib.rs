//! zlh's HTTP contract, both sides: the axum server (routes, auth, problem+json, OpenAPI, SSE
//! watch, the Portal's compatibility routes) and a typed client.
//!
//! The API records what users want and shows what the controller has done; it never calls
//! Proxmox or any other backend.
//!
//! ```no_run
//! # async fn run(store: model::store::AnyStore) -> std::io::Result<()> {
//! let state = api::AppState {
//!     store,
//!     catalog: std::sync::Arc::new(model::Catalog::example()),
//!     config: api::ApiConfig::default(),
//!     metrics: None,
//!     sd: api::config::SdConfig::default(),
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! api::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod admission;
pub mod audit;
pub mod auth;
pub mod client;
pub mod compat;
pub mod config;
pub mod console;
pub mod cors;
pub mod extract;
pub mod identity;
pub mod limit;
pub mod listen;
pub mod manpage;
pub mod metrics;
pub mod openapi;
pub mod portal;
pub mod problem;
pub mod redact;
pub mod router;
pub mod routes;
pub mod state;
pub mod watch;
pub mod wire;

pub use client::{ApiClient, ClientError, PowerOutcome, RetryPolicy};
pub use config::{ApiConfig, SdConfig};
pub use problem::{ApiError, Problem};
pub use router::{openapi, router, serve};
pub use state::AppState;
