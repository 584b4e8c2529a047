//! The error taxonomy shared by every backend client (docs/errors.md).

use serde::{Deserialize, Serialize};

/// How the engine must treat a failed call to an external system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ErrorClass {
    /// The backend may answer differently next time: retry with backoff, destroy nothing.
    Transient,
    /// The object is locked by a running operation: wait and retry; not a failure.
    Locked,
    /// Confirmed absence. Idempotent deletes treat it as success.
    NotFound,
    /// The identity is taken (VMID, record with other data).
    Conflict,
    /// A bug or a bad spec: fail visibly, do not hammer.
    Invalid,
    /// Credentials or permissions: alert, fail visibly, do not hammer.
    Unauthorized,
}

impl ErrorClass {
    /// Classes that are expected to clear on their own.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::Locked)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Locked => "locked",
            ErrorClass::NotFound => "notFound",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Unauthorized => "unauthorized",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
