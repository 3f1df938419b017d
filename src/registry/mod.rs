//! The service registry as the daemon reads it: the available rows of `service_registry`,
//! reloaded on change. `import` writes it from a directory of service files.
//!
//! May import: `config`, `clock`, `plan` (a row's shape and its validation), `observe`.

pub mod import;

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
/// connection is down). Runs until `stop`.
pub async fn watch(
    pool: PgPool,
    refresh: std::time::Duration,
    changes: tokio::sync::mpsc::Sender<Vec<RegistryRow>>,
    mut last: Vec<RegistryRow>,
    stop: tokio_util::sync::CancellationToken,
) {
    use sqlx::postgres::PgListener;

    let mut listener: Option<PgListener> = None;
    loop {
        // A change made before LISTEN took effect (at start, or while the listening connection
        // was down) sent no notification we could hear: reload at once after (re)listening.
        let mut just_listening = false;
        if listener.is_none() {
            listener = match PgListener::connect_with(&pool).await {
                Ok(mut l) => l.listen(CHANNEL).await.ok().map(|()| l),
                Err(_) => None,
            };
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
        match load_available(&pool).await {
            Ok(rows) if rows != last => {
                last = rows.clone();
                if changes.send(rows).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "registry refresh failed; keeping the last registry")
            }
        }
    }
}
