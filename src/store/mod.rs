//! PostgreSQL: the pool, the database and its migrations (`db`); what the prober writes, each
//! a single statement so nothing is left half-done (`pending` batch and its `status` flush);
//! what operators read (`dashboard`, the `service_health_dashboard` view); and the operator-run
//! move off the legacy tables (`legacy`).
//!
//! May import: `config`, `clock`, `plan`, `observe`, `probe` (the results it stores).

pub mod dashboard;
pub mod db;
pub mod legacy;
mod pending;
mod status;

pub use pending::{Pending, RollupDelta, StatusRow};
pub use status::{FlushContext, flush, load_states};
