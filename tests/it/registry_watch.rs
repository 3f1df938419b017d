//! Registry changes reach a running daemon without a restart: within one refresh interval,
//! and within a second through the registry trigger's NOTIFY.

use std::time::{Duration, Instant};

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::TestDb;
use crate::prober::register;

/// Waits until `server` has received a request after now; returns how long that took.
async fn next_hit(server: &Server, limit: Duration) -> Duration {
    let start = Instant::now();
    let before = server.hits();
    while server.hits() == before {
        assert!(start.elapsed() < limit, "no check within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Asserts `server` receives nothing for `quiet` (after letting in-flight checks land).
async fn stays_quiet(server: &Server, quiet: Duration) {
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = server.hits();
    tokio::time::sleep(quiet).await;
    assert_eq!(server.hits(), before, "still being checked");
}

async fn changes_take_effect(refresh: &str, limit: Duration) {
    let db = TestDb::migrated().await;
    let a = fleet::spawn(Behaviour::Healthy).await;
    let b = fleet::spawn(Behaviour::Healthy).await;
    let c_old = fleet::spawn(Behaviour::Healthy).await;
    let c_new = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "a", a.port.into()).await;
    register(&db, "c", c_old.port.into()).await;
    let config = fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"",
        &format!("[registry]\nrefresh_interval = \"{refresh}\"\n"),
    );
    let daemon = Daemon::start(&db.url, &config);
    next_hit(&a, Duration::from_secs(2)).await;

    // A new row starts being checked.
    register(&db, "b", b.port.into()).await;
    let took = next_hit(&b, limit).await;
    eprintln!("new service checked after {took:?}");

    // A row set unavailable stops being checked.
    sqlx::query("UPDATE service_registry SET is_available = false WHERE service_type = 'a'")
        .execute(&db.pool)
        .await
        .unwrap();
    tokio::time::sleep(limit).await;
    stays_quiet(&a, Duration::from_millis(600)).await;

    // A changed port is probed at the new port, and no longer at the old one.
    sqlx::query("UPDATE service_registry SET port = $1 WHERE service_type = 'c'")
        .bind(i32::from(c_new.port))
        .execute(&db.pool)
        .await
        .unwrap();
    let took = next_hit(&c_new, limit).await;
    eprintln!("changed port checked after {took:?}");
    stays_quiet(&c_old, Duration::from_millis(600)).await;

    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_take_effect_within_one_refresh() {
    // NOTIFY is still on; this bounds the periodic path at refresh + one interval regardless.
    changes_take_effect("1s", Duration::from_millis(1500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_take_effect_within_a_second_through_notify() {
    // A refresh interval far longer than the test: only the NOTIFY can explain a prompt reaction.
    changes_take_effect("10m", Duration::from_secs(1)).await;
}
