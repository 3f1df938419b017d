//! The leader lease: one row in `maintenance_leases`, held by one daemon until it expires.
//! PostgreSQL's clock decides expiry, so hosts with skewed clocks still agree. The epoch grows
//! whenever the lease changes hands (a holder renewing late, with nobody in between, keeps it); a destructive step calls [`Fence::check`] inside its own
//! transaction, which takes the lease row FOR SHARE, so the lease cannot change hands until
//! that transaction ends.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

/// The lease maintenance jobs run under.
pub const MAINTENANCE: &str = "maintenance";

/// Takes the lease if it is free or expired, or renews it if `holder` has it. Returns the
/// epoch when `holder` is the leader afterwards, `None` when someone else is.
pub async fn acquire_or_renew(
    pool: &PgPool,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO maintenance_leases AS l (name, holder, epoch, acquired_at, expires_at)
         VALUES ($1, $2, 1, now(), now() + $3 * interval '1 millisecond')
         ON CONFLICT (name) DO UPDATE
            SET holder = EXCLUDED.holder,
                epoch = CASE WHEN l.holder = EXCLUDED.holder THEN l.epoch ELSE l.epoch + 1 END,
                acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END,
                expires_at = EXCLUDED.expires_at
          WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()
         RETURNING epoch",
    )
    .bind(name)
    .bind(holder)
    .bind(ttl.as_millis() as f64)
    .fetch_optional(pool)
    .await
}

/// Gives the lease up at once (on shutdown), so another daemon need not wait for it to expire.
pub async fn release(pool: &PgPool, name: &str, holder: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE maintenance_leases SET expires_at = now() - interval '1 millisecond'
          WHERE name = $1 AND holder = $2 AND expires_at > now()",
    )
    .bind(name)
    .bind(holder)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Who is allowed to run destructive steps: the lease holder at a given epoch, or an operator
/// running a job by hand (`jobs run`), who answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    Manual,
    Lease { holder: String, epoch: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error(
        "the leader lease was lost (held by {holder} at epoch {epoch} no longer); step not run"
    )]
    Lost { holder: String, epoch: i64 },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Fence {
    /// Succeeds only if the lease is still ours at our epoch, and keeps it ours (FOR SHARE)
    /// until the caller's transaction ends.
    pub async fn check(&self, conn: &mut PgConnection) -> Result<(), FenceError> {
        let Fence::Lease { holder, epoch } = self else {
            return Ok(());
        };
        let held: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM maintenance_leases
              WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
                FOR SHARE",
        )
        .bind(MAINTENANCE)
        .bind(holder)
        .bind(epoch)
        .fetch_optional(&mut *conn)
        .await?;
        match held {
            Some(_) => Ok(()),
            None => Err(FenceError::Lost {
                holder: holder.clone(),
                epoch: *epoch,
            }),
        }
    }
}
