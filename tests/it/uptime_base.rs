//! `uptime_percentage` stays exact whichever way a flush works it out (issue 16): from the
//! stored base of the window's complete hours plus the current hour (a flush within the hour),
//! or from every hour of the window (a new hour, a moved window, a replayed older hour, a
//! reclassification). Time is the flush's own `now` and the checks' own start times.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mcp_healthd::plan::health::ServiceState;
use mcp_healthd::probe::{Check, ErrorKind, Outcome};
use mcp_healthd::store::{self, FlushContext, Pending};

use crate::helpers::TestDb;
use crate::prober::register;

const WINDOW: Duration = Duration::from_secs(24 * 3600);

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, minute, 0).unwrap()
}

fn check(started_at: DateTime<Utc>, ok: bool) -> Check {
    Check {
        started_at,
        latency: Duration::from_millis(3),
        outcome: if ok {
            Outcome::Success { status: 200 }
        } else {
            Outcome::failure(ErrorKind::Status, "HTTP 500 (expected 200-299)")
        },
        tls_not_after: None,
    }
}

/// Flushes `checks` of `svc` (ok or not, at their times) as one batch, at `now`.
async fn flush(db: &TestDb, now: DateTime<Utc>, checks: &[(DateTime<Utc>, bool)]) {
    let mut batch = Pending::default();
    for &(t, ok) in checks {
        batch.record("svc", &ServiceState::default(), &check(t, ok));
    }
    flush_batch(db, now, &batch).await;
}

/// Flushes `batch` at `now`, as the writer would.
async fn flush_batch(db: &TestDb, now: DateTime<Utc>, batch: &Pending) {
    let ctx = FlushContext {
        uptime_window: WINDOW,
        check_interval: Duration::from_secs(10),
        checked_by: "test",
    };
    store::flush(&db.pool, uuid::Uuid::new_v4(), batch, &ctx, now)
        .await
        .unwrap();
}

/// (stored uptime, uptime from the window's rollups as they are, the hour the base stops at).
async fn uptime(db: &TestDb, now: DateTime<Utc>) -> (f64, f64, Option<DateTime<Utc>>) {
    sqlx::query_as(
        "SELECT s.uptime_percentage,
                (SELECT (100.0 * sum(checks - maintenance_checks - inconclusive_checks - failures)
                         / sum(checks - maintenance_checks - inconclusive_checks))::float8
                   FROM service_health_rollups
                  WHERE service_type = 'svc' AND hour >= date_trunc('hour', $1 - interval '24 hours')),
                s.uptime_base_until
           FROM service_health_status s WHERE service_type = 'svc'",
    )
    .bind(now)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

async fn assert_exact(db: &TestDb, now: DateTime<Utc>, expect: f64, step: &str) {
    let (stored, from_rollups, _) = uptime(db, now).await;
    assert!(
        (stored - from_rollups).abs() < 1e-9 && (stored - expect).abs() < 1e-9,
        "{step}: stored {stored}, from the rollups {from_rollups}, expected {expect}"
    );
}

#[tokio::test]
async fn uptime_is_exact_within_an_hour_across_hours_and_after_a_late_replay() {
    let db = TestDb::migrated().await;
    register(&db, "svc", 1).await;

    // Hour 10: 3 ok, then 1 failure in a later flush of the same hour.
    flush(&db, at(10, 10, 5), &[(at(10, 10, 1), true); 3]).await;
    assert_exact(&db, at(10, 10, 5), 100.0, "first flush").await;
    flush(&db, at(10, 10, 9), &[(at(10, 10, 8), false)]).await;
    assert_exact(&db, at(10, 10, 9), 75.0, "same hour").await;
    let (_, _, base_until) = uptime(&db, at(10, 10, 9)).await;
    assert_eq!(
        base_until,
        Some(at(10, 10, 0)),
        "the base stops at the current hour"
    );

    // Another writer adds to the current hour (a daemon taking the service over): counted.
    sqlx::query(
        "UPDATE service_health_rollups SET checks = checks + 4 WHERE service_type = 'svc'
            AND hour = $1",
    )
    .bind(at(10, 10, 0))
    .execute(&db.pool)
    .await
    .unwrap();
    flush(&db, at(10, 10, 20), &[(at(10, 10, 19), true)]).await;
    assert_exact(
        &db,
        at(10, 10, 20),
        100.0 * 8.0 / 9.0,
        "another writer's checks",
    )
    .await;

    // Hour 11: a new base (hour 10), then flushes on it.
    flush(&db, at(10, 11, 1), &[(at(10, 11, 0), false)]).await;
    assert_exact(&db, at(10, 11, 1), 100.0 * 8.0 / 10.0, "a new hour").await;
    flush(
        &db,
        at(10, 11, 2),
        &[(at(10, 11, 1), true), (at(10, 11, 2), true)],
    )
    .await;
    assert_exact(&db, at(10, 11, 2), 100.0 * 10.0 / 12.0, "on the new base").await;
    let (_, _, base_until) = uptime(&db, at(10, 11, 2)).await;
    assert_eq!(base_until, Some(at(10, 11, 0)));

    // A replayed spill with failures of hour 9 (and one of now): the base is remade.
    flush(
        &db,
        at(10, 11, 30),
        &[
            (at(10, 9, 30), false),
            (at(10, 9, 31), false),
            (at(10, 11, 29), true),
        ],
    )
    .await;
    assert_exact(&db, at(10, 11, 30), 100.0 * 11.0 / 15.0, "a late replay").await;
    flush(&db, at(10, 11, 31), &[(at(10, 11, 31), true)]).await;
    assert_exact(&db, at(10, 11, 31), 100.0 * 12.0 / 16.0, "after the replay").await;

    // A day later, hours 9 and 10 have left the window (only hour 11's 5 checks, 1 failure, and
    // the new one count), and the base moves with it.
    flush(&db, at(11, 11, 5), &[(at(11, 11, 4), true)]).await;
    assert_exact(&db, at(11, 11, 5), 100.0 * 5.0 / 6.0, "the window moved").await;
    flush(&db, at(11, 11, 6), &[(at(11, 11, 6), false)]).await;
    assert_exact(
        &db,
        at(11, 11, 6),
        100.0 * 5.0 / 7.0,
        "within the moved window",
    )
    .await;
}

#[tokio::test]
async fn a_reclassified_failure_counts_at_the_next_flush() {
    let db = TestDb::migrated().await;
    register(&db, "svc", 1).await;
    flush(
        &db,
        at(10, 10, 1),
        &[(at(10, 10, 0), false), (at(10, 10, 1), true)],
    )
    .await;
    flush(&db, at(10, 10, 2), &[(at(10, 10, 2), true)]).await;
    assert_exact(&db, at(10, 10, 2), 100.0 * 2.0 / 3.0, "before").await;

    // The failure at 10:00 turns out to have been the monitor's own.
    let mut batch = Pending::default();
    batch.reclassify_failure("svc", at(10, 10, 0));
    batch.record("svc", &ServiceState::default(), &check(at(10, 10, 3), true));
    flush_batch(&db, at(10, 10, 3), &batch).await;
    flush(&db, at(10, 10, 4), &[(at(10, 10, 4), true)]).await;
    assert_exact(&db, at(10, 10, 4), 100.0, "the failure is inconclusive now").await;
}
