//! `service_usage_analytics` is really partitioned by month: inserts for now, for every premade
//! month and for dates far outside them all succeed and land where they belong.

use chrono::{Datelike, Months, NaiveDate, Utc};

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
    let db = TestDb::migrated().await;
    seed(&db).await;
    let first = Utc::now().date_naive().with_day(1).unwrap();
    let (now_part, _) = insert_at(&db, &Utc::now().to_rfc3339()).await;
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
    for far in ["2019-06-01T00:00:00Z", "2042-01-01T00:00:00Z"] {
        let (part, _) = insert_at(&db, far).await;
        assert_eq!(part, "service_usage_analytics_default", "{far}");
    }
}

#[tokio::test]
async fn created_date_and_partition_follow_utc_whatever_the_session_time_zone() {
    let db = TestDb::migrated().await;
    seed(&db).await;
    let first = Utc::now().date_naive().with_day(1).unwrap();
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
    insert_at(&db, "2030-05-10T08:00:00Z").await;
    insert_at(&db, "2030-05-31T23:59:59Z").await;
    insert_at(&db, "2030-06-01T00:00:00Z").await;
    let created: bool = sqlx::query_scalar("SELECT ensure_usage_analytics_partition('2030-05-17')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(created);
    let again: bool = sqlx::query_scalar("SELECT ensure_usage_analytics_partition('2030-05-01')")
        .fetch_one(&db.pool)
        .await
        .unwrap();
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
            ("service_usage_analytics_p203005".to_owned(), 2)
        ]
    );
}
