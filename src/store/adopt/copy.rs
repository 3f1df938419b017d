//! The original rows into the new tables, once every row has passed its checks (`convert`):
//! each table copied with its types converted, analytics month by month into monthly
//! partitions, and every count verified.

use chrono::{Months, NaiveDate};
use sqlx::PgConnection;
use sqlx::migrate::MigrateError;

use super::convert::{Plan, plan};
use super::inventory::TABLES;
use super::{ASIDE, ident, refuse};

async fn count(conn: &mut PgConnection, schema: &str, table: &str) -> sqlx::Result<i64> {
    let sql = format!("SELECT count(*) FROM {}.{}", ident(schema), ident(table));
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
}

/// Checks every original row, then copies all five tables; returns each table's row count and
/// how many months of analytics there were.
pub async fn copy_all(
    conn: &mut PgConnection,
    zone: &str,
) -> Result<(Vec<(&'static str, i64)>, usize), MigrateError> {
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    for table in TABLES {
        let p = plan(conn, table, zone).await?;
        problems.extend(p.problems(conn).await?);
        plans.push(p);
    }
    if !problems.is_empty() {
        return Err(refuse(format!(
            "some rows cannot be converted; fix or delete them, then run `migrate` again \
             (rows named by the original tables' primary keys):\n  {}",
            problems.join("\n  ")
        )));
    }
    let mut copied = Vec::new();
    let mut months = 0;
    for p in &plans {
        let before = count(conn, ASIDE, p.table).await?;
        let rows = match p.table {
            "service_usage_analytics" => {
                let (rows, n) = copy_analytics(conn, p).await?;
                months = n;
                rows
            }
            "service_health_status" => {
                // Migration 0003's trigger made a blank row for every service copied above:
                // the original rows replace them.
                let sql = format!(
                    "DELETE FROM public.service_health_status s
                      USING {}.service_health_status o WHERE s.service_type = o.service_type",
                    ident(ASIDE)
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await?;
                copy(conn, p, "").await?
            }
            _ => copy(conn, p, "").await?,
        };
        if rows != before {
            return Err(refuse(format!(
                "{}: copied {rows} of {before} rows",
                p.table
            )));
        }
        copied.push((p.table, rows));
    }
    verify(conn, &copied).await?;
    Ok((copied, months))
}

async fn copy(conn: &mut PgConnection, p: &Plan, filter: &str) -> sqlx::Result<i64> {
    let done = sqlx::query(sqlx::AssertSqlSafe(p.insert(filter)))
        .execute(conn)
        .await?;
    Ok(done.rows_affected() as i64)
}

/// Analytics month by month (UTC months of the converted timestamps): the month's partition
/// is made, its rows copied and counted.
async fn copy_analytics(conn: &mut PgConnection, p: &Plan) -> Result<(i64, usize), MigrateError> {
    let ts = &p.exprs[p.columns.iter().position(|c| c == "timestamp").unwrap_or(0)];
    let per_month: Vec<(NaiveDate, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT date_trunc('month', {ts} AT TIME ZONE 'UTC')::date, count(*)
           FROM {}.service_usage_analytics o GROUP BY 1 ORDER BY 1",
        ident(ASIDE)
    )))
    .fetch_all(&mut *conn)
    .await?;
    let mut total = 0;
    for (month, expected) in &per_month {
        sqlx::query("SELECT ensure_usage_analytics_partition($1)")
            .bind(month)
            .execute(&mut *conn)
            .await?;
        let next = month.checked_add_months(Months::new(1)).unwrap_or(*month);
        let filter = format!(
            "WHERE {ts} >= '{month}T00:00:00Z'::timestamptz AND {ts} < '{next}T00:00:00Z'::timestamptz"
        );
        let rows = copy(conn, p, &filter).await?;
        if rows != *expected {
            return Err(refuse(format!(
                "service_usage_analytics, month {month}: copied {rows} of {expected} rows"
            )));
        }
        tracing::info!(event = "original_design_month", month = %month, rows);
        total += rows;
    }
    Ok((total, per_month.len()))
}

/// The new tables hold what the original ones held, and the status table a row per service.
async fn verify(
    conn: &mut PgConnection,
    copied: &[(&'static str, i64)],
) -> Result<(), MigrateError> {
    for (table, rows) in copied {
        let now = count(conn, "public", table).await?;
        let ok = if *table == "service_health_status" {
            now == count(conn, "public", "service_registry").await?
        } else {
            now == *rows
        };
        if !ok {
            return Err(refuse(format!(
                "{table} holds {now} rows after copying {rows}"
            )));
        }
    }
    let strays = count(conn, "public", "service_usage_analytics_default").await?;
    if strays != 0 {
        return Err(refuse(format!(
            "{strays} analytics rows landed outside their monthly partitions"
        )));
    }
    Ok(())
}
