//! The reconcile engine (being written).
