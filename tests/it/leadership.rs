//! Several daemons on one database: only the leader runs scheduled jobs, and another takes
//! over when it stops or dies. A failing job stops neither the scheduler nor the prober.

use std::collections::HashSet;
use std::time::Duration;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour};
use crate::helpers::{TestDb, eventually};
use crate::prober::register;

/// Housekeeping every second, everything else effectively never; a 3 s lease.
const JOBS: &str = "[jobs]\nlease_ttl = \"3s\"\n\
    [jobs.housekeeping]\nschedule = \"* * * * * *\"\n\
    [jobs.analytics_retention]\nschedule = \"0 0 3 1 1 *\"\n\
    [jobs.partition_maintenance]\nschedule = \"0 0 3 1 1 *\"\n\
    [jobs.validation_cache_cleanup]\nschedule = \"0 0 3 1 1 *\"\n";

/// The pids of the processes that ran scheduled housekeeping, and whether any due time ran twice.
async fn scheduled_runs(db: &TestDb) -> (HashSet<u32>, i64) {
    let holders: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT holder FROM maintenance_job_runs WHERE trigger = 'schedule'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT scheduled_for FROM maintenance_job_runs
                                 WHERE trigger = 'schedule' AND status <> 'skipped'
                                 GROUP BY 1 HAVING count(*) > 1) d",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let pids = holders
        .iter()
        .map(|h| h.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    (pids, twice)
}

async fn runs_by(db: &TestDb, pid: u32) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM maintenance_job_runs WHERE trigger = 'schedule' AND split_part(holder, ':', 2) = $1")
        .bind(pid.to_string())
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn leader_elected(e: &serde_json::Value) -> bool {
    e["event"] == "leader_elected"
}

/// Waits until `pid` has run scheduled jobs at least `n` times.
async fn wait_for_runs(db: &TestDb, pid: u32, n: i64, what: &str) {
    eventually(what, Duration::from_secs(20), async || {
        let runs = runs_by(db, pid).await;
        if runs >= n {
            Ok(())
        } else {
            Err(format!("{runs} runs by {pid}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_runs_jobs_and_another_takes_over_when_it_stops() {
    let db = TestDb::migrated().await;
    let config = fast_config("interval = \"1s\"\ntimeout = \"500ms\"", JOBS);
    let first = Daemon::start(&db.url, &config);
    first.wait_for(leader_elected, Duration::from_secs(10));
    let second = Daemon::start(&db.url, &config);
    // Three more due times pass with both daemons' job schedulers running.
    let before = runs_by(&db, first.pid()).await;
    wait_for_runs(
        &db,
        first.pid(),
        before + 3,
        "the leader runs housekeeping every second",
    )
    .await;
    let (pids, twice) = scheduled_runs(&db).await;
    assert_eq!(
        pids,
        HashSet::from([first.pid()]),
        "only the leader ran jobs"
    );
    assert_eq!(twice, 0, "no due time ran twice");

    // A clean stop releases the lease: the other daemon takes over at its next renewal.
    let (code, _) = first.stop();
    assert_eq!(code, Some(0));
    second.wait_for(leader_elected, Duration::from_secs(10));
    wait_for_runs(&db, second.pid(), 2, "the new leader runs the jobs").await;
    let (_, twice) = scheduled_runs(&db).await;
    assert_eq!(twice, 0);
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leaders_lease_expires_and_another_daemon_takes_over() {
    let db = TestDb::migrated().await;
    let config = fast_config("interval = \"1s\"\ntimeout = \"500ms\"", JOBS);
    let first = Daemon::start(&db.url, &config);
    first.wait_for(leader_elected, Duration::from_secs(10));
    let second = Daemon::start(&db.url, &config);
    // Killed while leading: after it has run a job.
    wait_for_runs(&db, first.pid(), 1, "the first leader runs a job").await;
    first.signal("KILL");
    // Lease 3 s, renewed every second: the survivor leads once it expires.
    second.wait_for(leader_elected, Duration::from_secs(20));
    wait_for_runs(&db, second.pid(), 1, "the survivor runs the jobs").await;
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_stops_neither_the_scheduler_nor_the_prober() {
    let db = TestDb::migrated().await;
    let healthy = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "healthy", healthy.port.into()).await;
    // A partition retention must drop, and a session that keeps the table locked.
    sqlx::query("SELECT ensure_usage_analytics_partition('2020-01-01')")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE service_usage_analytics IN ACCESS SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let config = fast_config(
        "interval = \"300ms\"\ntimeout = \"250ms\"",
        "[jobs]\nlease_ttl = \"3s\"\n\
         [jobs.analytics_retention]\nschedule = \"*/2 * * * * *\"\nlock_timeout = \"200ms\"\nattempts = 1\n",
    );
    let daemon = Daemon::start(&db.url, &config);
    let failed = daemon.wait_for(|e| e["event"] == "job_failed", Duration::from_secs(10));
    assert_eq!(failed["job"], "analytics_retention");
    assert!(
        failed["error"].as_str().unwrap().contains("lock timeout"),
        "{failed}"
    );
    let hits_at_failure = healthy.hits();
    blocker.rollback().await.unwrap();

    let finished = daemon.wait_for(
        |e| e["event"] == "job_finished" && e["job"] == "analytics_retention",
        Duration::from_secs(10),
    );
    assert!(finished["rows_affected"].is_i64() || finished["rows_affected"].is_u64());
    assert!(
        healthy.hits() > hits_at_failure + 3,
        "the prober kept checking"
    );
    let status: (String, Option<String>) = sqlx::query_as(
        "SELECT status, error FROM maintenance_job_runs WHERE job = 'analytics_retention' ORDER BY id LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(status.0, "failed");
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}
