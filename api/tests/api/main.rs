//! Route tests against a real API on 127.0.0.1 and a real SQLite store in a temp dir.

mod common;
mod compat;
mod cors;
mod errors;
mod hardening;
mod idempotency;
mod identity;
mod openapi;
mod portal;
mod power;
mod retry;
mod routes;
mod sd;
mod watch;
