//! A clock that says what it is told, for tests and benchmarks of time-dependent work
//! (partition premaking, retention cut-offs). The daemon itself only uses the system clock.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use mcp_healthd::clock::Clock;

#[derive(Debug, Clone)]
pub struct FixedClock(Arc<Mutex<DateTime<Utc>>>);

impl FixedClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(at)))
    }

    #[allow(dead_code)] // not every crate that includes this file moves the clock
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock poisoned") = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock poisoned")
    }
}
