//! The alert stream is the daemon's own: at `log.level = "info"`, no line of another crate below
//! warn reaches it (tokio-cron-scheduler's "Job creator created", sqlx's server notices such as
//! "relation _sqlx_migrations already exists, skipping"), and naming a crate in `log.level`
//! still opens it.

use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Daemon, fast_config};
use crate::fleet::{self, Behaviour};
use crate::helpers::TestDb;
use crate::prober::{register, wait_until_healthy};

/// Runs a daemon at `level` on an already migrated database (so the migrator's
/// `CREATE TABLE IF NOT EXISTS` draws a notice) until one service is healthy; its whole log.
async fn run_at(level: &str) -> Vec<Value> {
    let db = TestDb::migrated().await;
    let server = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "hygiene", server.port.into()).await;
    let config = fast_config("interval = \"1s\"\ntimeout = \"1s\"", "")
        .replace("level = \"info\"", &format!("level = \"{level}\""));
    assert!(config.contains(level), "{config}");
    let daemon = Daemon::start(&db.url, &config);
    wait_until_healthy(&db, "hygiene", "healthy", Duration::from_secs(30)).await;
    let (code, events) = daemon.stop();
    assert_eq!(code, Some(0));
    events
}

/// Lines of other crates than this one, below warn.
fn foreign_chatter(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| {
            let target = e["target"].as_str().unwrap_or("");
            let quiet = matches!(e["level"].as_str(), Some("INFO" | "DEBUG" | "TRACE"));
            quiet && target != "mcp_healthd" && !target.starts_with("mcp_healthd::")
        })
        .collect()
}

#[tokio::test]
async fn other_crates_log_only_warnings_unless_log_level_names_them() {
    let events = run_at("info").await;
    assert!(
        events.iter().any(|e| e["event"] == "daemon_started"),
        "{events:?}"
    );
    let chatter = foreign_chatter(&events);
    assert!(chatter.is_empty(), "other crates' lines: {chatter:?}");

    let opened = run_at("info,tokio_cron_scheduler=info,sqlx=info").await;
    let chatter = foreign_chatter(&opened);
    let targets: Vec<&str> = chatter
        .iter()
        .filter_map(|e| e["target"].as_str())
        .collect();
    assert!(
        targets
            .iter()
            .any(|t| t.starts_with("tokio_cron_scheduler")),
        "log.level did not open tokio_cron_scheduler: {targets:?}"
    );
    assert!(
        targets.iter().any(|t| t.starts_with("sqlx")),
        "log.level did not open sqlx: {targets:?}"
    );
}
