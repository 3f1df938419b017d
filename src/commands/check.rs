//! `mcp-healthd check [--service T] [--json] [--record]`: one round of checks over the
//! registry (or one service), printed as a table or JSON; exit 1 if any check failed. Writes
//! nothing unless `--record`, which runs the results through the daemon's own state machine
//! and writer.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::cluster::identity;
use crate::config::Config;
use crate::pipeline::monitor::Monitor;
use crate::pipeline::scheduler::Report;
use crate::plan::target::{Planned, RegistryRow, plan_all};
use crate::probe::{ErrorKind, Prober};
use crate::registry;
use crate::store::dashboard::service_width;
use crate::store::db;
use crate::store::{self, FlushContext, Pending};
use crate::text::escape_control;

#[derive(Serialize)]
struct Row<'a> {
    service_type: &'a str,
    url: &'a str,
    healthy: bool,
    status: Option<u16>,
    error_kind: Option<&'static str>,
    error: Option<String>,
    response_time_ms: u64,
}

pub async fn run(
    config: &Config,
    service: Option<&str>,
    json: bool,
    record: bool,
) -> anyhow::Result<ExitCode> {
    let pool = db::open_current(&config.database).await?;
    let rows = select_rows(&pool, service).await?;
    let reports = probe_all(plan_all(&rows, &config.probe), config).await?;
    let table = table(&reports);
    if json {
        println!("{}", serde_json::to_string_pretty(&table)?);
    } else {
        print_table(&table);
    }
    if record {
        record_reports(&pool, config, &reports).await?;
    }
    pool.close().await;
    Ok(if table.iter().all(|r| r.healthy) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The available services, or only `service` when one is named (an error if it is not there).
async fn select_rows(pool: &PgPool, service: Option<&str>) -> anyhow::Result<Vec<RegistryRow>> {
    let mut rows = registry::load_available(pool).await?;
    if let Some(wanted) = service {
        rows.retain(|r| r.service_type == wanted);
        if rows.is_empty() {
            anyhow::bail!("no available service named {wanted:?} in service_registry");
        }
    }
    Ok(rows)
}

/// One output row per report.
fn table(reports: &[Report]) -> Vec<Row<'_>> {
    reports
        .iter()
        .map(|r| Row {
            service_type: &r.service_type,
            url: &r.url,
            healthy: r.check.outcome.is_success(),
            status: r.check.outcome.http_status(),
            error_kind: r.check.outcome.kind().map(ErrorKind::as_str),
            error: r.check.outcome.error_message(),
            response_time_ms: r.check.latency.as_millis() as u64,
        })
        .collect()
}

/// `--record`: the reports go through the daemon's state machine (from the stored states) and
/// are written in one flush.
async fn record_reports(pool: &PgPool, config: &Config, reports: &[Report]) -> anyhow::Result<()> {
    let pending = Arc::new(Mutex::new(Pending::default()));
    let windows = store::maintenance::current_and_ahead(pool).await?;
    let mut monitor = Monitor::new(store::load_states(pool).await?, config, pending.clone())
        .with_windows(windows);
    for r in reports {
        monitor.apply(r);
    }
    let batch = std::mem::take(&mut *pending.lock().expect("pending batch lock poisoned"));
    let ctx = FlushContext {
        uptime_window: config.uptime.window,
        check_interval: config.probe.interval,
        checked_by: &identity(),
    };
    store::flush(pool, uuid::Uuid::new_v4(), &batch, &ctx, chrono::Utc::now())
        .await
        .context("recording the results failed")?;
    Ok(())
}

/// Checks every planned service once, `probe.concurrency` at a time, in registry order.
pub async fn probe_all(planned: Vec<Planned>, config: &Config) -> anyhow::Result<Vec<Report>> {
    let prober = Prober::new(&config.probe)?;
    let limit = Arc::new(Semaphore::new(config.probe.concurrency));
    let checks = planned.into_iter().map(|p| {
        let (prober, limit) = (prober.clone(), limit.clone());
        async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            let check = prober.check_planned(&p).await;
            Report {
                service_type: p.service_type().into(),
                url: p.url().into(),
                check,
            }
        }
    });
    Ok(futures::future::join_all(checks).await)
}

/// The table; every text from the registry or a server is escaped, so that it cannot drive
/// the terminal (`--json` is escaped by JSON itself).
fn print_table(rows: &[Row]) {
    let services: Vec<_> = rows
        .iter()
        .map(|r| escape_control(r.service_type))
        .collect();
    let width = service_width(services.iter().map(|s| s.as_ref()));
    println!(
        "{:<width$}  {:<7}  {:>8}  {:<40}  ERROR",
        "SERVICE", "RESULT", "LATENCY", "URL"
    );
    for (r, service) in rows.iter().zip(&services) {
        println!(
            "{:<width$}  {:<7}  {:>6}ms  {:<40}  {}",
            service,
            if r.healthy { "ok" } else { "FAIL" },
            r.response_time_ms,
            escape_control(r.url),
            escape_control(r.error.as_deref().unwrap_or(""))
        );
    }
    let failed = rows.iter().filter(|r| !r.healthy).count();
    println!(
        "{} checked, {} healthy, {failed} failing",
        rows.len(),
        rows.len() - failed
    );
}
