//! What the original design left in the database, set aside while our tables are built and
//! dropped once its rows are copied: its five tables, its two views and its two cleanup
//! functions. Nothing else may depend on them, or the adoption stops and names it.

use sqlx::PgConnection;
use sqlx::migrate::MigrateError;

use super::{ASIDE, ident, refuse};

/// The original design's tables, parents before children.
pub const TABLES: [&str; 5] = [
    "service_registry",
    "user_service_instances",
    "service_health_status",
    "api_key_validation_cache",
    "service_usage_analytics",
];

/// The original design's views ("Database Views"), replaced by ours of the same names.
const VIEWS: [&str; 2] = ["user_services_summary", "service_health_dashboard"];

/// The original design's retention functions, replaced by migration 0011's of the same names.
const FUNCTIONS: [&str; 2] = ["cleanup_old_usage_analytics", "cleanup_validation_cache"];

/// The original objects found in schema public.
#[derive(Debug)]
pub struct Found {
    views: Vec<String>,
    /// `name(argument types)`, as `DROP FUNCTION` takes them.
    functions: Vec<String>,
}

/// Finds the original objects and checks that setting them aside loses nothing.
pub async fn take(conn: &mut PgConnection) -> Result<Found, MigrateError> {
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, c.relkind::text FROM pg_class c
          WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY ($1)",
    )
    .bind(TABLES.iter().chain(&VIEWS).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let kind = |name: &str| {
        kinds
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.as_str())
    };
    let missing: Vec<&str> = TABLES
        .into_iter()
        .filter(|t| !matches!(kind(t), Some("r" | "p")))
        .collect();
    if !missing.is_empty() {
        return Err(refuse(format!(
            "service_registry exists but not the table(s) {missing:?} of the original migration \
             008; this is neither that schema nor ours"
        )));
    }
    let views: Vec<String> = VIEWS
        .into_iter()
        .filter(|v| kind(v).is_some())
        .map(String::from)
        .collect();
    if let Some(v) = views.iter().find(|v| kind(v) != Some("v")) {
        return Err(refuse(format!("public.{v} exists but is not a view")));
    }
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I(%s)', p.proname, pg_get_function_identity_arguments(p.oid))
           FROM pg_proc p
          WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY ($1)",
    )
    .bind(&FUNCTIONS[..])
    .fetch_all(&mut *conn)
    .await?;
    let aside_exists: bool = sqlx::query_scalar("SELECT to_regnamespace($1) IS NOT NULL")
        .bind(ASIDE)
        .fetch_one(&mut *conn)
        .await?;
    if aside_exists {
        return Err(refuse(format!(
            "schema {ASIDE} already exists; it is where the original tables are set aside"
        )));
    }
    let found = Found { views, functions };
    let lost = would_be_lost(conn, &found).await?;
    if !lost.is_empty() {
        return Err(refuse(format!(
            "these objects depend on the original tables and would be lost: {}; drop them \
             first (and recreate them on the new tables after `migrate`)",
            lost.join("; ")
        )));
    }
    Ok(found)
}

/// Objects that would go with the original tables without being part of the original design:
/// another table's foreign key, another view, a function of their row type, a trigger, a policy.
async fn would_be_lost(
    conn: &mut PgConnection,
    found: &Found,
) -> Result<Vec<String>, MigrateError> {
    let rels: Vec<String> = TABLES
        .iter()
        .map(|t| format!("public.{t}"))
        .chain(found.views.iter().map(|v| format!("public.{v}")))
        .collect();
    let lost = sqlx::query_scalar(
        "WITH ours AS (SELECT c.oid, c.reltype FROM pg_class c WHERE c.oid = ANY ($1::regclass[])),
         deps AS (
             SELECT d.classid, d.objid, d.objsubid,
                    CASE d.classid
                        WHEN 'pg_constraint'::regclass THEN (SELECT nullif(x.conrelid, 0) FROM pg_constraint x WHERE x.oid = d.objid)
                        WHEN 'pg_rewrite'::regclass    THEN (SELECT x.ev_class FROM pg_rewrite x WHERE x.oid = d.objid)
                        WHEN 'pg_trigger'::regclass    THEN (SELECT x.tgrelid FROM pg_trigger x WHERE x.oid = d.objid)
                        WHEN 'pg_policy'::regclass     THEN (SELECT x.polrelid FROM pg_policy x WHERE x.oid = d.objid)
                        WHEN 'pg_attrdef'::regclass    THEN (SELECT x.adrelid FROM pg_attrdef x WHERE x.oid = d.objid)
                        WHEN 'pg_class'::regclass      THEN d.objid
                    END AS owner_rel
               FROM pg_depend d
              WHERE d.deptype = 'n'
                AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid IN (SELECT oid FROM ours))
                  OR (d.refclassid = 'pg_type'::regclass AND d.refobjid IN (SELECT reltype FROM ours))))
         SELECT DISTINCT CASE WHEN d.classid = 'pg_rewrite'::regclass
                              THEN pg_describe_object('pg_class'::regclass, d.owner_rel, 0)
                              ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END
           FROM deps d
          WHERE d.owner_rel IS NULL OR d.owner_rel NOT IN (SELECT oid FROM ours)
         UNION
         SELECT pg_describe_object('pg_trigger'::regclass, t.oid, 0)
           FROM pg_trigger t WHERE t.tgrelid IN (SELECT oid FROM ours) AND NOT t.tgisinternal
         UNION
         SELECT pg_describe_object('pg_policy'::regclass, p.oid, 0)
           FROM pg_policy p WHERE p.polrelid IN (SELECT oid FROM ours)
         ORDER BY 1",
    )
    .bind(rels)
    .fetch_all(&mut *conn)
    .await?;
    Ok(lost)
}

/// Moves the original objects into the schema `ASIDE`, out of the migrations' way.
pub async fn move_aside(conn: &mut PgConnection, found: &Found) -> Result<(), MigrateError> {
    let mut sql = format!("CREATE SCHEMA {};", ident(ASIDE));
    for t in TABLES {
        sql += &format!(
            "ALTER TABLE public.{} SET SCHEMA {};",
            ident(t),
            ident(ASIDE)
        );
    }
    for v in &found.views {
        sql += &format!(
            "ALTER VIEW public.{} SET SCHEMA {};",
            ident(v),
            ident(ASIDE)
        );
    }
    for f in &found.functions {
        sql += &format!("ALTER FUNCTION public.{f} SET SCHEMA {};", ident(ASIDE));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Grants the new tables and views what the original ones granted (table- and column-level,
/// the owner's own rights aside), so the platform's roles keep their access.
pub async fn carry_grants(conn: &mut PgConnection, found: &Found) -> Result<(), MigrateError> {
    let names: Vec<&str> = TABLES
        .iter()
        .copied()
        .chain(found.views.iter().map(String::as_str))
        .collect();
    let grants: Vec<String> = sqlx::query_scalar(
        "WITH old AS (
             SELECT c.oid, c.relname, c.relowner, c.relacl
               FROM pg_class c
              WHERE c.relnamespace = to_regnamespace($1) AND c.relname = ANY ($2))
         SELECT format('GRANT %s ON public.%I TO %s%s', a.privilege_type, o.relname,
                       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                       CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
           FROM old o CROSS JOIN LATERAL aclexplode(o.relacl) a
          WHERE a.grantee <> o.relowner
         UNION ALL
         SELECT format('GRANT %s (%I) ON public.%I TO %s%s', a.privilege_type, att.attname, o.relname,
                       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                       CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
           FROM old o
           JOIN pg_attribute att ON att.attrelid = o.oid AND att.attnum > 0 AND att.attacl IS NOT NULL
           JOIN pg_attribute new ON new.attrelid = format('public.%I', o.relname)::regclass
                                AND new.attname = att.attname AND NOT new.attisdropped
           CROSS JOIN LATERAL aclexplode(att.attacl) a
          WHERE a.grantee <> o.relowner",
    )
    .bind(ASIDE)
    .bind(names)
    .fetch_all(&mut *conn)
    .await?;
    for grant in &grants {
        tracing::info!(event = "original_design_grant", grant = %grant);
        sqlx::raw_sql(sqlx::AssertSqlSafe(grant.clone()))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Drops the set-aside originals and their schema, without CASCADE: anything unexpected still
/// depending on them makes this fail rather than vanish.
pub async fn drop_aside(conn: &mut PgConnection, found: &Found) -> Result<(), MigrateError> {
    let aside = ident(ASIDE);
    let mut sql = String::new();
    for f in &found.functions {
        sql += &format!("DROP FUNCTION {aside}.{f};");
    }
    for v in &found.views {
        sql += &format!("DROP VIEW {aside}.{};", ident(v));
    }
    let tables: Vec<String> = TABLES
        .iter()
        .map(|t| format!("{aside}.{}", ident(t)))
        .collect();
    sql += &format!("DROP TABLE {}; DROP SCHEMA {aside};", tables.join(", "));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await?;
    Ok(())
}
