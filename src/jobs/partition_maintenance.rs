//! `partition_maintenance`: monthly partitions of `service_usage_analytics` exist for the
//! current month and `premake_months` ahead, so an insert never waits for a partition.
//!
//! After a long pause (a stopped daemon), rows of the missed months are in the default
//! partition; their months get partitions too (the rows move in), except months retention
//! would drop at once, whose rows stay for retention's batched delete.

use chrono::{DateTime, NaiveDate, Utc};

use super::partitions::{add_months, month_of, start_of};
use super::{Done, JobContext};

/// The months that must have a partition at `now`: current and ahead, then caught-up ones.
pub fn wanted_months(
    now: DateTime<Utc>,
    premake: u32,
    stray: &[NaiveDate],
    retain_from: DateTime<Utc>,
) -> Vec<NaiveDate> {
    let current = month_of(now);
    let mut months: Vec<NaiveDate> = (0..=premake).map(|k| add_months(current, k)).collect();
    for &m in stray {
        // A month wholly older than the retention cut-off would be dropped at once.
        if start_of(add_months(m, 1)) > retain_from && !months.contains(&m) {
            months.push(m);
        }
    }
    months.sort();
    months
}

pub async fn run(ctx: &JobContext<'_>, done: &mut Done) -> anyhow::Result<()> {
    let now = ctx.clock.now();
    let retain = chrono::TimeDelta::from_std(ctx.config.jobs.analytics_retention.retain)?;
    let retain_from = now - retain;
    // Rows in the default partition before the current month: months missed while paused.
    let stray: Vec<NaiveDate> = sqlx::query_scalar(
        r#"SELECT DISTINCT (date_trunc('month', "timestamp" AT TIME ZONE 'UTC'))::date
             FROM service_usage_analytics_default
            WHERE "timestamp" >= $1 AND "timestamp" < $2"#,
    )
    .bind(start_of(month_of(retain_from)))
    .bind(start_of(month_of(now)))
    .fetch_all(ctx.pool)
    .await?;
    let premake = ctx.config.jobs.partition_maintenance.premake_months;
    for month in wanted_months(now, premake, &stray, retain_from) {
        let mut tx = ctx.pool.begin().await?;
        ctx.fence.check(&mut tx).await?;
        let created: bool = sqlx::query_scalar("SELECT ensure_usage_analytics_partition($1)")
            .bind(month)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if created {
            tracing::info!(event = "partition_created", month = %month.format("%Y-%m"));
            done.add(1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn month(y: i32, m: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, 1).unwrap()
    }

    #[test]
    fn current_and_ahead_plus_recent_strays_only() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let retain_from = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let stray = [month(2026, 5), month(2026, 6), month(2026, 9)];
        assert_eq!(
            wanted_months(now, 2, &stray, retain_from),
            [
                month(2026, 6),
                month(2026, 9),
                month(2026, 11),
                month(2026, 12),
                month(2027, 1)
            ]
        );
        assert_eq!(wanted_months(now, 0, &[], retain_from), [month(2026, 11)]);
    }
}
