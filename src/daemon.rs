//! The daemon's lifecycle (`mcp-healthd run`): connect (retrying while the database is down),
//! migrate, load the registry, then run until SIGTERM/SIGINT. A second signal exits at once.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio_util::sync::CancellationToken;

use crate::commands::ConfigSource;
use crate::config::Config;
use crate::{db, registry, telemetry};

pub async fn run(config: Config, _source: ConfigSource) -> anyhow::Result<ExitCode> {
    telemetry::init(&config.log);
    let shutdown = CancellationToken::new();
    let signals = spawn_signal_handler(shutdown.clone())?;

    let Some(pool) = connect_with_retry(&config, &shutdown).await? else {
        signals.abort();
        return Ok(ExitCode::SUCCESS);
    };
    let services = registry::load_available(&pool).await?;
    tracing::info!(
        event = "daemon_started",
        services = services.len(),
        database = %config.database.url,
        "registry loaded"
    );

    shutdown.cancelled().await;
    tracing::info!(event = "daemon_stopped", "shutting down");
    pool.close().await;
    signals.abort();
    Ok(ExitCode::SUCCESS)
}

/// First SIGTERM/SIGINT cancels `shutdown`; a second one exits immediately.
fn spawn_signal_handler(
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    Ok(tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            match signal {
                SIGHUP => tracing::info!(
                    event = "reload_ignored",
                    "SIGHUP: reload is not implemented yet"
                ),
                _ if shutdown.is_cancelled() => {
                    tracing::warn!(event = "forced_exit", signal, "second signal: exiting now");
                    std::process::exit(1);
                }
                _ => shutdown.cancel(),
            }
        }
    }))
}

/// Connects (creating the database and migrating when `auto_migrate` is set), retrying with
/// backoff while the server is unreachable. `db_unavailable` is logged once per outage.
/// Returns `None` if shutdown was requested before a connection was made.
async fn connect_with_retry(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<sqlx::PgPool>> {
    let auto = config.database.auto_migrate;
    let mut backoff = db::Backoff::new(Duration::from_secs(30));
    let mut reported = false;
    loop {
        match db::open(&config.database, auto, auto).await {
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
            // A failed migration is not an outage: retrying would fail the same way.
            Err(e @ db::DbError::Migrate { .. }) => return Err(e.into()),
            Err(e) => {
                if !reported {
                    tracing::error!(event = "db_unavailable", error = %e, "database unreachable; retrying with backoff");
                    reported = true;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}
