//! Several daemons on one database, with PostgreSQL as the only coordinator. Each daemon keeps
//! a heartbeat row; the live ones split the services by rendezvous (highest-random-weight)
//! hashing of service_type over their ids, so every daemon computes the same owner for every
//! service from the same member list, and a member joining or leaving moves only its own share
//! (the hashing itself is pure, in `plan::placement`). This module also owns the daemon's
//! identity.
//!
//! May import: `config`, `clock`, `plan`, `observe`.

mod identity;

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Renewal;
pub use crate::plan::placement::{owner, owns};
pub use identity::{hostname, identity, instance_id};

/// Writes our heartbeat and returns the live members, sorted.
pub async fn beat(pool: &PgPool, me: &str, host: &str, ttl: Duration) -> sqlx::Result<Vec<String>> {
    sqlx::query(
        "INSERT INTO daemon_heartbeats (daemon_id, host, expires_at)
         VALUES ($1, $2, now() + $3 * interval '1 millisecond')
         ON CONFLICT (daemon_id) DO UPDATE SET last_seen = now(), expires_at = EXCLUDED.expires_at",
    )
    .bind(me)
    .bind(host)
    .bind(ttl.as_millis() as f64)
    .execute(pool)
    .await?;
    sqlx::query_scalar(
        "SELECT daemon_id FROM daemon_heartbeats WHERE expires_at > now() ORDER BY daemon_id",
    )
    .fetch_all(pool)
    .await
}

/// Removes our heartbeat, so the others take our services over at their next beat.
pub async fn leave(pool: &PgPool, me: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM daemon_heartbeats WHERE daemon_id = $1")
        .bind(me)
        .execute(pool)
        .await
        .map(drop)
}

/// Beats every third of `ttl` and publishes the member list whenever it changes. On a failed
/// beat the last list stays in force: a database outage must not make a daemon drop its share.
/// Deletes the heartbeat on `stop`.
pub async fn keep_membership(
    pool: PgPool,
    me: String,
    host: String,
    ttl: Duration,
    members: watch::Sender<Vec<String>>,
    stop: CancellationToken,
) {
    let mut renewal = Renewal::every_third_of(ttl);
    while renewal.due(&stop).await {
        match beat(&pool, &me, &host, ttl).await {
            Ok(live) => {
                renewal.succeeded();
                members.send_if_modified(|current| {
                    let changed = *current != live;
                    if changed {
                        tracing::info!(event = "membership_changed", members = live.len(), daemons = %live.join(" "));
                        *current = live;
                    }
                    changed
                });
            }
            Err(e) => {
                if renewal.failed() {
                    tracing::warn!(event = "heartbeat_failed", error = %e, "cannot write the heartbeat; keeping the last membership");
                }
            }
        }
    }
    if let Err(e) = leave(&pool, &me).await {
        tracing::warn!(event = "heartbeat_not_removed", error = %e, "others take over when it expires");
    }
}
