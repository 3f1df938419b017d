//! The roles of `sql/app-roles.sql` can each do exactly their job: every allowed action
//! succeeds, every forbidden one is refused (or, under row-level security, sees nothing).

use std::path::Path;
use std::process::Command;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::{TestDb, text};

const USER_A: &str = "00000000-0000-0000-0000-00000000000a";
const USER_B: &str = "00000000-0000-0000-0000-00000000000b";

/// Runs one of the shipped `sql/` scripts with psql on the test database.
pub fn run_script(db: &TestDb, script: &str, vars: &[(&str, &str)]) {
    let mut psql = Command::new("psql");
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
    for (k, v) in vars {
        psql.args(["-v", &format!("{k}={v}")]);
    }
    let out = psql
        .arg("-f")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("sql")
                .join(script),
        )
        .arg(db.url.expose())
        .output()
        .expect("psql must be installed next to PostgreSQL");
    assert!(out.status.success(), "{script}: {}", text(&out.stderr));
}

/// A pool that logs in as `role` (trust authentication on loopback, as the tests use).
pub async fn pool_as(db: &TestDb, role: &str) -> PgPool {
    let mut url = url::Url::parse(db.url.expose()).unwrap();
    url.set_username(role).unwrap();
    url.set_password(None).unwrap();
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url.as_str())
        .await
        .unwrap()
}

/// `sql` must succeed; returns the rows it affected or returned, all statements together.
pub async fn allowed(pool: &PgPool, sql: &str) -> u64 {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
    {
        Ok(done) => done.rows_affected(),
        Err(e) => panic!("{sql}: should be allowed, got {e}"),
    }
}

/// `sql` must be refused for lack of privilege.
pub async fn forbidden(pool: &PgPool, sql: &str) {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
    {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {}
        other => panic!("{sql}: should be refused (42501), got {other:?}"),
    }
}

async fn seed(db: &TestDb) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, email) VALUES ('{USER_A}', 'a@example.test'), ('{USER_B}', 'b@example.test');
         INSERT INTO service_registry (service_type, name, display_name, port, category, auth_config)
         VALUES ('figma', 'figma', 'Figma', 49160, 'design', '{{\"client_secret\": \"s\"}}');
         INSERT INTO user_service_instances (instance_id, user_id, service_type, encrypted_api_key)
         VALUES ('inst_a', '{USER_A}', 'figma', 'enc:a'), ('inst_b', '{USER_B}', 'figma', 'enc:b');
         INSERT INTO api_key_validation_cache (user_id, service_type, key_hash, is_valid, validation_response)
         VALUES ('{USER_A}', 'figma', 'h-a', true, '{{\"account\": \"a\"}}');"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_gateway_and_dashboard_roles_do_exactly_their_jobs() {
    let db = TestDb::migrated().await;
    seed(&db).await;
    let gateway_role = format!("{}_gw", db.name);
    let dashboard_role = format!("{}_dash", db.name);
    run_script(
        &db,
        "app-roles.sql",
        &[
            ("gateway_role", &gateway_role),
            ("dashboard_role", &dashboard_role),
        ],
    );
    // Re-running converges (after an upgrade it must).
    run_script(
        &db,
        "app-roles.sql",
        &[
            ("gateway_role", &gateway_role),
            ("dashboard_role", &dashboard_role),
        ],
    );
    let gw = pool_as(&db, &gateway_role).await;
    let dash = pool_as(&db, &dashboard_role).await;

    // ---- gateway: allowed
    assert_eq!(
        allowed(
            &gw,
            "SELECT port, base_url, auth_type, auth_config FROM service_registry"
        )
        .await,
        1
    );
    assert_eq!(
        allowed(&gw, "SELECT is_healthy FROM service_health_status").await,
        1
    );
    // Per request, as the README says: the setting lives only as long as the transaction.
    let as_a =
        |sql: &str| format!("BEGIN; SET LOCAL app.current_user_id = '{USER_A}'; {sql}; COMMIT;");
    assert_eq!(
        allowed(
            &gw,
            &as_a("SELECT instance_id, encrypted_api_key FROM user_service_instances")
        )
        .await,
        1,
        "the current user's own instance, and only it"
    );
    assert_eq!(
        allowed(&gw, &as_a(
            "UPDATE user_service_instances SET usage_count = usage_count + 1, last_used_at = now()
              WHERE instance_id = 'inst_a'"
        )).await,
        1
    );
    assert_eq!(
        allowed(&gw, &format!(
            "INSERT INTO service_usage_analytics (user_id, service_type, instance_id, endpoint, status_code)
             VALUES ('{USER_A}', 'figma', 'inst_a', '/x', 200), ('{USER_B}', 'figma', 'inst_b', '/y', 500)"
        )).await,
        2,
        "analytics of any user, no setting needed"
    );
    let upsert = format!(
        "INSERT INTO api_key_validation_cache (user_id, service_type, key_hash, is_valid, expires_at)
         VALUES ('{USER_B}', 'figma', 'h-b', true, now() + interval '1 hour')
         ON CONFLICT (user_id, service_type, key_hash)
         DO UPDATE SET is_valid = EXCLUDED.is_valid, validated_at = now(), expires_at = EXCLUDED.expires_at"
    );
    assert_eq!(
        allowed(&gw, &upsert).await,
        1,
        "a new cache row of any user"
    );
    assert_eq!(allowed(&gw, &upsert).await, 1, "and its refresh");
    assert_eq!(
        allowed(&gw, &format!(
            "SELECT is_valid FROM api_key_validation_cache WHERE user_id = '{USER_B}' AND key_hash = 'h-b'"
        )).await,
        1
    );

    // ---- gateway: forbidden, or nothing visible
    assert_eq!(
        allowed(&gw, "SELECT * FROM user_service_instances").await,
        0,
        "no user set: no rows"
    );
    assert_eq!(
        allowed(
            &gw,
            &as_a("SELECT * FROM user_service_instances WHERE instance_id = 'inst_b'")
        )
        .await,
        0,
        "another user's instance is invisible"
    );
    assert_eq!(
        allowed(
            &gw,
            &as_a("UPDATE user_service_instances SET usage_count = 0 WHERE instance_id = 'inst_b'")
        )
        .await,
        0,
        "and cannot be changed"
    );
    for sql in [
        "UPDATE user_service_instances SET encrypted_api_key = 'x'",
        "INSERT INTO user_service_instances (instance_id, user_id, service_type, encrypted_api_key) VALUES ('i', gen_random_uuid(), 'figma', 'k')",
        "DELETE FROM user_service_instances",
        "SELECT * FROM service_usage_analytics",
        "DELETE FROM service_usage_analytics",
        "DELETE FROM api_key_validation_cache",
        "UPDATE service_registry SET port = 1",
        "UPDATE service_health_status SET is_healthy = true",
        "SELECT * FROM users",
        "SELECT * FROM user_services_summary",
        "SELECT * FROM service_health_dashboard",
        "SELECT * FROM maintenance_job_runs",
        "SELECT cleanup_validation_cache()",
        "SELECT usage_analytics_drop_partition('service_usage_analytics_default'::regclass)",
        "TRUNCATE service_usage_analytics",
        "CREATE TABLE gateway_scratch (x int)",
    ] {
        forbidden(&gw, sql).await;
    }

    // ---- dashboard: allowed
    assert_eq!(
        allowed(&dash, "SELECT * FROM service_health_dashboard").await,
        1
    );
    let active: i64 = sqlx::query_scalar("SELECT active_users FROM service_health_dashboard")
        .fetch_one(&dash)
        .await
        .unwrap();
    assert_eq!(active, 2, "per-service counts over all users (documented)");
    for sql in [
        "SELECT * FROM service_health_status",
        "SELECT * FROM service_health_rollups",
        "SELECT * FROM maintenance_job_runs",
        "SELECT * FROM daemon_heartbeats",
        "SELECT service_type, display_name, category, port, base_url, is_available FROM service_registry",
    ] {
        allowed(&dash, sql).await;
    }

    // ---- dashboard: forbidden
    for sql in [
        "SELECT auth_config FROM service_registry",
        "SELECT * FROM service_registry",
        "SELECT * FROM user_service_instances",
        &format!("SET app.current_user_id = '{USER_A}'; SELECT * FROM user_service_instances"),
        "SELECT * FROM service_usage_analytics",
        "SELECT * FROM api_key_validation_cache",
        "SELECT * FROM users",
        "SELECT * FROM user_services_summary",
        "UPDATE service_health_status SET is_healthy = true",
        "INSERT INTO service_registry (service_type, name, display_name, port) VALUES ('x', 'x', 'x', 1)",
        "DELETE FROM maintenance_job_runs",
        "INSERT INTO service_usage_analytics (user_id, service_type, instance_id) VALUES (gen_random_uuid(), 'figma', 'i')",
        "SELECT cleanup_old_usage_analytics()",
        "CREATE TABLE dashboard_scratch (x int)",
    ] {
        forbidden(&dash, sql).await;
    }

    gw.close().await;
    dash.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {gateway_role}, {dashboard_role}; DROP ROLE {gateway_role}; DROP ROLE {dashboard_role}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}
