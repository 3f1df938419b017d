//! The daemon across a database outage and a restart: nothing is lost, nothing alerted twice.

use std::time::Duration;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour};
use crate::helpers::TestDb;
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut();
    daemon.wait_for(|e| e["event"] == "db_unavailable", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during: Vec<usize> = servers.iter().map(|s| s.hits()).collect();
    proxy.restore();
    daemon.wait_for(|e| e["event"] == "db_recovered", Duration::from_secs(15));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, events) = daemon.stop();
    assert_eq!(code, Some(0), "the daemon stayed up and stopped cleanly");
    assert_eq!(
        count(&events, "db_unavailable"),
        1,
        "logged once per outage"
    );
    assert_eq!(count(&events, "db_recovered"), 1);
    assert!(
        during.iter().all(|&h| h > 30),
        "checks went on during the outage: {during:?}"
    );

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
    tokio::time::sleep(Duration::from_secs(2)).await;
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
