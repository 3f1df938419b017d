//! Raw file values -> validated [`Config`]. Every check names its key; all problems in a file
//! are reported together, so an operator fixes them in one pass. The larger sections are
//! checked in `sections`; this file holds the checker, the value parsers, the one-key
//! sections, and the way back to the file's shape (`to_raw`).

use std::time::Duration;

use super::raw::*;
use super::*;

mod sections;

/// Collects the errors of one validation pass.
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
                self.fail(key, format!("{raw:?} is longer than ten years"));
                Duration::from_secs(1)
            }
            Ok(d) => d,
            Err(e) => {
                self.fail(
                    key,
                    format!(
                        "invalid duration {raw:?} ({e}); write e.g. \"30s\", \"5m\", \"1h 30m\""
                    ),
                );
                Duration::from_secs(1)
            }
        }
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

pub(super) fn validate(
    raw: RawConfig,
    database_url_env: Option<&str>,
) -> Result<Config, Vec<KeyError>> {
    let mut c = Checker::default();
    // Section by section, in the file's order, so the errors are listed in that order too.
    let database = sections::database(&mut c, &raw.database, database_url_env);
    let probe = sections::probe(&mut c, &raw.probe);
    let registry = RegistryConfig {
        refresh_interval: c.duration("registry.refresh_interval", &raw.registry.refresh_interval),
    };
    let uptime = sections::uptime(&mut c, &raw.uptime);
    let alerts = AlertsConfig {
        reminder_interval: c.duration("alerts.reminder_interval", &raw.alerts.reminder_interval),
    };
    let jobs = sections::jobs(&mut c, &raw.jobs);
    let log = LogConfig {
        format: c.parsed("log.format", raw.log.format.parse()),
        level: c.parsed("log.level", log_level(&raw.log.level)),
    };
    let http = HttpConfig {
        listen: c.parsed("http.listen", listen(&raw.http.listen)),
    };
    let daemon = DaemonConfig {
        shutdown_grace: c.duration("daemon.shutdown_grace", &raw.daemon.shutdown_grace),
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

fn host(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    url::Host::parse(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| format!("{raw:?} is not a host name or IP address ({e})"))
}

/// A level (`info`) or per-target directives (`info,sqlx=warn`). A bare word that is not a
/// level would be taken by `tracing` as a target name and silently log everything from it.
fn log_level(raw: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bad = raw.split(',').map(str::trim).find(|d| {
        let level = d.rsplit_once('=').map_or(*d, |(_, level)| level);
        !LEVELS.contains(&level.to_ascii_lowercase().as_str())
    });
    if let Some(d) = bad {
        return Err(format!(
            "{d:?} is not a log filter; use error, warn, info, debug or trace (or target=level)"
        ));
    }
    tracing_subscriber::EnvFilter::try_new(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| {
            format!("{raw:?} is not a log filter ({e}); use error, warn, info, debug or trace")
        })
}

fn listen(raw: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        format!("{raw:?} is not an address such as \"127.0.0.1:9464\" (use \"\" to disable)")
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
        },
        alerts: RawAlerts {
            reminder_interval: d(c.alerts.reminder_interval),
        },
        jobs: raw_jobs(&c.jobs),
        log: RawLog {
            format: c.log.format.to_string(),
            level: c.log.level.clone(),
        },
        http: RawHttp {
            listen: c.http.listen.map(|a| a.to_string()).unwrap_or_default(),
        },
        daemon: RawDaemon {
            shutdown_grace: d(c.daemon.shutdown_grace),
        },
        cluster: RawCluster {
            heartbeat_ttl: d(c.cluster.heartbeat_ttl),
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
