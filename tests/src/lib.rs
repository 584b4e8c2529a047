//! Shared helpers for the end-to-end suites (being written).
