//! `mcp-healthd`: watches a fleet of MCP services over HTTP, keeps their health in PostgreSQL,
//! and runs the database's periodic maintenance. See ARCHITECTURE.md for the map; the binary
//! (`main.rs`) only parses arguments and reports errors.

pub mod alerts;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod cron;
pub mod daemon;
pub mod dashboard;
pub mod db;
pub mod demo;
pub mod health;
pub mod http;
pub mod jobs;
pub mod legacy;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod probe;
pub mod registry;
pub mod scheduler;
pub mod stats;
pub mod store;
pub mod target;
pub mod telemetry;
pub mod writer;

/// Exit status for a bad configuration (sysexits.h `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// Installs rustls' `ring` crypto provider; reqwest and sqlx need one before building clients.
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
