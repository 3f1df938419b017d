//! The operator's surface: `/metrics` (parsed by a real Prometheus text parser, its counters
//! checked against the database) and `/healthz`. The demo's tests are in `demo.rs`.

use std::time::Duration;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour};
use crate::helpers::{TestDb, eventually};
use crate::prober::{register, rollup_checks};
use crate::proxy::Proxy;

/// Waits (up to 15 s) until `/healthz` answers with `code`; returns the body.
async fn healthz_says(base: &str, code: u16, what: &str) -> String {
    eventually(what, Duration::from_secs(15), async || {
        match get(&format!("{base}/healthz")).await {
            (status, body) if status == code => Ok(body),
            other => Err(other),
        }
    })
    .await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> (u16, String) {
    mcp_healthd::install_crypto_provider();
    let response = reqwest::Client::new().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn scrape(body: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text format")
}

/// `mcp_healthd_checks_total` summed: (all checks, failed checks).
fn check_counters(scrape: &prometheus_parse::Scrape) -> (f64, f64) {
    let checks = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "mcp_healthd_checks_total");
    let all = checks.clone().map(value).sum();
    let failed = checks
        .filter(|s| s.labels.get("outcome") != Some("ok"))
        .map(value)
        .sum();
    (all, failed)
}

fn value(sample: &prometheus_parse::Sample) -> f64 {
    match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{} is not a plain value: {other:?}", sample.metric),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_the_database_and_healthz_follows_the_database() {
    let db = TestDb::migrated().await;
    let ok = fleet::spawn(Behaviour::Healthy).await;
    let broken = fleet::spawn(Behaviour::Status(500)).await;
    register(&db, "ok", ok.port.into()).await;
    register(&db, "broken", broken.port.into()).await;
    let proxy = Proxy::to_test_server().await;
    let via = proxy.url_for(&db);

    let port = free_port();
    let config = fast_config("interval = \"300ms\"\ntimeout = \"250ms\"", "")
        .replace("listen = \"\"", &format!("listen = \"127.0.0.1:{port}\""));
    let daemon = Daemon::start(&via, &config);
    let base = format!("http://127.0.0.1:{port}");
    let body = healthz_says(&base, 200, "/healthz says 200").await;
    assert_eq!(body, "ok\n");
    // Some checks of both services reach the database.
    eventually(
        "checks of both services written",
        Duration::from_secs(15),
        async || {
            let checks = rollup_checks(&db).await;
            match checks.len() == 2 && checks.values().sum::<i64>() > 5 {
                true => Ok(()),
                false => Err(checks),
            }
        },
    )
    .await;

    // Stop all checking, let the last results land, then compare.
    sqlx::query("UPDATE service_registry SET is_available = false")
        .execute(&db.pool)
        .await
        .unwrap();
    daemon.wait_for(
        |e| e["event"] == "registry_changed" && e["services"] == 0,
        Duration::from_secs(15),
    );
    // Checks in flight when the registry changed still land in both places; then they agree.
    let (body, scrape) = eventually(
        "/metrics and the rollups agree",
        Duration::from_secs(15),
        async || {
            let (status, body) = get(&format!("{base}/metrics")).await;
            if status != 200 {
                return Err(format!("/metrics answered {status}: {body}"));
            }
            let scrape = scrape(&body);
            let (checks, failures) = check_counters(&scrape);
            let (db_checks, db_failures): (i64, i64) = sqlx::query_as(
                "SELECT sum(checks)::bigint, sum(failures)::bigint FROM service_health_rollups",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap();
            match (checks as i64, failures as i64) == (db_checks, db_failures) {
                true => Ok((body, scrape)),
                false => Err(format!(
                    "/metrics: {checks} checks, {failures} failures; rollups: {db_checks} checks, {db_failures} failures"
                )),
            }
        },
    )
    .await;
    let samples = |name: &'static str| scrape.samples.iter().filter(move |s| s.metric == name);
    assert!(check_counters(&scrape).0 > 5.0);
    let up = |service: &'static str| {
        samples("mcp_healthd_service_up")
            .find(|s| s.labels.get("service_type") == Some(service))
            .map(value)
    };
    assert_eq!(up("ok"), Some(1.0));
    assert_eq!(up("broken"), Some(0.0));
    assert!(
        samples("mcp_healthd_build_info")
            .any(|s| s.labels.get("version") == Some(env!("CARGO_PKG_VERSION")))
    );
    for histogram in [
        "mcp_healthd_check_duration_seconds",
        "mcp_healthd_scheduler_lag_seconds",
        "mcp_healthd_flush_duration_seconds",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == histogram
                && matches!(s.value, prometheus_parse::Value::Histogram(_))),
            "{histogram} missing:\n{body}"
        );
    }

    // The database goes away: /healthz says so.
    proxy.cut();
    let reason = healthz_says(&base, 503, "/healthz says 503 with the database cut").await;
    assert!(reason.starts_with("database:"), "{reason}");
    proxy.restore();
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}
