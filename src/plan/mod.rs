//! Pure decisions, no I/O: what to probe for each registry row (`target`), what a check means
//! for a service's health (`health`), and where services fall in time and among daemons
//! (`placement`: phases and rendezvous hashing). Everything here is table-tested beside it.
//!
//! May import: `config`, `clock`. Nothing here waits, spawns or touches the network.

pub mod health;
pub mod outage;
pub mod placement;
pub mod target;
