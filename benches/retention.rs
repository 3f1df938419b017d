//! Benchmark: analytics retention by dropping partitions (the `analytics_retention` job) against
//! the spec's DELETE, on the same ~3.1M rows (12 months, 6 of them expired). Prints time, WAL
//! bytes (pg_current_wal_lsn before and after) and the table's size afterwards.
//!
//! Run: `cargo bench --bench retention` (PostgreSQL at DATABASE_URL, as for the tests). Run it
//! alone: WAL is counted server-wide.

#[path = "../tests/it/clock.rs"]
mod clock;
#[path = "../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::Instant;

use chrono::{Months, NaiveDate, Utc};
use clock::FixedClock;
use helpers::TestDb;
use mcp_healthd::config::Config;
use mcp_healthd::jobs::{self, Fence, JobContext, JobName, RunOutcome, Trigger, partitions};

const ROWS_PER_MONTH: i64 = 260_000;

async fn load(db: &TestDb, first: NaiveDate) {
    sqlx::raw_sql(
        "INSERT INTO users (id, email) VALUES ('11111111-1111-1111-1111-111111111111', 'a@example.org');
         INSERT INTO service_registry (service_type, name, display_name, port)
              SELECT 'svc' || i, 'svc' || i, 'Service ' || i, 40000 + i FROM generate_series(1, 20) i;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    for k in 0..12 {
        let month = first.checked_add_months(Months::new(k)).unwrap();
        sqlx::query("SELECT ensure_usage_analytics_partition($1)")
            .bind(month)
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query(
            r#"INSERT INTO service_usage_analytics (user_id, service_type, instance_id, endpoint, method,
                                                    status_code, response_time_ms, "timestamp")
               SELECT '11111111-1111-1111-1111-111111111111', 'svc' || (1 + i % 20), 'inst_' || (i % 5000),
                      '/v1/call', 'POST', 200, (i % 900)::int,
                      $1::timestamptz + (i::float8 / $2) * interval '28 days'
                 FROM generate_series(0, $2 - 1) i"#,
        )
        .bind(month.and_hms_opt(0, 0, 0).unwrap().and_utc())
        .bind(ROWS_PER_MONTH)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    sqlx::raw_sql("VACUUM ANALYZE service_usage_analytics")
        .execute(&db.pool)
        .await
        .unwrap();
}

async fn wal(db: &TestDb) -> String {
    sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn wal_since(db: &TestDb, lsn: &str) -> i64 {
    sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint")
        .bind(lsn)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn size(db: &TestDb) -> i64 {
    sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits
          WHERE inhparent = 'service_usage_analytics'::regclass",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

async fn rows(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM service_usage_analytics")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    // Twelve whole months in the past (the drop function refuses anything newer); a retention
    // whose cut-off falls 3 hours into the seventh month expires exactly the first six.
    let now = Utc::now();
    let first = partitions::month_of(now)
        .checked_sub_months(Months::new(12))
        .unwrap();
    let cutoff = partitions::start_of(first.checked_add_months(Months::new(6)).unwrap());
    let retain = format!("{}s", (now - cutoff).num_seconds() - 3 * 3600);
    println!("loading 12 months x {ROWS_PER_MONTH} rows twice (this takes a few minutes)...");

    let dropped = TestDb::migrated().await;
    load(&dropped, first).await;
    let total = rows(&dropped).await;
    let config = Config::from_toml(
        &format!("[jobs.analytics_retention]\nretain = \"{retain}\"\n"),
        "bench",
        Some(dropped.url.expose()),
    )
    .unwrap();
    let clock = FixedClock::new(now);
    let ctx = JobContext {
        pool: &dropped.pool,
        config: &config,
        clock: &clock,
        fence: Fence::Manual,
    };
    let before = wal(&dropped).await;
    let started = Instant::now();
    let outcome = jobs::run(JobName::AnalyticsRetention, &ctx, Trigger::Manual, "bench")
        .await
        .unwrap();
    let drop_time = started.elapsed();
    let drop_wal = wal_since(&dropped, &before).await;
    let RunOutcome::Finished(done) = outcome else {
        panic!("{outcome:?}")
    };
    let drop_size = size(&dropped).await;
    let kept = rows(&dropped).await;

    let deleted = TestDb::migrated().await;
    load(&deleted, first).await;
    let before = wal(&deleted).await;
    let started = Instant::now();
    let gone = sqlx::query(r#"DELETE FROM service_usage_analytics WHERE "timestamp" < $1"#)
        .bind(cutoff)
        .execute(&deleted.pool)
        .await
        .unwrap()
        .rows_affected();
    let delete_time = started.elapsed();
    let delete_wal = wal_since(&deleted, &before).await;
    let delete_size = size(&deleted).await;

    let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
    println!();
    println!(
        "rows loaded: {total}; expired (6 whole months): {}",
        done.rows_affected
    );
    println!(
        "{:<28} {:>12} {:>10} {:>12} {:>16}",
        "method", "rows removed", "time (s)", "WAL (MiB)", "size after (MiB)"
    );
    println!(
        "{:<28} {:>12} {:>10.2} {:>12.1} {:>16.1}",
        "drop partitions (this job)",
        done.rows_affected,
        drop_time.as_secs_f64(),
        mib(drop_wal),
        mib(drop_size)
    );
    println!(
        "{:<28} {:>12} {:>10.2} {:>12.1} {:>16.1}",
        "DELETE (the spec)",
        gone,
        delete_time.as_secs_f64(),
        mib(delete_wal),
        mib(delete_size)
    );
    println!("rows kept by the job: {kept}");
    assert_eq!(
        done.rows_affected as u64, gone,
        "both methods must remove the same rows"
    );
}
