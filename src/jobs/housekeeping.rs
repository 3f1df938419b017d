//! `housekeeping`: the daemon's own data. Hourly rollups older than `uptime.retain` and
//! `maintenance_job_runs` rows older than `jobs.housekeeping.run_history_retain`, and status
//! flush ids older than two days, are deleted in bounded batches.

use chrono::TimeDelta;

use super::{Done, JobContext};

const BATCH: i64 = 10_000;

pub async fn run(ctx: &JobContext<'_>, done: &mut Done) -> anyhow::Result<()> {
    let now = ctx.clock.now();
    let rollups_before = now - TimeDelta::from_std(ctx.config.uptime.retain)?;
    let runs_before = now - TimeDelta::from_std(ctx.config.jobs.housekeeping.run_history_retain)?;
    let statements = [
        (
            "WITH gone AS (
                 DELETE FROM service_health_rollups WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM service_health_rollups WHERE hour < $1 LIMIT $2))
                 RETURNING 1)
             SELECT count(*) FROM gone",
            rollups_before,
        ),
        (
            "WITH gone AS (
                 DELETE FROM maintenance_job_runs WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM maintenance_job_runs WHERE started_at < $1 AND status <> 'running' LIMIT $2))
                 RETURNING 1)
             SELECT count(*) FROM gone",
            runs_before,
        ),
        (
            "WITH gone AS (
                 DELETE FROM service_health_flushes WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM service_health_flushes WHERE flushed_at < $1 LIMIT $2))
                 RETURNING 1)
             SELECT count(*) FROM gone",
            now - TimeDelta::days(2),
        ),
    ];
    for (sql, before) in statements {
        super::delete_in_batches(ctx, done, sql, before, BATCH).await?;
    }
    Ok(())
}
