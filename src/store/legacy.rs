//! The move off the legacy `mcp_instances`/`mcp_types` tables (the spec's migrations 010 and
//! 011). The SQL lives in the migrations as functions; an operator runs them explicitly, in order:
//! `legacy migrate` (repeatable), `legacy report`, then `legacy finalize`, which archives and drops.

use sqlx::PgPool;

/// How many legacy rows ended one way, and why (`reason` is `None` for migrated rows).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutcomeCount {
    pub outcome: String,
    pub reason: Option<String>,
    pub rows: i64,
}

/// Every legacy instance row is exactly one of migrated, rejected (with a reason) or unaccounted.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Report {
    pub total: i64,
    pub migrated: i64,
    pub rejected: i64,
    pub unaccounted: i64,
}

/// Copies every not-yet-migrated legacy instance; rows that cannot be copied are recorded with
/// their reason. Rows rejected for a reason that may since have gone away (no registry row yet,
/// target taken) are re-examined, so running it again after `registry import` picks them up.
pub async fn migrate_instances(pool: &PgPool) -> sqlx::Result<Vec<OutcomeCount>> {
    let mut tx = unlimited(pool).await?;
    let counts = sqlx::query_as(
        "SELECT outcome, reason, rows FROM legacy_migrate_instances() ORDER BY outcome, reason",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(counts)
}

/// A transaction without the session's statement deadline: the legacy steps are one statement
/// each over the whole legacy data set, which may take far longer than a flush ever should.
async fn unlimited(pool: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

pub async fn report(pool: &PgPool) -> sqlx::Result<Report> {
    sqlx::query_as("SELECT total, migrated, rejected, unaccounted FROM legacy_migration_report()")
        .fetch_one(pool)
        .await
}

/// Archives both legacy tables (access tokens only as SHA-256 digests) and drops them without
/// CASCADE. The database refuses, naming the cause, while any row is unaccounted for or any
/// other object depends on them. Returns (instances archived, types archived).
pub async fn finalize(pool: &PgPool) -> sqlx::Result<(i64, i64)> {
    let mut tx = unlimited(pool).await?;
    let archived =
        sqlx::query_as("SELECT archived_instances, archived_types FROM legacy_finalize()")
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(archived)
}
