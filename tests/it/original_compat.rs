//! What was written against the original design keeps working: the cleanup functions under
//! their original names (doing what the jobs do, recorded like a run), and the dashboard view
//! read by position.

use sqlx::Row;

use crate::helpers::TestDb;

/// The original design's `service_health_dashboard` columns, in its order.
const ORIGINAL_COLUMNS: [&str; 10] = [
    "service_type",
    "display_name",
    "category",
    "port",
    "is_healthy",
    "last_health_check",
    "response_time_ms",
    "consecutive_failures",
    "uptime_percentage",
    "active_users",
];

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Run {
    job: String,
    trigger: String,
    status: String,
    rows_affected: i64,
    batches: i32,
    holder: String,
}

async fn runs(db: &TestDb) -> Vec<Run> {
    sqlx::query_as(
        "SELECT job, trigger, status, rows_affected, batches, holder
           FROM maintenance_job_runs ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_original_cleanup_functions_do_what_the_jobs_do_and_are_recorded() {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-00000000000a', 'a@example.test');
         INSERT INTO service_registry (service_type, name, display_name, port) VALUES ('figma', 'figma', 'Figma', 49160);
         SELECT ensure_usage_analytics_partition('2020-01-01');
         INSERT INTO service_usage_analytics (user_id, service_type, instance_id, timestamp)
         SELECT '00000000-0000-0000-0000-00000000000a'::uuid, 'figma', 'i', '2020-01-10'::timestamptz + g * interval '1 hour'
           FROM generate_series(1, 3) g
         UNION ALL
         SELECT '00000000-0000-0000-0000-00000000000a', 'figma', 'i', now();
         INSERT INTO api_key_validation_cache (user_id, service_type, key_hash, is_valid, expires_at)
         SELECT '00000000-0000-0000-0000-00000000000a', 'figma', 'k' || g, true,
                now() + CASE WHEN g <= 5 THEN interval '-1 hour' ELSE interval '1 hour' END
           FROM generate_series(1, 8) g;",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    // Called as runbooks call them; the results are the counts.
    let analytics = sqlx::query("SELECT * FROM cleanup_old_usage_analytics()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        (
            analytics.get::<i64, _>("rows_affected"),
            analytics.get::<i32, _>("batches")
        ),
        (3, 1)
    );
    let gone: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('service_usage_analytics_p202001')::text")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(gone, None, "the whole past partition is dropped");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM service_usage_analytics")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(kept, 1, "this month's row is kept");

    let (rows, batches): (i64, i32) = sqlx::query_as("SELECT * FROM cleanup_validation_cache(2)")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((rows, batches), (5, 3), "5 expired rows in batches of 2");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM api_key_validation_cache")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 3);
    // `SELECT name()` as the original cron entries had it still works.
    sqlx::query("SELECT cleanup_validation_cache()")
        .execute(&db.pool)
        .await
        .unwrap();

    // While the daemon runs the same job (its advisory lock), a call is recorded as skipped.
    let mut daemon = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(x'6d63705f68650002'::bigint)")
        .execute(&mut *daemon)
        .await
        .unwrap();
    let skipped: (i64, i32) = sqlx::query_as("SELECT * FROM cleanup_validation_cache()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(skipped, (0, 0));
    // Closed, not returned to the pool still holding the lock.
    drop(daemon.detach());

    let recorded = runs(&db).await;
    let summary: Vec<(&str, &str, &str, i64, i32)> = recorded
        .iter()
        .map(|r| {
            assert_eq!(r.trigger, "manual");
            assert!(r.holder.starts_with("sql:postgres:"), "{}", r.holder);
            (
                r.job.as_str(),
                r.trigger.as_str(),
                r.status.as_str(),
                r.rows_affected,
                r.batches,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("analytics_retention", "manual", "succeeded", 3, 1),
            ("validation_cache_cleanup", "manual", "succeeded", 5, 3),
            ("validation_cache_cleanup", "manual", "succeeded", 0, 0),
            ("validation_cache_cleanup", "manual", "skipped", 0, 0),
        ]
    );

    // Only the owner may call them unless granted.
    let public: bool = sqlx::query_scalar(
        "SELECT has_function_privilege('public', 'cleanup_validation_cache(integer)', 'EXECUTE')
             OR has_function_privilege('public', 'cleanup_old_usage_analytics(interval)', 'EXECUTE')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(!public);
}

#[tokio::test]
async fn the_dashboard_view_starts_with_the_original_columns_in_order() {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-00000000000a', 'a@example.test');
         INSERT INTO service_registry (service_type, name, display_name, port, category)
         VALUES ('figma', 'figma', 'Figma', 49160, 'design');
         UPDATE service_health_status SET is_healthy = false, consecutive_failures = 3,
                response_time_ms = 12, uptime_percentage = 99.5, last_health_check = now();
         INSERT INTO user_service_instances (instance_id, user_id, service_type, encrypted_api_key)
         VALUES ('i1', '00000000-0000-0000-0000-00000000000a', 'figma', 'enc');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute
          WHERE attrelid = 'service_health_dashboard'::regclass AND attnum > 0 ORDER BY attnum",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(names[..10], ORIGINAL_COLUMNS, "{names:?}");

    // A reader written for the original view: `SELECT *`, columns by position.
    let row = sqlx::query("SELECT * FROM service_health_dashboard")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>(0), "figma");
    assert_eq!(row.get::<String, _>(1), "Figma");
    assert_eq!(row.get::<String, _>(2), "design");
    assert_eq!(row.get::<i32, _>(3), 49160);
    assert_eq!(row.get::<Option<bool>, _>(4), Some(false));
    assert_eq!(row.get::<Option<i32>, _>(6), Some(12));
    assert_eq!(row.get::<Option<i32>, _>(7), Some(3));
    assert_eq!(row.get::<Option<f64>, _>(8), Some(99.5));
    assert_eq!(row.get::<i64, _>(9), 1, "active_users");

    // The daemon's own reader (by name) still reads it.
    let rows = mcp_healthd::store::dashboard::load(&db.pool).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "down");
}
