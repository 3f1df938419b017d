//! Three daemons on one database split ~100 services: every service is checked exactly once
//! per interval; a stopped or killed daemon's services move to the others within the
//! heartbeat expiry plus one interval; a daemon that comes back takes its share again.

use std::collections::HashMap;
use std::time::Duration;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::TestDb;

const SERVICES: usize = 100;

fn config() -> String {
    fast_config(
        "interval = \"1s\"\ntimeout = \"500ms\"",
        "[cluster]\nheartbeat_ttl = \"3s\"\n",
    )
}

/// Checks each service received during `seconds`; each must be `seconds` ± 1 (one per interval).
async fn exactly_once_per_interval(servers: &[Server], seconds: u64, when: &str) {
    let before: Vec<usize> = servers.iter().map(Server::hits).collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let counts: Vec<usize> = servers
        .iter()
        .zip(&before)
        .map(|(s, b)| s.hits() - b)
        .collect();
    let low = seconds as usize - 1;
    let high = seconds as usize + 1;
    let off: Vec<(usize, usize)> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| !(low..=high).contains(*c))
        .map(|(i, c)| (i, *c))
        .collect();
    assert!(
        off.is_empty(),
        "{when}: services checked other than once per interval (index, checks in {seconds}s): {off:?}"
    );
}

/// How many services each daemon wrote last, by the pid in `checked_by`.
async fn shares(db: &TestDb) -> HashMap<u32, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT checked_by, count(*) FROM service_health_status WHERE checked_by IS NOT NULL GROUP BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(by, n)| (by.split(':').nth(1).unwrap().parse().unwrap(), n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_the_services_and_take_over_from_each_other() {
    let db = TestDb::migrated().await;
    let mut servers = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..SERVICES {
        let server = fleet::spawn(Behaviour::Healthy).await;
        ports.push(i32::from(server.port));
        servers.push(server);
    }
    sqlx::query(
        "INSERT INTO service_registry (service_type, name, display_name, port)
         SELECT 'svc_' || p, 'svc_' || p, 'svc ' || p, p FROM unnest($1::int[]) p",
    )
    .bind(&ports)
    .execute(&db.pool)
    .await
    .unwrap();

    let a = Daemon::start(&db.url, &config());
    let b = Daemon::start(&db.url, &config());
    let c = Daemon::start(&db.url, &config());
    tokio::time::sleep(Duration::from_secs(3)).await;
    exactly_once_per_interval(&servers, 4, "three daemons").await;
    let split = shares(&db).await;
    for d in [&a, &b, &c] {
        let n = split.get(&d.pid()).copied().unwrap_or(0);
        assert!(
            n >= 15,
            "daemon {} checks {n} of {SERVICES}: {split:?}",
            d.pid()
        );
    }

    // A clean stop hands the services over at once (the heartbeat row is deleted).
    let b_pid = b.pid();
    assert_eq!(b.stop().0, Some(0));
    tokio::time::sleep(Duration::from_secs(3 + 1)).await;
    exactly_once_per_interval(&servers, 4, "after one daemon stopped").await;
    assert!(
        !shares(&db).await.contains_key(&b_pid),
        "the stopped daemon's services were taken over"
    );

    // It comes back: it takes its share again, and still nothing is checked twice.
    let b = Daemon::start(&db.url, &config());
    tokio::time::sleep(Duration::from_secs(3)).await;
    exactly_once_per_interval(&servers, 4, "after it came back").await;
    let n = shares(&db).await.get(&b.pid()).copied().unwrap_or(0);
    assert!(n >= 15, "the returning daemon checks {n} services");

    // A daemon that dies (no clean stop): its heartbeat expires (3 s), then one interval.
    let c_pid = c.pid();
    c.signal("KILL");
    tokio::time::sleep(Duration::from_secs(3 + 1 + 1)).await;
    exactly_once_per_interval(&servers, 4, "after one daemon died").await;
    assert!(!shares(&db).await.contains_key(&c_pid));
    drop(c);
    a.stop();
    b.stop();
}
