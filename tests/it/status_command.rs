//! `mcp-healthd status`: the dashboard view in the terminal and as JSON; the exit code says
//! whether everything is up.

use crate::helpers::{TestDb, healthd, text};

#[tokio::test]
async fn status_groups_by_category_shows_stale_and_unknown_and_exits_by_health() {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO service_registry (service_type, name, display_name, port, category) VALUES
            ('figma', 'figma', 'Figma', 41001, 'design'),
            ('miro', 'miro', 'Miro', 41002, 'design'),
            ('slack', 'slack', 'Slack', 41003, 'communication'),
            ('zoom', 'zoom', 'Zoom', 41004, 'communication');
         UPDATE service_health_status SET is_healthy = true, last_health_check = now(), check_interval_ms = 30000,
                response_time_ms = 12, uptime_percentage = 99.5 WHERE service_type IN ('figma', 'miro', 'slack');
         UPDATE service_health_status SET last_health_check = now() - interval '1 hour' WHERE service_type = 'slack';",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let env = [("DATABASE_URL", db.url.expose())];
    let out = healthd(&["status"], &env);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stale and unknown services are not healthy"
    );
    let table = text(&out.stdout);
    assert!(
        !table.contains('\x1b'),
        "no colour codes when stdout is not a terminal"
    );
    let design = table.find("design\n").unwrap();
    let communication = table.find("communication\n").unwrap();
    assert!(
        communication < design,
        "grouped by category, in the view's order: {table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("slack") && l.contains("stale")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("zoom") && l.contains("unknown") && l.contains("never")),
        "{table}"
    );
    assert!(
        table.contains("4 services: 2 up, 0 down, 1 stale, 1 unknown, 0 unavailable"),
        "{table}"
    );

    let json = healthd(&["status", "--json"], &env);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["service_type"] == "zoom" && r["status"] == "unknown")
    );

    sqlx::raw_sql(
        "UPDATE service_health_status SET is_healthy = true, last_health_check = now(), check_interval_ms = 30000;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        healthd(&["status"], &env).status.code(),
        Some(0),
        "all up: exit 0"
    );
}
