//! The checking pipeline, wired from the pieces below it:
//!
//! ```text
//! scheduler (when) -> probe (one check) -> Report -> monitor (state machine, alert log via
//! `alerts`, metrics) -> pending batch -> writer (one statement per flush)
//! ```
//!
//! Each stage runs in its own task and talks to the next through a channel or the pending
//! batch; the monitor never waits on the database.
//!
//! May import: `config`, `clock`, `plan`, `observe`, `probe`, `store`, `registry`, `cluster`.

pub mod alerts;
pub mod monitor;
pub mod outside;
pub mod scheduler;
pub mod writer;
