//! The daemon runs as the least-privilege role of `sql/least-privilege-role.sql`: it probes,
//! writes status, and runs every maintenance job, without owning anything.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mcp_healthd::config::DatabaseUrl;

use crate::daemon::Daemon;
use crate::fleet::{self, Behaviour};
use crate::helpers::{TestDb, healthd, text};
use crate::prober::{register, wait_until_healthy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_and_its_jobs_run_as_the_least_privilege_role() {
    let db = TestDb::migrated().await;
    let healthy = fleet::spawn(Behaviour::Healthy).await;
    register(&db, "healthy", healthy.port.into()).await;
    sqlx::query("SELECT ensure_usage_analytics_partition('2020-01-01')")
        .execute(&db.pool)
        .await
        .unwrap();

    let role = format!("{}_daemon", db.name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/least-privilege-role.sql");
    let psql = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            &format!("role={role}"),
            "-f",
        ])
        .arg(&script)
        .arg(db.url.expose())
        .output()
        .expect("psql must be installed next to PostgreSQL");
    assert!(psql.status.success(), "{}", text(&psql.stderr));

    let mut as_role = url::Url::parse(db.url.expose()).unwrap();
    as_role.set_username(&role).unwrap();
    as_role.set_password(None).unwrap();
    let as_role = DatabaseUrl::parse(as_role.as_str()).unwrap();

    let config = "[database]\nauto_migrate = false\nflush_interval = \"200ms\"\n\
                  [probe]\ninterval = \"300ms\"\ntimeout = \"250ms\"\n\
                  [log]\nformat = \"json\"\n[http]\nlisten = \"\"\n";
    let daemon = Daemon::start(&as_role, config);
    daemon.wait_for(|e| e["event"] == "leader_elected", Duration::from_secs(10));
    // The lease is the role's; so is a status write with the service judged healthy.
    wait_until_healthy(
        &db,
        "healthy",
        "status written as the role",
        Duration::from_secs(15),
    )
    .await;
    let (code, events) = daemon.stop();
    assert_eq!(code, Some(0));
    let errors: Vec<_> = events.iter().filter(|e| e["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "errors as the role: {errors:#?}");

    let env = [("DATABASE_URL", as_role.expose())];
    let dir = tempfile::tempdir().unwrap();
    let no_migrate = dir.path().join("config.toml");
    std::fs::write(&no_migrate, "[database]\nauto_migrate = false\n").unwrap();
    for job in [
        "partition_maintenance",
        "analytics_retention",
        "validation_cache_cleanup",
        "housekeeping",
    ] {
        let out = healthd(
            &["-c", no_migrate.to_str().unwrap(), "jobs", "run", job],
            &env,
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{job} as the role: {}",
            text(&out.stderr)
        );
    }
    let dropped: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('service_usage_analytics_p202001')::text")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        dropped, None,
        "retention dropped the old partition as the role"
    );

    // Migrating is the owner's business: with auto_migrate on, the role is refused, saying why.
    let defaults = dir.path().join("defaults.toml");
    std::fs::write(&defaults, "").unwrap();
    let refused = healthd(&["-c", defaults.to_str().unwrap(), "jobs", "list"], &env);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("permission denied"),
        "{}",
        text(&refused.stderr)
    );

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}
