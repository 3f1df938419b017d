//! The configuration file exactly as written: serde shapes with a default for every key and
//! unknown keys rejected. Nothing here is validated; `super::validate` turns it into `Config`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub database: RawDatabase,
    pub probe: RawProbe,
    pub registry: RawRegistry,
    pub uptime: RawUptime,
    pub alerts: RawAlerts,
    pub jobs: RawJobs,
    pub log: RawLog,
    pub http: RawHttp,
    pub daemon: RawDaemon,
    pub cluster: RawCluster,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDatabase {
    pub url: String,
    pub max_connections: i64,
    pub auto_migrate: bool,
    pub connect_timeout: String,
    pub statement_timeout: String,
    pub flush_interval: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/mcp_health".into(),
            max_connections: 8,
            auto_migrate: true,
            connect_timeout: "5s".into(),
            statement_timeout: "10s".into(),
            flush_interval: "1s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProbe {
    pub interval: String,
    pub timeout: String,
    pub concurrency: i64,
    pub failure_threshold: i64,
    pub success_threshold: i64,
    pub default_host: String,
    pub expected_status: String,
    pub max_body_bytes: i64,
    pub follow_redirects: i64,
    pub degraded_after: String,
    pub failure_window: i64,
    pub tls_expiry_warning: String,
    pub ca_file: String,
}

impl Default for RawProbe {
    fn default() -> Self {
        Self {
            interval: "30s".into(),
            timeout: "5s".into(),
            concurrency: 256,
            failure_threshold: 3,
            success_threshold: 1,
            default_host: "127.0.0.1".into(),
            expected_status: "200-299".into(),
            max_body_bytes: 65536,
            follow_redirects: 5,
            degraded_after: "2s".into(),
            failure_window: 0,
            tls_expiry_warning: "14d".into(),
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRegistry {
    pub refresh_interval: String,
}

impl Default for RawRegistry {
    fn default() -> Self {
        Self {
            refresh_interval: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawUptime {
    pub window: String,
    pub retain: String,
    pub retain_daily: String,
}

impl Default for RawUptime {
    fn default() -> Self {
        Self {
            window: "24h".into(),
            retain: "90d".into(),
            retain_daily: "400d".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAlerts {
    pub reminder_interval: String,
    pub flap_window: String,
    pub flap_changes: i64,
    pub mass_failure_ratio: f64,
    pub canaries: Vec<String>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        Self {
            reminder_interval: "30m".into(),
            flap_window: "30m".into(),
            flap_changes: 4,
            mass_failure_ratio: 0.5,
            canaries: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawJobs {
    pub lease_ttl: String,
    pub analytics_retention: RawAnalyticsRetention,
    pub partition_maintenance: RawPartitionMaintenance,
    pub validation_cache_cleanup: RawCacheCleanup,
    pub housekeeping: RawHousekeeping,
}

impl Default for RawJobs {
    fn default() -> Self {
        Self {
            lease_ttl: "15s".into(),
            analytics_retention: RawAnalyticsRetention::default(),
            partition_maintenance: RawPartitionMaintenance::default(),
            validation_cache_cleanup: RawCacheCleanup::default(),
            housekeeping: RawHousekeeping::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHousekeeping {
    pub schedule: String,
    pub run_history_retain: String,
}

impl Default for RawHousekeeping {
    fn default() -> Self {
        Self {
            schedule: "0 30 * * * *".into(),
            run_history_retain: "90d".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAnalyticsRetention {
    pub schedule: String,
    pub retain: String,
    pub lock_timeout: String,
    pub attempts: i64,
    pub batch_size: i64,
}

impl Default for RawAnalyticsRetention {
    fn default() -> Self {
        Self {
            schedule: "0 0 3 * * *".into(),
            retain: "180d".into(),
            lock_timeout: "2s".into(),
            attempts: 5,
            batch_size: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPartitionMaintenance {
    pub schedule: String,
    pub premake_months: i64,
}

impl Default for RawPartitionMaintenance {
    fn default() -> Self {
        Self {
            schedule: "0 15 * * * *".into(),
            premake_months: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCacheCleanup {
    pub schedule: String,
    pub batch_size: i64,
}

impl Default for RawCacheCleanup {
    fn default() -> Self {
        Self {
            schedule: "0 0 2 * * *".into(),
            batch_size: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "json".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    pub listen: String,
    pub status_page: bool,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            status_page: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDaemon {
    pub shutdown_grace: String,
    pub state_dir: String,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self {
            shutdown_grace: "10s".into(),
            state_dir: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCluster {
    pub heartbeat_ttl: String,
    pub node_name: String,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self {
            heartbeat_ttl: "15s".into(),
            node_name: String::new(),
        }
    }
}
