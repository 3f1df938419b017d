//! PostgreSQL: the pool, the database and its migrations (`db`); what the prober writes, each
//! a single statement so nothing is left half-done (`pending` batch and its `status` flush);
//! what operators read (`dashboard`, the `service_health_dashboard` view); and the operator-run
//! move off the legacy tables (`legacy`); and results kept on disk across a restart when the
//! database was away at exit (`spill`); converting, before the migrations run, a database that
//! has the original design's schema (`adopt`); maintenance windows, which operators add and the
//! daemon reads (`maintenance`); the uptime report over a period (`report`).
//!
//! May import: `config`, `clock`, `plan`, `observe`, `probe` (the results it stores).

pub mod adopt;
mod connect_error;
pub mod dashboard;
pub mod db;
pub mod legacy;
pub mod maintenance;
mod pending;
pub mod report;
pub mod spill;
mod status;
pub mod status_page;

pub use pending::{Counted, Incident, IncidentClose, Pending, RollupDelta, StatusRow};
pub use status::{FlushContext, flush, load_states};
