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
//!
//! May import anything below it: `config`, `clock`, `plan`, `observe`, the I/O pieces and
//! `pipeline`. Nothing but `commands` and `demo` imports it.

mod connect;
mod reload;
mod running;
mod signals;
mod task;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, hostname, instance_id};
use crate::config::{Config, ConfigSource};
use crate::observe::notify::Notifier;
use crate::observe::stats::Stats;
use crate::observe::telemetry::LevelHandle;
use crate::pipeline::monitor::Monitor;
use crate::pipeline::writer::Writer;
use crate::plan::health::Thresholds;
use crate::registry::{self, RegistryRow};
use crate::store::{self, Pending};
use running::Running;
use signals::Signal;
use task::Task;

/// `mcp-healthd run`: connect, start, serve until a signal asks to stop, stop.
pub async fn run(
    config: Config,
    source: ConfigSource,
    log: Option<LevelHandle>,
) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let (signal_task, mut signals) = signals::spawn_handler(shutdown.clone())?;
    Notifier.status("connecting to the database");
    let Some(pool) = connect::with_retry(&config, &shutdown).await? else {
        signal_task.abort();
        return Ok(ExitCode::SUCCESS);
    };
    let mut daemon = Daemon::start(Arc::new(config), pool).await?;
    Notifier.ready();
    Notifier.status(&daemon.running.stats.status_line());
    daemon
        .serve(&shutdown, &mut signals, &source, log.as_ref())
        .await;
    Notifier.stopping();
    daemon.stop().await;
    signal_task.abort();
    tracing::info!(event = "daemon_stopped", "stopped");
    Ok(ExitCode::SUCCESS)
}

/// A started daemon: the replaceable pieces, and the long-lived ones (membership, monitor,
/// writer) with the channels that feed it.
struct Daemon {
    running: Running,
    membership: Task,
    monitor: JoinHandle<()>,
    writer: Task,
    registry_changes: mpsc::Receiver<Vec<RegistryRow>>,
    members: watch::Receiver<Vec<String>>,
}

impl Daemon {
    /// Reads back every service's state and the registry, joins the cluster, and starts the
    /// pipeline, the job scheduler and the HTTP endpoint.
    async fn start(config: Arc<Config>, pool: PgPool) -> anyhow::Result<Self> {
        let rows = registry::load_available(&pool).await?;
        let states = store::load_states(&pool).await?;
        let me = instance_id();
        let (first_members, members, membership) = join_cluster(&pool, &me, &config).await;
        let stats = Arc::new(Stats::new(config.probe.interval + config.probe.timeout));
        let (config_tx, config_rx) = watch::channel(config.clone());
        let (services_tx, services_rx) = watch::channel(Arc::new(HashSet::new()));
        let (adopt, adopt_rx) = mpsc::channel(4);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (reports, report_rx) = mpsc::channel(4096);
        let monitor = Monitor::new(states, Thresholds::from(&*config), pending.clone());
        let monitor = tokio::spawn(monitor.run(
            report_rx,
            config_rx.clone(),
            services_rx,
            adopt_rx,
            stats.clone(),
        ));
        let writer = Writer {
            pool: pool.clone(),
            pending,
            config: config_rx,
            stats: stats.clone(),
            checked_by: me.clone(),
        };
        let writer = Task::spawn(|stop| writer.run(stop));
        let (changes, registry_changes) = mpsc::channel(4);
        let mut running = Running {
            me,
            members: first_members,
            adopt,
            scheduler: Running::new_scheduler(&config, reports.clone())?,
            jobs: crate::jobs::scheduler::start(pool.clone(), config.clone(), instance_id())
                .await?,
            watcher: Running::start_watcher(&pool, &config, rows.clone(), changes.clone()),
            http: Running::start_http(&config, &stats, &pool).await?,
            config,
            config_tx,
            services_tx,
            reports,
            rows: Vec::new(),
            changes,
            stats,
            pool,
        };
        running.apply_registry(rows, "daemon_started");
        Ok(Self {
            running,
            membership,
            monitor,
            writer,
            registry_changes,
            members,
        })
    }

    /// Follows registry and membership changes and reloads on SIGHUP, until `shutdown`.
    async fn serve(
        &mut self,
        shutdown: &CancellationToken,
        signals: &mut mpsc::Receiver<Signal>,
        source: &ConfigSource,
        log: Option<&LevelHandle>,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(rows) = self.registry_changes.recv() => {
                    self.running.apply_registry(rows, "registry_changed");
                }
                Ok(()) = self.members.changed() => {
                    let members = self.members.borrow_and_update().clone();
                    self.running.apply_members(members).await;
                }
                Some(Signal::Reload) = signals.recv() => self.reload(source, log).await,
            }
        }
    }

    async fn reload(&mut self, source: &ConfigSource, log: Option<&LevelHandle>) {
        Notifier.reloading();
        match source.load() {
            Ok(new) => match self.running.reload(new, log).await {
                Ok(()) => tracing::info!(event = "config_reloaded", "configuration reloaded"),
                Err(e) => tracing::error!(event = "reload_failed", error = %format!("{e:#}"),
                                          "reload failed part-way; the previous settings stay where not yet replaced"),
            },
            Err(e) => tracing::error!(event = "reload_failed", error = %e,
                                      "new configuration is invalid; keeping the running one"),
        }
        Notifier.ready();
    }

    /// Leaves the cluster, stops checking (in-flight checks get the grace), drains the monitor,
    /// flushes once more and closes the pool.
    async fn stop(self) {
        // Leave first: the other daemons take our services over while we finish.
        self.membership.stop().await;
        tracing::info!(
            event = "daemon_stopping",
            "no new checks; finishing those in flight"
        );
        let Running {
            scheduler,
            jobs,
            watcher,
            http,
            reports,
            config,
            pool,
            ..
        } = self.running;
        watcher.stop().await;
        let grace = config.daemon.shutdown_grace;
        tokio::join!(scheduler.stop(grace), jobs.stop(grace));
        drop(reports);
        // Schedulers replaced by a reload stop within their own grace; the monitor ends with them.
        if tokio::time::timeout(grace, self.monitor).await.is_err() {
            tracing::warn!(
                event = "monitor_abandoned",
                "checks of a replaced scheduler still running"
            );
        }
        self.writer.stop().await;
        if let Some(http) = http {
            http.stop().await;
        }
        pool.close().await;
    }
}

/// Writes the first heartbeat before any check (so daemons starting together do not all check
/// everything), then keeps it alive. Returns the first member list, the channel of later ones,
/// and the heartbeat task.
async fn join_cluster(
    pool: &PgPool,
    me: &str,
    config: &Config,
) -> (Vec<String>, watch::Receiver<Vec<String>>, Task) {
    let ttl = config.cluster.heartbeat_ttl;
    let first = cluster::beat(pool, me, &hostname(), ttl)
        .await
        .unwrap_or_default();
    let (tx, rx) = watch::channel(first.clone());
    let (pool, me) = (pool.clone(), me.to_owned());
    let task = Task::spawn(|stop| cluster::keep_membership(pool, me, hostname(), ttl, tx, stop));
    (first, rx, task)
}
