//! `registry import`: the shipped sample directory imports, re-imports as a no-op, prunes
//! without deleting, and a bad directory applies nothing and names the file.

use std::path::{Path, PathBuf};

use crate::helpers::{TestDb, healthd, text};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/registry")
}

/// A copy of the sample directory that a test may change.
fn copy_samples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(samples()).unwrap() {
        let entry = entry.unwrap();
        let to = dir.path().join(entry.file_name());
        std::fs::create_dir(&to).unwrap();
        std::fs::copy(entry.path().join("config.json"), to.join("config.json")).unwrap();
    }
    dir
}

fn import(db: &TestDb, dir: &Path, prune: bool) -> std::process::Output {
    let mut args = vec!["registry", "import", dir.to_str().unwrap()];
    if prune {
        args.push("--prune");
    }
    healthd(&args, &[("DATABASE_URL", db.url.expose())])
}

async fn available(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM service_registry WHERE is_available")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn importing_the_samples_is_idempotent() {
    let db = TestDb::migrated().await;
    let first = import(&db, &samples(), false);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(
        out.contains("imported 51 services") && out.contains("51 added, 0 changed, 0 unchanged"),
        "{out}"
    );
    assert_eq!(available(&db).await, 51);
    let status_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM service_health_status")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status_rows, 51, "every imported service has a status row");
    let health: serde_json::Value = sqlx::query_scalar(
        "SELECT service_config -> 'health' FROM service_registry WHERE service_type = 'stripe'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(health["body_contains"], "ok");

    let again = import(&db, &samples(), false);
    assert_eq!(again.status.code(), Some(0));
    assert!(
        text(&again.stdout).contains("0 added, 0 changed, 51 unchanged"),
        "{}",
        text(&again.stdout)
    );
}

#[tokio::test]
async fn changes_and_prune_mark_missing_services_unavailable_without_deleting() {
    let db = TestDb::migrated().await;
    assert_eq!(import(&db, &samples(), false).status.code(), Some(0));
    let dir = copy_samples();
    std::fs::remove_dir_all(dir.path().join("zoom")).unwrap();
    let figma = dir.path().join("figma/config.json");
    let changed = std::fs::read_to_string(&figma)
        .unwrap()
        .replace("\"design\"", "\"creative\"");
    std::fs::write(&figma, changed).unwrap();

    let without_prune = import(&db, dir.path(), false);
    assert_eq!(
        without_prune.status.code(),
        Some(0),
        "{}",
        text(&without_prune.stderr)
    );
    assert!(
        text(&without_prune.stdout).contains("0 added, 1 changed, 49 unchanged"),
        "{}",
        text(&without_prune.stdout)
    );
    assert_eq!(
        available(&db).await,
        51,
        "without --prune nothing is made unavailable"
    );

    let pruned = import(&db, dir.path(), true);
    assert_eq!(pruned.status.code(), Some(0), "{}", text(&pruned.stderr));
    assert!(
        text(&pruned.stdout).contains("1 made unavailable")
            && text(&pruned.stdout).contains("zoom")
    );
    assert_eq!(available(&db).await, 50);
    let zoom: i64 =
        sqlx::query_scalar("SELECT count(*) FROM service_registry WHERE service_type = 'zoom'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(zoom, 1, "pruned, not deleted");
}

#[tokio::test]
async fn a_malformed_file_rejects_the_whole_import_and_names_the_file() {
    let db = TestDb::migrated().await;
    let dir = copy_samples();
    std::fs::write(
        dir.path().join("slack/config.json"),
        "{ \"display_name\": \"Slack\", \"port\": ",
    )
    .unwrap();
    let out = import(&db, dir.path(), false);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("nothing was applied") && err.contains("slack/config.json"),
        "{err}"
    );
    assert_eq!(available(&db).await, 0, "nothing applied");

    let dir = copy_samples();
    let bad = dir.path().join("trello/config.json");
    let text_in = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("\"/health\"", "\"health\"");
    std::fs::write(&bad, text_in).unwrap();
    std::fs::write(
        dir.path().join("notion/config.json"),
        "{\"display_name\": \"Notion\", \"port\": 49106, \"colour\": \"red\"}",
    )
    .unwrap();
    let out = import(&db, dir.path(), false);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("trello/config.json: health_check_endpoint \"health\" must start with '/'"),
        "{err}"
    );
    assert!(
        err.contains("notion/config.json: unknown field `colour`"),
        "{err}"
    );
    assert_eq!(available(&db).await, 0);
}

#[tokio::test]
async fn a_duplicate_port_is_rejected_naming_both_files() {
    let db = TestDb::migrated().await;
    let dir = copy_samples();
    let slack_port = {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("slack/config.json")).unwrap(),
        )
        .unwrap();
        v["port"].as_i64().unwrap()
    };
    let gmail = dir.path().join("gmail/config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&gmail).unwrap()).unwrap();
    v["port"] = slack_port.into();
    std::fs::write(&gmail, v.to_string()).unwrap();
    let out = import(&db, dir.path(), false);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("port {slack_port} is also used by")),
        "{err}"
    );
    assert!(
        err.contains("gmail/config.json") && err.contains("slack/config.json"),
        "{err}"
    );
    assert_eq!(available(&db).await, 0);

    // A port held by a service already in the registry (and not in the import) is refused too.
    sqlx::query("INSERT INTO service_registry (service_type, name, display_name, port) VALUES ('legacy', 'legacy', 'Legacy', $1)")
        .bind(slack_port as i32)
        .execute(&db.pool)
        .await
        .unwrap();
    let out = import(&db, &samples(), false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already used by service \"legacy\""),
        "{}",
        text(&out.stderr)
    );
}

/// The port in `dir/<service>/config.json`.
fn port_of(dir: &Path, service: &str) -> i64 {
    let file = dir.join(service).join("config.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    v["port"].as_i64().unwrap()
}

fn set_port(dir: &Path, service: &str, port: i64) {
    let file = dir.join(service).join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    v["port"] = port.into();
    std::fs::write(&file, v.to_string()).unwrap();
}

#[tokio::test]
async fn two_services_swap_ports_in_one_import() {
    let db = TestDb::migrated().await;
    assert_eq!(import(&db, &samples(), false).status.code(), Some(0));
    let dir = copy_samples();
    let (slack, gmail) = (port_of(dir.path(), "slack"), port_of(dir.path(), "gmail"));
    set_port(dir.path(), "slack", gmail);
    set_port(dir.path(), "gmail", slack);

    let out = import(&db, dir.path(), false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("0 added, 2 changed, 49 unchanged"),
        "{}",
        text(&out.stdout)
    );
    let ports: Vec<(String, i32)> = sqlx::query_as(
        "SELECT service_type::text, port FROM service_registry
          WHERE service_type IN ('gmail', 'slack') ORDER BY service_type",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        ports,
        [
            ("gmail".to_owned(), slack as i32),
            ("slack".to_owned(), gmail as i32)
        ]
    );
}
