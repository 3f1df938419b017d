//! Raw file values -> validated [`Config`]. Every check names its key; all problems in a file
//! are reported together, so an operator fixes them in one pass. The larger sections are
//! checked in `sections`; this file holds the checker, the value parsers, the one-key
//! sections, and the way back to the file's shape (`to_raw`).

use std::time::Duration;

use super::raw::*;
use super::*;

mod sections;
mod values;

use values::{host, listen, log_level, quoted, reason};

/// Collects the errors of one validation pass, after those of the parse (unknown keys, wrong
/// types), so that checks across keys can skip a key that already failed.
#[derive(Default)]
struct Checker {
    errors: Vec<KeyError>,
}

impl Checker {
    fn fail(&mut self, key: &str, reason: impl Into<String>) {
        self.errors.push(KeyError {
            key: key.to_owned(),
            reason: reason.into(),
        });
    }

    /// A humantime duration that must be positive.
    fn duration(&mut self, key: &str, raw: &str) -> Duration {
        // Ten years: beyond that, date arithmetic on "now - duration" would overflow.
        const MAX: Duration = Duration::from_secs(10 * 366 * 86_400);
        match humantime::parse_duration(raw.trim()) {
            Ok(d) if d.is_zero() => {
                self.fail(key, "must be greater than zero");
                Duration::from_secs(1)
            }
            Ok(d) if d > MAX => {
                self.fail(key, format!("{} is longer than ten years", quoted(raw)));
                Duration::from_secs(1)
            }
            Ok(d) => d,
            Err(e) => {
                self.fail(
                    key,
                    format!(
                        "invalid duration {} ({}); write e.g. \"30s\", \"5m\", \"1h 30m\"",
                        quoted(raw),
                        reason(&e.to_string())
                    ),
                );
                Duration::from_secs(1)
            }
        }
    }

    /// A humantime duration where `0` means "off".
    fn duration_or_zero(&mut self, key: &str, raw: &str) -> Duration {
        if raw.trim() == "0" || humantime::parse_duration(raw.trim()) == Ok(Duration::ZERO) {
            return Duration::ZERO;
        }
        self.duration(key, raw)
    }

    /// An integer within `lo..=hi`.
    fn int<T: TryFrom<i64> + Default>(&mut self, key: &str, value: i64, lo: i64, hi: i64) -> T {
        if !(lo..=hi).contains(&value) {
            self.fail(key, format!("must be between {lo} and {hi}, not {value}"));
            return T::default();
        }
        T::try_from(value).unwrap_or_default()
    }

    fn parsed<T: Default>(&mut self, key: &str, result: Result<T, String>) -> T {
        result.unwrap_or_else(|reason| {
            self.fail(key, reason);
            T::default()
        })
    }

    fn cron(&mut self, key: &str, raw: &str) -> CronSchedule {
        match CronSchedule::parse(raw) {
            Ok(c) => c,
            Err(reason) => {
                self.fail(key, reason);
                CronSchedule::placeholder()
            }
        }
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        "200-299".parse().expect("a valid literal")
    }
}

/// `raw` -> [`Config`], or every problem: `parsed` (those found while parsing) and its own.
pub(super) fn validate(
    raw: RawConfig,
    database_url_env: Option<&str>,
    parsed: Vec<KeyError>,
) -> Result<Config, Vec<KeyError>> {
    let mut c = Checker { errors: parsed };
    // Section by section, in the file's order, so the errors are listed in that order too.
    let database = sections::database(&mut c, &raw.database, database_url_env);
    let probe = sections::probe(&mut c, &raw.probe);
    let registry = RegistryConfig {
        refresh_interval: c.duration("registry.refresh_interval", &raw.registry.refresh_interval),
    };
    let uptime = sections::uptime(&mut c, &raw.uptime);
    let alerts = sections::alerts(&mut c, &raw.alerts);
    let jobs = sections::jobs(&mut c, &raw.jobs);
    let log = LogConfig {
        format: c.parsed("log.format", raw.log.format.parse()),
        level: c.parsed("log.level", log_level(&raw.log.level)),
    };
    let http = HttpConfig {
        listen: c.parsed("http.listen", listen(&raw.http.listen)),
        status_page: raw.http.status_page,
    };
    let daemon = DaemonConfig {
        shutdown_grace: c.duration("daemon.shutdown_grace", &raw.daemon.shutdown_grace),
        state_dir: state_dir(&raw.daemon.state_dir),
    };
    let cluster = sections::cluster(&mut c, &raw.cluster);
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(Config {
        source: None,
        database,
        probe,
        registry,
        uptime,
        alerts,
        jobs,
        log,
        http,
        daemon,
        cluster,
    })
}

/// Writes a duration the way people write them in the file: `90d`, `1h 30m`, `250ms`
/// (humantime's own formatter would turn 90 days into months and hours).
pub(super) fn format_duration(d: Duration) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut secs = d.as_secs();
    let mut parts = Vec::new();
    for (size, unit) in UNITS {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let millis = d.subsec_millis();
    if millis > 0 || parts.is_empty() {
        parts.push(format!("{millis}ms"));
    }
    parts.join(" ")
}

/// The validated configuration written back in the file's shape, for `config check`.
pub(super) fn to_raw(c: &Config) -> RawConfig {
    let d = format_duration;
    RawConfig {
        database: raw_database(&c.database),
        probe: raw_probe(&c.probe),
        registry: RawRegistry {
            refresh_interval: d(c.registry.refresh_interval),
        },
        uptime: RawUptime {
            window: d(c.uptime.window),
            retain: d(c.uptime.retain),
            retain_daily: d(c.uptime.retain_daily),
        },
        alerts: RawAlerts {
            reminder_interval: d(c.alerts.reminder_interval),
            flap_window: d(c.alerts.flap_window),
            flap_changes: c.alerts.flap_changes.into(),
            mass_failure_ratio: c.alerts.mass_failure_ratio,
            canaries: c
                .alerts
                .canaries
                .iter()
                .map(|u| crate::text::redact_url(u.as_str()).into_owned())
                .collect(),
        },
        jobs: raw_jobs(&c.jobs),
        log: RawLog {
            format: c.log.format.to_string(),
            level: c.log.level.clone(),
        },
        http: RawHttp {
            listen: c.http.listen.map(|a| a.to_string()).unwrap_or_default(),
            status_page: c.http.status_page,
        },
        daemon: RawDaemon {
            shutdown_grace: d(c.daemon.shutdown_grace),
            state_dir: c
                .daemon
                .state_dir
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        },
        cluster: RawCluster {
            heartbeat_ttl: d(c.cluster.heartbeat_ttl),
            node_name: c.cluster.node_name.clone(),
        },
    }
}

fn raw_database(c: &DatabaseConfig) -> RawDatabase {
    let d = format_duration;
    RawDatabase {
        url: c.url.to_string(),
        max_connections: c.max_connections.into(),
        auto_migrate: c.auto_migrate,
        connect_timeout: d(c.connect_timeout),
        statement_timeout: d(c.statement_timeout),
        flush_interval: d(c.flush_interval),
    }
}

fn raw_probe(c: &ProbeConfig) -> RawProbe {
    let d = format_duration;
    RawProbe {
        interval: d(c.interval),
        timeout: d(c.timeout),
        concurrency: c.concurrency as i64,
        failure_threshold: c.failure_threshold.into(),
        success_threshold: c.success_threshold.into(),
        default_host: c.default_host.clone(),
        expected_status: c.expected_status.to_string(),
        max_body_bytes: c.max_body_bytes as i64,
        follow_redirects: c.follow_redirects.into(),
        degraded_after: d(c.degraded_after),
        failure_window: c.failure_window.into(),
        tls_expiry_warning: d(c.tls_expiry_warning),
        ca_file: c
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    }
}

fn raw_jobs(c: &JobsConfig) -> RawJobs {
    let d = format_duration;
    RawJobs {
        lease_ttl: d(c.lease_ttl),
        analytics_retention: RawAnalyticsRetention {
            schedule: c.analytics_retention.schedule.to_string(),
            retain: d(c.analytics_retention.retain),
            lock_timeout: d(c.analytics_retention.lock_timeout),
            attempts: c.analytics_retention.attempts.into(),
            batch_size: c.analytics_retention.batch_size.into(),
        },
        partition_maintenance: RawPartitionMaintenance {
            schedule: c.partition_maintenance.schedule.to_string(),
            premake_months: c.partition_maintenance.premake_months.into(),
        },
        validation_cache_cleanup: RawCacheCleanup {
            schedule: c.validation_cache_cleanup.schedule.to_string(),
            batch_size: c.validation_cache_cleanup.batch_size.into(),
        },
        housekeeping: RawHousekeeping {
            schedule: c.housekeeping.schedule.to_string(),
            run_history_retain: d(c.housekeeping.run_history_retain),
        },
    }
}

/// `daemon.state_dir`, else systemd's `$STATE_DIRECTORY` (its first entry), else none.
fn state_dir(raw: &str) -> Option<std::path::PathBuf> {
    let from_env = std::env::var("STATE_DIRECTORY").ok();
    let dir = if raw.is_empty() {
        from_env.as_deref().and_then(|v| v.split(':').next())?
    } else {
        raw
    };
    (!dir.is_empty()).then(|| dir.into())
}

#[cfg(test)]
mod tests {
    use super::format_duration;
    use std::time::Duration;

    #[test]
    fn durations_print_as_people_write_them() {
        let cases = [
            (Duration::from_secs(90 * 86_400), "90d"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1s 500ms"),
        ];
        for (d, want) in cases {
            assert_eq!(format_duration(d), want);
            assert_eq!(
                humantime::parse_duration(want).unwrap(),
                d,
                "round trip of {want}"
            );
        }
    }
}
