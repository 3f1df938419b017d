//! The daemon when the things around it break: a database that goes silent (a black hole, not a
//! refusal), a shutdown during the silence with the results kept on disk and replayed once, a
//! crash and an immediate restart under the same node name, a second daemon under a name that is
//! taken, and a daemon cut off from the database for longer than the heartbeat ttl while another
//! takes its services over.

use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::{TestDb, eventually};
use crate::prober::{register, rollup_checks};
use crate::proxy::Proxy;

/// A fast configuration with a 1 s statement deadline; `daemon` and `cluster` are whole lines.
fn config(interval_ms: u64, daemon: &str, cluster: &str) -> String {
    format!(
        "[database]\nflush_interval = \"200ms\"\nconnect_timeout = \"1s\"\nstatement_timeout = \"1s\"\n\
         [probe]\ninterval = \"{interval_ms}ms\"\ntimeout = \"{}ms\"\n\
         [log]\nformat = \"json\"\nlevel = \"info\"\n\
         [http]\nlisten = \"\"\n\
         [daemon]\nshutdown_grace = \"2s\"\n{daemon}\n\
         [cluster]\n{cluster}\n",
        interval_ms * 4 / 5
    )
}

async fn healthy_fleet(db: &TestDb, n: usize) -> Vec<Server> {
    let mut servers = Vec::new();
    for i in 0..n {
        let server = fleet::spawn(Behaviour::Healthy).await;
        register(db, &format!("svc{i:02}"), server.port.into()).await;
        servers.push(server);
    }
    servers
}

fn hits(servers: &[Server]) -> usize {
    servers.iter().map(Server::hits).sum()
}

async fn total_checks(db: &TestDb) -> i64 {
    rollup_checks(db).await.values().sum()
}

fn count(events: &[serde_json::Value], event: &str) -> usize {
    events.iter().filter(|e| e["event"] == event).count()
}

/// Black-holed, the database is an outage within the statement deadline, once; SIGTERM during
/// the silence stops within the grace plus the deadline and keeps the unwritten results on disk;
/// the next start writes them exactly once, so the rollups hold every check made, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_costs_no_results_across_a_restart() {
    let db = TestDb::migrated().await;
    let servers = healthy_fleet(&db, 3).await;
    let proxy = Proxy::to_test_server().await;
    let state = tempfile::tempdir().unwrap();
    let daemon_cfg = format!("state_dir = {:?}", state.path().display().to_string());
    let cfg = config(300, &daemon_cfg, "heartbeat_ttl = \"3s\"");
    let daemon = Daemon::start(&proxy.url_for(&db), &cfg);
    eventually(
        "every service's checks written",
        Duration::from_secs(20),
        async || match rollup_checks(&db).await.len() {
            3 => Ok(()),
            n => Err(n),
        },
    )
    .await;

    proxy.black_hole();
    let silent_from = Instant::now();
    daemon.wait_for(|e| e["event"] == "db_unavailable", Duration::from_secs(15));
    let noticed_after = silent_from.elapsed();
    // Checking goes on while the database is silent.
    let at_silence = hits(&servers);
    eventually("checks go on", Duration::from_secs(20), async || {
        match hits(&servers) - at_silence {
            n if n >= 15 => Ok(()),
            n => Err(n),
        }
    })
    .await;

    let stopping = Instant::now();
    let (code, events) = daemon.stop();
    let stop_took = stopping.elapsed();
    let made = hits(&servers) as i64;
    assert_eq!(code, Some(0));
    assert_eq!(count(&events, "db_unavailable"), 1, "one outage, one event");
    assert_eq!(count(&events, "results_lost"), 0, "{events:#?}");
    let spilled = events
        .iter()
        .find(|e| e["event"] == "results_spilled")
        .unwrap_or_else(|| panic!("no results_spilled: {events:#?}"));
    let spilled_checks = spilled["checks"].as_i64().unwrap();
    assert!(spilled_checks >= 15, "{spilled}");
    // The grace (2 s) and the statement deadline (1 s) plus slack; before, it waited for the
    // database for as long as it stayed away.
    assert!(
        stop_took < Duration::from_secs(9),
        "stop took {stop_took:?}"
    );
    eprintln!("db_unavailable after {noticed_after:?}; stopped in {stop_took:?}");

    // Back, with the services out of the registry's available set, so the next daemon checks
    // nothing and the rollups hold exactly what the first one made.
    proxy.restore();
    sqlx::query("UPDATE service_registry SET is_available = false")
        .execute(&db.pool)
        .await
        .unwrap();
    for round in 0..2 {
        let replayer = Daemon::start(&db.url, &cfg);
        let (code, events) = replayer.stop();
        assert_eq!(code, Some(0));
        let replayed: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "results_replayed")
            .collect();
        match round {
            0 => assert_eq!(replayed.len(), 1, "{events:#?}"),
            _ => assert!(replayed.is_empty(), "replayed twice: {replayed:?}"),
        }
        if round == 0 {
            assert_eq!(replayed[0]["checks"].as_i64(), Some(spilled_checks));
        }
    }
    let recorded = total_checks(&db).await;
    assert_eq!(
        recorded, made,
        "every check made is recorded once (made {made}, recorded {recorded})"
    );
    let left = std::fs::read_dir(state.path()).unwrap().count();
    assert_eq!(left, 0, "the spill file is removed once written");
}

/// `kill -9` and an immediate restart under the same node name: the new process owns its
/// services at once (it does not wait out the dead one's 30 s heartbeat) and checks resume
/// within an interval; a second live daemon under that name refuses to start; expired
/// heartbeat rows are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_takes_its_services_back_at_once() {
    let db = TestDb::migrated().await;
    let servers = healthy_fleet(&db, 2).await;
    sqlx::query(
        "INSERT INTO daemon_heartbeats (daemon_id, host, expires_at)
         VALUES ('ghost', 'gone', now() - interval '1 hour')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let cfg = config(1000, "", "heartbeat_ttl = \"30s\"");
    let name = [("MCP_HEALTHD_NODE_NAME", "node-x")];
    let mut first = Daemon::spawn(&db.url, &cfg, &name);
    first.wait_for(|e| e["event"] == "daemon_started", Duration::from_secs(20));
    let before = hits(&servers);
    eventually(
        "the first daemon checks",
        Duration::from_secs(10),
        async || match hits(&servers) - before {
            n if n >= 2 => Ok(()),
            n => Err(n),
        },
    )
    .await;

    first.signal("KILL");
    eventually(
        "the first daemon is dead",
        Duration::from_secs(10),
        async || first.try_exit().ok_or("running"),
    )
    .await;
    let second = Daemon::spawn(&db.url, &cfg, &name);
    let started = second.wait_for(|e| e["event"] == "daemon_started", Duration::from_secs(20));
    assert_eq!(started["services"], 2, "owns both at once: {started}");
    let restarted = Instant::now();
    let at_restart: Vec<usize> = servers.iter().map(Server::hits).collect();
    eventually(
        "each service checked again",
        Duration::from_secs(10),
        async || {
            let fresh: Vec<usize> = servers.iter().map(Server::hits).collect();
            match fresh.iter().zip(&at_restart).all(|(now, then)| now > then) {
                true => Ok(()),
                false => Err(fresh),
            }
        },
    )
    .await;
    eprintln!("checks resumed {:?} after the restart", restarted.elapsed());

    let mut twin = Daemon::spawn(&db.url, &cfg, &name);
    let code = eventually("the twin exits", Duration::from_secs(20), async || {
        twin.try_exit().ok_or("running")
    })
    .await;
    assert_ne!(code, Some(0));
    let log = twin.raw_log();
    assert!(
        log.contains("another mcp-healthd with node name") && log.contains("node-x"),
        "{log}"
    );

    let rows: Vec<String> = sqlx::query_scalar("SELECT daemon_id FROM daemon_heartbeats")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, ["node-x"], "the ghost's expired row is deleted");
    let (code, _) = second.stop();
    assert_eq!(code, Some(0));
}

/// Two daemons; one is cut off from the database (black hole) for several ttls. It stops
/// checking once its heartbeat lapses (fenced), the other takes its services over, and when it
/// comes back it takes its share only after a hand-over. Every service's rollups then hold no
/// more than one check per interval, and none are lost beyond the takeover gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_cut_off_past_its_ttl_never_double_counts() {
    const INTERVAL: f64 = 1.0;
    const TTL: f64 = 2.0;
    let db = TestDb::migrated().await;
    let servers = healthy_fleet(&db, 12).await;
    let proxy = Proxy::to_test_server().await;
    let cfg = config(1000, "", "heartbeat_ttl = \"2s\"");
    let began = Instant::now();
    let a = Daemon::start(&proxy.url_for(&db), &cfg);
    let b = Daemon::start(&db.url, &cfg);
    a.wait_for(
        |e| e["event"] == "membership_changed" && e["members"] == 2,
        Duration::from_secs(15),
    );

    proxy.black_hole();
    a.wait_for(|e| e["event"] == "fenced", Duration::from_secs(15));
    b.wait_for(
        |e| e["event"] == "membership_changed" && e["members"] == 1,
        Duration::from_secs(15),
    );
    // Cut off for a while longer: unfenced, A would go on checking its services all along while
    // B checks them too, and flush those checks on reconnection (8 to 10 extra each).
    let cut_until = Instant::now() + Duration::from_secs(8);
    eventually(
        "cut off for 8 s more",
        Duration::from_secs(12),
        async || (Instant::now() >= cut_until).then_some(()).ok_or("waiting"),
    )
    .await;
    proxy.restore();
    a.wait_for(|e| e["event"] == "fence_lifted", Duration::from_secs(20));
    a.wait_for(|e| e["event"] == "handover_done", Duration::from_secs(20));

    let (code_a, events_a) = a.stop();
    let (code_b, _) = b.stop();
    let window = began.elapsed().as_secs_f64();
    assert_eq!((code_a, code_b), (Some(0), Some(0)));
    assert_eq!(count(&events_a, "results_lost"), 0);
    let checks = rollup_checks(&db).await;
    assert_eq!(checks.len(), servers.len());
    // At most one check per interval: + 1 for the window's fence post, + 1 for the first
    // round after start (compressed into 0.6 interval), + 1 of slack for a hand-over (two
    // daemons' slot grids differ). Seen: 11 or 12 checks in a 14 s window. At least all but
    // the takeover gap (the ttl and a third of it) and start-up.
    let most = (window / INTERVAL).floor() as i64 + 3;
    let least = ((window - TTL * 4.0 / 3.0 - 5.0) / INTERVAL).floor() as i64;
    let off: Vec<_> = checks
        .iter()
        .filter(|(_, n)| !(least..=most).contains(*n))
        .collect();
    assert!(
        off.is_empty(),
        "over {window:.1} s each service needs {least}..={most} checks; off: {off:?}; \
         probes the servers saw: {:?}",
        servers.iter().map(Server::hits).collect::<Vec<_>>()
    );
}

/// A node-name lock held by a session whose name has no live heartbeat (a host that died
/// without closing its connection, which the server would notice only hours later) is ended by
/// the next daemon of that name, which then starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_name_lock_without_a_heartbeat_is_ended() {
    let db = TestDb::migrated().await;
    let mut leftover = db.pool.acquire().await.unwrap();
    // The key the daemon uses: ("mcp", hashtext(name)).
    sqlx::query("SELECT pg_advisory_lock(7168880, hashtext('node-z'))")
        .execute(&mut *leftover)
        .await
        .unwrap();
    let cfg = config(1000, "", "heartbeat_ttl = \"3s\"");
    let daemon = Daemon::spawn(&db.url, &cfg, &[("MCP_HEALTHD_NODE_NAME", "node-z")]);
    daemon.wait_for(|e| e["event"] == "daemon_started", Duration::from_secs(20));
    let gone = sqlx::query("SELECT 1").execute(&mut *leftover).await;
    assert!(gone.is_err(), "the leftover session was ended");
    leftover.close_on_drop();
    assert_eq!(daemon.stop().0, Some(0));
}
