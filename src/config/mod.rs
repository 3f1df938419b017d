//! Configuration: where the file is found, how it is parsed (strictly: unknown keys are errors),
//! and the validated [`Config`] the rest of the daemon reads. `config check`, start-up and a
//! reload all go through [`Config::load`], so they accept and reject exactly the same files.
//!
//! The lowest layer: imports nothing of the crate but `clock` and `text`.

pub mod cron;
mod host;
mod parse;
mod raw;
mod source;
mod types;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use host::hostname;
pub use raw::RawConfig;
pub use source::{ConfigSource, MAX_FILE_BYTES};
pub use types::{DatabaseUrl, LogFormat, StatusSet};

use crate::config::cron::CronSchedule;

/// Where the configuration is looked for when neither `-c` nor `MCP_HEALTHD_CONFIG` names a file.
pub const DEFAULT_PATHS: [&str; 2] = ["./config.toml", "/etc/mcp-healthd/config.toml"];

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; `None` when only built-in defaults apply.
    pub source: Option<PathBuf>,
    pub database: DatabaseConfig,
    pub probe: ProbeConfig,
    pub registry: RegistryConfig,
    pub uptime: UptimeConfig,
    pub alerts: AlertsConfig,
    pub jobs: JobsConfig,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub daemon: DaemonConfig,
    pub cluster: ClusterConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    /// Where `url` came from, for error messages: `DATABASE_URL`, `database.url in FILE`, or
    /// the built-in default.
    pub url_origin: String,
    pub max_connections: u32,
    pub auto_migrate: bool,
    pub connect_timeout: Duration,
    /// The server-side deadline of every statement (`statement_timeout`, and
    /// `idle_in_transaction_session_timeout`), and the client-side one of every database call.
    pub statement_timeout: Duration,
    /// How often check results are written (one statement per flush).
    pub flush_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub default_host: String,
    pub expected_status: StatusSet,
    pub max_body_bytes: usize,
    pub follow_redirects: u32,
    pub degraded_after: Duration,
    /// 0: failures must be consecutive; N: `failure_threshold` failures among the last N checks.
    pub failure_window: u32,
    /// A certificate expiring sooner makes a healthy service degraded (0 disables the warning).
    pub tls_expiry_warning: Duration,
    /// Extra trusted root certificates (PEM), e.g. a private CA.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    pub refresh_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UptimeConfig {
    pub window: Duration,
    pub retain: Duration,
    /// Daily rollups older than this are pruned (reports beyond `retain`).
    pub retain_daily: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub reminder_interval: Duration,
    /// `flap_changes` state changes within this window make a service flapping; zero disables.
    pub flap_window: Duration,
    pub flap_changes: u32,
    /// More than this share of the daemon's services (at least 10) failing at once is a
    /// monitor-side outage.
    pub mass_failure_ratio: f64,
    /// URLs the monitor must reach to trust its own network: all failing is a monitor-side outage.
    pub canaries: Vec<url::Url>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobsConfig {
    /// How long the leader lease lasts without renewal (renewed every third of it).
    pub lease_ttl: Duration,
    pub analytics_retention: AnalyticsRetentionConfig,
    pub partition_maintenance: PartitionMaintenanceConfig,
    pub validation_cache_cleanup: CacheCleanupConfig,
    pub housekeeping: HousekeepingConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticsRetentionConfig {
    pub schedule: CronSchedule,
    pub retain: Duration,
    /// `lock_timeout` for each partition drop; a drop that times out is retried.
    pub lock_timeout: Duration,
    pub attempts: u32,
    /// Rows deleted per transaction from the default partition.
    pub batch_size: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HousekeepingConfig {
    pub schedule: CronSchedule,
    /// `maintenance_job_runs` rows older than this are deleted (rollups follow `uptime.retain`).
    pub run_history_retain: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionMaintenanceConfig {
    pub schedule: CronSchedule,
    pub premake_months: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheCleanupConfig {
    pub schedule: CronSchedule,
    pub batch_size: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `info,mcp_healthd=debug`.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// `None` when `http.listen = ""` disables the endpoint.
    pub listen: Option<std::net::SocketAddr>,
    /// `GET /` serves the status page and `/api/status.json` its data.
    pub status_page: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// How long in-flight work may take to finish after SIGTERM before it is cancelled.
    pub shutdown_grace: Duration,
    /// Where results that cannot be written before exit are kept until the next start: the
    /// setting, else `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else nowhere.
    pub state_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// A daemon whose heartbeat is older than this is dead; its services move to the others.
    pub heartbeat_ttl: Duration,
    /// This daemon's stable name among the others (default: the host name). A restarted daemon
    /// takes back the services of the heartbeat that bears its name.
    pub node_name: String,
}

/// One problem with one key. `key` is the dotted path (`probe.interval`) or `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub key: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `cause`, not `source`: the message says it, and a chain printed whole must not repeat it.
    #[error("cannot read configuration file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "configuration file {path} is larger than the cap of {limit} bytes (1 MiB); is it the right file?"
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("invalid configuration in {path}:{}", list(.errors))]
    Invalid { path: String, errors: Vec<KeyError> },
    /// The configured database refuses us for a reason no retry can fix (a rejected password,
    /// a missing database without `auto_migrate`): one sentence, naming where the URL came from.
    #[error("{0}")]
    Database(String),
}

fn list(errors: &[KeyError]) -> String {
    errors
        .iter()
        .map(|e| format!("\n  {}: {}", e.key, e.reason))
        .collect()
}

impl Config {
    /// Finds and reads the configuration: the explicit `path` if given (it must exist), else the
    /// first of [`DEFAULT_PATHS`] that exists, else built-in defaults. `database_url_env` is the
    /// value of `DATABASE_URL`, which overrides `database.url`.
    pub fn load(path: Option<&Path>, database_url_env: Option<&str>) -> Result<Self, ConfigError> {
        let found = match path {
            Some(p) => Some(p.to_path_buf()),
            None => DEFAULT_PATHS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
        };
        let text = match &found {
            Some(p) => source::read_capped(p)?,
            None => String::new(),
        };
        let shown = found.as_ref().map_or_else(
            || "<built-in defaults>".to_owned(),
            |p| p.display().to_string(),
        );
        let mut config = Self::from_toml(&text, &shown, database_url_env)?;
        config.source = found;
        Ok(config)
    }

    /// Parses and validates a configuration document; `origin` names it in error messages.
    pub fn from_toml(
        text: &str,
        origin: &str,
        database_url_env: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let (raw, errors) = parse::parse(text, origin)?;
        let url_origin = match database_url_env {
            Some(_) => "DATABASE_URL".to_owned(),
            None if raw.database.url == RawConfig::default().database.url => {
                "the built-in default (set DATABASE_URL or database.url)".to_owned()
            }
            None => format!("database.url in {origin}"),
        };
        let mut config = validate::validate(raw, database_url_env, errors).map_err(|errors| {
            ConfigError::Invalid {
                path: origin.to_owned(),
                errors: parse::in_key_order(errors),
            }
        })?;
        config.database.url_origin = url_origin;
        Ok(config)
    }

    /// The effective configuration as TOML, every default filled in and the password hidden.
    pub fn to_effective_toml(&self) -> String {
        let raw = validate::to_raw(self);
        toml::to_string(&raw).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}
