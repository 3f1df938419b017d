//! Fewer false alerts (issue 12), end to end: the real daemon against real loopback servers whose
//! answers follow a script, and the real PostgreSQL. Windowed failures, flapping, certificates
//! about to expire, maintenance windows, monitor-side outages (a whole server killed; a canary
//! on a closed port), and the incident rows.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::closed_port;
use crate::helpers::{TestDb, eventually, healthd, text};
use crate::scripted::Scripted;
use crate::tls::{TestCa, https_server};

const LONG: Duration = Duration::from_secs(30);

/// A registry row checked at `base_url` + `/health`; `port` only has to be unique.
async fn register(db: &TestDb, service: &str, port: i32, base_url: &str) {
    sqlx::query(
        "INSERT INTO service_registry (service_type, name, display_name, port, category, base_url)
         VALUES ($1, $1, $1, $2, 'test', $3)",
    )
    .bind(service)
    .bind(port)
    .bind(base_url)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// `maintenance add --service SERVICE --for 1h --reason REASON` by the real binary; its id.
fn add_window(env: &[(&str, &str)], service: &str, reason: &str) -> String {
    let added = healthd(
        &[
            "maintenance",
            "add",
            "--service",
            service,
            "--for",
            "1h",
            "--reason",
            reason,
        ],
        env,
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    text(&added.stdout).trim().to_owned()
}

fn count(events: &[Value], event: &str, service: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == event && e["service_type"] == service)
        .count()
}

fn names(events: &[Value], service: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["service_type"] == service)
        .filter_map(|e| e["event"].as_str().map(str::to_owned))
        .filter(|e| e.starts_with("service_") || e == "certificate_expiring")
        .collect()
}

/// (status, uptime, consecutive_failures) of one service on the dashboard.
async fn dashboard(db: &TestDb, service: &str) -> (String, Option<f64>, Option<i32>) {
    sqlx::query_as(
        "SELECT status, uptime_percentage, consecutive_failures
           FROM service_health_dashboard WHERE service_type = $1",
    )
    .bind(service)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// (checks, failures, maintenance_checks, inconclusive_checks) of a service over its rollups.
async fn rollups(db: &TestDb, service: &str) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT coalesce(sum(checks), 0)::int8, coalesce(sum(failures), 0)::int8,
                coalesce(sum(maintenance_checks), 0)::int8, coalesce(sum(inconclusive_checks), 0)::int8
           FROM service_health_rollups WHERE service_type = $1",
    )
    .bind(service)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_failing_every_other_check_goes_down_only_with_a_failure_window() {
    let probe = |window: u32| {
        format!(
            "interval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 3\n\
             success_threshold = 2\nfailure_window = {window}"
        )
    };
    let (windowed, consecutive) = (TestDb::migrated().await, TestDb::migrated().await);
    let (a, b) = (Scripted::spawn("F.").await, Scripted::spawn("F.").await);
    register(&windowed, "alternating", 20001, &a.url()).await;
    register(&consecutive, "alternating", 20001, &b.url()).await;
    let with_window = Daemon::start(&windowed.url, &fast_config(&probe(6), ""));
    let without = Daemon::start(&consecutive.url, &fast_config(&probe(0), ""));
    let down = with_window.wait_for(|e| e["event"] == "service_down", LONG);
    assert_eq!(down["error_kind"], "status");
    // The consecutive rule never sees 3 failures in a row: 30 checks and no alert.
    eventually("30 checks of the consecutive daemon", LONG, async || {
        (b.hits() >= 30).then_some(()).ok_or(b.hits())
    })
    .await;
    let (_, events) = without.stop();
    assert_eq!(names(&events, "alternating"), Vec::<String>::new());
    let (_, events) = with_window.stop();
    assert_eq!(
        names(&events, "alternating"),
        ["service_down"],
        "down once, and it stays down: never 2 successes in a row"
    );
    assert_eq!(dashboard(&windowed, "alternating").await.0, "down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_service_alerts_once_until_it_holds_one_state() {
    let db = TestDb::migrated().await;
    let server = Scripted::spawn("...FFF").await;
    register(&db, "flappy", 20001, &server.url()).await;
    let config = fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 3\nsuccess_threshold = 1",
        "[alerts]\nflap_window = \"5s\"\nflap_changes = 4\n",
    );
    let daemon = Daemon::start(&db.url, &config);
    daemon.wait_for(|e| e["event"] == "service_flapping", LONG);
    // Keep cycling for 8 more down/up rounds: nothing more is alerted.
    let cycled = server.hits() + 48;
    eventually("8 more cycles", LONG, async || {
        (server.hits() >= cycled).then_some(()).ok_or(server.hits())
    })
    .await;
    let seen = names(&daemon.events(), "flappy");
    assert_eq!(
        seen,
        [
            "service_down",
            "service_up",
            "service_down",
            "service_flapping"
        ],
        "one service_flapping on the 4th change, then quiet"
    );
    let flapping: bool = sqlx::query_scalar(
        "SELECT flapping FROM service_health_dashboard WHERE service_type = 'flappy'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(flapping, "the dashboard flags it");
    // Stable: after a whole flap window up, flapping ends and the alert catches up.
    server.set(".");
    let ended = daemon.wait_for(|e| e["event"] == "service_flapping_ended", LONG);
    assert_eq!(ended["state"], "up");
    daemon.wait_for(
        |e| e["event"] == "service_up" && e["service_type"] == "flappy",
        LONG,
    );
    let (_, events) = daemon.stop();
    assert_eq!(
        names(&events, "flappy"),
        [
            "service_down",
            "service_up",
            "service_down",
            "service_flapping",
            "service_flapping_ended",
            "service_up"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_about_to_expire_is_degraded_never_down_and_an_expired_one_fails() {
    let db = TestDb::migrated().await;
    let ca = TestCa::new();
    let soon = https_server(&ca, Utc::now() + TimeDelta::days(5)).await;
    let expired = https_server(&ca, Utc::now() - TimeDelta::days(1)).await;
    register(&db, "expiring", 20001, &soon.url()).await;
    register(&db, "expired", 20002, &expired.url()).await;
    let probe = format!(
        "interval = \"300ms\"\ntimeout = \"300ms\"\nfailure_threshold = 2\nca_file = \"{}\"",
        ca.pem_path().display()
    );
    let config = fast_config(&probe, "");
    let daemon = Daemon::start(&db.url, &config);
    let warned = daemon.wait_for(|e| e["event"] == "certificate_expiring", LONG);
    assert_eq!(warned["service_type"], "expiring");
    assert!(
        matches!(warned["days_left"].as_i64(), Some(4 | 5)),
        "{warned}"
    );
    let not_after: DateTime<Utc> = warned["not_after"].as_str().unwrap().parse().unwrap();
    assert_eq!(not_after, soon.not_after());
    // Many more checks: still degraded, one warning only.
    eventually("20 checks of the expiring service", LONG, async || {
        let successes: i32 = sqlx::query_scalar(
            "SELECT consecutive_successes FROM service_health_status WHERE service_type = 'expiring'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (successes >= 20).then_some(()).ok_or(successes)
    })
    .await;
    let (status, reason, stored): (String, Option<String>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT status, degraded_reason, tls_not_after
               FROM service_health_dashboard WHERE service_type = 'expiring'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(status, "degraded");
    assert!(reason.unwrap().starts_with("certificate expires"));
    assert_eq!(stored, Some(soon.not_after()));
    let (status, _, _) = dashboard(&db, "expired").await;
    assert_eq!(status, "down");
    let (_, events) = daemon.stop();
    assert_eq!(
        names(&events, "expiring"),
        ["certificate_expiring", "service_degraded"]
    );
    let down: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "service_down")
        .collect();
    assert_eq!(down.len(), 1, "only the expired one goes down");
    assert_eq!(down[0]["service_type"], "expired");
    assert_eq!(down[0]["error_kind"], "tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_holds_alerts_and_uptime_and_a_service_still_down_is_alerted_after() {
    let db = TestDb::migrated().await;
    let server = Scripted::spawn(".").await;
    register(&db, "planned", 20001, &server.url()).await;
    let config = fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 2",
        "",
    );
    let daemon = Daemon::start(&db.url, &config);
    eventually("healthy with uptime", LONG, async || {
        match dashboard(&db, "planned").await {
            (s, Some(u), _) if s == "up" => Ok(u),
            other => Err(other),
        }
    })
    .await;
    let env = [("DATABASE_URL", db.url.expose())];
    let id = add_window(&env, "planned", "disk swap");
    daemon.wait_for(|e| e["event"] == "maintenance_started", LONG);
    server.set("F");
    eventually("10 failed checks in the window", LONG, async || {
        let (_, _, maintenance, _) = rollups(&db, "planned").await;
        let (status, _, failures) = dashboard(&db, "planned").await;
        (maintenance >= 10 && failures >= Some(10) && status == "maintenance")
            .then_some(())
            .ok_or((maintenance, status, failures))
    })
    .await;
    assert_eq!(names(&daemon.events(), "planned"), Vec::<String>::new());
    let (_, uptime, _) = dashboard(&db, "planned").await;
    assert_eq!(uptime, Some(100.0), "checks in the window are left out");
    let (_, failures, _, _) = rollups(&db, "planned").await;
    assert_eq!(failures, 0);
    // Ended while the service is still down: alerted then, and an incident opens.
    let ended = healthd(&["maintenance", "end", &id], &env);
    assert!(ended.status.success(), "{}", text(&ended.stderr));
    daemon.wait_for(|e| e["event"] == "maintenance_ended", LONG);
    let down = daemon.wait_for(|e| e["event"] == "service_down", LONG);
    assert_eq!(down["service_type"], "planned");
    eventually("the incident is open", LONG, async || {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM service_incidents WHERE service_type = 'planned' AND ended_at IS NULL",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (open == 1).then_some(()).ok_or(open)
    })
    .await;
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_behind_a_dozen_services_is_one_monitor_outage_and_no_downtime() {
    let db = TestDb::migrated().await;
    let mut server = Scripted::spawn(".").await;
    let services: Vec<String> = (0..12).map(|i| format!("svc{i:02}")).collect();
    for (i, s) in services.iter().enumerate() {
        register(&db, s, 20001 + i as i32, &server.url()).await;
    }
    let config = fast_config(
        "interval = \"500ms\"\ntimeout = \"300ms\"\nfailure_threshold = 2",
        "",
    );
    let daemon = Daemon::start(&db.url, &config);
    eventually("all 12 up", LONG, async || {
        let up: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM service_health_dashboard WHERE status = 'up' AND uptime_percentage = 100",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (up == 12).then_some(()).ok_or(up)
    })
    .await;
    server.kill().await;
    let outage = daemon.wait_for(|e| e["event"] == "monitor_outage", LONG);
    assert_eq!(outage["reason"], "mass_failure");
    assert_eq!(outage["total"], 12);
    eventually("every service has inconclusive checks", LONG, async || {
        let mut short = Vec::new();
        for s in &services {
            if rollups(&db, s).await.3 < 3 {
                short.push(s.clone());
            }
        }
        short.is_empty().then_some(()).ok_or(short)
    })
    .await;
    server.restart().await;
    daemon.wait_for(|e| e["event"] == "monitor_recovered", LONG);
    let (_, events) = daemon.stop();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "monitor_outage")
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "service_down")
            .count(),
        0
    );
    for s in &services {
        let (_, failures, _, inconclusive) = rollups(&db, s).await;
        assert_eq!(failures, 0, "{s}: no failure counts against it");
        assert!(inconclusive >= 3, "{s}");
        let (_, uptime, _) = dashboard(&db, s).await;
        assert_eq!(uptime, Some(100.0), "{s}: no uptime lost");
    }
    let incidents: i64 = sqlx::query_scalar("SELECT count(*) FROM service_incidents")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(incidents, 0, "a monitor-side outage opens no incident");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_canary_failing_makes_failures_inconclusive() {
    let db = TestDb::migrated().await;
    let canary = closed_port().await.unwrap();
    let (failing, healthy) = (Scripted::spawn("F").await, Scripted::spawn(".").await);
    register(&db, "failing", 20001, &failing.url()).await;
    register(&db, "healthy", 20002, &healthy.url()).await;
    let config = fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 2",
        &format!(
            "[alerts]\ncanaries = [\"http://127.0.0.1:{}/\"]\n",
            canary.port
        ),
    );
    let daemon = Daemon::start(&db.url, &config);
    let outage = daemon.wait_for(|e| e["event"] == "monitor_outage", LONG);
    assert_eq!(outage["reason"], "canaries");
    eventually(
        "inconclusive checks of the failing service",
        LONG,
        async || {
            let r = rollups(&db, "failing").await;
            (r.3 >= 10).then_some(()).ok_or(r)
        },
    )
    .await;
    let (_, events) = daemon.stop();
    assert_eq!(count(&events, "service_down", "failing"), 0);
    let (status, uptime, _) = dashboard(&db, "healthy").await;
    assert_eq!((status.as_str(), uptime), ("up", Some(100.0)));
}

/// started_at, ended_at, error_kind, error_message, failed_checks
type IncidentRow = (
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    i32,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_row_spans_the_down_period() {
    let db = TestDb::migrated().await;
    let server = Scripted::spawn(".").await;
    register(&db, "wobbly", 20001, &server.url()).await;
    let config = fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 3",
        "",
    );
    let daemon = Daemon::start(&db.url, &config);
    eventually("up", LONG, async || match dashboard(&db, "wobbly").await {
        (s, _, _) if s == "up" => Ok(()),
        other => Err(other),
    })
    .await;
    server.set("F");
    let down = daemon.wait_for(|e| e["event"] == "service_down", LONG);
    let failed_from = server.hits();
    eventually("5 more failures", LONG, async || {
        (server.hits() >= failed_from + 5)
            .then_some(())
            .ok_or(server.hits())
    })
    .await;
    server.set(".");
    let up = daemon.wait_for(|e| e["event"] == "service_up", LONG);
    let (started, ended, kind, message, failed): IncidentRow =
        eventually("the incident is closed", LONG, async || {
            sqlx::query_as(
                "SELECT started_at, ended_at, error_kind, error_message, failed_checks
               FROM service_incidents WHERE service_type = 'wobbly' AND ended_at IS NOT NULL",
            )
            .fetch_one(&db.pool)
            .await
        })
        .await;
    daemon.stop();
    let logged = |e: &Value| -> DateTime<Utc> { e["timestamp"].as_str().unwrap().parse().unwrap() };
    let near = |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).abs() < TimeDelta::seconds(1);
    assert!(near(started, logged(&down)), "{started} vs {down}");
    assert!(near(ended.unwrap(), logged(&up)), "{ended:?} vs {up}");
    assert_eq!(kind.as_deref(), Some("status"));
    assert!(message.unwrap().starts_with("status: HTTP 500"));
    assert!(failed >= 8, "3 to go down and at least 5 more: {failed}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM service_incidents")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_repeats_nor_loses_an_alert() {
    let db = TestDb::migrated().await;
    let (down, planned) = (Scripted::spawn("F").await, Scripted::spawn("F").await);
    register(&db, "down", 20001, &down.url()).await;
    register(&db, "planned", 20002, &planned.url()).await;
    let env = [("DATABASE_URL", db.url.expose())];
    let id = add_window(&env, "planned", "move");
    let config = fast_config(
        "interval = \"200ms\"\ntimeout = \"150ms\"\nfailure_threshold = 2",
        "",
    );
    let first = Daemon::start(&db.url, &config);
    first.wait_for(|e| e["event"] == "service_down", LONG);
    // Both judged down; only the one outside the window alerted.
    eventually("both judged down", LONG, async || {
        let (a, b) = (
            dashboard(&db, "down").await.2,
            dashboard(&db, "planned").await.2,
        );
        (a >= Some(4) && b >= Some(4)).then_some(()).ok_or((a, b))
    })
    .await;
    let (_, events) = first.stop();
    assert_eq!(names(&events, "down"), ["service_down"]);
    assert_eq!(names(&events, "planned"), Vec::<String>::new());

    let second = Daemon::start(&db.url, &config);
    let seen = planned.hits();
    eventually("10 more checks after the restart", LONG, async || {
        (planned.hits() >= seen + 10)
            .then_some(())
            .ok_or(planned.hits())
    })
    .await;
    assert_eq!(
        names(&second.events(), "down"),
        Vec::<String>::new(),
        "already alerted before the restart: not again"
    );
    // The window ends: the service it hid is alerted now, once.
    let ended = healthd(&["maintenance", "end", &id], &env);
    assert!(ended.status.success(), "{}", text(&ended.stderr));
    second.wait_for(
        |e| e["event"] == "service_down" && e["service_type"] == "planned",
        LONG,
    );
    // The one alerted before the restart comes back up, closing its incident.
    down.set(".");
    second.wait_for(
        |e| e["event"] == "service_up" && e["service_type"] == "down",
        LONG,
    );
    let (_, events) = second.stop();
    assert_eq!(names(&events, "down"), ["service_up"]);
    assert_eq!(names(&events, "planned"), ["service_down"]);
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT service_type::text FROM service_incidents WHERE ended_at IS NULL",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(open, ["planned"]);
}
