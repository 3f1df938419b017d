//! Adopting a database where the original design's migration 008 already ran (issue 14).
//!
//! Such a database has `service_registry`, `user_service_instances`, `service_health_status`,
//! `service_usage_analytics` (unpartitioned) and `api_key_validation_cache` with the original
//! types, and our migration 0002 would fail on the first of them ("relation already exists").
//! Migration files cannot change once applied anywhere (sqlx checksums them), so `migrate`
//! converts such a database before the migrator runs, all in ONE transaction:
//!
//! 1. under the migrator's own advisory lock, detect the original design: `service_registry`
//!    exists, ours (`service_health_rollups`) does not, and `_sqlx_migrations` has no row for
//!    0002. Check that nothing would be lost: all five tables are there, no other object (a
//!    view, a foreign key of another table, a trigger, a policy) depends on them, and the
//!    setting naming the zone of the old `TIMESTAMP`s (`mcp_healthd.original_timezone`,
//!    default UTC) is a zone PostgreSQL knows;
//! 2. move the five tables, the original views and cleanup functions into the schema
//!    `mcp_healthd_original` (`inventory`);
//! 3. apply every pending migration on the same transaction, each in a savepoint and
//!    recorded in `_sqlx_migrations` exactly as the migrator records it;
//! 4. check every original row against the new tables' NOT NULL and CHECK constraints, and
//!    stop naming the rows that cannot be converted; then copy the rows in, converting types
//!    (`TIMESTAMP` read in the setting's zone -> `timestamptz`, `DECIMAL` -> double precision,
//!    integer -> bigint), analytics month by month into monthly partitions, verifying each
//!    count (`convert`, `copy`);
//! 5. carry the original tables' and views' grants over, drop the set-aside copies (without
//!    CASCADE) and their schema, commit.
//!
//! Any failure rolls everything back: the database is left exactly as it was. Indexes are
//! replaced by ours (the originals go with their tables). The new tables belong to the role
//! running `migrate`, which must own the original ones (moving a table needs ownership).

mod convert;
mod copy;
mod inventory;

use std::collections::HashMap;

use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::{Connection, PgConnection, PgPool};

/// The schema the original tables are moved into while theirs are built; gone at commit.
pub const ASIDE: &str = "mcp_healthd_original";
/// The PostgreSQL setting naming the zone the original `TIMESTAMP` values were written in.
pub const TIMEZONE_SETTING: &str = "mcp_healthd.original_timezone";
/// The migration that creates our tables where the original design's would be.
const SCHEMA_MIGRATION: i64 = 2;

/// What an adoption converted.
#[derive(Debug, Clone)]
pub struct Adopted {
    /// Each original table and how many of its rows were copied.
    pub tables: Vec<(&'static str, i64)>,
    /// Monthly partitions the analytics rows went into.
    pub months: usize,
    /// The zone the original timestamps were read in.
    pub timezone: String,
}

/// An error of the adoption itself (as opposed to one of PostgreSQL's), shown as the reason
/// `migrate` failed.
fn refuse(why: impl std::fmt::Display) -> MigrateError {
    MigrateError::Execute(sqlx::Error::InvalidArgument(format!(
        "adopting the original design's schema (nothing was changed): {why}"
    )))
}

/// Whether the database holds the original design's tables, still to be converted.
pub async fn pending(pool: &PgPool, migrator: &Migrator) -> Result<bool, MigrateError> {
    let mut conn = pool.acquire().await?;
    is_original_design(&mut conn, migrator).await
}

/// Converts the original design's schema in place when the database has it, applying every
/// migration on the way; does nothing (and returns `None`) otherwise.
pub async fn original_design(
    pool: &PgPool,
    migrator: &Migrator,
) -> Result<Option<Adopted>, MigrateError> {
    let mut conn = pool.acquire().await?;
    if !is_original_design(&mut conn, migrator).await? {
        return Ok(None);
    }
    // The migrator's own lock: a daemon starting meanwhile waits, then finds the work done.
    conn.lock().await?;
    let result = adopt_locked(&mut conn, migrator).await;
    if conn.unlock().await.is_err() {
        // Never hand a connection that may still hold the lock back to the pool.
        let _ = conn.detach();
    }
    let adopted = result?;
    if let Some(a) = &adopted {
        tracing::info!(
            event = "original_design_adopted",
            tables = ?a.tables,
            months = a.months,
            timezone = %a.timezone,
            "the original design's tables were converted in place"
        );
    }
    Ok(adopted)
}

/// The original design's tables are here and ours are not.
async fn is_original_design(
    conn: &mut PgConnection,
    migrator: &Migrator,
) -> Result<bool, MigrateError> {
    let (theirs, ours, bookkeeping): (bool, bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.service_registry') IS NOT NULL,
                to_regclass('public.service_health_rollups') IS NOT NULL,
                to_regclass($1) IS NOT NULL",
    )
    .bind(migrator.table_name.as_ref())
    .fetch_one(&mut *conn)
    .await?;
    if !theirs || ours {
        return Ok(false);
    }
    if !bookkeeping {
        return Ok(true);
    }
    let applied = conn.list_applied_migrations(&migrator.table_name).await?;
    Ok(!applied.iter().any(|m| m.version == SCHEMA_MIGRATION))
}

async fn adopt_locked(
    conn: &mut PgConnection,
    migrator: &Migrator,
) -> Result<Option<Adopted>, MigrateError> {
    // Another process may have adopted it while we waited for the lock.
    if !is_original_design(conn, migrator).await? {
        return Ok(None);
    }
    let mut tx = conn.begin().await?;
    let timezone = timezone(&mut tx).await?;
    let found = inventory::take(&mut tx).await?;
    inventory::move_aside(&mut tx, &found).await?;
    apply_pending(&mut tx, migrator).await?;
    let (tables, months) = copy::copy_all(&mut tx, &timezone).await?;
    inventory::carry_grants(&mut tx, &found).await?;
    inventory::drop_aside(&mut tx, &found).await?;
    tx.commit().await?;
    Ok(Some(Adopted {
        tables,
        months,
        timezone,
    }))
}

/// The zone of the original `TIMESTAMP` values: the setting, else UTC; checked by PostgreSQL.
async fn timezone(conn: &mut PgConnection) -> Result<String, MigrateError> {
    let named: Option<String> =
        sqlx::query_scalar("SELECT nullif(btrim(current_setting($1, true)), '')")
            .bind(TIMEZONE_SETTING)
            .fetch_one(&mut *conn)
            .await?;
    let zone = named.unwrap_or_else(|| "UTC".to_owned());
    match sqlx::query("SELECT now() AT TIME ZONE $1")
        .bind(&zone)
        .execute(&mut *conn)
        .await
    {
        Ok(_) => Ok(zone),
        Err(sqlx::Error::Database(e)) => Err(refuse(format!(
            "{TIMEZONE_SETTING} = '{zone}' is not a time zone: {}",
            e.message()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Applies, on `conn`'s open transaction, every migration not yet applied: each in a savepoint
/// and recorded in the migrator's table, as `Migrator::run` would.
async fn apply_pending(conn: &mut PgConnection, migrator: &Migrator) -> Result<(), MigrateError> {
    let table = migrator.table_name.as_ref();
    conn.ensure_migrations_table(table).await?;
    if let Some(version) = conn.dirty_version(table).await? {
        return Err(MigrateError::Dirty(version));
    }
    let applied: HashMap<i64, Vec<u8>> = conn
        .list_applied_migrations(table)
        .await?
        .into_iter()
        .map(|m| (m.version, m.checksum.into_owned()))
        .collect();
    for m in migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
    {
        match applied.get(&m.version) {
            Some(sum) if sum.as_slice() != m.checksum.as_ref() => {
                return Err(MigrateError::VersionMismatch(m.version));
            }
            Some(_) => {}
            None if m.no_tx => {
                return Err(refuse(format!(
                    "migration {} cannot run inside a transaction",
                    m.version
                )));
            }
            None => {
                conn.apply(table, m).await?;
            }
        }
    }
    Ok(())
}

/// `name` as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
