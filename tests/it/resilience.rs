//! The daemon across a database outage and a restart: nothing is lost, nothing alerted twice.

use std::time::Duration;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour};
use crate::helpers::{TestDb, eventually};
use crate::prober::{register, rollup_checks, statuses};
use crate::proxy::Proxy;

fn count(events: &[serde_json::Value], event: &str) -> usize {
    events.iter().filter(|e| e["event"] == event).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_outage_loses_no_check() {
    let db = TestDb::migrated().await;
    let mut servers = Vec::new();
    for i in 0..3 {
        let server = fleet::spawn(Behaviour::Healthy).await;
        register(&db, &format!("svc{i}"), server.port.into()).await;
        servers.push(server);
    }
    let proxy = Proxy::to_test_server().await;
    let via_proxy = proxy.url_for(&db);

    let config = fast_config("interval = \"300ms\"\ntimeout = \"250ms\"", "");
    let daemon = Daemon::start(&via_proxy, &config);
    // Writing before the outage: every service has checks in the rollups.
    eventually(
        "checks written before the outage",
        Duration::from_secs(15),
        async || {
            let checks = rollup_checks(&db).await;
            match checks.len() == servers.len() {
                true => Ok(()),
                false => Err(checks),
            }
        },
    )
    .await;
    proxy.cut();
    daemon.wait_for(|e| e["event"] == "db_unavailable", Duration::from_secs(15));
    // The outage lasts until every service has been checked 30 more times (about 9 s).
    let at_cut: Vec<usize> = servers.iter().map(|s| s.hits()).collect();
    let during = eventually(
        "checks go on during the outage",
        Duration::from_secs(30),
        async || {
            let now: Vec<usize> = servers.iter().map(|s| s.hits()).collect();
            match now.iter().zip(&at_cut).all(|(n, c)| *n >= c + 30) {
                true => Ok(now),
                false => Err(format!("hits {now:?}, at the cut {at_cut:?}")),
            }
        },
    )
    .await;
    proxy.restore();
    daemon.wait_for(|e| e["event"] == "db_recovered", Duration::from_secs(30));
    // The outage's backlog reaches the database without waiting for the stop.
    eventually(
        "the outage's checks written after recovery",
        Duration::from_secs(15),
        async || {
            let checks = rollup_checks(&db).await;
            let written = during.iter().enumerate().all(|(i, hits)| {
                let rolled_up = checks.get(&format!("svc{i}")).copied().unwrap_or(0);
                rolled_up >= *hits as i64
            });
            match written {
                true => Ok(()),
                false => Err(format!(
                    "rollups {checks:?}, hits by the end of the outage {during:?}"
                )),
            }
        },
    )
    .await;
    let (code, events) = daemon.stop();
    assert_eq!(code, Some(0), "the daemon stayed up and stopped cleanly");
    assert_eq!(
        count(&events, "db_unavailable"),
        1,
        "logged once per outage"
    );
    assert_eq!(count(&events, "db_recovered"), 1);

    let checks = rollup_checks(&db).await;
    for (i, server) in servers.iter().enumerate() {
        assert_eq!(
            checks[&format!("svc{i}")],
            server.hits() as i64,
            "svc{i}: rollups vs requests received"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_forgets_an_outage_nor_alerts_it_twice() {
    let db = TestDb::migrated().await;
    let failing = fleet::spawn(Behaviour::Status(500)).await;
    register(&db, "failing", failing.port.into()).await;
    let config = fast_config("interval = \"300ms\"\ntimeout = \"250ms\"", "");

    let first = Daemon::start(&db.url, &config);
    first.wait_for(|e| e["event"] == "service_down", Duration::from_secs(10));
    let (_, first_events) = first.stop();
    assert_eq!(count(&first_events, "service_down"), 1);
    let before = statuses(&db).await["failing"].consecutive_failures;

    let second = Daemon::start(&db.url, &config);
    // More failures than the threshold, counted on from where the first daemon left off: had
    // the second started from a blank state, it would have alerted by now.
    eventually(
        "the second daemon goes on counting failures",
        Duration::from_secs(15),
        async || {
            let failures = statuses(&db).await["failing"].consecutive_failures;
            match failures > before + 3 {
                true => Ok(()),
                false => Err(format!("{before} -> {failures}")),
            }
        },
    )
    .await;
    let (_, second_events) = second.stop();
    assert_eq!(
        count(&second_events, "service_down"),
        0,
        "already down: no second alert"
    );
    assert_eq!(
        count(&second_events, "service_still_down"),
        0,
        "no reminder before reminder_interval"
    );
    let after = &statuses(&db).await["failing"];
    assert_eq!(after.is_healthy, Some(false));
    assert!(
        after.consecutive_failures > before + 3,
        "{before} -> {}",
        after.consecutive_failures
    );
}

#[tokio::test]
async fn a_batch_retried_under_its_id_is_counted_once() {
    use mcp_healthd::plan::health::ServiceState;
    use mcp_healthd::probe::{Check, Outcome};
    use mcp_healthd::store::{self, FlushContext, Pending};

    let db = TestDb::migrated().await;
    register(&db, "svc", 1).await;
    let mut batch = Pending::default();
    for _ in 0..3 {
        let check = Check {
            started_at: chrono::Utc::now(),
            latency: Duration::from_millis(5),
            outcome: Outcome::Success { status: 200 },
            tls_not_after: None,
        };
        batch.record("svc", &ServiceState::default(), &check);
    }
    let ctx = FlushContext {
        uptime_window: Duration::from_secs(86_400),
        check_interval: Duration::from_secs(30),
        checked_by: "test",
    };
    let id = uuid::Uuid::new_v4();
    // The first write commits; pretend its reply was lost and write the same batch again.
    store::flush(&db.pool, id, &batch, &ctx, chrono::Utc::now())
        .await
        .unwrap();
    store::flush(&db.pool, id, &batch, &ctx, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(
        rollup_checks(&db).await["svc"],
        3,
        "a retry under the same id adds nothing"
    );
    store::flush(
        &db.pool,
        uuid::Uuid::new_v4(),
        &batch,
        &ctx,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(rollup_checks(&db).await["svc"], 6, "a new batch counts");
}

#[tokio::test]
async fn an_older_check_never_overwrites_a_newer_status() {
    use mcp_healthd::plan::health::ServiceState;
    use mcp_healthd::probe::{Check, ErrorKind, Outcome};
    use mcp_healthd::store::{self, FlushContext, Pending};

    let db = TestDb::migrated().await;
    register(&db, "svc", 1).await;
    let flush_one = async |by: &str, started_at, outcome: Outcome, healthy: bool| {
        let state = ServiceState {
            healthy: Some(healthy),
            ..ServiceState::default()
        };
        let check = Check {
            started_at,
            latency: Duration::from_millis(5),
            outcome,
            tls_not_after: None,
        };
        let mut batch = Pending::default();
        batch.record("svc", &state, &check);
        let ctx = FlushContext {
            uptime_window: Duration::from_secs(86_400),
            check_interval: Duration::from_secs(30),
            checked_by: by,
        };
        store::flush(
            &db.pool,
            uuid::Uuid::new_v4(),
            &batch,
            &ctx,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    };
    let row = async || -> (Option<bool>, chrono::DateTime<chrono::Utc>, String) {
        sqlx::query_as(
            "SELECT is_healthy, last_health_check, checked_by FROM service_health_status
              WHERE service_type = 'svc'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    // Whole seconds: the row keeps microseconds, and must compare equal.
    let newer = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0);
    let older = newer - chrono::TimeDelta::seconds(30);
    let failed = || Outcome::failure(ErrorKind::Connect, "refused");

    // The daemon that now owns the service writes its check; then the previous owner flushes
    // its backlog, with an older check that failed.
    flush_one("new-owner", newer, Outcome::Success { status: 200 }, true).await;
    flush_one("old-owner", older, failed(), false).await;
    assert_eq!(
        row().await,
        (Some(true), newer, "new-owner".to_owned()),
        "the older check overwrote the newer one"
    );
    assert_eq!(
        rollup_checks(&db).await["svc"],
        2,
        "the older check still counts in the rollups"
    );

    // A newer check still replaces it.
    let newest = newer + chrono::TimeDelta::seconds(30);
    flush_one("old-owner", newest, failed(), false).await;
    assert_eq!(row().await, (Some(false), newest, "old-owner".to_owned()));
}
