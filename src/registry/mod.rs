//! The service registry as the daemon reads it: the available rows of `service_registry`,
//! reloaded on change. `import` writes it from a directory of service files.
//!
//! May import: `config`, `clock`, `plan` (a row's shape and its validation), `observe`.

pub mod import;

use std::sync::Arc;

use sqlx::PgPool;

pub use crate::plan::target::RegistryRow;

/// Every service with `is_available = true`, ordered by service_type.
pub async fn load_available(pool: &PgPool) -> sqlx::Result<Vec<RegistryRow>> {
    sqlx::query_as(
        "SELECT service_type, port, base_url, health_check_endpoint, service_config
           FROM service_registry
          WHERE is_available
          ORDER BY service_type",
    )
    .fetch_all(pool)
    .await
}

/// The channel the `service_registry` trigger notifies on every change.
pub const CHANNEL: &str = "mcp_healthd_registry";

/// Sends the available rows whenever they change: at once on a NOTIFY from the registry's
/// trigger, and every `refresh` in any case (a notification can be lost while the listening
/// connection is down). A refresh that fails keeps the last registry; the first failure of an
/// outage is logged (`registry_refresh_failed`, warn) and so is the end of it
/// (`registry_refresh_recovered`), not every refresh in between. Runs until `stop`.
/// The available rows as last loaded, shared by the watcher and the daemon (one copy).
pub type Rows = Arc<Vec<RegistryRow>>;

pub async fn watch(
    pool: PgPool,
    refresh: std::time::Duration,
    limit: std::time::Duration,
    changes: tokio::sync::mpsc::Sender<Rows>,
    mut last: Rows,
    stop: tokio_util::sync::CancellationToken,
) {
    use sqlx::postgres::PgListener;

    let mut listener: Option<PgListener> = None;
    let mut failing = false;
    loop {
        // A change made before LISTEN took effect (at start, or while the listening connection
        // was down) sent no notification we could hear: reload at once after (re)listening.
        let mut just_listening = false;
        if listener.is_none() {
            let listen = async {
                let mut l = PgListener::connect_with(&pool).await?;
                l.listen(CHANNEL).await.map(|()| l)
            };
            listener = crate::store::db::deadline(limit, listen).await.ok();
            just_listening = listener.is_some();
        }
        if !just_listening {
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(drop),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(refresh) => {}
                result = notified => {
                    if result.is_err() {
                        listener = None;
                    }
                    // A bulk import notifies once per statement; let a burst settle.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        let loaded = crate::store::db::deadline(limit, load_available(&pool)).await;
        log_outage(&mut failing, loaded.as_ref().err());
        if let Ok(rows) = loaded
            && rows != *last
        {
            last = Arc::new(rows);
            if changes.send(last.clone()).await.is_err() {
                return;
            }
        }
    }
}

/// Logs the first failed refresh of an outage at warn, and the first good one after it.
fn log_outage(failing: &mut bool, error: Option<&sqlx::Error>) {
    match (std::mem::replace(failing, error.is_some()), error) {
        (false, Some(e)) => tracing::warn!(
            event = "registry_refresh_failed",
            error = %e,
            "cannot reload the registry; checking the last one loaded until the database answers"
        ),
        (true, None) => tracing::info!(
            event = "registry_refresh_recovered",
            "the registry reloads again"
        ),
        _ => {}
    }
}
