//! The demo's database: one of a name new to this run on the configured server when it answers
//! (so two demos can share a server), else a throwaway cluster. Removed by
//! [`DemoDatabase::remove`].
//!
//! While a demo runs it holds a session advisory lock keyed by its database's name. A later demo
//! that finds a demo database whose lock is free knows it was left by a demo that was killed,
//! and drops it; one whose lock is held belongs to a demo still running, and is left alone.

use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection};

use super::postgres::Throwaway;
use crate::config::DatabaseUrl;

/// Every demo database's name starts so, followed by [`SUFFIX_LEN`] hexadecimal digits.
const PREFIX: &str = "mcp_healthd_demo_";
const SUFFIX_LEN: usize = 12;
/// The first key of the demo's two-key advisory locks (`"demo"`); the second is the name's hash.
const LOCK_SPACE: i32 = 0x6465_6d6f;

enum Place {
    /// On the configured server; the connection holds this demo's lock.
    OnServer {
        lock: PgConnection,
    },
    Throwaway(Throwaway),
}

pub struct DemoDatabase {
    pub name: String,
    /// The URL the daemon and the demo use.
    pub url: DatabaseUrl,
    /// Where it is, for the banner.
    pub location: String,
    place: Place,
}

fn is_demo_name(name: &str) -> bool {
    name.strip_prefix(PREFIX).is_some_and(|s| {
        s.len() == SUFFIX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn new_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{PREFIX}{}", &id[..SUFFIX_LEN])
}

/// `host:port` of a server, for the banner.
fn host_port(url: &DatabaseUrl) -> String {
    let parsed = url::Url::parse(url.expose()).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned));
    let port = parsed.as_ref().and_then(url::Url::port).unwrap_or(5432);
    format!("{}:{port}", host.unwrap_or_else(|| "localhost".into()))
}

async fn connect(url: &DatabaseUrl) -> Option<PgConnection> {
    let connect = PgConnection::connect(url.expose());
    tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .ok()?
        .ok()
}

async fn try_lock(conn: &mut PgConnection, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(LOCK_SPACE)
        .bind(name)
        .fetch_one(conn)
        .await
}

async fn drop_database(conn: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    debug_assert!(is_demo_name(name), "only demo databases are dropped");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(conn)
    .await
    .map(drop)
}

/// Drops the demo databases whose demo is gone: their lock is free and nobody is connected (a
/// lock can be lost while its demo runs, say when the server restarts; its sessions cannot).
/// Without FORCE, so a session that connects meanwhile makes the drop fail, not vanish.
async fn drop_abandoned(conn: &mut PgConnection) -> anyhow::Result<()> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database d
          WHERE starts_with(datname, $1)
            AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)",
    )
    .bind(PREFIX)
    .fetch_all(&mut *conn)
    .await?;
    for name in names.iter().filter(|n| is_demo_name(n)) {
        if try_lock(conn, name).await? {
            let dropped = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\""
            )))
            .execute(&mut *conn)
            .await;
            if dropped.is_ok() {
                say!("dropped {name}, left by a demo that was stopped abruptly");
            }
            sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
                .bind(LOCK_SPACE)
                .bind(name)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

impl DemoDatabase {
    /// A new database on the configured server if it answers, else a throwaway cluster.
    pub async fn open(configured: &DatabaseUrl) -> anyhow::Result<Self> {
        let name = new_name();
        // The server, not the configured database: on a fresh machine that one may not exist.
        let server = configured.with_database("postgres");
        if let Some(mut lock) = connect(&server).await {
            anyhow::ensure!(try_lock(&mut lock, &name).await?, "{name} is locked");
            drop_abandoned(&mut lock).await?;
            say!("database: {name} on the configured server {server} (dropped at the end)");
            return Ok(Self {
                url: configured.with_database(&name),
                name,
                location: host_port(&server),
                place: Place::OnServer { lock },
            });
        }
        say!(
            "the configured database {configured} does not answer; starting a throwaway PostgreSQL"
        );
        let cluster = Throwaway::start().await?;
        say!(
            "throwaway PostgreSQL pid {} in {} ({})",
            cluster.pid().unwrap_or(0),
            cluster.dir().display(),
            cluster.url
        );
        Ok(Self {
            url: cluster.url.with_database(&name),
            location: format!("a throwaway PostgreSQL, {}", host_port(&cluster.url)),
            name,
            place: Place::Throwaway(cluster),
        })
    }

    /// Drops the database (with any connection still open to it), or stops the throwaway
    /// cluster and removes its directory.
    pub async fn remove(self) -> anyhow::Result<()> {
        match self.place {
            Place::OnServer { mut lock } => {
                drop_database(&mut lock, &self.name)
                    .await
                    .with_context(|| format!("cannot drop the demo database {}", self.name))?;
                let _ = tokio::time::timeout(Duration::from_secs(1), lock.close()).await;
                Ok(())
            }
            Place::Throwaway(cluster) => tokio::task::spawn_blocking(move || cluster.stop())
                .await
                .context("stopping the throwaway cluster")?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_new_each_run_and_only_demo_names_are_taken_for_demo_databases() {
        let (a, b) = (new_name(), new_name());
        assert_ne!(a, b);
        assert!(is_demo_name(&a) && is_demo_name(&b), "{a} {b}");
        assert!(a.len() < 64, "PostgreSQL identifiers are at most 63 bytes");
        for other in [
            "mcp_healthd_demo",
            "mcp_healthd_demo_",
            "mcp_healthd_demo_0123456789ab_x",
            "mcp_healthd_demo_0123456789AB",
            "mcp_healthd_demo_01234567\"; x",
            "mcp_health",
        ] {
            assert!(!is_demo_name(other), "{other}");
        }
    }
}
