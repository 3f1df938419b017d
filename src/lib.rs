//! `mcp-healthd`: watches a fleet of MCP services over HTTP, keeps their health in PostgreSQL,
//! and runs the database's periodic maintenance. See ARCHITECTURE.md for the map; the binary
//! (`main.rs`) only parses arguments and reports errors.
//!
//! Modules form layers, and a module imports only from its own layer or those below it
//! (`scripts/check-layers` enforces this, lowest first):
//!
//! 1. `clock`, `config`, `text` — what time it is, what the operator asked for, and foreign
//!    text made safe to show;
//! 2. `plan` — pure decisions: registry row -> target, the health state machine, phases and
//!    ownership hashing;
//! 3. `observe` — counters, metrics, logs, sd_notify and the small HTTP endpoint;
//! 4. `probe`, `store`, `registry`, `cluster`, `jobs` — the pieces that do I/O;
//! 5. `pipeline` — scheduler -> probe -> monitor -> writer, wired together;
//! 6. `daemon` — the lifecycle of `mcp-healthd run`;
//! 7. `commands`, `demo` — what the command line asks for.

pub mod clock;
pub mod config;
pub mod text;

pub mod plan;

pub mod observe;

pub mod cluster;
pub mod jobs;
pub mod probe;
pub mod registry;
pub mod store;

pub mod pipeline;
pub mod statuspage;

pub mod daemon;

pub mod commands;
pub mod demo;

/// Exit status for a bad configuration (sysexits.h `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// Installs rustls' `ring` crypto provider; reqwest and sqlx need one before building clients.
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
