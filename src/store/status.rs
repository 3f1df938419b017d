//! The status path: one statement per flush, whatever the number of services. It adds the
//! batch's counts to the hourly rollups, works out each service's uptime over the window, and
//! upserts the services' status rows, all atomically. Uptime is exact at every flush without
//! reading the window's rollups each time: the status row keeps the sums of the window's
//! complete hours (the "base", migration 0015), and a flush within the same hour adds the
//! current hour's row to it; a new hour, a moved window, a batch with older hours (a replayed
//! spill) or a reclassification recomputes the base from the rollups. Incidents and
//! reclassified failures, which are rare, take a statement each when a batch has any, each
//! guarded by its own batch id so a retry adds nothing twice.

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
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::int[], $5::bigint[], $6::int[],
                         $22::int[], $23::int[])
           AS t(service_type, hour, checks, failures, latency_sum_ms, latency_max_ms,
                maintenance_checks, inconclusive_checks)
), upserted AS (
    INSERT INTO service_health_rollups AS r (service_type, hour, checks, failures, latency_sum_ms, latency_max_ms,
                                             maintenance_checks, inconclusive_checks)
    SELECT i.service_type, i.hour, i.checks, i.failures, i.latency_sum_ms, i.latency_max_ms,
           i.maintenance_checks, i.inconclusive_checks
      FROM rollup_in i JOIN service_registry USING (service_type)
     WHERE EXISTS (SELECT 1 FROM marker)
    ON CONFLICT (service_type, hour) DO UPDATE
       SET checks = r.checks + EXCLUDED.checks,
           failures = r.failures + EXCLUDED.failures,
           latency_sum_ms = r.latency_sum_ms + EXCLUDED.latency_sum_ms,
           latency_max_ms = greatest(r.latency_max_ms, EXCLUDED.latency_max_ms),
           maintenance_checks = r.maintenance_checks + EXCLUDED.maintenance_checks,
           inconclusive_checks = r.inconclusive_checks + EXCLUDED.inconclusive_checks
    RETURNING r.service_type, r.hour, r.checks - r.maintenance_checks - r.inconclusive_checks AS counted,
              r.failures
), status_in AS (
    SELECT * FROM unnest($7::text[], $8::bool[], $9::timestamptz[], $10::int[], $11::text[], $12::text[],
                         $13::int[], $14::int[], $15::timestamptz[], $16::timestamptz[], $17::timestamptz[],
                         $24::text[], $25::timestamptz[], $26::bool[], $27::bigint[], $28::smallint[],
                         $29::bool[])
           AS t(service_type, is_healthy, checked_at, response_time_ms, error_message, error_kind,
                consecutive_failures, consecutive_successes, last_success_at, last_failure_at, state_changed_at,
                degraded_reason, tls_not_after, flapping, recent_failures, recent_checks, alerted_down)
), batch_hours AS (
    -- this batch's rows within the window, per service: their hours, and the rows' totals
    SELECT service_type, min(hour) AS first_hour, max(hour) AS last_hour,
           sum(counted) AS counted, sum(failures) AS failures
      FROM upserted WHERE hour >= $18 GROUP BY service_type
), kept AS (
    -- The usual flush: the batch's rows are all in the hour the stored base stops at, and the
    -- window has not moved since. Uptime is that base plus the hour's totals: no rollup is read.
    SELECT b.service_type, s.uptime_base_counted AS base_counted,
           s.uptime_base_failures AS base_failures, b.last_hour AS base_until,
           s.uptime_base_counted + b.counted AS counted, s.uptime_base_failures + b.failures AS failures
      FROM batch_hours b JOIN service_health_status s USING (service_type)
     WHERE b.first_hour = b.last_hour AND s.uptime_base_until = b.last_hour
       AND s.uptime_base_from = $18
), in_window AS (
    -- The rest (a new hour, older hours in the batch, no base yet): the window's every hour.
    SELECT r.service_type, r.hour, r.checks - r.maintenance_checks - r.inconclusive_checks AS counted,
           r.failures
      FROM service_health_rollups r
     WHERE r.service_type IN (SELECT service_type FROM status_in EXCEPT SELECT service_type FROM kept)
       AND r.hour >= $18
       AND NOT EXISTS (SELECT 1 FROM upserted u WHERE u.service_type = r.service_type AND u.hour = r.hour)
    UNION ALL
    SELECT u.service_type, u.hour, u.counted, u.failures FROM upserted u
     WHERE u.hour >= $18 AND u.service_type NOT IN (SELECT service_type FROM kept)
), recomputed AS (
    -- ... and the new base: every hour but the latest one
    SELECT w.service_type,
           coalesce(sum(w.counted) FILTER (WHERE w.hour < l.last_hour), 0) AS base_counted,
           coalesce(sum(w.failures) FILTER (WHERE w.hour < l.last_hour), 0) AS base_failures,
           l.last_hour AS base_until, sum(w.counted) AS counted, sum(w.failures) AS failures
      FROM in_window w
      JOIN (SELECT service_type, max(hour) AS last_hour FROM in_window GROUP BY service_type) l
           USING (service_type)
     GROUP BY w.service_type, l.last_hour
), uptime AS (
    -- maintenance and inconclusive checks are left out: uptime is over the checks that count
    SELECT service_type, (100.0 * (counted - failures) / nullif(counted, 0))::float8 AS pct,
           base_counted, base_failures, base_until
      FROM (SELECT * FROM kept UNION ALL SELECT * FROM recomputed) t
)
INSERT INTO service_health_status AS s
       (service_type, is_healthy, last_health_check, response_time_ms, error_message, error_kind,
        consecutive_failures, consecutive_successes, last_success_at, last_failure_at, state_changed_at,
        uptime_percentage, check_interval_ms, checked_by,
        degraded_reason, tls_not_after, flapping, recent_failures, recent_checks, alerted_down,
        uptime_base_from, uptime_base_until, uptime_base_counted, uptime_base_failures)
SELECT i.service_type, i.is_healthy, i.checked_at, i.response_time_ms, i.error_message, i.error_kind,
       i.consecutive_failures, i.consecutive_successes, i.last_success_at, i.last_failure_at, i.state_changed_at,
       greatest(0, least(100, u.pct)), $19, $20,
       i.degraded_reason, i.tls_not_after, i.flapping, i.recent_failures, i.recent_checks,
       i.alerted_down,
       $18, u.base_until, u.base_counted, u.base_failures
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
       checked_by = EXCLUDED.checked_by,
       degraded_reason = EXCLUDED.degraded_reason,
       tls_not_after = EXCLUDED.tls_not_after,
       flapping = EXCLUDED.flapping,
       recent_failures = EXCLUDED.recent_failures,
       recent_checks = EXCLUDED.recent_checks,
       alerted_down = EXCLUDED.alerted_down,
       uptime_base_from = EXCLUDED.uptime_base_from,
       uptime_base_until = EXCLUDED.uptime_base_until,
       uptime_base_counted = EXCLUDED.uptime_base_counted,
       uptime_base_failures = EXCLUDED.uptime_base_failures
 -- A daemon flushing a backlog (after an outage, or a service handed over meanwhile) never
 -- overwrites a newer check by another daemon.
 WHERE s.last_health_check IS NULL OR EXCLUDED.last_health_check >= s.last_health_check";

/// A statement that runs only the first time its id (`$1`) is seen: `marker` has a row only
/// when this call inserted the id, and the statement's changes are made `WHERE EXISTS (SELECT 1
/// FROM marker)`, so a retry after a commit that seemed to fail adds nothing.
macro_rules! guarded {
    ($statement:literal) => {
        concat!(
            "WITH marker AS (INSERT INTO service_health_flushes (flush_id) VALUES ($1) ",
            "ON CONFLICT DO NOTHING RETURNING 1)\n",
            $statement
        )
    };
}

/// Closes incidents opened in an earlier batch ($1: this statement's batch id).
const CLOSE_INCIDENTS: &str = guarded!(
    "UPDATE service_incidents i
   SET ended_at = greatest(i.started_at, c.ended_at),
       failed_checks = greatest(i.failed_checks, c.failed_checks)
  FROM unnest($2::text[], $3::timestamptz[], $4::int[]) AS c(service_type, ended_at, failed_checks)
 WHERE i.service_type = c.service_type AND i.ended_at IS NULL AND i.started_at <= c.ended_at
   AND EXISTS (SELECT 1 FROM marker)"
);

/// Closes, at the new one's start, any open incident older than one this batch opens (left open
/// by a daemon that could not write its close), so the new one is not lost to the one-open rule.
const SUPERSEDE_INCIDENTS: &str = guarded!(
    "UPDATE service_incidents i
   SET ended_at = o.started_at
  FROM unnest($2::text[], $3::timestamptz[]) AS o(service_type, started_at)
 WHERE i.service_type = o.service_type AND i.ended_at IS NULL AND i.started_at < o.started_at
   AND EXISTS (SELECT 1 FROM marker)"
);

/// Inserts incidents opened in this batch (after the closes: at most one open row per service;
/// one opened meanwhile by another daemon wins).
const OPEN_INCIDENTS: &str = guarded!(
    "INSERT INTO service_incidents (service_type, started_at, ended_at, error_kind, error_message, failed_checks)
-- greatest() skips NULLs: an open incident (ended_at NULL) must stay open.
SELECT o.service_type, o.started_at,
       CASE WHEN o.ended_at IS NOT NULL THEN greatest(o.started_at, o.ended_at) END, o.error_kind,
       o.error_message, o.failed_checks
  FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], $7::int[])
       AS o(service_type, started_at, ended_at, error_kind, error_message, failed_checks)
  JOIN service_registry USING (service_type)
 WHERE EXISTS (SELECT 1 FROM marker)
ON CONFLICT (service_type) WHERE ended_at IS NULL DO NOTHING"
);

/// Moves failures already written to `inconclusive_checks` (a monitor-side outage found late).
const RECLASSIFY: &str = guarded!(
    ", invalidated AS (
    -- the services' uptime bases may hold the hours changed here: recomputed at their next flush
    UPDATE service_health_status s SET uptime_base_until = NULL
     WHERE s.service_type = ANY($2::text[]) AND EXISTS (SELECT 1 FROM marker)
)
UPDATE service_health_rollups r
   SET failures = r.failures - least(r.failures, c.n),
       inconclusive_checks = r.inconclusive_checks + least(r.failures, c.n)
  FROM unnest($2::text[], $3::timestamptz[], $4::int[]) AS c(service_type, hour, n)
 WHERE r.service_type = c.service_type AND r.hour = c.hour AND EXISTS (SELECT 1 FROM marker)"
);

/// The id of one of a batch's extra statements, derived from the batch's own so a retry of the
/// batch finds it.
fn part_id(id: uuid::Uuid, part: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(id.as_u128() ^ part)
}

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
        .bind(&r.maintenance)
        .bind(&r.inconclusive)
        .bind(&s.degraded)
        .bind(&s.tls_not_after)
        .bind(&s.flapping)
        .bind(&s.recent_failures)
        .bind(&s.recent_checks)
        .bind(&s.alerted_down)
        .execute(pool)
        .await?;
    flush_incidents(pool, id, batch).await?;
    if !batch.reclassified.is_empty() {
        let mut rows: Vec<_> = batch.reclassified.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        sqlx::query(RECLASSIFY)
            .bind(part_id(id, 3))
            .bind(column(&rows, |&((service, _), _)| service.as_str()))
            .bind(column(&rows, |&((_, hour), _)| *hour))
            .bind(column(&rows, |&(_, n)| *n))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The batch's incident closings, then its openings (each its own guarded statement).
async fn flush_incidents(pool: &PgPool, id: uuid::Uuid, batch: &Pending) -> sqlx::Result<()> {
    if !batch.closed.is_empty() {
        let mut rows: Vec<_> = batch.closed.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        sqlx::query(CLOSE_INCIDENTS)
            .bind(part_id(id, 1))
            .bind(column(&rows, |&(service, _)| service.as_str()))
            .bind(column(&rows, |&(_, c)| c.ended_at))
            .bind(column(&rows, |&(_, c)| c.failed_checks))
            .execute(pool)
            .await?;
    }
    if !batch.opened.is_empty() {
        let o: Vec<&super::Incident> = batch.opened.iter().collect();
        let o = &o;
        sqlx::query(SUPERSEDE_INCIDENTS)
            .bind(part_id(id, 4))
            .bind(column(o, |&i| i.service_type.as_str()))
            .bind(column(o, |&i| i.started_at))
            .execute(pool)
            .await?;
        sqlx::query(OPEN_INCIDENTS)
            .bind(part_id(id, 2))
            .bind(column(o, |&i| i.service_type.as_str()))
            .bind(column(o, |&i| i.started_at))
            .bind(column(o, |&i| i.ended_at))
            .bind(column(o, |&i| i.error_kind.as_deref()))
            .bind(column(o, |&i| i.error_message.as_deref()))
            .bind(column(o, |&i| i.failed_checks))
            .execute(pool)
            .await?;
    }
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
    maintenance: Vec<i32>,
    inconclusive: Vec<i32>,
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
            maintenance: column(&rows, |&(_, d)| d.maintenance_checks),
            inconclusive: column(&rows, |&(_, d)| d.inconclusive_checks),
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
    degraded: Vec<Option<&'a str>>,
    tls_not_after: Vec<Option<DateTime<Utc>>>,
    flapping: Vec<bool>,
    recent_failures: Vec<i64>,
    recent_checks: Vec<i16>,
    alerted_down: Vec<bool>,
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
            degraded: column(&rows, |&(_, row)| row.state.degraded.as_deref()),
            tls_not_after: column(&rows, |&(_, row)| row.state.tls_not_after),
            flapping: column(&rows, |&(_, row)| row.state.flapping),
            // The bits as they are: the column is a bit set, not a number.
            recent_failures: column(&rows, |&(_, row)| row.state.recent_failures as i64),
            recent_checks: column(&rows, |&(_, row)| i16::from(row.state.recent_checks)),
            alerted_down: column(&rows, |&(_, row)| row.state.alerted_down),
        }
    }
}

/// The state machine's memory, as the last run left it, for every service that has a status.
pub async fn load_states(pool: &PgPool) -> sqlx::Result<HashMap<String, ServiceState>> {
    let rows: Vec<StoredState> = sqlx::query_as(
        "SELECT service_type::text, is_healthy, consecutive_failures, consecutive_successes,
                last_success_at, last_failure_at, state_changed_at, degraded_reason, tls_not_after,
                recent_failures, recent_checks, flapping, alerted_down
           FROM service_health_status",
    )
    .fetch_all(pool)
    .await?;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|r| (r.service_type.clone(), r.into_state(now)))
        .collect())
}

#[derive(sqlx::FromRow)]
struct StoredState {
    service_type: String,
    is_healthy: Option<bool>,
    consecutive_failures: i32,
    consecutive_successes: i32,
    last_success_at: Option<DateTime<Utc>>,
    last_failure_at: Option<DateTime<Utc>>,
    state_changed_at: Option<DateTime<Utc>>,
    degraded_reason: Option<String>,
    tls_not_after: Option<DateTime<Utc>>,
    recent_failures: i64,
    recent_checks: i16,
    flapping: bool,
    alerted_down: Option<bool>,
}

impl StoredState {
    fn into_state(self, now: DateTime<Utc>) -> ServiceState {
        ServiceState {
            healthy: self.is_healthy,
            consecutive_failures: u32::try_from(self.consecutive_failures).unwrap_or(0),
            consecutive_successes: u32::try_from(self.consecutive_successes).unwrap_or(0),
            last_success_at: self.last_success_at,
            last_failure_at: self.last_failure_at,
            state_changed_at: self.state_changed_at,
            degraded: self.degraded_reason,
            tls_not_after: self.tls_not_after,
            recent_failures: self.recent_failures as u64,
            recent_checks: u8::try_from(self.recent_checks.clamp(0, 64)).unwrap_or(0),
            flapping: self.flapping,
            ..ServiceState::default()
        }
        .restored(now, self.alerted_down)
    }
}
