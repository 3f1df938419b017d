//! The monthly partitions of `service_usage_analytics` as the catalog describes them: found by
//! their bounds, never by their names, so partitions an operator made by hand count.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use sqlx::PgConnection;

pub const PARENT: &str = "service_usage_analytics";
pub const DEFAULT_PARTITION: &str = "service_usage_analytics_default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Every range partition (the default partition has no bounds and is not listed).
pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<Partition>> {
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        r#"SELECT c.oid::regclass::text, m[1]::timestamptz, m[2]::timestamptz
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                             $re$FROM \('([^']*)'\) TO \('([^']*)'\)$re$) AS m
            WHERE i.inhparent = 'service_usage_analytics'::regclass
              AND m IS NOT NULL -- the default partition has no bounds
            ORDER BY 2"#,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, from, to)| Partition { name, from, to })
        .collect())
}

/// The first day of the UTC month containing `t`.
pub fn month_of(t: DateTime<Utc>) -> NaiveDate {
    let d = t.date_naive();
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("day 1 exists")
}

pub fn add_months(month: NaiveDate, n: u32) -> NaiveDate {
    month.checked_add_months(Months::new(n)).unwrap_or(month)
}

pub fn start_of(month: NaiveDate) -> DateTime<Utc> {
    month
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn months_are_utc_calendar_months() {
        let t = Utc.with_ymd_and_hms(2026, 1, 31, 23, 59, 59).unwrap();
        assert_eq!(month_of(t), NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
        assert_eq!(
            add_months(month_of(t), 13),
            NaiveDate::from_ymd_opt(2027, 2, 1).unwrap()
        );
        assert_eq!(
            start_of(month_of(t)),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
        );
    }
}
