//! The status path: one statement per flush, whatever the number of services. It adds the
//! batch's counts to the hourly rollups, recomputes each service's uptime over the window from
//! those rollups, and upserts the services' status rows, all atomically.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::pending::{Pending, hour_of};
use crate::plan::health::ServiceState;

/// The rollup upsert runs as a data-modifying CTE; its RETURNING rows stand in for the rows it
/// replaced (a statement cannot see its own writes), so uptime includes this batch's checks.
const FLUSH: &str = "
WITH marker AS (
    -- This batch's id; a retry of a batch the server already committed finds it and adds nothing.
    INSERT INTO service_health_flushes (flush_id) VALUES ($21) ON CONFLICT DO NOTHING RETURNING 1
), rollup_in AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::int[], $5::bigint[], $6::int[])
           AS t(service_type, hour, checks, failures, latency_sum_ms, latency_max_ms)
), upserted AS (
    INSERT INTO service_health_rollups AS r (service_type, hour, checks, failures, latency_sum_ms, latency_max_ms)
    SELECT i.service_type, i.hour, i.checks, i.failures, i.latency_sum_ms, i.latency_max_ms
      FROM rollup_in i JOIN service_registry USING (service_type)
     WHERE EXISTS (SELECT 1 FROM marker)
    ON CONFLICT (service_type, hour) DO UPDATE
       SET checks = r.checks + EXCLUDED.checks,
           failures = r.failures + EXCLUDED.failures,
           latency_sum_ms = r.latency_sum_ms + EXCLUDED.latency_sum_ms,
           latency_max_ms = greatest(r.latency_max_ms, EXCLUDED.latency_max_ms)
    RETURNING r.service_type, r.hour, r.checks, r.failures
), status_in AS (
    SELECT * FROM unnest($7::text[], $8::bool[], $9::timestamptz[], $10::int[], $11::text[], $12::text[],
                         $13::int[], $14::int[], $15::timestamptz[], $16::timestamptz[], $17::timestamptz[])
           AS t(service_type, is_healthy, checked_at, response_time_ms, error_message, error_kind,
                consecutive_failures, consecutive_successes, last_success_at, last_failure_at, state_changed_at)
), in_window AS (
    SELECT r.service_type, r.checks, r.failures
      FROM service_health_rollups r
     WHERE r.service_type IN (SELECT service_type FROM status_in)
       AND r.hour >= $18
       AND NOT EXISTS (SELECT 1 FROM upserted u WHERE u.service_type = r.service_type AND u.hour = r.hour)
    UNION ALL
    SELECT u.service_type, u.checks, u.failures FROM upserted u WHERE u.hour >= $18
), uptime AS (
    SELECT service_type, (100.0 * sum(checks - failures) / nullif(sum(checks), 0))::float8 AS pct
      FROM in_window GROUP BY service_type
)
INSERT INTO service_health_status AS s
       (service_type, is_healthy, last_health_check, response_time_ms, error_message, error_kind,
        consecutive_failures, consecutive_successes, last_success_at, last_failure_at, state_changed_at,
        uptime_percentage, check_interval_ms, checked_by)
SELECT i.service_type, i.is_healthy, i.checked_at, i.response_time_ms, i.error_message, i.error_kind,
       i.consecutive_failures, i.consecutive_successes, i.last_success_at, i.last_failure_at, i.state_changed_at,
       u.pct, $19, $20
  FROM status_in i
  JOIN service_registry USING (service_type)
  LEFT JOIN uptime u USING (service_type)
ON CONFLICT (service_type) DO UPDATE
   SET is_healthy = EXCLUDED.is_healthy,
       last_health_check = EXCLUDED.last_health_check,
       response_time_ms = EXCLUDED.response_time_ms,
       error_message = EXCLUDED.error_message,
       error_kind = EXCLUDED.error_kind,
       consecutive_failures = EXCLUDED.consecutive_failures,
       consecutive_successes = EXCLUDED.consecutive_successes,
       last_success_at = EXCLUDED.last_success_at,
       last_failure_at = EXCLUDED.last_failure_at,
       state_changed_at = EXCLUDED.state_changed_at,
       uptime_percentage = coalesce(EXCLUDED.uptime_percentage, s.uptime_percentage),
       check_interval_ms = EXCLUDED.check_interval_ms,
       checked_by = EXCLUDED.checked_by
 -- A daemon flushing a backlog (after an outage, or a service handed over meanwhile) never
 -- overwrites a newer check by another daemon.
 WHERE s.last_health_check IS NULL OR EXCLUDED.last_health_check >= s.last_health_check";

/// Context of a flush that is the same for every row.
#[derive(Debug, Clone)]
pub struct FlushContext<'a> {
    pub uptime_window: Duration,
    pub check_interval: Duration,
    pub checked_by: &'a str,
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Writes `batch` in one statement. `id` names the batch: flushing the same batch again under
/// the same id (a retry after an error that may have come after the commit) counts nothing twice.
pub async fn flush(
    pool: &PgPool,
    id: uuid::Uuid,
    batch: &Pending,
    ctx: &FlushContext<'_>,
    now: DateTime<Utc>,
) -> sqlx::Result<()> {
    let r = RollupColumns::of(batch);
    let s = StatusColumns::of(batch);
    let window =
        chrono::TimeDelta::from_std(ctx.uptime_window).unwrap_or(chrono::TimeDelta::days(1));
    let window_start = hour_of(now - window);
    let interval_ms = i32::try_from(ctx.check_interval.as_millis()).unwrap_or(i32::MAX);
    sqlx::query(FLUSH)
        .bind(&r.service)
        .bind(&r.hour)
        .bind(&r.checks)
        .bind(&r.failures)
        .bind(&r.latency_sum)
        .bind(&r.latency_max)
        .bind(&s.service)
        .bind(&s.healthy)
        .bind(&s.checked_at)
        .bind(&s.latency)
        .bind(&s.message)
        .bind(&s.kind)
        .bind(&s.failures)
        .bind(&s.successes)
        .bind(&s.last_success)
        .bind(&s.last_failure)
        .bind(&s.changed)
        .bind(window_start)
        .bind(interval_ms)
        .bind(ctx.checked_by)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// The batch's rollup deltas as the columns `unnest` reads ($1-$6).
struct RollupColumns<'a> {
    service: Vec<&'a str>,
    hour: Vec<DateTime<Utc>>,
    checks: Vec<i32>,
    failures: Vec<i32>,
    latency_sum: Vec<i64>,
    latency_max: Vec<i32>,
}

impl<'a> RollupColumns<'a> {
    fn of(batch: &'a Pending) -> Self {
        // Rows in a fixed order: two daemons upserting the same rows (at a hand-over) cannot
        // deadlock.
        let mut rows: Vec<_> = batch.rollups.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        RollupColumns {
            service: column(&rows, |&((service, _), _)| service.as_str()),
            hour: column(&rows, |&((_, hour), _)| *hour),
            checks: column(&rows, |&(_, d)| d.checks),
            failures: column(&rows, |&(_, d)| d.failures),
            latency_sum: column(&rows, |&(_, d)| d.latency_sum_ms),
            latency_max: column(&rows, |&(_, d)| d.latency_max_ms),
        }
    }
}

/// One `unnest` column: `value` of every row, in the rows' order.
fn column<R, T>(rows: &[R], value: impl Fn(&R) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

/// The batch's status rows as the columns `unnest` reads ($7-$17).
struct StatusColumns<'a> {
    service: Vec<&'a str>,
    healthy: Vec<Option<bool>>,
    checked_at: Vec<DateTime<Utc>>,
    latency: Vec<i32>,
    message: Vec<Option<&'a str>>,
    kind: Vec<Option<&'static str>>,
    failures: Vec<i32>,
    successes: Vec<i32>,
    last_success: Vec<Option<DateTime<Utc>>>,
    last_failure: Vec<Option<DateTime<Utc>>>,
    changed: Vec<Option<DateTime<Utc>>>,
}

impl<'a> StatusColumns<'a> {
    fn of(batch: &'a Pending) -> Self {
        // In a fixed order too, for the same reason as the rollups.
        let mut rows: Vec<_> = batch.status.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        StatusColumns {
            service: column(&rows, |&(service, _)| service.as_str()),
            healthy: column(&rows, |&(_, row)| row.state.healthy),
            checked_at: column(&rows, |&(_, row)| row.checked_at),
            latency: column(&rows, |&(_, row)| row.response_time_ms),
            message: column(&rows, |&(_, row)| row.error_message.as_deref()),
            kind: column(&rows, |&(_, row)| row.error_kind),
            failures: column(&rows, |&(_, row)| to_i32(row.state.consecutive_failures)),
            successes: column(&rows, |&(_, row)| to_i32(row.state.consecutive_successes)),
            last_success: column(&rows, |&(_, row)| row.state.last_success_at),
            last_failure: column(&rows, |&(_, row)| row.state.last_failure_at),
            changed: column(&rows, |&(_, row)| row.state.state_changed_at),
        }
    }
}

/// The state machine's memory, as the last run left it, for every service that has a status.
pub async fn load_states(pool: &PgPool) -> sqlx::Result<HashMap<String, ServiceState>> {
    type Row = (
        String,
        Option<bool>,
        i32,
        i32,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT service_type::text, is_healthy, consecutive_failures, consecutive_successes,
                last_success_at, last_failure_at, state_changed_at
           FROM service_health_status",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                service,
                healthy,
                failures,
                successes,
                last_success_at,
                last_failure_at,
                state_changed_at,
            )| {
                let state = ServiceState {
                    healthy,
                    consecutive_failures: u32::try_from(failures).unwrap_or(0),
                    consecutive_successes: u32::try_from(successes).unwrap_or(0),
                    last_success_at,
                    last_failure_at,
                    state_changed_at,
                    degraded: false,
                    // A service that was already down was already alerted: the next reminder is due
                    // a whole reminder interval from the restart, not at once.
                    last_alert_at: (healthy == Some(false)).then(Utc::now),
                };
                (service, state)
            },
        )
        .collect())
}
