//! `housekeeping`: the daemon's own data. First the daily rollups are brought up to date from
//! the hourly ones (every day from the day before the newest daily row on, recomputed whole, so
//! a run repeated or missed changes nothing); then hourly rollups older than `uptime.retain`,
//! daily rollups, closed incidents and ended maintenance windows older than
//! `uptime.retain_daily`, `maintenance_job_runs` rows older than
//! `jobs.housekeeping.run_history_retain`, and status flush ids older than two days, are
//! deleted in bounded batches.

use chrono::TimeDelta;

use super::{Done, JobContext};

const BATCH: i64 = 10_000;

/// One batch of a prune: deletes at most `$2` rows of `$table` matching `$cond` (with `$1`, the
/// cut-off) and returns how many it deleted; `delete_in_batches` repeats it until none is left.
macro_rules! batched_delete {
    ($table:literal, $cond:literal) => {
        concat!(
            "WITH gone AS (DELETE FROM ",
            $table,
            " WHERE ctid = ANY (ARRAY(SELECT ctid FROM ",
            $table,
            " WHERE ",
            $cond,
            " LIMIT $2)) RETURNING 1) SELECT count(*) FROM gone"
        )
    };
}

/// Recomputes the daily rollups of every day from the day before the newest one already made
/// (all days, the first time) from the hourly rollups. Returns the rows written.
const DAILY: &str = "
WITH since AS (
    SELECT coalesce(max(day) - 1, '-infinity'::date) AS day FROM service_health_daily
), days AS (
    INSERT INTO service_health_daily AS d (service_type, day, checks, failures, maintenance_checks,
                                          inconclusive_checks, latency_sum_ms, latency_max_ms)
    SELECT r.service_type, (r.hour AT TIME ZONE 'UTC')::date, sum(r.checks), sum(r.failures),
           sum(r.maintenance_checks), sum(r.inconclusive_checks), sum(r.latency_sum_ms),
           max(r.latency_max_ms)
      FROM service_health_rollups r, since
     WHERE r.hour >= since.day::timestamp AT TIME ZONE 'UTC'
     GROUP BY 1, 2
    ON CONFLICT (service_type, day) DO UPDATE
       SET checks = EXCLUDED.checks, failures = EXCLUDED.failures,
           maintenance_checks = EXCLUDED.maintenance_checks,
           inconclusive_checks = EXCLUDED.inconclusive_checks,
           latency_sum_ms = EXCLUDED.latency_sum_ms, latency_max_ms = EXCLUDED.latency_max_ms
    RETURNING 1
)
SELECT count(*) FROM days";

pub async fn run(ctx: &JobContext<'_>, done: &mut Done) -> anyhow::Result<()> {
    let now = ctx.clock.now();
    let daily: i64 = sqlx::query_scalar(DAILY).fetch_one(ctx.pool).await?;
    done.rows_affected += daily;
    let rollups_before = now - TimeDelta::from_std(ctx.config.uptime.retain)?;
    let daily_before = now - TimeDelta::from_std(ctx.config.uptime.retain_daily)?;
    let runs_before = now - TimeDelta::from_std(ctx.config.jobs.housekeeping.run_history_retain)?;
    let statements = [
        (
            batched_delete!("service_health_rollups", "hour < $1"),
            rollups_before,
        ),
        (
            batched_delete!(
                "service_health_daily",
                "day < ($1 AT TIME ZONE 'UTC')::date"
            ),
            daily_before,
        ),
        (
            batched_delete!("service_incidents", "ended_at < $1"),
            daily_before,
        ),
        (
            batched_delete!("maintenance_windows", "ends_at < $1"),
            daily_before,
        ),
        (
            batched_delete!(
                "maintenance_job_runs",
                "started_at < $1 AND status <> 'running'"
            ),
            runs_before,
        ),
        (
            batched_delete!("service_health_flushes", "flushed_at < $1"),
            now - TimeDelta::days(2),
        ),
    ];
    for (sql, before) in statements {
        super::delete_in_batches(ctx, done, sql, before, BATCH).await?;
    }
    Ok(())
}
