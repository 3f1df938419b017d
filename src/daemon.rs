//! The daemon's lifecycle (`mcp-healthd run`): connect (retrying while the database is down),
//! migrate, read back the services' state, then run the prober pipeline until SIGTERM/SIGINT:
//!
//! registry watch -> scheduler -> probe tasks -> monitor (state machine, alert log) -> writer.
//!
//! Shutdown: no new checks; in-flight checks get `daemon.shutdown_grace`; the monitor drains;
//! the writer flushes once more. A second signal exits at once.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::commands::ConfigSource;
use crate::config::Config;
use crate::health::Thresholds;
use crate::monitor::Monitor;
use crate::probe::Prober;
use crate::registry::RegistryRow;
use crate::scheduler::Scheduler;
use crate::store::{self, Pending};
use crate::target::{self, Planned};
use crate::writer::Writer;
use crate::{db, registry};

pub fn thresholds(config: &Config) -> Thresholds {
    Thresholds {
        failure: config.probe.failure_threshold,
        success: config.probe.success_threshold,
        degraded_after: config.probe.degraded_after,
        reminder_interval: config.alerts.reminder_interval,
    }
}

pub fn plan_all(rows: &[RegistryRow], config: &Config) -> Vec<Planned> {
    rows.iter()
        .map(|r| target::plan(r, &config.probe))
        .collect()
}

/// `host:pid`, written to `service_health_status.checked_by` and used in lease holders.
pub fn identity() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// gethostname(2): /proc/sys/kernel/hostname is hidden under the unit's `ProcSubset=pid`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Unique per process start, so a restarted daemon never mistakes the old lease for its own.
fn job_holder() -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{}:{}", identity(), &nonce[..8])
}

fn log_registry(planned: &[Planned], event: &'static str) {
    let invalid: Vec<&str> = planned
        .iter()
        .filter(|p| matches!(p, Planned::Invalid(_)))
        .map(Planned::service_type)
        .collect();
    tracing::info!(
        event,
        services = planned.len(),
        invalid = invalid.len(),
        "registry loaded"
    );
    for p in planned {
        if let Planned::Invalid(i) = p {
            tracing::warn!(event = "invalid_target", service_type = %i.service_type, url = %i.url, reason = %i.reason);
        }
    }
}

pub async fn run(config: Config, _source: ConfigSource) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let signals = spawn_signal_handler(shutdown.clone())?;

    let Some(pool) = connect_with_retry(&config, &shutdown).await? else {
        signals.abort();
        return Ok(ExitCode::SUCCESS);
    };
    let rows = registry::load_available(&pool).await?;
    let states = store::load_states(&pool).await?;

    let pending = Arc::new(Mutex::new(Pending::default()));
    let (reports, report_rx) = mpsc::channel(4096);
    let monitor =
        tokio::spawn(Monitor::new(states, thresholds(&config), pending.clone()).run(report_rx));
    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(
        Writer {
            pool: pool.clone(),
            pending,
            flush_interval: config.database.flush_interval,
            uptime_window: config.uptime.window,
            check_interval: config.probe.interval,
            checked_by: identity(),
        }
        .run(writer_stop.clone()),
    );

    let mut scheduler = Scheduler::new(
        Prober::new(&config.probe)?,
        config.probe.interval,
        config.probe.concurrency,
        reports,
    );
    let planned = plan_all(&rows, &config);
    log_registry(&planned, "daemon_started");
    scheduler.apply(planned);

    let config = Arc::new(config);
    let job_scheduling =
        crate::jobs::scheduler::start(pool.clone(), config.clone(), job_holder()).await?;

    let (changes, mut change_rx) = mpsc::channel(4);
    let watcher = tokio::spawn(registry::watch(
        pool.clone(),
        config.registry.refresh_interval,
        changes,
        rows,
        shutdown.child_token(),
    ));

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(rows) = change_rx.recv() => {
                let planned = plan_all(&rows, &config);
                log_registry(&planned, "registry_changed");
                scheduler.apply(planned);
            }
        }
    }

    tracing::info!(
        event = "daemon_stopping",
        "no new checks; finishing those in flight"
    );
    let grace = config.daemon.shutdown_grace;
    let (_, jobs_stopped) = tokio::join!(
        scheduler.stop(grace),
        tokio::time::timeout(grace, job_scheduling.stop())
    );
    if jobs_stopped.is_err() {
        tracing::warn!(
            event = "jobs_abandoned",
            "maintenance jobs still running when the grace ran out"
        );
    }
    let _ = monitor.await;
    writer_stop.cancel();
    let _ = writer.await;
    let _ = watcher.await;
    pool.close().await;
    signals.abort();
    tracing::info!(event = "daemon_stopped", "stopped");
    Ok(ExitCode::SUCCESS)
}

/// First SIGTERM/SIGINT cancels `shutdown`; a second one exits immediately.
fn spawn_signal_handler(
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    Ok(tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            match signal {
                SIGHUP => tracing::info!(
                    event = "reload_ignored",
                    "SIGHUP: reload is not implemented yet"
                ),
                _ if shutdown.is_cancelled() => {
                    tracing::warn!(event = "forced_exit", signal, "second signal: exiting now");
                    std::process::exit(1);
                }
                _ => shutdown.cancel(),
            }
        }
    }))
}

/// Connects (creating the database and migrating when `auto_migrate` is set), retrying with
/// backoff while the server is unreachable. `db_unavailable` is logged once per outage.
/// Returns `None` if shutdown was requested before a connection was made.
async fn connect_with_retry(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<sqlx::PgPool>> {
    let mut backoff = db::Backoff::new(Duration::from_secs(30));
    let mut reported = false;
    loop {
        match db::open(&config.database).await {
            Ok((pool, applied)) => {
                if reported {
                    tracing::info!(
                        event = "db_recovered",
                        down_for_s = backoff.elapsed().as_secs(),
                        "database reachable"
                    );
                }
                for m in applied {
                    tracing::info!(event = "migration_applied", version = m.version, description = %m.description);
                }
                return Ok(Some(pool));
            }
            // A failed or missing migration is not an outage: retrying would fail the same way.
            Err(e) if e.is_permanent() => return Err(e.into()),
            Err(e) => {
                if !reported {
                    tracing::error!(event = "db_unavailable", error = %e, "database unreachable; retrying with backoff");
                    reported = true;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}
