//! What every handler shares: the embedder's `AppState` and the router-owned `Ctx`. A leaf
//! module, so handlers import their state from here and never from `crate::router`.

use crate::config::ApiConfig;
use crate::limit::{AddressLimiter, RateLimiter};
use metrics_exporter_prometheus::PrometheusHandle;
use model::Catalog;
use model::store::AnyStore;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: AnyStore,
    /// What can be built (the controller's template map).
    pub catalog: Arc<Catalog>,
    pub config: ApiConfig,
    /// The Prometheus recorder's handle; `/metrics` answers 404 without it.
    pub metrics: Option<PrometheusHandle>,
    /// The exporters service discovery lists (`[sd]`).
    pub sd: crate::config::SdConfig,
}

/// The handlers' state: the app plus what the router owns (internal).
#[doc(hidden)]
pub struct Ctx {
    pub(crate) app: AppState,
    pub(crate) limiter: RateLimiter,
    pub(crate) address_limiter: AddressLimiter,
    /// Cancelled on shutdown, so open watch streams end and graceful shutdown completes.
    pub(crate) shutdown: CancellationToken,
    pub(crate) openapi_json: String,
    /// The account service's JWTs (`[api.identity]`); `None`: zlh's own tokens only.
    pub(crate) identity: Option<crate::identity::Verifier>,
    /// Console tickets and sessions (`crate::console`).
    pub(crate) console: crate::console::Console,
    /// Throttles the writes of tokens' last use (`crate::auth::LastUse`).
    pub(crate) last_use: crate::auth::LastUse,
}
