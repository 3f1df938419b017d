//! Results not yet written: the latest status per service and hourly rollup counters per
//! (service, hour). Bounded by the number of services (and hours of an outage), never by the
//! number of checks, so the daemon can go on checking while the database is away and lose nothing.
//! Also the incidents opened and closed since the last flush, and failures found afterwards to
//! be the monitor's own (reclassified as inconclusive).

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

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
    /// Failures that count against uptime (neither in maintenance nor inconclusive).
    pub failures: i32,
    pub latency_sum_ms: i64,
    pub latency_max_ms: i32,
    /// Checks inside a maintenance window (left out of uptime).
    pub maintenance_checks: i32,
    /// Failures during a monitor-side outage (left out of uptime).
    pub inconclusive_checks: i32,
}

impl RollupDelta {
    fn add(&mut self, other: RollupDelta) {
        self.checks += other.checks;
        self.failures += other.failures;
        self.maintenance_checks += other.maintenance_checks;
        self.inconclusive_checks += other.inconclusive_checks;
        self.latency_sum_ms += other.latency_sum_ms;
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
    }
}

/// How a check counts in uptime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// In uptime, as a success or a failure.
    Yes,
    /// Inside a maintenance window: left out.
    Maintenance,
    /// A failure during a monitor-side outage: the monitor's, not the service's; left out.
    Inconclusive,
}

/// An incident row to insert: opened (and perhaps closed) since the last flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub service_type: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub failed_checks: i32,
}

/// The closing of an incident opened before the last flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentClose {
    pub ended_at: DateTime<Utc>,
    pub failed_checks: i32,
}

#[derive(Debug, Default)]
pub struct Pending {
    pub status: HashMap<String, StatusRow>,
    pub rollups: HashMap<(String, DateTime<Utc>), RollupDelta>,
    /// Opened since the last flush, in order.
    pub opened: Vec<Incident>,
    /// Closings of incidents opened in an earlier batch, by service.
    pub closed: HashMap<String, IncidentClose>,
    /// Failures already written that turned out inconclusive, per (service, hour).
    pub reclassified: HashMap<(String, DateTime<Utc>), i32>,
}

/// The UTC hour a check belongs to.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
            && self.rollups.is_empty()
            && self.opened.is_empty()
            && self.closed.is_empty()
            && self.reclassified.is_empty()
    }

    /// Adds one check: it replaces the service's status and counts in its hour's rollup.
    pub fn record(&mut self, service_type: &str, state: &ServiceState, check: &Check) {
        self.record_as(service_type, state, check, Counted::Yes);
    }

    /// [`Pending::record`], saying how the check counts in uptime.
    pub fn record_as(
        &mut self,
        service_type: &str,
        state: &ServiceState,
        check: &Check,
        counted: Counted,
    ) {
        let latency_ms = i32::try_from(check.latency.as_millis()).unwrap_or(i32::MAX);
        let row = StatusRow {
            state: state.clone(),
            checked_at: check.started_at,
            response_time_ms: latency_ms,
            error_message: check.outcome.error_message(),
            error_kind: check.outcome.kind().map(|k| k.as_str()),
        };
        // A service already in the batch (several checks a flush) costs no new key.
        match self.status.get_mut(service_type) {
            Some(old) => *old = row,
            None => {
                self.status.insert(service_type.to_owned(), row);
            }
        }
        let failed = i32::from(!check.outcome.is_success());
        let delta = RollupDelta {
            checks: 1,
            failures: if counted == Counted::Yes { failed } else { 0 },
            latency_sum_ms: latency_ms.into(),
            latency_max_ms: latency_ms,
            maintenance_checks: i32::from(counted == Counted::Maintenance),
            inconclusive_checks: if counted == Counted::Inconclusive {
                failed
            } else {
                0
            },
        };
        self.rollups
            .entry((service_type.to_owned(), hour_of(check.started_at)))
            .or_default()
            .add(delta);
    }

    /// A failure of `service_type` made at `at`, already recorded, was the monitor's own: it
    /// moves from `failures` to `inconclusive_checks` (here if its count is still pending, else by
    /// the next flush).
    pub fn reclassify_failure(&mut self, service_type: &str, at: DateTime<Utc>) {
        let key = (service_type.to_owned(), hour_of(at));
        match self.rollups.get_mut(&key) {
            Some(d) if d.failures > 0 => {
                d.failures -= 1;
                d.inconclusive_checks += 1;
            }
            _ => *self.reclassified.entry(key).or_default() += 1,
        }
    }

    /// Opens an incident of `service_type` at `at` (`service_down`).
    pub fn open_incident(
        &mut self,
        service_type: &str,
        at: DateTime<Utc>,
        row: &StatusRow,
        failed: u32,
    ) {
        self.opened.push(Incident {
            service_type: service_type.to_owned(),
            started_at: at,
            ended_at: None,
            error_kind: row.error_kind.map(str::to_owned),
            error_message: row.error_message.clone(),
            failed_checks: i32::try_from(failed).unwrap_or(i32::MAX),
        });
    }

    /// Closes the open incident of `service_type` at `at` (`service_up`): the one opened in this
    /// batch if there is one, else the one in the database.
    pub fn close_incident(&mut self, service_type: &str, at: DateTime<Utc>, failed: u32) {
        let failed_checks = i32::try_from(failed).unwrap_or(i32::MAX);
        let open_here = self
            .opened
            .iter_mut()
            .rev()
            .find(|i| i.service_type == service_type && i.ended_at.is_none());
        match open_here {
            Some(incident) => {
                // A clock stepped back between the two must not make a row ending before it starts.
                incident.ended_at = Some(at.max(incident.started_at));
                incident.failed_checks = incident.failed_checks.max(failed_checks);
            }
            None => {
                self.closed.insert(
                    service_type.to_owned(),
                    IncidentClose {
                        ended_at: at,
                        failed_checks,
                    },
                );
            }
        }
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
                latency_max_ms: 30,
                ..RollupDelta::default()
            }
        );
        assert_eq!(p.checks(), 3);
    }

    #[test]
    fn checks_left_out_of_uptime_are_counted_apart() {
        let mut p = Pending::default();
        let s = ServiceState::default();
        p.record_as("a", &s, &check(1, 0, false, 10), Counted::Maintenance);
        p.record_as("a", &s, &check(1, 1, true, 10), Counted::Maintenance);
        p.record_as("a", &s, &check(2, 0, false, 10), Counted::Inconclusive);
        p.record("a", &s, &check(3, 0, false, 10));
        let hour = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        let d = p.rollups[&("a".to_owned(), hour)];
        assert_eq!(
            (
                d.checks,
                d.failures,
                d.maintenance_checks,
                d.inconclusive_checks
            ),
            (4, 1, 2, 1)
        );
        // A pending failure found to be the monitor's moves within the batch...
        p.reclassify_failure("a", hour);
        let d = p.rollups[&("a".to_owned(), hour)];
        assert_eq!((d.failures, d.inconclusive_checks), (0, 2));
        // ...one already written is moved by the next flush.
        p.reclassify_failure("a", hour);
        assert_eq!(p.reclassified[&("a".to_owned(), hour)], 1);
    }

    #[test]
    fn an_incident_opened_and_closed_in_one_batch_is_one_row() {
        let mut p = Pending::default();
        let s = ServiceState::default();
        p.record("a", &s, &check(1, 0, false, 10));
        let row = p.status["a"].clone();
        let t = |m| Utc.with_ymd_and_hms(2026, 11, 28, 10, m, 0).unwrap();
        p.close_incident("b", t(0), 4);
        p.open_incident("a", t(1), &row, 3);
        p.close_incident("a", t(5), 7);
        p.open_incident("a", t(9), &row, 3);
        assert_eq!(p.opened.len(), 2);
        assert_eq!(p.opened[0].ended_at, Some(t(5)));
        assert_eq!(p.opened[0].failed_checks, 7);
        assert_eq!(p.opened[0].error_kind.as_deref(), Some("connect"));
        assert_eq!(p.opened[1].ended_at, None);
        assert_eq!(p.closed["b"].ended_at, t(0));
    }
}
