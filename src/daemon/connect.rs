//! Start-up's first step: a pool on the configured database, created and migrated when
//! `auto_migrate` is set, retried with backoff while the server is unreachable.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::observe::notify::Notifier;
use crate::store::db;

/// Connects (creating the database and migrating when `auto_migrate` is set), retrying with
/// backoff while the server is unreachable. `db_unavailable` is logged once per outage.
/// Returns `None` if shutdown was requested before a connection was made.
pub async fn with_retry(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<PgPool>> {
    let mut backoff = db::Backoff::new(Duration::from_secs(30));
    let mut reported = false;
    let mut attempts = 0_u32;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            attempt = db::open(&config.database) => attempt,
        };
        match attempt {
            Ok((pool, applied)) => {
                if reported {
                    tracing::info!(
                        event = "db_recovered",
                        down_for_s = backoff.elapsed().as_secs(),
                        "database reachable"
                    );
                }
                for m in applied {
                    tracing::info!(event = "migration_applied", version = m.version, description = %m.description);
                }
                return Ok(Some(pool));
            }
            // A failed or missing migration is not an outage: retrying would fail the same way.
            Err(e) if e.is_permanent() => return Err(e.into()),
            // Nor is a rejected password, or a database that is not there and will not be
            // created: exit 78 at once, which the unit's RestartPreventExitStatus= honours.
            Err(e)
                if e.is_rejected_credentials()
                    || (e.is_missing_database() && !config.database.auto_migrate) =>
            {
                return Err(ConfigError::Database(e.to_string()).into());
            }
            Err(e) => {
                attempts += 1;
                let delay = backoff.next_delay();
                if !reported {
                    tracing::error!(event = "db_unavailable", error = %e, "database unreachable; retrying with backoff");
                    reported = true;
                }
                let waiting = format!(
                    "waiting for the database (attempt {attempts}, next try in {})",
                    humantime::format_duration(delay)
                );
                tracing::warn!(event = "db_waiting", attempt = attempts, error = %e, "{waiting}");
                Notifier.status(&format!("{waiting}: {e}"));
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
