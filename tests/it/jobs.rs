//! Maintenance jobs against the real PostgreSQL, with the clock under the test's control.

use std::time::Duration;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use mcp_healthd::config::Config;
use mcp_healthd::jobs::{self, Fence, JobContext, JobName, RunOutcome, Trigger};

use crate::clock::FixedClock;
use crate::helpers::{TestDb, healthd, text};

fn config(db: &TestDb, extra: &str) -> Config {
    Config::from_toml(extra, "test", Some(db.url.expose())).unwrap()
}

async fn run(db: &TestDb, config: &Config, clock: &FixedClock, job: JobName) -> RunOutcome {
    let ctx = JobContext {
        pool: &db.pool,
        config,
        clock,
        fence: Fence::Manual,
    };
    jobs::run(job, &ctx, Trigger::Manual, "test").await.unwrap()
}

fn finished(outcome: RunOutcome) -> jobs::Done {
    match outcome {
        RunOutcome::Finished(done) => done,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

async fn seed_user_and_service(db: &TestDb) {
    sqlx::raw_sql(
        "INSERT INTO users (id, email) VALUES ('11111111-1111-1111-1111-111111111111', 'a@example.org');
         INSERT INTO service_registry (service_type, name, display_name, port) VALUES ('figma', 'figma', 'Figma', 49160);",
    )
    .execute(&db.pool)
    .await
    .unwrap();
}

/// `rows` validation-cache rows; row i (from 1) expires i seconds before `now` if i <= `expired`,
/// else i seconds after it.
async fn insert_cache_rows(db: &TestDb, now: DateTime<Utc>, rows: i32, expired: i32) {
    sqlx::query(
        "INSERT INTO api_key_validation_cache (user_id, service_type, key_hash, is_valid, expires_at)
         SELECT '11111111-1111-1111-1111-111111111111', 'figma', 'h' || i, true,
                $1::timestamptz + (CASE WHEN i <= $3 THEN -1 ELSE 1 END) * i * interval '1 second'
           FROM generate_series(1, $2) i",
    )
    .bind(now)
    .bind(rows)
    .bind(expired)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// `rows` analytics rows spread evenly over the UTC month starting at `month`.
async fn insert_month(db: &TestDb, month: NaiveDate, rows: i32) {
    sqlx::query(
        r#"INSERT INTO service_usage_analytics (user_id, service_type, instance_id, "timestamp")
           SELECT '11111111-1111-1111-1111-111111111111', 'figma', 'figma_x',
                  $1::timestamptz + (i::float8 / $2) * (($1::timestamptz + interval '1 month') - $1::timestamptz)
             FROM generate_series(0, $2 - 1) i"#,
    )
    .bind(month.and_hms_opt(0, 0, 0).unwrap().and_utc())
    .bind(rows)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn partitions(db: &TestDb) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
    let mut conn = db.pool.acquire().await.unwrap();
    jobs::partitions::list(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.from, p.to))
        .collect()
}

async fn count(db: &TestDb, sql: &str, at: DateTime<Utc>) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(at)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn month(y: i32, m: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, 1).unwrap()
}

#[tokio::test]
async fn retention_drops_whole_old_months_keeps_the_rest_and_reruns_as_a_no_op() {
    let db = TestDb::migrated().await;
    seed_user_and_service(&db).await;
    // A fixed "now", mid-month and mid-day, well in the database's past (the drop function
    // refuses partitions that are not wholly in the past): the same months on every day.
    let now = Utc.with_ymd_and_hms(2024, 6, 15, 12, 0, 0).unwrap();
    let first = jobs::partitions::month_of(now)
        .checked_sub_months(Months::new(8))
        .unwrap();
    // Nine months of analytics up to the current one, 2,000 rows each.
    for k in 0..9 {
        let m = first.checked_add_months(Months::new(k)).unwrap();
        sqlx::query("SELECT ensure_usage_analytics_partition($1)")
            .bind(m)
            .execute(&db.pool)
            .await
            .unwrap();
        insert_month(&db, m, 2000).await;
    }
    // Strays older than retention in the default partition.
    insert_month(&db, month(2020, 1), 25).await;
    let cutoff = now - chrono::TimeDelta::days(180);
    let newer = count(
        &db,
        r#"SELECT count(*) FROM service_usage_analytics WHERE "timestamp" >= $1"#,
        cutoff,
    )
    .await;
    let older = count(
        &db,
        r#"SELECT count(*) FROM service_usage_analytics WHERE "timestamp" < $1"#,
        cutoff,
    )
    .await;
    let mut doomed_partitions = 0;
    let doomed: i64 = {
        let mut n = 0;
        for (name, _, to) in partitions(&db).await {
            if to <= cutoff {
                doomed_partitions += 1;
                n += count(
                    &db,
                    &format!("SELECT count(*) FROM {name} WHERE $1::timestamptz IS NOT NULL"),
                    now,
                )
                .await;
            }
        }
        n
    };

    let config = config(
        &db,
        "[jobs.analytics_retention]\nretain = \"180d\"\nbatch_size = 10\n",
    );
    let clock = FixedClock::new(now);
    let done = finished(run(&db, &config, &clock, JobName::AnalyticsRetention).await);

    let left = partitions(&db).await;
    assert!(
        left.iter().all(|(_, _, to)| *to > cutoff),
        "a partition wholly older than the cut-off survived: {left:?}"
    );
    // The month holding the cut-off is kept whole: the documented boundary rule.
    let cutoff_month = jobs::partitions::start_of(jobs::partitions::month_of(cutoff));
    assert!(
        left.iter().any(|(_, from, _)| *from == cutoff_month),
        "{left:?}"
    );
    let newer_after = count(
        &db,
        r#"SELECT count(*) FROM service_usage_analytics WHERE "timestamp" >= $1"#,
        cutoff,
    )
    .await;
    assert_eq!(
        newer_after, newer,
        "every row newer than the cut-off is kept"
    );
    assert_eq!(
        done.rows_affected,
        doomed + 25,
        "rows of dropped partitions plus default-partition strays"
    );
    assert!(older > 0 && done.rows_affected <= older);
    // 2023-10 and 2023-11 end before the cut-off (2023-12-18); 25 strays go 10 per batch.
    assert_eq!(doomed_partitions, 2, "{left:?}");
    assert_eq!(
        done.batches,
        doomed_partitions + 3,
        "{done:?}: partitions dropped one per batch, strays 10 per batch"
    );

    let again = finished(run(&db, &config, &clock, JobName::AnalyticsRetention).await);
    assert_eq!(again, jobs::Done::default(), "a rerun is a no-op");
    let recorded: (String, i64, i32) = sqlx::query_as(
        "SELECT status, rows_affected, batches FROM maintenance_job_runs WHERE job = 'analytics_retention' ORDER BY id LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        recorded,
        ("succeeded".to_owned(), done.rows_affected, done.batches)
    );
}

#[tokio::test]
async fn premake_is_idempotent_and_a_five_month_pause_catches_up() {
    let db = TestDb::migrated().await;
    seed_user_and_service(&db).await;
    let config = config(&db, "[jobs.partition_maintenance]\npremake_months = 3\n");
    // A year well clear of the months the migration premade around today.
    let y = Utc::now().year() + 10;
    let clock = FixedClock::new(Utc.with_ymd_and_hms(y, 3, 10, 0, 15, 0).unwrap());
    let made = finished(run(&db, &config, &clock, JobName::PartitionMaintenance).await);
    assert_eq!(made.rows_affected, 4, "March to June {y}");
    let again = finished(run(&db, &config, &clock, JobName::PartitionMaintenance).await);
    assert_eq!(again.rows_affected, 0, "idempotent");
    for m in 3..=6 {
        let ts = Utc.with_ymd_and_hms(y, m, 20, 12, 0, 0).unwrap();
        let part: String = sqlx::query_scalar(
            r#"INSERT INTO service_usage_analytics (user_id, service_type, instance_id, "timestamp")
               VALUES ('11111111-1111-1111-1111-111111111111', 'figma', 'x', $1) RETURNING tableoid::regclass::text"#,
        )
        .bind(ts)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(part, format!("service_usage_analytics_p{y}{m:02}"));
    }

    // Five months pass with the daemon stopped: July's rows went to the default partition, and
    // so did a row far older than retention.
    insert_month(&db, month(y, 7), 100).await;
    insert_month(&db, month(y - 1, 1), 5).await;
    clock.set(Utc.with_ymd_and_hms(y, 8, 10, 0, 15, 0).unwrap());
    let caught_up = finished(run(&db, &config, &clock, JobName::PartitionMaintenance).await);
    assert_eq!(
        caught_up.rows_affected, 5,
        "July (caught up) and August to November"
    );
    let froms: Vec<NaiveDate> = partitions(&db)
        .await
        .iter()
        .map(|(_, from, _)| from.date_naive())
        .collect();
    for m in 3..=11 {
        assert!(
            froms.contains(&month(y, m)),
            "{y}-{m:02} missing: {froms:?}"
        );
    }
    assert!(
        !froms.contains(&month(y - 1, 1)),
        "a month retention would drop at once got a partition"
    );
    let in_july: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM service_usage_analytics_p{y}07"
    )))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        in_july, 100,
        "July's rows moved out of the default partition"
    );
}

#[tokio::test]
async fn cache_cleanup_removes_exactly_the_expired_rows_in_batches() {
    let db = TestDb::migrated().await;
    seed_user_and_service(&db).await;
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 2, 0, 0).unwrap();
    insert_cache_rows(&db, now, 30_000, 23_456).await;
    let config = config(&db, "[jobs.validation_cache_cleanup]\nbatch_size = 10000\n");
    let clock = FixedClock::new(now);

    // Inserts go on while the cleanup runs: no batch holds a lock that blocks them.
    let writer_pool = db.pool.clone();
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            sqlx::query(
                "INSERT INTO api_key_validation_cache (user_id, service_type, key_hash, is_valid, expires_at)
                 VALUES ('11111111-1111-1111-1111-111111111111', 'figma', 'live' || $1, true, $2 + interval '1 day')",
            )
            .bind(i)
            .bind(now)
            .execute(&writer_pool)
            .await
            .unwrap();
        }
    });
    let done = finished(run(&db, &config, &clock, JobName::ValidationCacheCleanup).await);
    writer.await.unwrap();
    assert_eq!(done.rows_affected, 23_456);
    assert_eq!(done.batches, 3, "10,000 + 10,000 + 3,456");
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM api_key_validation_cache WHERE expires_at < $1")
            .bind(now)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM api_key_validation_cache")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(kept, 30_000 - 23_456 + 200);
    let batches: i32 = sqlx::query_scalar(
        "SELECT batches FROM maintenance_job_runs WHERE job = 'validation_cache_cleanup'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(batches, 3, "the batch count is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_due_while_the_previous_runs_is_skipped_and_a_lock_timeout_fails_cleanly() {
    let db = TestDb::migrated().await;
    seed_user_and_service(&db).await;
    sqlx::query("SELECT ensure_usage_analytics_partition('2020-01-01')")
        .execute(&db.pool)
        .await
        .unwrap();
    let config = config(
        &db,
        "[jobs.analytics_retention]\nretain = \"180d\"\nlock_timeout = \"1500ms\"\nattempts = 2\n",
    );
    let clock = FixedClock::new(Utc::now());

    // Someone holds the analytics table: the drop waits for its lock.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE service_usage_analytics IN ACCESS SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (pool, cfg, clk) = (db.pool.clone(), config.clone(), clock.clone());
    let first = tokio::spawn(async move {
        let ctx = JobContext {
            pool: &pool,
            config: &cfg,
            clock: &clk,
            fence: Fence::Manual,
        };
        jobs::run(JobName::AnalyticsRetention, &ctx, Trigger::Manual, "first")
            .await
            .unwrap()
    });
    // Wait until the first run is waiting on the lock, then start a second one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = run(&db, &config, &clock, JobName::AnalyticsRetention).await;
    assert!(matches!(second, RunOutcome::Skipped), "{second:?}");

    // The first run's two attempts time out: it fails, recorded with its error.
    let first = first.await.unwrap();
    let RunOutcome::Failed(failed) = first else {
        panic!("{first:?}")
    };
    assert!(
        format!("{:#}", failed.error).contains("lock timeout"),
        "{:#}",
        failed.error
    );
    blocker.rollback().await.unwrap();

    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, error FROM maintenance_job_runs WHERE job = 'analytics_retention' ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "failed");
    assert!(
        rows[0].1.as_deref().unwrap().contains("after 2 attempt(s)"),
        "{rows:?}"
    );
    assert_eq!(rows[1].0, "skipped");

    // With the lock free, the next run succeeds.
    let done = finished(run(&db, &config, &clock, JobName::AnalyticsRetention).await);
    assert!(done.batches >= 1);
}

#[tokio::test]
async fn jobs_run_and_list_from_the_command_line() {
    let db = TestDb::migrated().await;
    let env = [("DATABASE_URL", db.url.expose())];
    let ran = healthd(&["jobs", "run", "housekeeping"], &env);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    assert!(
        text(&ran.stdout).contains("housekeeping: succeeded"),
        "{}",
        text(&ran.stdout)
    );
    let list = healthd(&["jobs", "list"], &env);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list.stderr));
    let out = text(&list.stdout);
    let line = out.lines().find(|l| l.starts_with("housekeeping")).unwrap();
    assert!(
        line.contains("0 30 * * * *") && line.contains("succeeded"),
        "{out}"
    );
    let never = out
        .lines()
        .find(|l| l.starts_with("analytics_retention"))
        .unwrap();
    assert!(never.contains("never"), "{out}");
    let unknown = healthd(&["jobs", "run", "vacuum_everything"], &env);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("partition_maintenance, analytics_retention"),
        "{}",
        text(&unknown.stderr)
    );
}

#[tokio::test]
async fn a_destructive_step_is_refused_once_the_lease_is_lost() {
    use jobs::lease::{self, MAINTENANCE};

    let db = TestDb::migrated().await;
    seed_user_and_service(&db).await;
    let now = Utc.with_ymd_and_hms(2030, 1, 1, 2, 0, 0).unwrap();
    insert_cache_rows(&db, now, 100, 100).await;
    let expired = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM api_key_validation_cache WHERE expires_at < $1")
            .bind(now)
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    let config = config(&db, "");
    let clock = FixedClock::new(now);
    let ttl = Duration::from_secs(60);

    // A leads; its lease runs out by the database's clock, and B takes it over.
    let (a, b) = ("host-a:1:aaaaaaaa", "host-b:2:bbbbbbbb");
    let epoch_a = lease::acquire_or_renew(&db.pool, MAINTENANCE, a, ttl)
        .await
        .unwrap()
        .expect("A takes the free lease");
    sqlx::query(
        "UPDATE maintenance_leases SET expires_at = now() - interval '1 ms' WHERE name = $1",
    )
    .bind(MAINTENANCE)
    .execute(&db.pool)
    .await
    .unwrap();
    let epoch_b = lease::acquire_or_renew(&db.pool, MAINTENANCE, b, ttl)
        .await
        .unwrap()
        .expect("B takes the expired lease");
    assert!(epoch_b > epoch_a, "a new holder, a new epoch");
    assert_eq!(
        lease::acquire_or_renew(&db.pool, MAINTENANCE, a, ttl)
            .await
            .unwrap(),
        None,
        "A cannot renew a lease B holds"
    );

    // A's run, started under its old lease (as a scheduler tick that fired just before the
    // takeover would be), is refused at its first destructive step.
    let run_under = async |holder: &str, epoch: i64| {
        let ctx = JobContext {
            pool: &db.pool,
            config: &config,
            clock: &clock,
            fence: Fence::Lease {
                holder: holder.to_owned(),
                epoch,
            },
        };
        jobs::run(
            JobName::ValidationCacheCleanup,
            &ctx,
            Trigger::Schedule(now),
            holder,
        )
        .await
        .unwrap()
    };
    let RunOutcome::Failed(failed) = run_under(a, epoch_a).await else {
        panic!("the run under a lost lease did not fail")
    };
    assert!(
        matches!(
            failed.error.downcast_ref::<lease::FenceError>(),
            Some(lease::FenceError::Lost { .. })
        ),
        "{:#}",
        failed.error
    );
    assert_eq!(failed.done, jobs::Done::default());
    assert_eq!(expired().await, 100, "nothing deleted under a lost lease");
    let recorded: (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM maintenance_job_runs WHERE holder = $1")
            .bind(a)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(recorded.0, "failed");
    assert!(
        recorded.1.as_deref().unwrap().contains("lease was lost"),
        "{recorded:?}"
    );

    // The same job under the current holder's fence deletes.
    let done = finished(run_under(b, epoch_b).await);
    assert_eq!(done.rows_affected, 100);
    assert_eq!(expired().await, 0);
}
