//! Only `run` and `migrate` change the schema: every other command, with the default
//! `auto_migrate = true`, leaves a missing database missing and a database with pending
//! migrations as it found it, says why and exits 1.

use std::path::Path;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::{TestDb, healthd, server_url, text};

/// The commands that must never create the database or migrate it.
const COMMANDS: [&[&str]; 11] = [
    &["status"],
    &["status", "--json"],
    &["check"],
    &["check", "--record"],
    &["jobs", "list"],
    &["jobs", "run", "housekeeping"],
    &["maintenance", "list"],
    &["maintenance", "add", "--for", "1h", "--reason", "upgrade"],
    &["maintenance", "end", "1"],
    &["report"],
    &["report", "--month", "2026-03", "--csv"],
];

async fn database_exists(name: &str) -> bool {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(server_url().expose())
        .await
        .unwrap();
    let exists = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&admin)
        .await
        .unwrap();
    admin.close().await;
    exists
}

#[tokio::test]
async fn a_missing_database_is_reported_and_stays_missing() {
    let name = TestDb::unused_name();
    let url = server_url().with_database(&name);
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/registry");
    let import = ["registry", "import", samples.to_str().unwrap()];
    for args in COMMANDS.iter().copied().chain([&import[..]]) {
        let out = healthd(args, &[("DATABASE_URL", url.expose())]);
        let shown = args.join(" ");
        assert_eq!(
            out.status.code(),
            Some(1),
            "`{shown}`: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert_eq!(
            stderr.trim_end(),
            format!(
                "mcp-healthd: database {name} does not exist — run mcp-healthd migrate; \
                 the URL is from DATABASE_URL"
            ),
            "`{shown}`"
        );
        assert!(text(&out.stdout).is_empty(), "`{shown}` printed a result");
        assert!(!database_exists(&name).await, "`{shown}` created {name}");
    }
}

/// A database with every migration but the last `missing` applied.
async fn behind_by(missing: usize) -> TestDb {
    let db = TestDb::empty().await;
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(&all)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let older = tempfile::tempdir().unwrap();
    for file in &files[..files.len() - missing] {
        std::fs::copy(file, older.path().join(file.file_name().unwrap())).unwrap();
    }
    Migrator::new(older.path())
        .await
        .unwrap()
        .run(&db.pool)
        .await
        .expect("the older migrations apply");
    db
}

/// What a command could change: the applied migrations and the tables, views and functions.
async fn schema(db: &TestDb) -> (Vec<i64>, Vec<String>) {
    let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let objects = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public'
         UNION ALL
         SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public'
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    (versions, objects)
}

#[tokio::test]
async fn pending_migrations_are_reported_and_not_applied() {
    let db = behind_by(2).await;
    let before = schema(&db).await;
    assert_eq!(
        before.0.len(),
        mcp_healthd::store::db::MIGRATOR.iter().count() - 2
    );
    // `config check` too: the file is fine, but the schema is not what this binary needs.
    for args in COMMANDS.into_iter().chain([&["config", "check"][..]]) {
        let out = healthd(args, &[("DATABASE_URL", db.url.expose())]);
        let shown = args.join(" ");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "`{shown}`: {stderr}");
        assert!(
            stderr.contains("2 migrations pending: run `mcp-healthd migrate`"),
            "`{shown}`: {stderr}"
        );
        assert_eq!(schema(&db).await, before, "`{shown}` changed the schema");
    }
    // `migrate` is the one that applies them.
    let migrate = healthd(&["migrate"], &[("DATABASE_URL", db.url.expose())]);
    assert_eq!(migrate.status.code(), Some(0), "{}", text(&migrate.stderr));
    assert!(text(&migrate.stdout).contains("applied 2 migration(s)"));
    let status = healthd(&["status"], &[("DATABASE_URL", db.url.expose())]);
    assert!(
        !text(&status.stderr).contains("pending"),
        "{}",
        text(&status.stderr)
    );
}
