//! A job run aborted mid-run (as a schedule reload, or a shutdown whose grace ran out, aborts
//! it) leaves no run lock behind: the next run of the same job, from any process, is not skipped.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use mcp_healthd::config::Config;
use mcp_healthd::jobs::{self, Fence, JobContext, JobName, Trigger};

use crate::clock::FixedClock;
use crate::helpers::{TestDb, eventually, healthd, text};

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_run_leaves_no_lock_and_the_next_run_is_not_skipped() {
    let db = TestDb::migrated().await;
    let config = Config::from_toml("", "test", Some(db.url.expose())).unwrap();
    let clock = FixedClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 2, 0, 0).unwrap());

    // Someone holds the rollups: housekeeping's first batch waits for them, mid-run.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE service_health_rollups IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let pool = db.pool.clone();
    let running = tokio::spawn(async move {
        let ctx = JobContext {
            pool: &pool,
            config: &config,
            clock: &clock,
            fence: Fence::Manual,
        };
        jobs::run(JobName::Housekeeping, &ctx, Trigger::Manual, "aborted").await
    });
    eventually(
        "the run waits on the rollups",
        Duration::from_secs(10),
        async || {
            let waiting = count(
                &db,
                "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .await;
            (waiting > 0).then_some(()).ok_or(waiting)
        },
    )
    .await;

    // Aborted as `JoinSet::abort_all` aborts a run still going when the grace runs out.
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    blocker.rollback().await.unwrap();

    // The run lock went with the aborted run, not back into the pool with its connection.
    eventually(
        "the run lock is released",
        Duration::from_secs(10),
        async || {
            let held = count(
                &db,
                "SELECT count(*) FROM pg_locks
              WHERE locktype = 'advisory'
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .await;
            (held == 0).then_some(()).ok_or(held)
        },
    )
    .await;
    let next = healthd(
        &["jobs", "run", "housekeeping"],
        &[("DATABASE_URL", db.url.expose())],
    );
    assert_eq!(next.status.code(), Some(0), "{}", text(&next.stderr));
    assert!(
        text(&next.stdout).contains("housekeeping: succeeded"),
        "{}",
        text(&next.stdout)
    );
    let skipped = count(
        &db,
        "SELECT count(*) FROM maintenance_job_runs WHERE status = 'skipped'",
    )
    .await;
    assert_eq!(skipped, 0);
}
