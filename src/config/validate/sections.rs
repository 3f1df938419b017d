//! The validation of the file's larger sections (those with several keys or checks beyond
//! each key's own), one function per section: each reads its raw section, names every key it
//! rejects in the [`Checker`], and returns the section's typed values (with placeholders where
//! a key failed; the caller then returns the errors, never those values). The checks that
//! compare keys of a section run right after it, so errors keep the file's order.

use std::time::Duration;

use super::values::quoted;
use super::{Checker, format_duration, host};
use crate::config::raw::{
    RawAlerts, RawAnalyticsRetention, RawCluster, RawDatabase, RawJobs, RawProbe, RawUptime,
};
use crate::config::{
    AlertsConfig, AnalyticsRetentionConfig, CacheCleanupConfig, ClusterConfig, DatabaseConfig,
    DatabaseUrl, HousekeepingConfig, JobsConfig, KeyError, PartitionMaintenanceConfig, ProbeConfig,
    UptimeConfig,
};

/// `[database]`; `DATABASE_URL`, when set, stands in for `database.url`.
pub(super) fn database(
    c: &mut Checker,
    raw: &RawDatabase,
    database_url_env: Option<&str>,
) -> DatabaseConfig {
    DatabaseConfig {
        url: database_url(c, raw, database_url_env),
        url_origin: String::new(), // filled in by `Config::from_toml`, which knows the file
        // One connection is held for life by the registry listener; at least one must be left.
        max_connections: c.int("database.max_connections", raw.max_connections, 2, 1000),
        auto_migrate: raw.auto_migrate,
        connect_timeout: c.duration("database.connect_timeout", &raw.connect_timeout),
        statement_timeout: c.duration("database.statement_timeout", &raw.statement_timeout),
        flush_interval: c.duration("database.flush_interval", &raw.flush_interval),
    }
}

/// The URL from `DATABASE_URL` if set, else from `database.url`; the error names the one used.
fn database_url(c: &mut Checker, raw: &RawDatabase, database_url_env: Option<&str>) -> DatabaseUrl {
    let (url_key, url_raw) = match database_url_env {
        Some(env) => ("DATABASE_URL", env),
        None => ("database.url", raw.url.as_str()),
    };
    let url = DatabaseUrl::parse(url_raw).map_err(|reason| KeyError {
        key: url_key.to_owned(),
        reason,
    });
    match url {
        Ok(u) => u,
        Err(e) => {
            c.errors.push(e);
            DatabaseUrl::parse("postgres://invalid/invalid").expect("literal")
        }
    }
}

/// `[probe]`, then [`probe_timing`].
pub(super) fn probe(c: &mut Checker, p: &RawProbe) -> ProbeConfig {
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
        failure_window: c.int("probe.failure_window", p.failure_window, 0, 64),
        tls_expiry_warning: c.duration_or_zero("probe.tls_expiry_warning", &p.tls_expiry_warning),
        ca_file: c.parsed("probe.ca_file", ca_file(&p.ca_file)),
    };
    if probe.failure_window != 0 && probe.failure_threshold > probe.failure_window {
        c.fail(
            "probe.failure_window",
            format!(
                "must be at least probe.failure_threshold ({} < {}), or 0 for consecutive failures",
                probe.failure_window, probe.failure_threshold
            ),
        );
    }
    probe_timing(c, &probe);
    probe
}

/// `probe.ca_file`: "" for none, else a readable file holding at least one PEM certificate.
fn ca_file(raw: &str) -> Result<Option<std::path::PathBuf>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    let path = std::path::PathBuf::from(raw);
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(
            std::fs::File::open(&path).map_err(|e| format!("cannot read {} ({e})", quoted(raw)))?,
            1 << 20,
        ),
        &mut text,
    )
    .map_err(|e| format!("cannot read {} ({e})", quoted(raw)))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{} holds no PEM certificate", quoted(raw)));
    }
    Ok(Some(path))
}

/// `[alerts]`: flap detection, monitor-side outage detection and its canaries.
pub(super) fn alerts(c: &mut Checker, raw: &RawAlerts) -> AlertsConfig {
    let ratio = raw.mass_failure_ratio;
    if !(ratio > 0.0 && ratio <= 1.0) {
        c.fail(
            "alerts.mass_failure_ratio",
            format!("must be more than 0 and at most 1 (1 disables it), not {ratio}"),
        );
    }
    let mut canaries = Vec::new();
    for (i, raw_url) in raw.canaries.iter().enumerate() {
        match url::Url::parse(raw_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                canaries.push(u)
            }
            Ok(_) => c.fail(
                &format!("alerts.canaries[{i}]"),
                format!(
                    "{} is not an http:// or https:// URL",
                    quoted(&crate::text::redact_url(raw_url))
                ),
            ),
            Err(e) => c.fail(
                &format!("alerts.canaries[{i}]"),
                format!(
                    "{} is not a URL ({e})",
                    quoted(&crate::text::redact_url(raw_url))
                ),
            ),
        }
    }
    AlertsConfig {
        reminder_interval: c.duration("alerts.reminder_interval", &raw.reminder_interval),
        flap_window: c.duration_or_zero("alerts.flap_window", &raw.flap_window),
        flap_changes: c.int("alerts.flap_changes", raw.flap_changes, 2, 1000),
        mass_failure_ratio: ratio,
        canaries,
    }
}

/// `probe.timeout` must not exceed `probe.interval` (checked only when both are valid).
fn probe_timing(c: &mut Checker, probe: &ProbeConfig) {
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
}

/// `[uptime]`: the window is at least an hour, and the rollups are kept at least that long.
pub(super) fn uptime(c: &mut Checker, raw: &RawUptime) -> UptimeConfig {
    let uptime = UptimeConfig {
        window: c.duration("uptime.window", &raw.window),
        retain: c.duration("uptime.retain", &raw.retain),
        retain_daily: c.duration("uptime.retain_daily", &raw.retain_daily),
    };
    if uptime.retain_daily < uptime.retain {
        c.fail(
            "uptime.retain_daily",
            "must be at least uptime.retain: reports read older days from the daily rollups",
        );
    }
    if uptime.window < Duration::from_secs(3600) {
        c.fail(
            "uptime.window",
            "must be at least 1h: uptime is computed from hourly rollups",
        );
    }
    if uptime.retain < Duration::from_secs(2 * 86_400) {
        c.fail(
            "uptime.retain",
            "must be at least 2d: the daily rollups are remade from the hourly ones of the last two days",
        );
    } else if uptime.retain < uptime.window {
        c.fail(
            "uptime.retain",
            "must be at least uptime.window: the window's rollups would be pruned",
        );
    }
    uptime
}

/// `[jobs]` and its one table per job; the lease must last at least a second.
pub(super) fn jobs(c: &mut Checker, j: &RawJobs) -> JobsConfig {
    let jobs = JobsConfig {
        lease_ttl: c.duration("jobs.lease_ttl", &j.lease_ttl),
        analytics_retention: analytics_retention(c, &j.analytics_retention),
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
    jobs
}

/// `[jobs.analytics_retention]`, the job with the most keys.
fn analytics_retention(
    c: &mut Checker,
    retention: &RawAnalyticsRetention,
) -> AnalyticsRetentionConfig {
    AnalyticsRetentionConfig {
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
    }
}

/// `[cluster]`: the heartbeat must last at least a second.
pub(super) fn cluster(c: &mut Checker, raw: &RawCluster) -> ClusterConfig {
    let cluster = ClusterConfig {
        heartbeat_ttl: c.duration("cluster.heartbeat_ttl", &raw.heartbeat_ttl),
        node_name: node_name(c, &raw.node_name),
    };
    if cluster.heartbeat_ttl < Duration::from_secs(1) {
        c.fail(
            "cluster.heartbeat_ttl",
            "must be at least 1s: the heartbeat is renewed every third of it",
        );
    }
    cluster
}

/// `MCP_HEALTHD_NODE_NAME` if set, else `cluster.node_name`, else the host name: printable, at
/// most 200 bytes. (The variable lets several daemons on one host share a configuration file.)
fn node_name(c: &mut Checker, raw: &str) -> String {
    let from_env = std::env::var("MCP_HEALTHD_NODE_NAME").unwrap_or_default();
    let name = match (from_env.is_empty(), raw.is_empty()) {
        (false, _) => from_env,
        (true, false) => raw.to_owned(),
        (true, true) => crate::config::hostname(),
    };
    if name.len() > 200 || name.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
        c.fail(
            "cluster.node_name",
            "must be at most 200 bytes, without spaces or control characters",
        );
    }
    name
}
