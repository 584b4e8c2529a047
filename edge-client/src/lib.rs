//! Edge clients (being written).
