//! Maintenance jobs, in place of the spec's pg_cron entries. One file per job; this module
//! registers them and runs any of them the one way both the scheduler and `jobs run` use:
//! take the job's run lock (a PostgreSQL advisory lock, so overlap is caught across hosts),
//! record the run, execute, record the outcome, log `job_finished` / `job_failed`.

mod analytics_retention;
mod housekeeping;
pub mod lease;
mod partition_maintenance;
pub mod partitions;
mod run_lock;
pub mod runs;
pub mod scheduler;
mod validation_cache_cleanup;

use std::fmt;
use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres};

use crate::clock::Clock;
use crate::config::Config;
use crate::config::cron::CronSchedule;
pub use lease::Fence;
use run_lock::RunLock;
pub use runs::Trigger;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobName {
    PartitionMaintenance,
    AnalyticsRetention,
    ValidationCacheCleanup,
    Housekeeping,
}

impl JobName {
    pub const ALL: [JobName; 4] = [
        JobName::PartitionMaintenance,
        JobName::AnalyticsRetention,
        JobName::ValidationCacheCleanup,
        JobName::Housekeeping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobName::PartitionMaintenance => "partition_maintenance",
            JobName::AnalyticsRetention => "analytics_retention",
            JobName::ValidationCacheCleanup => "validation_cache_cleanup",
            JobName::Housekeeping => "housekeeping",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == name)
    }

    pub fn schedule(self, config: &Config) -> &CronSchedule {
        let jobs = &config.jobs;
        match self {
            JobName::PartitionMaintenance => &jobs.partition_maintenance.schedule,
            JobName::AnalyticsRetention => &jobs.analytics_retention.schedule,
            JobName::ValidationCacheCleanup => &jobs.validation_cache_cleanup.schedule,
            JobName::Housekeeping => &jobs.housekeeping.schedule,
        }
    }

    /// The advisory lock key that keeps two runs of this job from overlapping.
    fn lock_key(self) -> i64 {
        // A fixed namespace in the high bits, the job's index in the low ones.
        0x6d63_705f_6865_0000 + Self::ALL.iter().position(|j| *j == self).unwrap_or(0) as i64
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job works with.
pub struct JobContext<'a> {
    pub pool: &'a PgPool,
    pub config: &'a Config,
    pub clock: &'a dyn Clock,
    pub fence: Fence,
}

/// What a job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done {
    pub rows_affected: i64,
    pub batches: i32,
}

impl Done {
    pub fn add(&mut self, rows: u64) {
        self.rows_affected += rows as i64;
        self.batches += 1;
    }
}

/// A job's failure, with what it had done before failing (its batches are committed).
#[derive(Debug)]
pub struct Failed {
    pub done: Done,
    pub error: anyhow::Error,
}

async fn execute(job: JobName, ctx: &JobContext<'_>, done: &mut Done) -> anyhow::Result<()> {
    match job {
        JobName::PartitionMaintenance => partition_maintenance::run(ctx, done).await,
        JobName::AnalyticsRetention => analytics_retention::run(ctx, done).await,
        JobName::ValidationCacheCleanup => validation_cache_cleanup::run(ctx, done).await,
        JobName::Housekeeping => housekeeping::run(ctx, done).await,
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    Finished(Done),
    Failed(Failed),
    /// The previous run of the same job was still going.
    Skipped,
}

/// Runs `job` once, recorded in `maintenance_job_runs` and logged; `holder` names this process.
pub async fn run(
    job: JobName,
    ctx: &JobContext<'_>,
    trigger: Trigger,
    holder: &str,
) -> anyhow::Result<RunOutcome> {
    let limit = crate::store::db::call_limit(&ctx.config.database);
    let Some(lock) = RunLock::try_take(ctx.pool, job, limit).await? else {
        return skipped(ctx, job.as_str(), trigger, holder).await;
    };
    let result = run_locked(job, ctx, trigger, holder).await;
    lock.release(limit).await;
    result
}

/// Records and logs a run that found the previous one still going.
async fn skipped(
    ctx: &JobContext<'_>,
    name: &'static str,
    trigger: Trigger,
    holder: &str,
) -> anyhow::Result<RunOutcome> {
    let why = "skipped: the previous run is still in progress";
    runs::skipped(ctx.pool, name, trigger, holder, why).await?;
    metrics::counter!(crate::observe::metrics::JOB_RUNS, "job" => name, "status" => "skipped")
        .increment(1);
    tracing::warn!(event = "job_skipped", job = name, reason = why);
    Ok(RunOutcome::Skipped)
}

async fn run_locked(
    job: JobName,
    ctx: &JobContext<'_>,
    trigger: Trigger,
    holder: &str,
) -> anyhow::Result<RunOutcome> {
    let name = job.as_str();
    runs::abandon_stale(ctx.pool, name).await?;
    let id = runs::start(ctx.pool, name, trigger, holder).await?;
    let started = Instant::now();
    let mut done = Done::default();
    let result = execute(job, ctx, &mut done).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => finished(ctx, name, id, done, duration_ms).await,
        Err(error) => failed(ctx, name, id, done, error, duration_ms).await,
    }
}

/// Completes the run record of a run that succeeded, and logs `job_finished`.
async fn finished(
    ctx: &JobContext<'_>,
    name: &'static str,
    id: i64,
    done: Done,
    duration_ms: u64,
) -> anyhow::Result<RunOutcome> {
    runs::finish(ctx.pool, id, done.rows_affected, done.batches, None).await?;
    metrics::counter!(crate::observe::metrics::JOB_RUNS, "job" => name, "status" => "succeeded")
        .increment(1);
    metrics::gauge!(crate::observe::metrics::JOB_LAST_SUCCESS, "job" => name)
        .set(chrono::Utc::now().timestamp() as f64);
    tracing::info!(
        event = "job_finished",
        job = name,
        rows_affected = done.rows_affected,
        batches = done.batches,
        duration_ms,
        "maintenance job finished"
    );
    Ok(RunOutcome::Finished(done))
}

/// Completes the run record of a run that failed, with its error, and logs `job_failed`.
async fn failed(
    ctx: &JobContext<'_>,
    name: &'static str,
    id: i64,
    done: Done,
    error: anyhow::Error,
    duration_ms: u64,
) -> anyhow::Result<RunOutcome> {
    let message = format!("{error:#}");
    metrics::counter!(crate::observe::metrics::JOB_RUNS, "job" => name, "status" => "failed")
        .increment(1);
    runs::finish(
        ctx.pool,
        id,
        done.rows_affected,
        done.batches,
        Some(&message),
    )
    .await?;
    tracing::error!(
        event = "job_failed",
        job = name,
        error = %message,
        rows_affected = done.rows_affected,
        batches = done.batches,
        duration_ms,
        "maintenance job failed"
    );
    Ok(RunOutcome::Failed(Failed { done, error }))
}

/// Deletes in bounded batches until a batch finds nothing: each batch in its own transaction,
/// after the lease check, so no lock is held longer than one batch. `sql` takes the cut-off as
/// `$1` and the batch size as `$2`, and returns how many rows it deleted (one `bigint`); each
/// batch that deleted rows is counted in `done`.
async fn delete_in_batches<B>(
    ctx: &JobContext<'_>,
    done: &mut Done,
    sql: &'static str,
    before: DateTime<Utc>,
    batch: B,
) -> anyhow::Result<()>
where
    B: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Copy + Send + 'static,
{
    loop {
        let mut tx = ctx.pool.begin().await?;
        ctx.fence.check(&mut tx).await?;
        let deleted: i64 = sqlx::query_scalar(sql)
            .bind(before)
            .bind(batch)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if deleted == 0 {
            return Ok(());
        }
        done.add(deleted as u64);
    }
}
