//! Adopting a database built by the original design's migration 008 (`fixtures/`, taken from
//! the spec as written): `migrate` converts it in place, nothing lost, and the daemon runs on it.
//! When something cannot be converted it stops, names it, and changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour};
use crate::helpers::{TestDb, healthd, text};
use crate::prober::wait_until_healthy;

const ORIGINAL_008: &str = include_str!("fixtures/original_design_008.sql");
const ORIGINAL_VIEWS: &str = include_str!("fixtures/original_design_views.sql");

/// 40 users, 50 services (40 with the status row the original 009 made), 1,000 instances,
/// 3,000 cache rows and 100,000 analytics rows spread over the 14 months before this one, all
/// written by a backend whose sessions ran in New York time (TIMESTAMP defaults and
/// localtimestamp are New York wall-clock times).
const FILL: &str = "
BEGIN;
SET LOCAL TIME ZONE 'America/New_York';
INSERT INTO users (email, name)
SELECT format('user%s@example.test', g), format('User %s', g) FROM generate_series(1, 40) g;
INSERT INTO service_registry (service_type, name, display_name, port, category, auth_config)
SELECT format('svc_%s', g), format('svc_%s', g), format('Service %s', g), 49000 + g,
       (ARRAY['design', 'development', 'communication'])[1 + g % 3], jsonb_build_object('secret', g)
  FROM generate_series(0, 49) g;
INSERT INTO service_health_status (service_type, is_healthy, response_time_ms, consecutive_failures,
                                   uptime_percentage)
SELECT service_type, port % 7 <> 0, port % 300, CASE WHEN port % 7 = 0 THEN 4 ELSE 0 END, 99.95
  FROM service_registry WHERE port < 49040;
INSERT INTO user_service_instances (instance_id, user_id, service_type, encrypted_api_key,
                                    usage_count, last_used_at, is_active)
SELECT format('inst_%s_%s', u.n, s.g), u.id, format('svc_%s', s.g), 'enc:' || md5(u.n || ':' || s.g),
       u.n * 100 + s.g, localtimestamp - make_interval(hours => s.g), (u.n + s.g) % 5 <> 0
  FROM (SELECT id, row_number() OVER (ORDER BY email) AS n FROM users) u
 CROSS JOIN generate_series(0, 24) s(g);
INSERT INTO api_key_validation_cache (user_id, service_type, key_hash, is_valid, validated_at,
                                      expires_at, validation_response)
SELECT u.id, format('svc_%s', s.g), md5(u.id::text || s.g || k), k % 2 = 0,
       localtimestamp - interval '2 days', localtimestamp + make_interval(hours => k - 1),
       jsonb_build_object('k', k)
  FROM users u CROSS JOIN generate_series(0, 24) s(g) CROSS JOIN generate_series(0, 2) k;
-- Day 1 to 28 of each month (New York's offset never moves a row into another UTC month).
INSERT INTO service_usage_analytics (user_id, service_type, instance_id, endpoint, method,
                                     status_code, response_time_ms, timestamp)
SELECT i.user_id, i.service_type, i.instance_id, '/v1/call', 'POST',
       CASE WHEN g % 50 = 0 THEN 500 ELSE 200 END, g % 900,
       date_trunc('month', localtimestamp) - make_interval(months => 1 + g % 14)
           + make_interval(secs => (g * 7919) % (27 * 86400))
  FROM generate_series(1, 100000) g
  JOIN (SELECT instance_id, user_id, service_type,
               row_number() OVER (ORDER BY instance_id) - 1 AS n
          FROM user_service_instances) i ON i.n = g % 1000;
COMMIT;
";

/// Rows per table, as `SELECT count(*)` sees them.
async fn counts(db: &TestDb) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for t in [
        "service_registry",
        "user_service_instances",
        "service_health_status",
        "api_key_validation_cache",
        "service_usage_analytics",
        "users",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
            .fetch_one(&db.pool)
            .await
            .unwrap();
        out.insert(t, n);
    }
    out
}

async fn original_database() -> TestDb {
    let db = TestDb::empty().await;
    sqlx::raw_sql(ORIGINAL_008).execute(&db.pool).await.unwrap();
    sqlx::raw_sql(ORIGINAL_VIEWS)
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

fn migrate(db: &TestDb) -> std::process::Output {
    healthd(&["migrate"], &[("DATABASE_URL", db.url.expose())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_the_original_008_is_converted_in_place() {
    let db = original_database().await;
    sqlx::raw_sql(FILL).execute(&db.pool).await.unwrap();
    let reader = format!("{}_reader", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {reader};
         GRANT SELECT ON service_registry, service_health_dashboard TO {reader};
         GRANT SELECT (service_type, is_healthy) ON service_health_status TO {reader};
         ALTER DATABASE {} SET mcp_healthd.original_timezone = 'America/New_York';",
        db.name
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let before = counts(&db).await;
    assert_eq!(before["service_usage_analytics"], 100_000);
    assert_eq!(before["user_service_instances"], 1_000);
    let months: BTreeMap<String, i64> = sqlx::query_as(
        "SELECT to_char(timestamp, 'YYYY-MM'), count(*) FROM service_usage_analytics GROUP BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(months.len(), 14);
    let sample: (uuid::Uuid, String) = sqlx::query_as(
        "SELECT id, timestamp::text FROM service_usage_analytics ORDER BY timestamp LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let usage_before: i64 =
        sqlx::query_scalar("SELECT sum(usage_count)::bigint FROM user_service_instances")
            .fetch_one(&db.pool)
            .await
            .unwrap();

    // A daemon's start does not convert the platform's tables (that locks them for the whole
    // copy): only an explicit `migrate` does.
    let run = healthd(&["run"], &[("DATABASE_URL", db.url.expose())]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("holds the original design's tables: run `mcp-healthd migrate`"),
        "{}",
        text(&run.stderr)
    );

    let started = std::time::Instant::now();
    let out = migrate(&db);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    eprintln!("adoption of 100,000 analytics rows: {took:?}");

    // Nothing lost; the 10 services the original 009 missed got their status row.
    let mut expected = before.clone();
    expected.insert("service_health_status", before["service_registry"]);
    assert_eq!(counts(&db).await, expected);
    let usage_after: i64 =
        sqlx::query_scalar("SELECT sum(usage_count)::bigint FROM user_service_instances")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(usage_after, usage_before);

    // Partitioned by month: each month's rows in its own partition, none in the default one.
    let relkind: String = sqlx::query_scalar(
        "SELECT relkind::text FROM pg_class WHERE oid = 'service_usage_analytics'::regclass",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(relkind, "p");
    let placed: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT tableoid::regclass::text, to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM'), count(*)
           FROM service_usage_analytics GROUP BY 1, 2",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let by_month: BTreeMap<String, i64> = placed
        .iter()
        .map(|(part, month, n)| {
            assert_eq!(
                part,
                &format!("service_usage_analytics_p{}", month.replace('-', "")),
                "rows of {month} are in {part}"
            );
            (month.clone(), *n)
        })
        .collect();
    assert_eq!(by_month, months);

    // Types and indexes are ours; the set-aside copies are gone.
    let leftovers: Vec<String> = sqlx::query_scalar(
        "SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns
          WHERE table_schema = 'public' AND data_type IN ('timestamp without time zone', 'numeric')
            AND table_name IN ('service_registry', 'user_service_instances', 'service_health_status',
                               'api_key_validation_cache', 'service_usage_analytics')
         UNION ALL SELECT 'index ' || indexname FROM pg_indexes WHERE indexname LIKE 'idx\\_%'
         UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'mcp_healthd_original'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let (uptime, failures): (Option<f64>, i32) = sqlx::query_as(
        "SELECT uptime_percentage, consecutive_failures FROM service_health_status
          WHERE service_type = 'svc_7'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((uptime, failures), (Some(99.95), 4));

    // TIMESTAMPs were read in the setting's zone (New York: 4 or 5 hours behind UTC).
    let offset: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM $2::timestamp AT TIME ZONE 'UTC' - timestamp)::float8 / -3600
           FROM service_usage_analytics WHERE id = $1",
    )
    .bind(sample.0)
    .bind(&sample.1)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(offset == 4.0 || offset == 5.0, "{offset}");

    // The platform's grants came over to the new tables and view.
    let granted: (bool, bool, bool, bool) = sqlx::query_as(
        "SELECT has_table_privilege($1, 'service_registry', 'SELECT'),
                has_table_privilege($1, 'service_health_dashboard', 'SELECT'),
                has_column_privilege($1, 'service_health_status', 'is_healthy', 'SELECT'),
                has_column_privilege($1, 'service_health_status', 'error_message', 'SELECT')",
    )
    .bind(&reader)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(granted, (true, true, true, false));

    // Migrating again does nothing.
    let again = migrate(&db);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(counts(&db).await, expected);

    // The daemon runs on it: one adopted service pointed at a live server becomes healthy.
    let healthy = fleet::spawn(Behaviour::Healthy).await;
    sqlx::query(
        "UPDATE service_registry SET is_available = (service_type = 'svc_0'),
                base_url = CASE WHEN service_type = 'svc_0' THEN $1 END",
    )
    .bind(format!("http://127.0.0.1:{}", healthy.port))
    .execute(&db.pool)
    .await
    .unwrap();
    let daemon = Daemon::start(
        &db.url,
        &fast_config("interval = \"300ms\"\ntimeout = \"250ms\"", ""),
    );
    wait_until_healthy(
        &db,
        "svc_0",
        "adopted service checked",
        Duration::from_secs(20),
    )
    .await;
    let (code, events) = daemon.stop();
    assert_eq!(code, Some(0));
    let errors: Vec<_> = events.iter().filter(|e| e["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let status = healthd(&["status"], &[("DATABASE_URL", db.url.expose())]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stdout));

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {reader}; DROP ROLE {reader}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}

/// The database is exactly as the original design left it.
async fn unchanged(db: &TestDb) {
    let (relkind, aside, bookkeeping): (String, bool, bool) = sqlx::query_as(
        "SELECT (SELECT relkind::text FROM pg_class WHERE oid = 'service_usage_analytics'::regclass),
                to_regnamespace('mcp_healthd_original') IS NOT NULL,
                to_regclass('_sqlx_migrations') IS NOT NULL",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((relkind.as_str(), aside, bookkeeping), ("r", false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_converted_is_named_and_nothing_changes() {
    let db = original_database().await;
    sqlx::raw_sql(
        "INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-00000000000a', 'a@example.test');
         INSERT INTO service_registry (service_type, name, display_name, port, created_at)
         VALUES ('figma', 'figma', 'Figma', 49160, '2024-01-15 12:00:00');
         -- what the original 010 made of an instance without credentials
         INSERT INTO user_service_instances (instance_id, user_id, service_type, encrypted_api_key)
         VALUES ('fig_user_00000000_abcdef', '00000000-0000-0000-0000-00000000000a', 'figma', '');
         INSERT INTO service_usage_analytics (id, user_id, service_type, instance_id, timestamp)
         VALUES ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-00000000000a',
                 'figma', 'fig_user_00000000_abcdef', NULL);
         -- read as UTC, a check 2 hours from now: written in another zone than the setting says
         INSERT INTO service_health_status (service_type, last_health_check)
         VALUES ('figma', (now() AT TIME ZONE 'UTC') + interval '2 hours');
         CREATE VIEW platform_report AS SELECT count(*) AS services FROM service_registry;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let set_zone = |zone: &str| {
        format!(
            "ALTER DATABASE {} SET mcp_healthd.original_timezone = '{zone}'",
            db.name
        )
    };

    sqlx::raw_sql(sqlx::AssertSqlSafe(set_zone("Mars/Olympus_Mons")))
        .execute(&db.pool)
        .await
        .unwrap();
    let out = migrate(&db);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("mcp_healthd.original_timezone = 'Mars/Olympus_Mons' is not a time zone"),
        "{err}"
    );
    unchanged(&db).await;

    sqlx::raw_sql(sqlx::AssertSqlSafe(set_zone("UTC")))
        .execute(&db.pool)
        .await
        .unwrap();
    let out = migrate(&db);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("view platform_report"), "{err}");
    unchanged(&db).await;

    sqlx::raw_sql("DROP VIEW platform_report")
        .execute(&db.pool)
        .await
        .unwrap();
    let out = migrate(&db);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for named in [
        "service_usage_analytics: timestamp is NULL, which the new table does not allow; \
         1 row(s): (id)=(00000000-0000-0000-0000-0000000000b1)",
        "user_service_instances: violates user_service_instances_encrypted_api_key_check: \
         (btrim(encrypted_api_key) <> ''::text); 1 row(s): (instance_id)=(fig_user_00000000_abcdef)",
        "service_health_status: last_health_check is in the future once read in zone UTC (is \
         mcp_healthd.original_timezone the zone these TIMESTAMPs were written in?); 1 row(s): \
         (service_type)=(figma)",
    ] {
        assert!(err.contains(named), "{named:?} not in: {err}");
    }
    unchanged(&db).await;

    sqlx::raw_sql(
        "UPDATE service_usage_analytics SET timestamp = '2024-01-15 12:00:00';
         UPDATE user_service_instances SET encrypted_api_key = 'enc:restored';
         UPDATE service_health_status SET last_health_check = now() AT TIME ZONE 'UTC';",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let out = migrate(&db);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Read as UTC, the default zone.
    let (registry, analytics): (String, String) = sqlx::query_as(
        "SELECT (SELECT created_at AT TIME ZONE 'UTC' FROM service_registry)::text,
                (SELECT timestamp AT TIME ZONE 'UTC' FROM service_usage_analytics)::text",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (registry.as_str(), analytics.as_str()),
        ("2024-01-15 12:00:00", "2024-01-15 12:00:00")
    );
}
