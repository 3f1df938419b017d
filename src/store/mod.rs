//! Everything the prober writes to PostgreSQL. Only the public functions here touch the
//! database, and each is one statement (so one implicit transaction): nothing is left half-done.

mod pending;
mod status;

pub use pending::{Pending, RollupDelta, StatusRow};
pub use status::{FlushContext, flush, load_states};
