//! Raw file values -> validated [`Config`]. Every check names its key; all problems in a file
//! are reported together, so an operator fixes them in one pass.

use std::time::Duration;

use super::raw::*;
use super::*;

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

    let (url_key, url_raw) = match database_url_env {
        Some(env) => ("DATABASE_URL", env),
        None => ("database.url", raw.database.url.as_str()),
    };
    let url = DatabaseUrl::parse(url_raw).map_err(|reason| KeyError {
        key: url_key.to_owned(),
        reason,
    });
    let url = match url {
        Ok(u) => Some(u),
        Err(e) => {
            c.errors.push(e);
            None
        }
    };
    let database = DatabaseConfig {
        url: url
            .unwrap_or_else(|| DatabaseUrl::parse("postgres://invalid/invalid").expect("literal")),
        max_connections: c.int(
            "database.max_connections",
            raw.database.max_connections,
            1,
            1000,
        ),
        auto_migrate: raw.database.auto_migrate,
        connect_timeout: c.duration("database.connect_timeout", &raw.database.connect_timeout),
        flush_interval: c.duration("database.flush_interval", &raw.database.flush_interval),
    };

    let p = &raw.probe;
    let probe = ProbeConfig {
        interval: c.duration("probe.interval", &p.interval),
        timeout: c.duration("probe.timeout", &p.timeout),
        concurrency: c.int("probe.concurrency", p.concurrency, 1, 100_000),
        failure_threshold: c.int("probe.failure_threshold", p.failure_threshold, 1, 1000),
        success_threshold: c.int("probe.success_threshold", p.success_threshold, 1, 1000),
        default_host: c.parsed("probe.default_host", host(&p.default_host)),
        expected_status: c.parsed("probe.expected_status", p.expected_status.parse()),
        max_body_bytes: c.int("probe.max_body_bytes", p.max_body_bytes, 0, 64 << 20),
        follow_redirects: c.int("probe.follow_redirects", p.follow_redirects, 0, 20),
        degraded_after: c.duration("probe.degraded_after", &p.degraded_after),
    };
    let timing_valid = !c
        .errors
        .iter()
        .any(|e| e.key == "probe.interval" || e.key == "probe.timeout");
    if timing_valid && probe.timeout > probe.interval {
        c.fail(
            "probe.timeout",
            format!(
                "must not exceed probe.interval ({} > {}): a check would still run when the next is due",
                format_duration(probe.timeout),
                format_duration(probe.interval)
            ),
        );
    }

    let registry = RegistryConfig {
        refresh_interval: c.duration("registry.refresh_interval", &raw.registry.refresh_interval),
    };
    let uptime = UptimeConfig {
        window: c.duration("uptime.window", &raw.uptime.window),
        retain: c.duration("uptime.retain", &raw.uptime.retain),
    };
    if uptime.window < Duration::from_secs(3600) {
        c.fail(
            "uptime.window",
            "must be at least 1h: uptime is computed from hourly rollups",
        );
    }
    if uptime.retain < uptime.window {
        c.fail(
            "uptime.retain",
            "must be at least uptime.window: the window's rollups would be pruned",
        );
    }
    let alerts = AlertsConfig {
        reminder_interval: c.duration("alerts.reminder_interval", &raw.alerts.reminder_interval),
    };

    let j = &raw.jobs;
    let retention = &j.analytics_retention;
    let jobs = JobsConfig {
        lease_ttl: c.duration("jobs.lease_ttl", &j.lease_ttl),
        analytics_retention: AnalyticsRetentionConfig {
            schedule: c.cron("jobs.analytics_retention.schedule", &retention.schedule),
            retain: c.duration("jobs.analytics_retention.retain", &retention.retain),
            lock_timeout: c.duration(
                "jobs.analytics_retention.lock_timeout",
                &retention.lock_timeout,
            ),
            attempts: c.int(
                "jobs.analytics_retention.attempts",
                retention.attempts,
                1,
                100,
            ),
            batch_size: c.int(
                "jobs.analytics_retention.batch_size",
                retention.batch_size,
                1,
                1_000_000,
            ),
        },
        partition_maintenance: PartitionMaintenanceConfig {
            schedule: c.cron(
                "jobs.partition_maintenance.schedule",
                &j.partition_maintenance.schedule,
            ),
            premake_months: c.int(
                "jobs.partition_maintenance.premake_months",
                j.partition_maintenance.premake_months,
                0,
                36,
            ),
        },
        validation_cache_cleanup: CacheCleanupConfig {
            schedule: c.cron(
                "jobs.validation_cache_cleanup.schedule",
                &j.validation_cache_cleanup.schedule,
            ),
            batch_size: c.int(
                "jobs.validation_cache_cleanup.batch_size",
                j.validation_cache_cleanup.batch_size,
                1,
                1_000_000,
            ),
        },
        housekeeping: HousekeepingConfig {
            schedule: c.cron("jobs.housekeeping.schedule", &j.housekeeping.schedule),
            run_history_retain: c.duration(
                "jobs.housekeeping.run_history_retain",
                &j.housekeeping.run_history_retain,
            ),
        },
    };
    if jobs.lease_ttl < Duration::from_secs(1) {
        c.fail(
            "jobs.lease_ttl",
            "must be at least 1s: the lease is renewed every third of it",
        );
    }

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

    let cluster = ClusterConfig {
        heartbeat_ttl: c.duration("cluster.heartbeat_ttl", &raw.cluster.heartbeat_ttl),
    };
    if cluster.heartbeat_ttl < Duration::from_secs(1) {
        c.fail(
            "cluster.heartbeat_ttl",
            "must be at least 1s: the heartbeat is renewed every third of it",
        );
    }

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
        database: RawDatabase {
            url: c.database.url.to_string(),
            max_connections: c.database.max_connections.into(),
            auto_migrate: c.database.auto_migrate,
            connect_timeout: d(c.database.connect_timeout),
            flush_interval: d(c.database.flush_interval),
        },
        probe: RawProbe {
            interval: d(c.probe.interval),
            timeout: d(c.probe.timeout),
            concurrency: c.probe.concurrency as i64,
            failure_threshold: c.probe.failure_threshold.into(),
            success_threshold: c.probe.success_threshold.into(),
            default_host: c.probe.default_host.clone(),
            expected_status: c.probe.expected_status.to_string(),
            max_body_bytes: c.probe.max_body_bytes as i64,
            follow_redirects: c.probe.follow_redirects.into(),
            degraded_after: d(c.probe.degraded_after),
        },
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
        jobs: RawJobs {
            lease_ttl: d(c.jobs.lease_ttl),
            analytics_retention: RawAnalyticsRetention {
                schedule: c.jobs.analytics_retention.schedule.to_string(),
                retain: d(c.jobs.analytics_retention.retain),
                lock_timeout: d(c.jobs.analytics_retention.lock_timeout),
                attempts: c.jobs.analytics_retention.attempts.into(),
                batch_size: c.jobs.analytics_retention.batch_size.into(),
            },
            partition_maintenance: RawPartitionMaintenance {
                schedule: c.jobs.partition_maintenance.schedule.to_string(),
                premake_months: c.jobs.partition_maintenance.premake_months.into(),
            },
            validation_cache_cleanup: RawCacheCleanup {
                schedule: c.jobs.validation_cache_cleanup.schedule.to_string(),
                batch_size: c.jobs.validation_cache_cleanup.batch_size.into(),
            },
            housekeeping: RawHousekeeping {
                schedule: c.jobs.housekeeping.schedule.to_string(),
                run_history_retain: d(c.jobs.housekeeping.run_history_retain),
            },
        },
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
