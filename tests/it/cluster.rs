//! Three daemons on one database split ~100 services: every service is checked exactly once
//! per interval; a stopped or killed daemon's services move to the others (a killed one's once
//! its heartbeat expires); a daemon that comes back takes its share again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::{TestDb, eventually};

const SERVICES: usize = 100;

fn config() -> String {
    fast_config(
        "interval = \"1s\"\ntimeout = \"500ms\"",
        "[cluster]\nheartbeat_ttl = \"3s\"\n",
    )
}

/// Counts each service's checks over a window of about `seconds`; `Err` names those checked
/// other than once per interval (± 1 against the window's measured length).
async fn once_per_interval(servers: &[Server], seconds: u64) -> Result<(), String> {
    let start = Instant::now();
    let before: Vec<usize> = servers.iter().map(Server::hits).collect();
    // The measuring window itself: a rate is a count over a length of time.
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let counts: Vec<usize> = servers
        .iter()
        .zip(&before)
        .map(|(s, b)| s.hits() - b)
        .collect();
    let measured = start.elapsed().as_secs_f64();
    let low = (measured.floor() as usize).saturating_sub(1);
    let high = measured.ceil() as usize + 1;
    let off: Vec<(usize, usize)> = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| !(low..=high).contains(*c))
        .map(|(i, c)| (i, *c))
        .collect();
    match off.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "services checked other than once per interval (index, checks in {measured:.1} s): {off:?}"
        )),
    }
}

/// Waits until every service is checked once per interval and `split` accepts who wrote the
/// status rows last (a hand-over in progress takes a few seconds; the limit bounds failure).
async fn settles(
    db: &TestDb,
    servers: &[Server],
    when: &str,
    split: impl Fn(&HashMap<u32, i64>) -> Result<(), String>,
) {
    eventually(when, Duration::from_secs(45), async || {
        once_per_interval(servers, 4).await?;
        let shares = shares(db).await;
        split(&shares).map_err(|why| format!("{why}; status rows by pid: {shares:?}"))
    })
    .await;
}

/// `Ok` if each of `pids` wrote the last status of at least 15 services.
fn each_has_a_share(pids: &[u32], split: &HashMap<u32, i64>) -> Result<(), String> {
    for pid in pids {
        let n = split.get(pid).copied().unwrap_or(0);
        if n < 15 {
            return Err(format!("daemon {pid} checks {n} of {SERVICES}"));
        }
    }
    Ok(())
}

fn has_no_share(pid: u32, split: &HashMap<u32, i64>) -> Result<(), String> {
    match split.contains_key(&pid) {
        true => Err(format!(
            "daemon {pid} still wrote the last status of some services"
        )),
        false => Ok(()),
    }
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
    let all = [a.pid(), b.pid(), c.pid()];
    settles(&db, &servers, "three daemons share the services", |split| {
        each_has_a_share(&all, split)
    })
    .await;

    // A clean stop hands the services over at once (the heartbeat row is deleted).
    let b_pid = b.pid();
    assert_eq!(b.stop().0, Some(0));
    settles(
        &db,
        &servers,
        "the stopped daemon's services taken over",
        |split| has_no_share(b_pid, split),
    )
    .await;

    // It comes back: it takes its share again, and still nothing is checked twice.
    let b = Daemon::start(&db.url, &config());
    let all = [a.pid(), b.pid(), c.pid()];
    settles(
        &db,
        &servers,
        "the returning daemon takes its share",
        |split| each_has_a_share(&all, split),
    )
    .await;

    // A daemon that dies (no clean stop): its services move once its heartbeat expires (3 s).
    let c_pid = c.pid();
    c.signal("KILL");
    settles(
        &db,
        &servers,
        "the dead daemon's services taken over",
        |split| has_no_share(c_pid, split),
    )
    .await;
    drop(c);
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_taken_over_while_down_stays_down_without_a_second_alert() {
    let db = TestDb::migrated().await;
    let config = fast_config(
        "interval = \"300ms\"\ntimeout = \"250ms\"",
        "[cluster]\nheartbeat_ttl = \"3s\"\n",
    );
    let a = Daemon::start(&db.url, &config);
    let b = Daemon::start(&db.url, &config);
    // B saw A in its first heartbeat; A sees B at its next one.
    a.wait_for(
        |e| e["event"] == "membership_changed" && e["members"] == 2,
        Duration::from_secs(15),
    );
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT daemon_id, instance FROM daemon_heartbeats WHERE expires_at > now() ORDER BY daemon_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let pid_of = |id: &str| id.split(':').nth(1).unwrap().parse::<u32>().unwrap();
    let members: Vec<String> = rows.iter().map(|(name, _)| name.clone()).collect();
    let a_id = rows
        .iter()
        .find(|(_, instance)| pid_of(instance) == a.pid())
        .expect("A's heartbeat")
        .0
        .clone();
    // A failing service that A owns while both run.
    let name = (0..)
        .map(|i| format!("down{i}"))
        .find(|n| mcp_healthd::cluster::owner(&members, n) == Some(a_id.as_str()))
        .unwrap();
    let failing = fleet::spawn(Behaviour::Status(500)).await;
    sqlx::query(
        "INSERT INTO service_registry (service_type, name, display_name, port) VALUES ($1, $1, $1, $2)",
    )
    .bind(&name)
    .bind(i32::from(failing.port))
    .execute(&db.pool)
    .await
    .unwrap();
    let is_down =
        |e: &serde_json::Value| e["event"] == "service_down" && e["service_type"] == *name;
    a.wait_for(is_down, Duration::from_secs(15));
    let status = async || -> (Option<bool>, i32, u32) {
        let (healthy, failures, by): (Option<bool>, i32, Option<String>) = sqlx::query_as(
            "SELECT is_healthy, consecutive_failures, checked_by FROM service_health_status
              WHERE service_type = $1",
        )
        .bind(&name)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (healthy, failures, by.as_deref().map_or(0, pid_of))
    };
    let before = eventually(
        "A writes the service down",
        Duration::from_secs(15),
        async || match status().await {
            (Some(false), failures, by) if by == a.pid() => Ok(failures),
            other => Err(other),
        },
    )
    .await;

    // A stops; B takes the service over and checks it more times than the failure threshold.
    let (code, a_events) = a.stop();
    assert_eq!(code, Some(0));
    assert_eq!(a_events.iter().filter(|e| is_down(e)).count(), 1);
    let b_pid = b.pid();
    eventually(
        "B checks the service it took over",
        Duration::from_secs(20),
        async || match status().await {
            (healthy, failures, by) if by == b_pid && failures > before + 3 => Ok(healthy),
            other => Err(other),
        },
    )
    .await;
    assert_eq!(status().await.0, Some(false), "still down under B");
    let (code, b_events) = b.stop();
    assert_eq!(code, Some(0));
    let alerts: Vec<_> = b_events.iter().filter(|e| is_down(e)).collect();
    assert!(
        alerts.is_empty(),
        "B alerted again for a service A had already reported down: {alerts:#?}"
    );
    assert!(
        b_events
            .iter()
            .any(|e| e["event"] == "membership_changed" && e["members"] == 1),
        "B took over through a membership change"
    );
}
