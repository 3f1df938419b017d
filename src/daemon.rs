//! The daemon's lifecycle (`mcp-healthd run`):
//!
//! 1. connect, retrying with backoff while the database is down (not READY until connected);
//!    migrate (or, without `auto_migrate`, check that nothing is pending);
//! 2. read back every service's state, load the registry, start the pipeline —
//!    registry watch -> scheduler -> probes -> monitor (state machine, alert log) -> writer —
//!    and the job scheduler and the HTTP endpoint; then READY=1;
//! 3. SIGHUP: reload the configuration file, swap it in whole if valid, keep the old one if not;
//! 4. SIGTERM/SIGINT: STOPPING=1, no new checks, in-flight ones get `daemon.shutdown_grace`, the
//!    monitor drains, the writer flushes once more, the lease is released. A second signal exits
//!    at once.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commands::ConfigSource;
use crate::config::Config;
use crate::health::Thresholds;
use crate::jobs::scheduler::JobScheduling;
use crate::monitor::{Monitor, Report};
use crate::notify::Notifier;
use crate::probe::Prober;
use crate::registry::RegistryRow;
use crate::scheduler::Scheduler;
use crate::stats::Stats;
use crate::store::{self, Pending};
use crate::target::{self, Planned};
use crate::telemetry::LevelHandle;
use crate::writer::Writer;
use crate::{db, http, registry, telemetry};

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

/// `host:pid:nonce`, unique per start: the daemon's heartbeat id, and each job scheduler's lease
/// holder (a restarted process never mistakes an old lease or heartbeat for its own).
fn instance_id() -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{}:{}", identity(), &nonce[..8])
}

fn log_registry(planned: &[Planned], event: &'static str) {
    let invalid = planned
        .iter()
        .filter(|p| matches!(p, Planned::Invalid(_)))
        .count();
    tracing::info!(event, services = planned.len(), invalid, "registry loaded");
    for p in planned {
        if let Planned::Invalid(i) = p {
            tracing::warn!(event = "invalid_target", service_type = %i.service_type, url = %i.url, reason = %i.reason);
        }
    }
}

/// A cancellable background task.
struct Task {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Task {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

/// Everything that runs once the database is reachable; replaced piecewise on reload.
struct Pipeline {
    /// This daemon's id among the live daemons, and who they are.
    me: String,
    members: Vec<String>,
    adopt: mpsc::Sender<std::collections::HashMap<String, crate::health::ServiceState>>,
    config: Arc<Config>,
    config_tx: watch::Sender<Arc<Config>>,
    services_tx: watch::Sender<Arc<HashSet<String>>>,
    reports: mpsc::Sender<Report>,
    scheduler: Scheduler,
    jobs: JobScheduling,
    watcher: Task,
    http: Option<Task>,
    rows: Vec<RegistryRow>,
    changes: mpsc::Sender<Vec<RegistryRow>>,
    stats: Arc<Stats>,
    pool: PgPool,
}

impl Pipeline {
    /// Runs the services of `rows` this daemon owns among the live daemons.
    fn apply_registry(&mut self, rows: Vec<RegistryRow>, event: &'static str) {
        let mine: Vec<RegistryRow> = rows
            .iter()
            .filter(|r| crate::cluster::owns(&self.me, &self.members, &r.service_type))
            .cloned()
            .collect();
        let planned = plan_all(&mine, &self.config);
        log_registry(&planned, event);
        let names: HashSet<String> = planned
            .iter()
            .map(|p| p.service_type().to_owned())
            .collect();
        self.scheduler.apply(planned);
        self.stats
            .services
            .store(self.scheduler.len(), std::sync::atomic::Ordering::Relaxed);
        self.services_tx.send_replace(Arc::new(names));
        self.rows = rows;
    }

    /// A new member list: take over (with their stored state) or hand off services.
    async fn apply_members(&mut self, members: Vec<String>) {
        let before: HashSet<String> = self.services_tx.borrow().iter().cloned().collect();
        self.members = members;
        let gained: HashSet<String> = self
            .rows
            .iter()
            .map(|r| r.service_type.clone())
            .filter(|s| crate::cluster::owns(&self.me, &self.members, s) && !before.contains(s))
            .collect();
        if !gained.is_empty() {
            match store::load_states(&self.pool).await {
                Ok(mut states) => {
                    states.retain(|s, _| gained.contains(s));
                    let _ = self.adopt.send(states).await;
                }
                Err(e) => {
                    tracing::warn!(event = "adopt_failed", error = %e, "taking services over without their stored state")
                }
            }
        }
        let rows = self.rows.clone();
        self.apply_registry(rows, "membership_applied");
    }

    fn new_scheduler(config: &Config, reports: mpsc::Sender<Report>) -> anyhow::Result<Scheduler> {
        Ok(Scheduler::new(
            Prober::new(&config.probe)?,
            config.probe.interval,
            config.probe.concurrency,
            reports,
        ))
    }

    fn start_watcher(
        pool: &PgPool,
        config: &Config,
        rows: Vec<RegistryRow>,
        changes: mpsc::Sender<Vec<RegistryRow>>,
    ) -> Task {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(registry::watch(
            pool.clone(),
            config.registry.refresh_interval,
            changes,
            rows,
            stop.clone(),
        ));
        Task { stop, handle }
    }

    async fn start_http(
        config: &Config,
        stats: &Arc<Stats>,
        pool: &PgPool,
    ) -> anyhow::Result<Option<Task>> {
        let Some(addr) = config.http.listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on http.listen = {addr}"))?;
        let state = http::HttpState {
            metrics: crate::metrics::install()?,
            stats: stats.clone(),
            pool: pool.clone(),
        };
        let stop = CancellationToken::new();
        let handle = tokio::spawn(http::serve(listener, state, stop.clone()));
        tracing::info!(event = "http_listening", address = %addr, "/metrics and /healthz");
        Ok(Some(Task { stop, handle }))
    }

    /// Swaps `new` in: what changed is restarted, the rest keeps running.
    async fn reload(&mut self, mut new: Config, log: Option<&LevelHandle>) -> anyhow::Result<()> {
        let old = self.config.clone();
        if new.database != old.database {
            tracing::warn!(
                event = "reload_partial",
                "database settings change only on restart; keeping the current ones"
            );
            new.database = old.database.clone();
        }
        if new.log.format != old.log.format {
            tracing::warn!(
                event = "reload_partial",
                "log.format changes only on restart"
            );
        }
        // Build every new piece first (each can fail: a busy port, a bad schedule); swap them
        // in only when all exist, so a failed reload leaves everything as it was.
        let grace = new.daemon.shutdown_grace;
        let fresh_scheduler = match new.probe != old.probe {
            true => Some(Self::new_scheduler(&new, self.reports.clone())?),
            false => None,
        };
        let fresh_jobs = match new.jobs != old.jobs {
            true => Some(
                crate::jobs::scheduler::start(
                    self.pool.clone(),
                    Arc::new(new.clone()),
                    instance_id(),
                )
                .await?,
            ),
            false => None,
        };
        let fresh_http = match new.http.listen != old.http.listen {
            true => match Self::start_http(&new, &self.stats, &self.pool).await {
                Ok(http) => Some(http),
                Err(e) => {
                    if let Some(jobs) = fresh_jobs {
                        jobs.stop(grace).await;
                    }
                    return Err(e);
                }
            },
            false => None,
        };
        if let Some(fresh) = fresh_scheduler {
            // The old tasks stop scheduling now; their in-flight checks finish and report.
            tokio::spawn(std::mem::replace(&mut self.scheduler, fresh).stop(grace));
        }
        if let Some(fresh) = fresh_jobs {
            tokio::spawn(std::mem::replace(&mut self.jobs, fresh).stop(grace));
        }
        if let Some(fresh) = fresh_http
            && let Some(previous) = std::mem::replace(&mut self.http, fresh)
        {
            previous.stop().await;
        }
        if let Some(handle) = log {
            telemetry::set_level(handle, &new.log.level);
        }
        let period = new.probe.interval + new.probe.timeout;
        self.stats.check_period_ms.store(
            period.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.config = Arc::new(new);
        self.config_tx.send_replace(self.config.clone());
        if self.config.registry != old.registry {
            let fresh = Self::start_watcher(
                &self.pool,
                &self.config,
                self.rows.clone(),
                self.changes.clone(),
            );
            std::mem::replace(&mut self.watcher, fresh).stop().await;
        }
        // Re-plan: default_host, timeouts and expected statuses shape every target.
        let rows = self.rows.clone();
        self.apply_registry(rows, "registry_replanned");
        Ok(())
    }
}

enum Signal {
    Reload,
}

/// SIGHUP -> `Signal::Reload`; the first SIGTERM/SIGINT cancels `shutdown`, a second exits now.
fn spawn_signal_handler(
    shutdown: CancellationToken,
) -> anyhow::Result<(JoinHandle<()>, mpsc::Receiver<Signal>)> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            match signal {
                SIGHUP => {
                    let _ = tx.send(Signal::Reload).await;
                }
                _ if shutdown.is_cancelled() => {
                    tracing::warn!(event = "forced_exit", signal, "second signal: exiting now");
                    std::process::exit(1);
                }
                _ => shutdown.cancel(),
            }
        }
    });
    Ok((task, rx))
}

pub async fn run(
    config: Config,
    source: ConfigSource,
    log: Option<LevelHandle>,
) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let (signal_task, mut signals) = spawn_signal_handler(shutdown.clone())?;
    Notifier.status("connecting to the database");
    let Some(pool) = connect_with_retry(&config, &shutdown).await? else {
        signal_task.abort();
        return Ok(ExitCode::SUCCESS);
    };
    let rows = registry::load_available(&pool).await?;
    let states = store::load_states(&pool).await?;

    let config = Arc::new(config);
    let me = instance_id();
    // The first beat before any check, so daemons starting together do not all check everything.
    let first_members = crate::cluster::beat(&pool, &me, &hostname(), config.cluster.heartbeat_ttl)
        .await
        .unwrap_or_default();
    let (members_tx, mut members_rx) = watch::channel(first_members.clone());
    let membership = {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(crate::cluster::keep_membership(
            pool.clone(),
            me.clone(),
            hostname(),
            config.cluster.heartbeat_ttl,
            members_tx,
            stop.clone(),
        ));
        Task { stop, handle }
    };
    let (adopt, adopt_rx) = mpsc::channel(4);
    let stats = Arc::new(Stats::new(config.probe.interval + config.probe.timeout));
    let (config_tx, config_rx) = watch::channel(config.clone());
    let (services_tx, services_rx) = watch::channel(Arc::new(HashSet::new()));
    let pending = Arc::new(Mutex::new(Pending::default()));
    let (reports, report_rx) = mpsc::channel(4096);
    let monitor = tokio::spawn(
        Monitor::new(states, thresholds(&config), pending.clone()).run(
            report_rx,
            config_rx.clone(),
            services_rx,
            adopt_rx,
            stats.clone(),
        ),
    );
    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(
        Writer {
            pool: pool.clone(),
            pending,
            config: config_rx,
            stats: stats.clone(),
            checked_by: me.clone(),
        }
        .run(writer_stop.clone()),
    );
    let (changes, mut change_rx) = mpsc::channel(4);
    let mut pipeline = Pipeline {
        me,
        members: first_members,
        adopt,
        scheduler: Pipeline::new_scheduler(&config, reports.clone())?,
        jobs: crate::jobs::scheduler::start(pool.clone(), config.clone(), instance_id()).await?,
        watcher: Pipeline::start_watcher(&pool, &config, rows.clone(), changes.clone()),
        http: Pipeline::start_http(&config, &stats, &pool).await?,
        config,
        config_tx,
        services_tx,
        reports,
        rows: Vec::new(),
        changes,
        stats: stats.clone(),
        pool: pool.clone(),
    };
    pipeline.apply_registry(rows, "daemon_started");
    Notifier.ready();
    Notifier.status(&stats.status_line());

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(rows) = change_rx.recv() => pipeline.apply_registry(rows, "registry_changed"),
            Ok(()) = members_rx.changed() => {
                let members = members_rx.borrow_and_update().clone();
                pipeline.apply_members(members).await;
            }
            Some(Signal::Reload) = signals.recv() => {
                Notifier.reloading();
                match source.load() {
                    Ok(new) => match pipeline.reload(new, log.as_ref()).await {
                        Ok(()) => tracing::info!(event = "config_reloaded", "configuration reloaded"),
                        Err(e) => tracing::error!(event = "reload_failed", error = %format!("{e:#}"),
                                                  "reload failed part-way; the previous settings stay where not yet replaced"),
                    },
                    Err(e) => tracing::error!(event = "reload_failed", error = %e,
                                              "new configuration is invalid; keeping the running one"),
                }
                Notifier.ready();
            }
        }
    }

    Notifier.stopping();
    // Leave first: the other daemons take our services over while we finish.
    membership.stop().await;
    tracing::info!(
        event = "daemon_stopping",
        "no new checks; finishing those in flight"
    );
    let Pipeline {
        scheduler,
        jobs,
        watcher,
        http,
        reports,
        config,
        ..
    } = pipeline;
    watcher.stop().await;
    let grace = config.daemon.shutdown_grace;
    tokio::join!(scheduler.stop(grace), jobs.stop(grace));
    drop(reports);
    // Schedulers replaced by a reload stop within their own grace; the monitor ends with them.
    if tokio::time::timeout(grace, monitor).await.is_err() {
        tracing::warn!(
            event = "monitor_abandoned",
            "checks of a replaced scheduler still running"
        );
    }
    writer_stop.cancel();
    let _ = writer.await;
    if let Some(http) = http {
        http.stop().await;
    }
    pool.close().await;
    signal_task.abort();
    tracing::info!(event = "daemon_stopped", "stopped");
    Ok(ExitCode::SUCCESS)
}

/// Connects (creating the database and migrating when `auto_migrate` is set), retrying with
/// backoff while the server is unreachable. `db_unavailable` is logged once per outage.
/// Returns `None` if shutdown was requested before a connection was made.
async fn connect_with_retry(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<PgPool>> {
    let mut backoff = db::Backoff::new(Duration::from_secs(30));
    let mut reported = false;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            attempt = db::open(&config.database) => attempt,
        };
        match attempt {
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
                Notifier.status(&format!("waiting for the database: {e}"));
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}
