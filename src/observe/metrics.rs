//! Prometheus metrics: names, help texts and the recorder behind `/metrics`. The loops record
//! with the `metrics` macros, except on the check path, which keeps its handles
//! ([`CheckMetrics`]).

use std::collections::HashMap;
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, describe_counter, describe_gauge, describe_histogram, gauge,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const SERVICE_UP: &str = "mcp_healthd_service_up";
pub const SERVICE_LATENCY: &str = "mcp_healthd_service_response_seconds";
pub const CHECKS: &str = "mcp_healthd_checks_total";
pub const CHECK_DURATION: &str = "mcp_healthd_check_duration_seconds";
pub const SCHEDULER_LAG: &str = "mcp_healthd_scheduler_lag_seconds";
pub const FLUSH_DURATION: &str = "mcp_healthd_flush_duration_seconds";
pub const DB_ERRORS: &str = "mcp_healthd_db_errors_total";
pub const JOB_RUNS: &str = "mcp_healthd_job_runs_total";
pub const JOB_LAST_SUCCESS: &str = "mcp_healthd_job_last_success_timestamp_seconds";
pub const BUILD_INFO: &str = "mcp_healthd_build_info";
pub const MONITOR_OUTAGE: &str = "mcp_healthd_monitor_outage";
pub const STATUS_PAGE_QUERIES: &str = "mcp_healthd_status_page_queries_total";
pub const DB_UP: &str = "mcp_healthd_database_up";
pub const CERT_EXPIRY: &str = "mcp_healthd_certificate_expiry_timestamp_seconds";

/// Lag is normally well under a millisecond: finer buckets at the low end.
const LAG_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide recorder's handle. The `metrics` facade has one recorder per process, so
/// this is installed once, by the first daemon started in the process.
static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Installs the recorder (the first time) and returns the handle that renders it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(SCHEDULER_LAG.into()), &LAG_BUCKETS)?
        .install_recorder()?;
    describe_gauge!(
        SERVICE_UP,
        "1 if the service is healthy, 0 if it is down (absent while unknown)"
    );
    describe_gauge!(SERVICE_LATENCY, "Duration of the service's latest check");
    describe_counter!(
        CHECKS,
        "Checks completed, by outcome (ok or the error kind)"
    );
    describe_histogram!(CHECK_DURATION, "Duration of each check");
    describe_histogram!(
        SCHEDULER_LAG,
        "How late each check started after its planned time"
    );
    describe_histogram!(
        FLUSH_DURATION,
        "Duration of each status flush (one statement)"
    );
    describe_counter!(DB_ERRORS, "Failed database writes on the status path");
    describe_counter!(JOB_RUNS, "Maintenance job runs, by job and status");
    describe_gauge!(
        JOB_LAST_SUCCESS,
        "Unix time of each job's last successful run"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label");
    describe_gauge!(
        MONITOR_OUTAGE,
        "1 while a monitor-side outage is declared (failures are inconclusive)"
    );
    gauge!(MONITOR_OUTAGE).set(0.0);
    describe_gauge!(
        DB_UP,
        "1 while the writer's last attempt reached the database, 0 during an outage"
    );
    gauge!(DB_UP).set(1.0);
    describe_counter!(
        STATUS_PAGE_QUERIES,
        "Queries made for the status page (at most one per second whatever the traffic)"
    );
    describe_gauge!(
        CERT_EXPIRY,
        "notAfter of the certificate the service presented, as a Unix timestamp (https targets)"
    );
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The per-check metrics, with their handles looked up once (per outcome, per service): a
/// `metrics` macro builds, hashes and compares its key on every call, which showed in the
/// profile at a thousand checks a second (issue 16).
#[derive(Default)]
pub struct CheckMetrics {
    outcomes: Vec<(&'static str, Counter)>,
    duration: Option<Histogram>,
    services: HashMap<String, ServiceGauges>,
}

struct ServiceGauges {
    latency: Gauge,
    up: Gauge,
    cert_expiry: Option<Gauge>,
}

/// What one check sets: its outcome (`ok` or the error kind), its latency, the service's
/// verdict when it has one, and the certificate's notAfter (Unix seconds) when it saw one.
pub struct CheckFigures {
    pub outcome: &'static str,
    pub latency: Duration,
    pub up: Option<bool>,
    pub cert_expiry: Option<i64>,
}

impl CheckMetrics {
    pub fn record(&mut self, service: &str, figures: CheckFigures) {
        let outcome = match self.outcomes.iter().find(|(o, _)| *o == figures.outcome) {
            Some((_, counter)) => counter,
            None => {
                let counter = metrics::counter!(CHECKS, "outcome" => figures.outcome);
                self.outcomes.push((figures.outcome, counter));
                &self.outcomes[self.outcomes.len() - 1].1
            }
        };
        outcome.increment(1);
        let latency = figures.latency.as_secs_f64();
        self.duration
            .get_or_insert_with(|| metrics::histogram!(CHECK_DURATION))
            .record(latency);
        if !self.services.contains_key(service) {
            let gauges = ServiceGauges {
                latency: metrics::gauge!(SERVICE_LATENCY, "service_type" => service.to_owned()),
                up: metrics::gauge!(SERVICE_UP, "service_type" => service.to_owned()),
                cert_expiry: None,
            };
            self.services.insert(service.to_owned(), gauges);
        }
        let gauges = self.services.get_mut(service).expect("inserted above");
        gauges.latency.set(latency);
        if let Some(up) = figures.up {
            gauges.up.set(if up { 1.0 } else { 0.0 });
        }
        if let Some(not_after) = figures.cert_expiry {
            gauges
                .cert_expiry
                .get_or_insert_with(
                    || metrics::gauge!(CERT_EXPIRY, "service_type" => service.to_owned()),
                )
                .set(not_after as f64);
        }
    }

    /// Lets go of a service's handles (it is no longer checked here).
    pub fn forget(&mut self, service: &str) {
        self.services.remove(service);
    }
}
