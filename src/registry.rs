//! The service registry as the daemon reads it: the available rows of `service_registry`.

use sqlx::PgPool;
use sqlx::types::Json;

/// One `service_registry` row, as much of it as probing needs. Values are as stored: turning a
/// row into a probe target (and rejecting a bad one) is `target`'s job.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RegistryRow {
    pub service_type: String,
    pub port: i32,
    pub base_url: Option<String>,
    pub health_check_endpoint: String,
    pub service_config: Json<serde_json::Value>,
}

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
