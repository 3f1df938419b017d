//! `maintenance_job_runs`: one row per run, written when the run starts and completed when it
//! ends, so a run in progress (or one whose daemon died) is visible too.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Due on its cron schedule at this time.
    Schedule(DateTime<Utc>),
    /// `mcp-healthd jobs run NAME`.
    Manual,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Schedule(_) => "schedule",
            Trigger::Manual => "manual",
        }
    }

    fn scheduled_for(self) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Schedule(t) => Some(t),
            Trigger::Manual => None,
        }
    }
}

pub async fn start(pool: &PgPool, job: &str, trigger: Trigger, holder: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO maintenance_job_runs (job, trigger, scheduled_for, status, holder)
         VALUES ($1, $2, $3, 'running', $4) RETURNING id",
    )
    .bind(job)
    .bind(trigger.name())
    .bind(trigger.scheduled_for())
    .bind(holder)
    .fetch_one(pool)
    .await
}

pub async fn finish(
    pool: &PgPool,
    id: i64,
    rows: i64,
    batches: i32,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE maintenance_job_runs
            SET finished_at = clock_timestamp(), rows_affected = $2, batches = $3, error = $4,
                status = CASE WHEN $4::text IS NULL THEN 'succeeded' ELSE 'failed' END
          WHERE id = $1",
    )
    .bind(id)
    .bind(rows)
    .bind(batches)
    .bind(error)
    .execute(pool)
    .await
    .map(drop)
}

pub async fn skipped(
    pool: &PgPool,
    job: &str,
    trigger: Trigger,
    holder: &str,
    why: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO maintenance_job_runs (job, trigger, scheduled_for, status, finished_at, error, holder)
         VALUES ($1, $2, $3, 'skipped', now(), $4, $5)",
    )
    .bind(job)
    .bind(trigger.name())
    .bind(trigger.scheduled_for())
    .bind(why)
    .bind(holder)
    .execute(pool)
    .await
    .map(drop)
}

/// Runs left `running` by a daemon that died: the caller holds the job's run lock, so nothing
/// else can be running it.
pub async fn abandon_stale(pool: &PgPool, job: &str) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE maintenance_job_runs
            SET status = 'failed', finished_at = now(), error = 'abandoned: the process running it stopped'
          WHERE job = $1 AND status = 'running'",
    )
    .bind(job)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LastRun {
    pub job: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows_affected: i64,
    pub batches: i32,
    pub error: Option<String>,
}

/// The latest run of each job.
pub async fn last_runs(pool: &PgPool) -> sqlx::Result<Vec<LastRun>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (job) job, status, started_at, finished_at, rows_affected, batches, error
           FROM maintenance_job_runs ORDER BY job, started_at DESC, id DESC",
    )
    .fetch_all(pool)
    .await
}
