//! One live daemon per node name. The daemon holds a session advisory lock keyed by its node
//! name on a connection of its own for as long as it runs: a second daemon started with the same
//! name finds the lock taken and refuses to start, while a restart after a crash finds it free
//! (the kernel closes a dead process's socket, and PostgreSQL then ends its session and lock).
//! A host that died without closing anything leaves a session the server notices only by TCP
//! keepalive, so the claim's session asks for keepalives every third of the ttl; and a lock whose
//! name has no live heartbeat but ours is a leftover, which the claimant ends.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};

use crate::store::db;

/// The first key of the two-key advisory lock space reserved for node names ("mcp" in ASCII),
/// apart from the jobs' one-key locks.
const NODE_LOCK_CLASS: i32 = 0x006d_6370;

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "another mcp-healthd with node name {name:?} is running on this database ({holder}); give each daemon its own cluster.node_name (or MCP_HEALTHD_NODE_NAME)"
    )]
    Taken { name: String, holder: String },
    #[error("cannot claim node name {name:?}: {source}")]
    Db { name: String, source: sqlx::Error },
}

/// The node name, held.
pub struct NameClaim {
    name: String,
    instance: String,
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    limit: Duration,
}

impl NameClaim {
    /// Takes `name`, retrying for up to `patience` while the lock is held: a crashed process's
    /// session may take a moment to end.
    pub async fn take(
        pool: &PgPool,
        me: &super::Member,
        limit: Duration,
        patience: Duration,
    ) -> Result<Self, ClaimError> {
        let keepalive = (me.ttl / 3).as_secs().max(1).to_string();
        let options = (*pool.connect_options()).clone().options([
            ("tcp_keepalives_idle", keepalive.as_str()),
            ("tcp_keepalives_interval", keepalive.as_str()),
            ("tcp_keepalives_count", "3"),
        ]);
        let mut claim = NameClaim {
            name: me.name.clone(),
            instance: me.instance.clone(),
            options,
            conn: None,
            limit,
        };
        let give_up = tokio::time::Instant::now() + patience;
        loop {
            match claim.lock().await {
                Err(ClaimError::Taken { .. }) if tokio::time::Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(ClaimError::Taken { name, .. }) => {
                    let holder = holder(pool, &name).await;
                    return Err(ClaimError::Taken { name, holder });
                }
                other => return other.map(|()| claim),
            }
        }
    }

    /// Confirms the claim still holds: its session is alive, or a new session took the lock
    /// again (after the database restarted, say).
    pub async fn confirm(&mut self) -> Result<(), ClaimError> {
        if let Some(conn) = self.conn.as_mut() {
            let alive = db::deadline(self.limit, conn.ping()).await;
            if alive.is_ok() {
                return Ok(());
            }
            self.conn = None;
        }
        self.lock().await
    }

    async fn lock(&mut self) -> Result<(), ClaimError> {
        let db_err = |source| ClaimError::Db {
            name: self.name.clone(),
            source,
        };
        let mut conn = db::deadline(self.limit, PgConnection::connect_with(&self.options))
            .await
            .map_err(db_err)?;
        let got = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(NODE_LOCK_CLASS)
            .bind(&self.name)
            .fetch_one(&mut conn);
        let mut got = db::deadline(self.limit, got).await.map_err(db_err)?;
        if !got
            && db::deadline(
                self.limit,
                end_leftover(&mut conn, &self.name, &self.instance),
            )
            .await
            .map_err(db_err)?
        {
            let again =
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, hashtext($2))")
                    .bind(NODE_LOCK_CLASS)
                    .bind(&self.name)
                    .fetch_one(&mut conn);
            got = db::deadline(self.limit, again).await.map_err(db_err)?;
        }
        if !got {
            return Err(ClaimError::Taken {
                name: self.name.clone(),
                holder: String::new(),
            });
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Lets the name go (ending the session releases the lock).
    pub async fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(self.limit, conn.close()).await;
        }
    }
}

/// Ends the session holding `name`'s lock if no live heartbeat bears the name (or only one of
/// this process, whose session is a leftover): a host that died, or our own session cut off.
/// Returns whether it ended one.
async fn end_leftover(conn: &mut PgConnection, name: &str, instance: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT coalesce(bool_or(pg_terminate_backend(l.pid, 1000)), false)
           FROM pg_locks l
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid = $1::oid AND l.objid = (hashtext($2)::bigint & 4294967295)::oid
            AND l.pid <> pg_backend_pid()
            AND NOT EXISTS (SELECT 1 FROM daemon_heartbeats h
                             WHERE h.daemon_id = $2 AND h.expires_at > now()
                               AND h.instance IS DISTINCT FROM $3)",
    )
    .bind(i64::from(NODE_LOCK_CLASS))
    .bind(name)
    .bind(instance)
    .fetch_one(&mut *conn)
    .await
}

/// Who holds `name`, as its heartbeat row says, for the error message.
async fn holder(pool: &PgPool, name: &str) -> String {
    let row: sqlx::Result<Option<(Option<String>, String)>> = sqlx::query_as(
        "SELECT instance, host FROM daemon_heartbeats WHERE daemon_id = $1 AND expires_at > now()",
    )
    .bind(name)
    .fetch_optional(pool)
    .await;
    match row {
        Ok(Some((instance, host))) => format!(
            "instance {} on host {}",
            crate::text::echo(instance.as_deref().unwrap_or("?")),
            crate::text::echo(&host)
        ),
        _ => "its heartbeat is not visible yet".to_owned(),
    }
}
