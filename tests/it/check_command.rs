//! `mcp-healthd check`: one round, a table or JSON, exit 1 on any failure; writes only with --record.

use crate::fleet::{self, Behaviour};
use crate::helpers::{TestDb, healthd, text};
use crate::prober::{register, statuses};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_probes_once_and_records_only_when_asked() {
    let db = TestDb::migrated().await;
    let ok = fleet::spawn(Behaviour::Healthy).await;
    let broken = fleet::spawn(Behaviour::Status(500)).await;
    register(&db, "ok", ok.port.into()).await;
    register(&db, "broken", broken.port.into()).await;
    let env = [("DATABASE_URL", db.url.expose())];

    let table = healthd(&["check"], &env);
    assert_eq!(table.status.code(), Some(1), "{}", text(&table.stderr));
    let out = text(&table.stdout);
    assert!(
        out.contains("FAIL") && out.contains("status: HTTP 500 (expected 200-299)"),
        "{out}"
    );
    assert!(out.contains("2 checked, 1 healthy, 1 failing"), "{out}");

    let one = healthd(&["check", "--service", "ok", "--json"], &env);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["service_type"], "ok");
    assert_eq!(rows[0]["healthy"], true);
    assert_eq!(rows[0]["status"], 200);

    let unknown = healthd(&["check", "--service", "nope"], &env);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no available service named \"nope\""));

    let untouched = statuses(&db).await;
    assert!(
        untouched.values().all(|r| r.is_healthy.is_none()),
        "check wrote without --record"
    );

    let recorded = healthd(&["check", "--record"], &env);
    assert_eq!(recorded.status.code(), Some(1));
    let after = statuses(&db).await;
    assert_eq!(after["ok"].is_healthy, Some(true));
    assert_eq!(after["broken"].consecutive_failures, 1);
    assert_eq!(after["broken"].error_kind.as_deref(), Some("status"));
    assert_eq!(ok.hits(), 3);
}
