//! Results not yet written: the latest status per service and hourly rollup counters per
//! (service, hour). Bounded by the number of services (and hours of an outage), never by the
//! number of checks, so the daemon can go on checking while the database is away and lose nothing.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::plan::health::ServiceState;
use crate::probe::Check;

/// The status row of one service after its latest check.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRow {
    pub state: ServiceState,
    pub checked_at: DateTime<Utc>,
    pub response_time_ms: i32,
    pub error_message: Option<String>,
    pub error_kind: Option<&'static str>,
}

/// Counts to add to one `service_health_rollups` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupDelta {
    pub checks: i32,
    pub failures: i32,
    pub latency_sum_ms: i64,
    pub latency_max_ms: i32,
}

impl RollupDelta {
    fn add(&mut self, other: RollupDelta) {
        self.checks += other.checks;
        self.failures += other.failures;
        self.latency_sum_ms += other.latency_sum_ms;
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
    }
}

#[derive(Debug, Default)]
pub struct Pending {
    pub status: HashMap<String, StatusRow>,
    pub rollups: HashMap<(String, DateTime<Utc>), RollupDelta>,
}

/// The UTC hour a check belongs to.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.status.is_empty() && self.rollups.is_empty()
    }

    /// Adds one check: it replaces the service's status and counts in its hour's rollup.
    pub fn record(&mut self, service_type: &str, state: &ServiceState, check: &Check) {
        let latency_ms = i32::try_from(check.latency.as_millis()).unwrap_or(i32::MAX);
        self.status.insert(
            service_type.to_owned(),
            StatusRow {
                state: state.clone(),
                checked_at: check.started_at,
                response_time_ms: latency_ms,
                error_message: check.outcome.error_message(),
                error_kind: check.outcome.kind().map(|k| k.as_str()),
            },
        );
        let delta = RollupDelta {
            checks: 1,
            failures: i32::from(!check.outcome.is_success()),
            latency_sum_ms: latency_ms.into(),
            latency_max_ms: latency_ms,
        };
        self.rollups
            .entry((service_type.to_owned(), hour_of(check.started_at)))
            .or_default()
            .add(delta);
    }

    pub fn checks(&self) -> i64 {
        self.rollups.values().map(|d| i64::from(d.checks)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{ErrorKind, Outcome};
    use chrono::TimeZone;
    use std::time::Duration;

    fn check(min: u32, sec: u32, ok: bool, ms: u64) -> Check {
        Check {
            started_at: Utc.with_ymd_and_hms(2026, 11, 28, 10, min, sec).unwrap(),
            latency: Duration::from_millis(ms),
            outcome: if ok {
                Outcome::Success { status: 200 }
            } else {
                Outcome::failure(ErrorKind::Connect, "refused")
            },
            tls_not_after: None,
        }
    }

    #[test]
    fn keeps_the_latest_status_and_sums_rollups_per_hour() {
        let mut p = Pending::default();
        let s = ServiceState::default();
        p.record("a", &s, &check(1, 0, true, 10));
        p.record("a", &s, &check(2, 0, false, 30));
        p.record("b", &s, &check(3, 0, true, 5));
        assert_eq!(p.status["a"].error_kind, Some("connect"));
        assert_eq!(
            p.status["a"].error_message.as_deref(),
            Some("connect: refused")
        );
        let hour = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        assert_eq!(
            p.rollups[&("a".to_owned(), hour)],
            RollupDelta {
                checks: 2,
                failures: 1,
                latency_sum_ms: 40,
                latency_max_ms: 30
            }
        );
        assert_eq!(p.checks(), 3);
    }
}
