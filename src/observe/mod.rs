//! What the daemon tells the world about itself, apart from the alert log: live counters
//! (`stats`), Prometheus metrics (`metrics`), logging set-up (`telemetry`), systemd's
//! notifications (`notify`) and the small HTTP endpoint serving `/metrics` and `/healthz`
//! (`http`).
//!
//! May import: `config`, `clock`, `plan`. The pieces above record into these; nothing here
//! calls back into them.

pub mod http;
pub mod metrics;
pub mod notify;
pub mod stats;
pub mod telemetry;
