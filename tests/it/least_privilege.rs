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

    // Only `run` and `migrate` migrate: with auto_migrate on, the role still lists the jobs, and
    // migrating, the owner's business, is refused, saying why.
    let defaults = dir.path().join("defaults.toml");
    std::fs::write(&defaults, "").unwrap();
    let listed = healthd(&["-c", defaults.to_str().unwrap(), "jobs", "list"], &env);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let refused = healthd(&["-c", defaults.to_str().unwrap(), "migrate"], &env);
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

/// The role reads no secret: not how to authenticate to a service (`auth_config`), not what a
/// key validation returned (`validation_response`); cache cleanup still deletes expired rows.
#[tokio::test]
async fn the_daemon_role_deletes_expired_cache_rows_without_reading_them() {
    use crate::app_roles::{allowed, forbidden, pool_as, run_script};

    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-00000000000a', 'a@example.test');
         INSERT INTO service_registry (service_type, name, display_name, port, auth_config)
         VALUES ('figma', 'figma', 'Figma', 49160, '{\"client_secret\": \"s\"}');
         INSERT INTO api_key_validation_cache (user_id, service_type, key_hash, is_valid, expires_at, validation_response)
         SELECT '00000000-0000-0000-0000-00000000000a', 'figma', 'k' || g, true,
                now() + CASE WHEN g <= 3 THEN interval '-1 hour' ELSE interval '1 hour' END, '{\"account\": \"x\"}'
           FROM generate_series(1, 5) g;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let role = format!("{}_daemon", db.name);
    run_script(&db, "least-privilege-role.sql", &[("role", &role)]);
    let daemon = pool_as(&db, &role).await;

    // What the prober reads, it reads.
    assert_eq!(
        allowed(
            &daemon,
            "SELECT service_type, port, base_url, health_check_endpoint, service_config
               FROM service_registry WHERE is_available"
        )
        .await,
        1
    );
    allowed(&daemon, "SELECT * FROM service_health_dashboard").await;
    for sql in [
        "SELECT auth_config FROM service_registry",
        "SELECT * FROM service_registry",
        "SELECT validation_response FROM api_key_validation_cache",
        "SELECT key_hash, user_id FROM api_key_validation_cache",
        "SELECT * FROM api_key_validation_cache",
        "UPDATE api_key_validation_cache SET expires_at = now()",
        "SELECT * FROM service_usage_analytics",
        "SELECT encrypted_api_key FROM user_service_instances",
        "SELECT password_hash FROM users",
        "SELECT cleanup_validation_cache()",
    ] {
        forbidden(&daemon, sql).await;
    }
    daemon.close().await;

    let mut as_role = url::Url::parse(db.url.expose()).unwrap();
    as_role.set_username(&role).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[database]\nauto_migrate = false\n").unwrap();
    let out = healthd(
        &[
            "-c",
            config.to_str().unwrap(),
            "jobs",
            "run",
            "validation_cache_cleanup",
        ],
        &[("DATABASE_URL", as_role.as_str())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let left: Vec<String> =
        sqlx::query_scalar("SELECT key_hash::text FROM api_key_validation_cache ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        left,
        ["k4", "k5"],
        "the 3 expired rows deleted, the others kept"
    );

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}
