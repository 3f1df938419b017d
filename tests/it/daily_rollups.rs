//! The daily rollups (`housekeeping`): made from the hourly ones, whole days at a time, so a run
//! repeated changes nothing and a later hour updates its day; and what `uptime.retain_daily`
//! prunes (old daily rows, closed incidents, ended maintenance windows) and what it keeps.

use crate::helpers::{TestDb, healthd, text};

async fn exec(db: &TestDb, sql: &'static str) {
    sqlx::raw_sql(sql).execute(&db.pool).await.unwrap();
}

/// (days ago, checks, failures, maintenance_checks) of every daily row of `svc`, newest first.
async fn daily(db: &TestDb) -> Vec<(i32, i32, i32, i32)> {
    sqlx::query_as(
        "SELECT ((now() AT TIME ZONE 'UTC')::date - day)::int, checks, failures, maintenance_checks
           FROM service_health_daily WHERE service_type = 'svc' ORDER BY day DESC",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

fn housekeeping(db: &TestDb) {
    let ran = healthd(
        &["jobs", "run", "housekeeping"],
        &[("DATABASE_URL", db.url.expose())],
    );
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
}

#[tokio::test]
async fn housekeeping_makes_daily_rollups_from_hourly_ones_and_prunes_past_retain_daily() {
    let db = TestDb::migrated().await;
    exec(
        &db,
        "INSERT INTO service_registry (service_type, name, display_name, port) VALUES ('svc', 'svc', 'Svc', 1);
         -- two hours today, two hours three days ago
         INSERT INTO service_health_rollups (service_type, hour, checks, failures, maintenance_checks)
         SELECT 'svc', date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => d) + make_interval(hours => h),
                120, d + h, CASE WHEN d = 3 THEN 10 ELSE 0 END
           FROM (VALUES (0), (3)) days(d), (VALUES (0), (1)) hours(h);
         -- older than uptime.retain_daily (400d): pruned; recent ones kept
         INSERT INTO service_health_daily (service_type, day, checks) VALUES ('svc', (now() AT TIME ZONE 'UTC')::date - 500, 2880);
         INSERT INTO service_incidents (service_type, started_at, ended_at) VALUES
             ('svc', now() - interval '501 days', now() - interval '500 days'),
             ('svc', now() - interval '2 days', now() - interval '1 day');
         INSERT INTO maintenance_windows (service_type, starts_at, ends_at, reason) VALUES
             ('svc', now() - interval '501 days', now() - interval '500 days', 'old'),
             ('svc', now() - interval '1 day', now() + interval '1 day', 'current');",
    )
    .await;
    housekeeping(&db);
    let want = vec![(0, 240, 1, 0), (3, 240, 7, 20)];
    assert_eq!(
        daily(&db).await,
        want,
        "each day the sum of its hours; day 500 pruned"
    );
    housekeeping(&db);
    assert_eq!(daily(&db).await, want, "a repeated run changes nothing");
    // A later hour of today updates today's row.
    exec(
        &db,
        "UPDATE service_health_rollups SET checks = checks + 60, failures = failures + 2
          WHERE hour = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    )
    .await;
    housekeeping(&db);
    assert_eq!(daily(&db).await[0], (0, 300, 3, 0));
    let kept: Vec<String> = sqlx::query_scalar(
        "SELECT 'incident ' || (now() - ended_at > interval '400 days') FROM service_incidents
         UNION ALL SELECT 'window ' || reason FROM maintenance_windows ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(kept, ["incident false", "window current"]);
}
