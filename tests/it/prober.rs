//! The prober end to end: the real daemon against a fleet of real loopback servers with every
//! behaviour the design names, and the real PostgreSQL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour, Server};
use crate::helpers::{TestDb, eventually};

/// Registers `service_type` on `port` (probed at http://127.0.0.1:port/health).
pub async fn register(db: &TestDb, service_type: &str, port: i64) {
    sqlx::query(
        "INSERT INTO service_registry (service_type, name, display_name, port, category)
         VALUES ($1, $1, $1, $2, 'test')",
    )
    .bind(service_type)
    .bind(port as i32)
    .execute(&db.pool)
    .await
    .unwrap();
}

#[derive(Debug, sqlx::FromRow)]
pub struct StatusRow {
    pub service_type: String,
    pub is_healthy: Option<bool>,
    pub consecutive_failures: i32,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub uptime_percentage: Option<f64>,
}

pub async fn statuses(db: &TestDb) -> HashMap<String, StatusRow> {
    let rows: Vec<StatusRow> = sqlx::query_as(
        "SELECT service_type::text, is_healthy, consecutive_failures, error_kind, error_message, uptime_percentage
           FROM service_health_status",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| (r.service_type.clone(), r))
        .collect()
}

/// Waits (up to `limit`) until `service`'s status row is written and says healthy.
pub async fn wait_until_healthy(db: &TestDb, service: &str, what: &str, limit: Duration) {
    crate::helpers::eventually(what, limit, async || {
        match statuses(db).await.remove(service) {
            Some(row) if row.is_healthy == Some(true) => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

pub async fn rollup_checks(db: &TestDb) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT service_type::text, sum(checks)::bigint FROM service_health_rollups GROUP BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

fn events_for<'a>(events: &'a [Value], event: &str, service: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == event && e["service_type"] == service)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_fleet_is_classified_and_the_healthy_keep_their_rhythm() {
    let db = TestDb::migrated().await;
    let fleet: Vec<(&str, Behaviour)> = vec![
        ("healthy", Behaviour::Healthy),
        ("error_500", Behaviour::Status(500)),
        ("too_slow", Behaviour::Slow(Duration::from_secs(2))),
        ("hangs", Behaviour::Hang),
        ("resets", Behaviour::Reset),
        ("not_http", Behaviour::NotHttp),
        ("redirect_loop", Behaviour::RedirectLoop),
        ("redirect_ok", Behaviour::RedirectToHealthy),
        ("not_found", Behaviour::Status(404)),
        ("no_content", Behaviour::Status(204)),
        ("huge_body", Behaviour::HugeBody),
        ("trickle", Behaviour::Trickle),
        ("one_in_four", Behaviour::FailOneInFour),
        ("recovering", Behaviour::FailFirst(4)),
    ];
    let mut servers: HashMap<&str, Server> = HashMap::new();
    for (name, behaviour) in &fleet {
        let server = fleet::spawn(*behaviour).await;
        register(&db, name, server.port.into()).await;
        servers.insert(name, server);
    }
    let closed = fleet::closed_port().await.unwrap();
    register(&db, "closed_port", closed.port.into()).await;
    register(&db, "bad_port", 0).await;
    // https:// to a server that speaks neither HTTP nor TLS: the TLS handshake fails.
    let plain = fleet::spawn(Behaviour::NotHttp).await;
    register(&db, "tls_mismatch", 1).await;
    sqlx::query("UPDATE service_registry SET base_url = $1 WHERE service_type = 'tls_mismatch'")
        .bind(format!("https://127.0.0.1:{}", plain.port))
        .execute(&db.pool)
        .await
        .unwrap();

    let expect: [(&str, bool, Option<&str>); 17] = [
        ("tls_mismatch", false, Some("tls")),
        ("healthy", true, None),
        ("error_500", false, Some("status")),
        ("too_slow", false, Some("timeout")),
        ("hangs", false, Some("timeout")),
        ("resets", false, Some("connect")),
        ("closed_port", false, Some("connect")),
        ("not_http", false, Some("protocol")),
        ("redirect_loop", false, Some("redirect")),
        ("redirect_ok", true, None),
        ("not_found", false, Some("status")),
        ("no_content", true, None),
        ("huge_body", true, None),
        ("trickle", false, Some("timeout")),
        ("one_in_four", true, None),
        ("recovering", true, None),
        ("bad_port", false, Some("invalid_target")),
    ];

    let interval = Duration::from_millis(400);
    let config = fast_config(
        "interval = \"400ms\"\ntimeout = \"300ms\"\nfailure_threshold = 3\nsuccess_threshold = 1\nconcurrency = 64",
        "",
    );
    let daemon = Daemon::start(&db.url, &config);
    let started = Instant::now();
    // Until every service is judged as expected, the recovering one has gone down (3 failures)
    // and come back (5th check), and one_in_four has had enough checks (15) for its uptime to
    // be within 5 points of 75 % whatever the count.
    eventually("the fleet judged", Duration::from_secs(60), async || {
        let status = statuses(&db).await;
        let misjudged: Vec<&str> = expect
            .iter()
            .filter(|(service, healthy, kind)| {
                status.get(*service).is_none_or(|row| {
                    row.is_healthy != Some(*healthy)
                        || (!healthy
                            && (row.consecutive_failures < 3
                                || row.error_kind.as_deref() != *kind))
                })
            })
            .map(|(service, _, _)| *service)
            .collect();
        let recovered = !events_for(&daemon.events(), "service_up", "recovering").is_empty();
        let one_in_four = rollup_checks(&db)
            .await
            .get("one_in_four")
            .copied()
            .unwrap_or(0);
        match misjudged.is_empty() && recovered && one_in_four >= 15 {
            true => Ok(()),
            false => Err(format!(
                "misjudged {misjudged:?}, recovering back up: {recovered}, one_in_four checks: {one_in_four}"
            )),
        }
    })
    .await;
    let ran = started.elapsed();
    let peak_kib = daemon.peak_rss_kib();
    let (code, events) = daemon.stop();
    assert_eq!(code, Some(0));

    let status = statuses(&db).await;
    for (service, healthy, kind) in expect {
        let row = &status[service];
        assert_eq!(row.is_healthy, Some(healthy), "{service}: {row:?}");
        if healthy {
            // one_in_four may have just failed once; never three times in a row.
            assert!(row.consecutive_failures < 3, "{service}: {row:?}");
            if service != "one_in_four" {
                assert_eq!(
                    (row.consecutive_failures, row.error_kind.as_deref()),
                    (0, None),
                    "{service}"
                );
            }
        } else {
            assert!(row.consecutive_failures >= 3, "{service}: {row:?}");
            assert_eq!(row.error_kind.as_deref(), kind, "{service}: {row:?}");
            let message = row.error_message.as_deref().unwrap_or_default();
            assert!(
                message.starts_with(&format!("{}: ", kind.unwrap())),
                "{service}: {message}"
            );
        }
    }
    assert!(
        status["bad_port"]
            .error_message
            .as_deref()
            .unwrap()
            .contains("port 0 is outside 1-65535")
    );

    // Uptime from the rollups: one failure in four is 75 %.
    let uptime = status["one_in_four"].uptime_percentage.unwrap();
    assert!((uptime - 75.0).abs() <= 5.0, "one_in_four uptime {uptime}");
    assert_eq!(status["healthy"].uptime_percentage, Some(100.0));

    // Exactly one down and one up for the recovering service, none for the healthy ones.
    assert_eq!(
        events_for(&events, "service_down", "recovering").len(),
        1,
        "{events:#?}"
    );
    let up = events_for(&events, "service_up", "recovering");
    assert_eq!(up.len(), 1);
    assert!(up[0]["down_for_s"].is_u64());
    for quiet in ["healthy", "one_in_four", "huge_body"] {
        assert!(
            events_for(&events, "service_down", quiet).is_empty(),
            "{quiet} alerted"
        );
    }

    // The alert log contract: flat JSON with timestamp, level, event and the service fields.
    let down = &events_for(&events, "service_down", "error_500")[0];
    assert_eq!(down["level"], "ERROR");
    assert!(down["timestamp"].is_string());
    assert!(
        down.get("fields").is_none(),
        "fields must be flattened: {down}"
    );
    for field in [
        "service_type",
        "url",
        "consecutive_failures",
        "error_kind",
        "error",
        "response_time_ms",
    ] {
        assert!(
            down.get(field).is_some(),
            "service_down lacks {field}: {down}"
        );
    }
    assert_eq!(down["error_kind"], "status");
    assert!(down["url"].as_str().unwrap().ends_with("/health"));
    let info_per_check = events
        .iter()
        .filter(|e| e["level"] == "INFO" && e["service_type"] == "healthy")
        .count();
    assert_eq!(
        info_per_check, 0,
        "successful checks are not logged at info"
    );

    // The hung services never held the healthy one back; every check reached the rollups.
    let checks = rollup_checks(&db).await;
    let hits = servers["healthy"].hits();
    let allowed = (ran.as_millis() / interval.as_millis()) as usize;
    assert!(
        hits + 4 >= allowed,
        "healthy was checked {hits} times in {ran:?} (about {allowed} allowed)"
    );
    assert_eq!(
        checks["healthy"], hits as i64,
        "rollups count every check the server saw"
    );

    // The 64 MiB body was read only up to max_body_bytes.
    assert!(
        peak_kib < 60 * 1024,
        "peak RSS {peak_kib} KiB: the body was not capped"
    );
}

/// `MCP_HEALTHD_WORKER_THREADS` puts the checks on a pool of threads (for a fleet past one
/// core), and a count that is not one says so and names the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_on_a_thread_pool_when_asked_and_refuses_a_bad_count() {
    let db = TestDb::migrated().await;
    let server = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "pooled", server.port.into()).await;
    let config = fast_config("interval = \"300ms\"\ntimeout = \"200ms\"", "");
    let daemon = Daemon::spawn(&db.url, &config, &[("MCP_HEALTHD_WORKER_THREADS", "2")]);
    wait_until_healthy(
        &db,
        "pooled",
        "checked on 2 threads",
        Duration::from_secs(30),
    )
    .await;
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));

    let out = crate::helpers::healthd(
        &["run"],
        &[
            ("DATABASE_URL", db.url.expose()),
            ("MCP_HEALTHD_WORKER_THREADS", "none\u{1b}[2J"),
        ],
    );
    let stderr = crate::helpers::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("MCP_HEALTHD_WORKER_THREADS must be a whole number")
            && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
}
