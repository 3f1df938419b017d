//! The run lock that keeps two runs of one job from overlapping, on any host.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::JobName;
use crate::store::db::deadline;

/// A job's run lock: a session-level advisory lock on a pooled connection, held for the whole
/// run, on a connection that goes back to the pool only once the lock is released. However the
/// run ends without [`RunLock::release`] (its future aborted by a schedule reload or a shutdown
/// whose grace ran out, a panic, a lost connection), the connection is closed instead of
/// returned, and the server drops the lock with the session.
///
/// Why not `pg_try_advisory_xact_lock`: the jobs commit every batch in its own short
/// transaction on other connections, so the lock's transaction would sit idle for the whole
/// run, and `idle_in_transaction_session_timeout` (set on every connection) would end it, and
/// release the lock, in the middle of any run longer than that; an idle open transaction is
/// also what an operator's monitoring flags. A session lock whose session dies with the run
/// needs neither.
pub(super) struct RunLock {
    conn: PoolConnection<Postgres>,
    key: i64,
    /// Whether the lock may still be held: the connection is then closed on drop.
    held: bool,
}

impl RunLock {
    /// Takes `job`'s run lock without waiting; `None` when another run holds it. Each call to
    /// the database waits at most `limit`.
    pub(super) async fn try_take(
        pool: &PgPool,
        job: JobName,
        limit: Duration,
    ) -> sqlx::Result<Option<Self>> {
        let mut lock = RunLock {
            conn: deadline(limit, pool.acquire()).await?,
            key: job.lock_key(),
            held: true,
        };
        let granted = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(lock.key)
            .fetch_one(&mut *lock.conn);
        let granted = deadline(limit, granted).await?;
        lock.held = granted;
        Ok(granted.then_some(lock))
    }

    /// Releases the lock; the connection goes back to the pool only if the server confirms.
    pub(super) async fn release(mut self, limit: Duration) {
        let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(self.key)
            .fetch_one(&mut *self.conn);
        let unlocked = deadline(limit, unlocked).await;
        self.held = !matches!(unlocked, Ok(true));
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if self.held {
            // Never hand a connection that may still hold the lock back to the pool.
            self.conn.close_on_drop();
        }
    }
}
