//! Clients for everything outside Proxmox that a server needs to be reachable: the zpack
//! Agent in each container, DNS (Technitium internal view, Cloudflare public view), the
//! Velocity bridge, and the Minecraft Server List Ping. Feature `sim`: loopback simulators of
//! each (`edge_client::sim`). Feature `fake`: in-memory fakes of the `Agent`, `DnsProvider`
//! and `Proxy` traits for unit tests (`edge_client::fake`).
//!
//! Every call returns `EdgeError` with a `model::ErrorClass`; every HTTP exchange is counted in
//! `zlh_backend_requests_total{backend, operation, class}` (`class="ok"` on success) and
//! timed in `zlh_backend_request_duration_seconds{backend, operation}`. No token or secret
//! is ever put in a URL, a log line or an error message.

pub mod agent;
pub mod cloudflare;
pub mod dns;
pub mod error;
mod http;
pub mod pace;
pub mod slp;
pub mod technitium;
pub mod velocity;

#[cfg(feature = "fake")]
pub mod fake;
#[cfg(feature = "sim")]
pub mod sim;

pub use agent::{Agent, AgentClient, AgentConfig, AgentPayload, AgentState, AgentStatus};
pub use cloudflare::{CloudflareClient, CloudflareConfig};
pub use dns::{DesiredRecords, DnsProvider, ObservedRecords, SrvRecord};
pub use error::{Backend, EdgeError};
pub use slp::SlpStatus;
pub use technitium::{TechnitiumClient, TechnitiumConfig};
pub use velocity::{Proxy, Registration, VelocityClient, VelocityConfig};
