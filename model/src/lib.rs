//! zlh's domain: what a customer wants (`ServerSpec`), what the controller has seen
//! (`ServerStatus`), and (feature `store`) the `Store` that keeps both, on SQLite or
//! PostgreSQL.

pub mod audit;
pub mod catalog;
pub mod class;
pub mod clock;
pub mod customer;
pub mod event;
pub mod faults;
pub mod ids;
pub mod metrics;
pub mod operation;
pub mod pool;
pub mod server;
pub mod spec;
pub mod stats;
pub mod status;
#[cfg(feature = "store")]
pub mod store;

pub use audit::{AuditEntry, AuditFilter, NewAudit};
pub use catalog::{Catalog, CloneMode, Template};
pub use class::ErrorClass;
pub use clock::{Clock, ManualClock, SystemClock};
pub use customer::{ApiToken, Customer, Quota, Role, Standing, TokenState};
pub use event::{Event, EventType, NewEvent};
pub use ids::{OperationId, ServerId};
pub use operation::{Operation, OperationKind};
pub use pool::{MemberState, NewPoolMember, PoolMember, pool_event_id};
pub use server::Server;
pub use spec::{FieldError, Kind, Power, Process, Resources, Restarts, ServerSpec, Variant};
pub use stats::{AgentDetail, Players, ResourceUsage, ServerStats};
pub use status::{
    Condition, ConditionStatus, ConditionType, LastError, Phase, Progress, ServerStatus, Step,
    TaskKind,
};
