//! The schema: migrations apply to an empty database and again as a no-op, leave an existing
//! legacy schema alone, and give the design's queries the plans, views and security it asks for.

use std::path::Path;

use crate::helpers::{TestDb, healthd, text};

#[tokio::test]
async fn migrate_creates_the_database_applies_everything_and_is_then_a_no_op() {
    let name = TestDb::unused_name();
    let url = crate::helpers::server_url().with_database(&name);
    let first = healthd(&["migrate"], &[("DATABASE_URL", url.expose())]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let db = TestDb::adopt(&name).await;
    let out = text(&first.stdout);
    assert!(out.contains(&format!("created database {name}")), "{out}");
    let total = mcp_healthd::store::db::MIGRATOR.iter().count();
    assert!(
        out.contains(&format!("applied {total} migration(s)")),
        "{out}"
    );
    assert!(out.contains("0002 shared instances schema"), "{out}");

    let second = healthd(&["migrate"], &[("DATABASE_URL", url.expose())]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert!(
        text(&second.stdout).contains("schema is up to date"),
        "{}",
        text(&second.stdout)
    );

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for want in [
        "api_key_validation_cache",
        "mcp_instances",
        "mcp_types",
        "service_health_dashboard",
        "service_health_rollups",
        "service_health_status",
        "service_registry",
        "service_usage_analytics",
        "user_service_instances",
        "user_services_summary",
        "users",
    ] {
        assert!(
            tables.iter().any(|t| t == want),
            "{want} missing from {tables:?}"
        );
    }
}

#[test]
fn no_migration_file_manages_its_own_transaction() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap().to_uppercase();
        for line in sql.lines().map(str::trim) {
            let bare = line.trim_end_matches(';').trim();
            assert!(
                !(line.ends_with(';')
                    && matches!(
                        bare,
                        "BEGIN" | "COMMIT" | "ROLLBACK" | "START TRANSACTION" | "BEGIN TRANSACTION"
                    )),
                "{} contains `{line}`: the migrator runs each file in its own transaction",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn the_baseline_leaves_a_backend_created_legacy_schema_alone() {
    let db = TestDb::empty().await;
    // As the backend created them, with a column the spec does not know about.
    sqlx::raw_sql(
        "CREATE TABLE users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email varchar(255) UNIQUE NOT NULL,
                             password_hash varchar(255), name varchar(255), created_at timestamp DEFAULT now(),
                             updated_at timestamp DEFAULT now(), locale text DEFAULT 'en');
         CREATE TABLE mcp_types (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(100) UNIQUE NOT NULL,
                                 description text, icon_url varchar(500), category varchar(100),
                                 is_active boolean DEFAULT true, created_at timestamp DEFAULT now());
         CREATE TABLE mcp_instances (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                                     user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                                     mcp_type_id uuid NOT NULL REFERENCES mcp_types(id), name varchar(255) NOT NULL,
                                     config jsonb DEFAULT '{}', is_active boolean DEFAULT false,
                                     status varchar(50) DEFAULT 'inactive', process_id integer,
                                     access_token varchar(255) UNIQUE, encrypted_credentials text,
                                     created_at timestamp DEFAULT now(), updated_at timestamp DEFAULT now());
         INSERT INTO users (email, locale) VALUES ('a@example.org', 'de');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    mcp_healthd::store::db::MIGRATOR
        .run(&db.pool)
        .await
        .expect("migrations apply over the legacy schema");
    let locale: String =
        sqlx::query_scalar("SELECT locale FROM users WHERE email = 'a@example.org'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(locale, "de");
}

#[tokio::test]
async fn the_users_active_instances_lookup_is_an_index_only_scan_at_50k_rows() {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO users (id, email)
              SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(i), 12, '0'))::uuid, 'u' || i || '@example.org'
                FROM generate_series(1, 20000) i;
         INSERT INTO service_registry (service_type, name, display_name, port)
              SELECT 'svc' || j, 'svc' || j, 'Service ' || j, 40000 + j FROM generate_series(1, 10) j;
         INSERT INTO user_service_instances (instance_id, user_id, service_type, encrypted_api_key, is_active)
              SELECT 'svc' || j || '_' || i, ('00000000-0000-0000-0000-' || lpad(to_hex(i), 12, '0'))::uuid,
                     'svc' || j, 'enc:' || i, (i + j) % 4 <> 0
                FROM generate_series(1, 20000) i, generate_series(1, 10) j
               WHERE (i * 7 + j) % 4 = 0;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // Its own statement: VACUUM refuses to run inside the implicit multi-statement transaction.
    sqlx::raw_sql("VACUUM ANALYZE user_service_instances")
        .execute(&db.pool)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM user_service_instances")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(rows >= 50_000, "{rows}");
    let plan: serde_json::Value = sqlx::query_scalar(
        "EXPLAIN (FORMAT JSON) SELECT instance_id, service_type FROM user_service_instances
          WHERE user_id = '00000000-0000-0000-0000-000000000abc' AND is_active = true",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let node = &plan[0]["Plan"];
    assert_eq!(node["Node Type"], "Index Only Scan", "{plan:#}");
    assert_eq!(
        node["Index Name"], "user_service_instances_active_by_user",
        "{plan:#}"
    );
}

#[tokio::test]
async fn registry_rows_get_a_status_row_and_the_dashboard_tells_states_apart() {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO service_registry (service_type, name, display_name, port, category, is_available) VALUES
            ('never', 'never', 'Never checked', 41001, 'a', true),
            ('up', 'up', 'Up', 41002, 'a', true),
            ('down', 'down', 'Down', 41003, 'a', true),
            ('stale', 'stale', 'Stale', 41004, 'b', true),
            ('off', 'off', 'Switched off', 41005, 'b', false);
         UPDATE service_health_status SET is_healthy = true, last_health_check = now(), check_interval_ms = 30000
          WHERE service_type = 'up';
         UPDATE service_health_status SET is_healthy = false, last_health_check = now(), check_interval_ms = 30000,
                consecutive_failures = 4, error_kind = 'connect', error_message = 'connect: refused'
          WHERE service_type = 'down';
         UPDATE service_health_status SET is_healthy = true, last_health_check = now() - interval '10 minutes',
                check_interval_ms = 30000
          WHERE service_type = 'stale';",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT service_type::text, status FROM service_health_dashboard ORDER BY service_type",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let want = [
        ("down", "down"),
        ("never", "unknown"),
        ("off", "unavailable"),
        ("stale", "stale"),
        ("up", "up"),
    ];
    let got: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn instance_urls_come_from_the_database_setting_not_a_placeholder() {
    let db = TestDb::migrated().await;
    sqlx::raw_sql(
        "INSERT INTO users (id, email) VALUES ('11111111-1111-1111-1111-111111111111', 'x@example.org');
         INSERT INTO service_registry (service_type, name, display_name, port) VALUES ('figma', 'figma', 'Figma', 49160);
         INSERT INTO user_service_instances (instance_id, user_id, service_type, encrypted_api_key)
              VALUES ('figma_abc', '11111111-1111-1111-1111-111111111111', 'figma', 'enc');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let url: Option<String> = sqlx::query_scalar("SELECT instance_url FROM user_services_summary")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(url, None, "no placeholder domain when unset");
    sqlx::query("INSERT INTO platform_settings (key, value) VALUES ('instance_base_url', 'https://mcp.example.net/')")
        .execute(&db.pool)
        .await
        .unwrap();
    let url: Option<String> = sqlx::query_scalar("SELECT instance_url FROM user_services_summary")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        url.as_deref(),
        Some("https://mcp.example.net/figma_abc/figma/")
    );
}

#[tokio::test]
async fn row_level_security_isolates_users_but_not_the_owner() {
    let db = TestDb::migrated().await;
    let role = format!("{}_app", db.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, email) VALUES ('11111111-1111-1111-1111-111111111111', 'a@example.org'),
                                              ('22222222-2222-2222-2222-222222222222', 'b@example.org');
         INSERT INTO service_registry (service_type, name, display_name, port) VALUES ('figma', 'figma', 'Figma', 49160);
         INSERT INTO user_service_instances (instance_id, user_id, service_type, encrypted_api_key) VALUES
             ('a', '11111111-1111-1111-1111-111111111111', 'figma', 'k1'),
             ('b', '22222222-2222-2222-2222-222222222222', 'figma', 'k2');
         CREATE ROLE {role};
         GRANT SELECT ON user_service_instances, api_key_validation_cache, service_usage_analytics TO {role};"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let visible = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let owner = visible("SELECT count(*) FROM user_service_instances")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(
        owner, 2,
        "the daemon's own (owner) connection sees every row"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET ROLE {role}")))
        .execute(&mut *conn)
        .await
        .unwrap();
    let anonymous = visible("SELECT count(*) FROM user_service_instances")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(anonymous, 0, "no app.current_user_id, no rows");
    sqlx::raw_sql("SET app.current_user_id = '22222222-2222-2222-2222-222222222222'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT instance_id::text FROM user_service_instances")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(ids, ["b"]);
    sqlx::raw_sql("RESET ROLE")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role}"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}
