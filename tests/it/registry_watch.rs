//! Registry changes reach a running daemon without a restart: through the periodic refresh on
//! its own (with the registry's NOTIFY trigger disabled), and promptly through that NOTIFY.

use std::time::{Duration, Instant};

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::{TestDb, eventually};
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

/// Asserts `server` receives nothing for `quiet`: an absence, so inherently a length of time.
/// Called once the daemon has logged the change; a check already in flight then ends within
/// the 150 ms timeout, hence the settling pause first.
async fn stays_quiet(server: &Server, quiet: Duration) {
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = server.hits();
    tokio::time::sleep(quiet).await;
    assert_eq!(server.hits(), before, "still being checked");
}

/// Waits until the daemon has applied one more registry change than `seen`; returns the count.
async fn next_change(daemon: &Daemon, seen: usize, limit: Duration) -> usize {
    eventually("a registry change applied", limit, async || {
        let n = daemon
            .events()
            .iter()
            .filter(|e| e["event"] == "registry_changed")
            .count();
        match n > seen {
            true => Ok(n),
            false => Err(daemon.raw_log()),
        }
    })
    .await
}

/// Adds, disables and moves services under a running daemon; each change must take effect
/// within `limit`.
async fn changes_take_effect(db: &TestDb, refresh: &str, limit: Duration) {
    let a = fleet::spawn(Behaviour::Healthy).await;
    let b = fleet::spawn(Behaviour::Healthy).await;
    let c_old = fleet::spawn(Behaviour::Healthy).await;
    let c_new = fleet::spawn(Behaviour::Healthy).await;
    register(db, "a", a.port.into()).await;
    register(db, "c", c_old.port.into()).await;
    let config = fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"",
        &format!("[registry]\nrefresh_interval = \"{refresh}\"\n"),
    );
    let daemon = Daemon::start(&db.url, &config);
    next_hit(&a, Duration::from_secs(5)).await;
    let changes = daemon
        .events()
        .iter()
        .filter(|e| e["event"] == "registry_changed")
        .count();

    // A new row starts being checked.
    register(db, "b", b.port.into()).await;
    let took = next_hit(&b, limit).await;
    eprintln!("new service checked after {took:?}");
    let changes = next_change(&daemon, changes, limit).await;

    // A row set unavailable stops being checked.
    sqlx::query("UPDATE service_registry SET is_available = false WHERE service_type = 'a'")
        .execute(&db.pool)
        .await
        .unwrap();
    let changes = next_change(&daemon, changes, limit).await;
    stays_quiet(&a, Duration::from_millis(600)).await;

    // A changed port is probed at the new port, and no longer at the old one.
    sqlx::query("UPDATE service_registry SET port = $1 WHERE service_type = 'c'")
        .bind(i32::from(c_new.port))
        .execute(&db.pool)
        .await
        .unwrap();
    let took = next_hit(&c_new, limit).await;
    eprintln!("changed port checked after {took:?}");
    next_change(&daemon, changes, limit).await;
    stays_quiet(&c_old, Duration::from_millis(600)).await;

    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_take_effect_within_one_refresh() {
    let db = TestDb::migrated().await;
    // No NOTIFY: only the periodic refresh can bring the changes in.
    sqlx::query("ALTER TABLE service_registry DISABLE TRIGGER service_registry_notify_changed")
        .execute(&db.pool)
        .await
        .unwrap();
    // One refresh (1 s), then the next slot (at most one 200 ms interval); the rest is slack
    // for a busy machine.
    changes_take_effect(&db, "1s", Duration::from_secs(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_changes_take_effect_promptly_through_notify() {
    let db = TestDb::migrated().await;
    // A refresh interval far longer than the test: only the NOTIFY can explain the reactions.
    changes_take_effect(&db, "1h", Duration::from_secs(10)).await;
}
