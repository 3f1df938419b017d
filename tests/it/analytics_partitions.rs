//! `service_usage_analytics` is really partitioned by month: inserts for now, for every premade
//! month and for dates far outside them all succeed and land where they belong.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};

use crate::helpers::TestDb;

async fn seed(db: &TestDb) {
    sqlx::raw_sql(
        "INSERT INTO users (id, email) VALUES ('11111111-1111-1111-1111-111111111111', 'a@example.org');
         INSERT INTO service_registry (service_type, name, display_name, port) VALUES ('figma', 'figma', 'Figma', 49160);",
    )
    .execute(&db.pool)
    .await
    .unwrap();
}

/// A migrated database, the first day of the UTC month its migration premade partitions from
/// (that month and the next three), and a moment in that month after the migration. Made
/// again in the rare case that a month began while the database was being made.
async fn migrated_within_one_month() -> (TestDb, NaiveDate, DateTime<Utc>) {
    loop {
        let before = Utc::now();
        let db = TestDb::migrated().await;
        let now = Utc::now();
        let first = before.date_naive().with_day(1).unwrap();
        if now.date_naive().with_day(1).unwrap() == first {
            return (db, first, now);
        }
    }
}

/// Inserts one analytics row at `ts` and returns (partition it landed in, created_date).
async fn insert_at(db: &TestDb, ts: &str) -> (String, NaiveDate) {
    sqlx::query_as(
        "INSERT INTO service_usage_analytics (user_id, service_type, instance_id, \"timestamp\")
              VALUES ('11111111-1111-1111-1111-111111111111', 'figma', 'figma_x', $1::timestamptz)
           RETURNING tableoid::regclass::text, created_date",
    )
    .bind(ts)
    .fetch_one(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("insert at {ts}: {e}"))
}

#[tokio::test]
async fn inserts_land_in_their_month_or_the_default_partition() {
    let (db, first, now) = migrated_within_one_month().await;
    seed(&db).await;
    let (now_part, _) = insert_at(&db, &now.to_rfc3339()).await;
    assert_eq!(
        now_part,
        format!("service_usage_analytics_p{}", first.format("%Y%m"))
    );
    for ahead in 0..=3 {
        let month = first.checked_add_months(Months::new(ahead)).unwrap();
        let ts = format!("{}T12:00:00Z", month.with_day(15).unwrap());
        let (part, _) = insert_at(&db, &ts).await;
        assert_eq!(
            part,
            format!("service_usage_analytics_p{}", month.format("%Y%m")),
            "{ts}"
        );
    }
    let far_ahead = format!("{}-01-01T00:00:00Z", first.year() + 20);
    for far in ["2019-06-01T00:00:00Z", far_ahead.as_str()] {
        let (part, _) = insert_at(&db, far).await;
        assert_eq!(part, "service_usage_analytics_default", "{far}");
    }
}

#[tokio::test]
async fn created_date_and_partition_follow_utc_whatever_the_session_time_zone() {
    let (db, first, _) = migrated_within_one_month().await;
    seed(&db).await;
    let next = first.checked_add_months(Months::new(1)).unwrap();
    let last_day = next.pred_opt().unwrap();
    // 23:30 in New York on the month's last day is already the next month in UTC.
    let mut conn = db.pool.acquire().await.unwrap();
    sqlx::raw_sql("SET TIME ZONE 'America/New_York'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let (part, date): (String, NaiveDate) = sqlx::query_as(
        "INSERT INTO service_usage_analytics (user_id, service_type, instance_id, \"timestamp\")
              VALUES ('11111111-1111-1111-1111-111111111111', 'figma', 'figma_x', ($1::date + time '23:30')::timestamp)
           RETURNING tableoid::regclass::text, created_date",
    )
    .bind(last_day)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(date, next, "created_date is the UTC date");
    assert_eq!(
        part,
        format!("service_usage_analytics_p{}", next.format("%Y%m"))
    );
}

#[tokio::test]
async fn making_a_partition_moves_its_rows_out_of_the_default_partition() {
    let db = TestDb::migrated().await;
    seed(&db).await;
    // A May well clear of the months the migration premade around today.
    let y = Utc::now().year() + 10;
    insert_at(&db, &format!("{y}-05-10T08:00:00Z")).await;
    insert_at(&db, &format!("{y}-05-31T23:59:59Z")).await;
    insert_at(&db, &format!("{y}-06-01T00:00:00Z")).await;
    let ensure = async |day: u32| -> bool {
        sqlx::query_scalar("SELECT ensure_usage_analytics_partition($1)")
            .bind(NaiveDate::from_ymd_opt(y, 5, day).unwrap())
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    assert!(ensure(17).await);
    let again = ensure(1).await;
    assert!(!again, "idempotent");
    let placement: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tableoid::regclass::text, count(*) FROM service_usage_analytics GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        placement,
        [
            ("service_usage_analytics_default".to_owned(), 1),
            (format!("service_usage_analytics_p{y}05"), 2)
        ]
    );
}
