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
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::sleep_until;
use crate::cluster::{self, hostname, instance_id};
use crate::config::{Config, ConfigSource};
use crate::observe::notify::Notifier;
use crate::observe::stats::Stats;
use crate::observe::telemetry::LevelHandle;
use crate::pipeline::monitor::{Feeds, Monitor};
use crate::pipeline::outside;
use crate::pipeline::writer::Writer;
use crate::registry;
use crate::store::{self, Pending, db, spill};
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
    let stopped = run_with(config, &shutdown, &mut signals, &source, log.as_ref()).await;
    signal_task.abort();
    stopped
}

/// The daemon with no signal handling of its own, stopped by cancelling `shutdown`: the demo
/// owns Ctrl-C, since a second one must still remove what the demo made.
pub async fn run_until(
    config: Config,
    source: ConfigSource,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let (_, mut no_reloads) = mpsc::channel(1);
    run_with(config, &shutdown, &mut no_reloads, &source, None).await
}

async fn run_with(
    config: Config,
    shutdown: &CancellationToken,
    signals: &mut mpsc::Receiver<Signal>,
    source: &ConfigSource,
    log: Option<&LevelHandle>,
) -> anyhow::Result<ExitCode> {
    Notifier.status("connecting to the database");
    let Some(pool) = connect::with_retry(&config, shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut daemon = Daemon::start(Arc::new(config), pool).await?;
    Notifier.ready();
    Notifier.status(&daemon.running.stats.status_line());
    daemon.serve(shutdown, signals, source, log).await;
    Notifier.stopping();
    daemon.stop().await;
    tracing::info!(event = "daemon_stopped", "stopped");
    Ok(ExitCode::SUCCESS)
}

/// A started daemon: the replaceable pieces, and the long-lived ones (membership, monitor,
/// writer) with the channels that feed it.
struct Daemon {
    running: Running,
    membership: Task,
    monitor: JoinHandle<()>,
    /// The monitor's feeds: maintenance windows and canaries.
    feeds: Vec<Task>,
    writer: Task,
    registry_changes: mpsc::Receiver<registry::Rows>,
    members: watch::Receiver<cluster::Beat>,
}

impl Daemon {
    /// Reads back every service's state and the registry, joins the cluster, and starts the
    /// pipeline, the job scheduler and the HTTP endpoint.
    async fn start(config: Arc<Config>, pool: PgPool) -> anyhow::Result<Self> {
        // Before any check: the check path keeps its metric handles, and a handle taken
        // before the recorder is there records nothing, even once a reload turns on /metrics.
        crate::observe::metrics::install()?;
        let limit = db::call_limit(&config.database);
        let me = member(&config);
        let joined = join_cluster(&pool, &me, &config).await?;
        replay_spilled(&pool, &config, &me.instance).await;
        let rows = Arc::new(db::deadline(limit, registry::load_available(&pool)).await?);
        let states = db::deadline(limit, store::load_states(&pool)).await?;
        let stats = Arc::new(Stats::new(config.probe.interval + config.probe.timeout));
        let (config_tx, config_rx) = watch::channel(config.clone());
        let (services_tx, services_rx) = watch::channel(Arc::new(HashSet::new()));
        let (adopt, adopt_rx) = mpsc::channel(4);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (reports, report_rx) = mpsc::channel(4096);
        // Read before the first check is judged, so a restart inside a window holds alerts back.
        let first_windows = db::deadline(limit, store::maintenance::current_and_ahead(&pool))
            .await
            .unwrap_or_default();
        let (windows_tx, windows) = watch::channel(Arc::new(first_windows.clone()));
        let (canaries_tx, canaries) = watch::channel(None);
        let feeds = vec![
            Task::spawn({
                let (pool, config) = (pool.clone(), config_rx.clone());
                move |stop| outside::feed_windows(pool, config, windows_tx, stop)
            }),
            Task::spawn({
                let config = config_rx.clone();
                move |stop| outside::feed_canaries(config, canaries_tx, stop)
            }),
        ];
        let monitor = Monitor::new(states, &config, pending.clone()).with_windows(first_windows);
        let monitor = tokio::spawn(monitor.run(
            report_rx,
            Feeds {
                config: config_rx.clone(),
                services: services_rx,
                adopt: adopt_rx,
                windows,
                canaries,
            },
            stats.clone(),
        ));
        let writer = Writer {
            pool: pool.clone(),
            pending,
            config: config_rx,
            stats: stats.clone(),
            checked_by: me.instance.clone(),
        };
        let writer = Task::spawn(|stop| writer.run(stop));
        let (changes, registry_changes) = mpsc::channel(4);
        let mut running = Running {
            me: me.name.clone(),
            members: Vec::new(),
            held: Default::default(),
            handover: config.cluster.heartbeat_ttl,
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
            rows: Arc::default(),
            changes,
            stats,
            pool,
        };
        running.rows = rows;
        running.apply_members(joined.first).await;
        tracing::info!(event = "daemon_started", node = %crate::text::echo(&me.name),
                       services = running.scheduler.len(), "started");
        Ok(Self {
            running,
            membership: joined.task,
            monitor,
            feeds,
            writer,
            registry_changes,
            members: joined.members,
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
            let release = self.running.next_release();
            tokio::select! {
                () = shutdown.cancelled() => return,
                // Both may wait on the database (the services' stored states): never past a stop.
                () = sleep_until(release) => {
                    if cancellable(shutdown, self.running.release_due()).await.is_none() {
                        return;
                    }
                }
                Some(rows) = self.registry_changes.recv() => {
                    self.running.apply_registry(rows, "registry_changed");
                }
                Ok(()) = self.members.changed() => {
                    let members = self.members.borrow_and_update().clone();
                    if cancellable(shutdown, self.running.apply_members(members)).await.is_none() {
                        return;
                    }
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

    /// Stops within one deadline, `daemon.shutdown_grace` plus `database.statement_timeout`
    /// (and a second of slack per step), whatever the database does: leaving the cluster and
    /// finishing in-flight checks share the grace; the final flush has the statement deadline;
    /// what it cannot write is kept on disk.
    async fn stop(self) {
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
        let grace = config.daemon.shutdown_grace;
        let slack = Duration::from_secs(1);
        let checks_done = tokio::time::Instant::now() + grace + slack;
        // Leaving lets the others take our services over while we finish.
        let (_, _, _, jobs_stopped, _) = tokio::join!(
            self.membership.stop_within(grace),
            watcher.stop_within(grace),
            scheduler.stop(grace),
            tokio::time::timeout(grace + slack, jobs.stop(grace)),
            futures::future::join_all(self.feeds.into_iter().map(|f| f.stop_within(grace))),
        );
        if jobs_stopped.is_err() {
            tracing::warn!(
                event = "jobs_abandoned",
                "the job scheduler did not stop in time"
            );
        }
        drop(reports);
        // Schedulers replaced by a reload stop within their own grace; the monitor ends with them.
        if tokio::time::timeout_at(checks_done, self.monitor)
            .await
            .is_err()
        {
            tracing::warn!(
                event = "monitor_abandoned",
                "checks of a replaced scheduler still running"
            );
        }
        let flush_limit = config.database.statement_timeout + slack;
        self.writer.stop_within(flush_limit + slack).await;
        if let Some(http) = http {
            http.stop_within(slack).await;
        }
        // Closing waits for each connection's goodbye; a silent server never answers.
        let _ = tokio::time::timeout(slack, pool.close()).await;
    }
}

/// This daemon as the cluster knows it: its node name, and this process.
fn member(config: &Config) -> cluster::Member {
    cluster::Member {
        name: config.cluster.node_name.clone(),
        instance: instance_id(),
        host: hostname(),
        ttl: config.cluster.heartbeat_ttl,
    }
}

/// A daemon that has joined the cluster.
struct Joined {
    /// The first heartbeat (empty if it failed: check nothing yet).
    first: cluster::Beat,
    members: watch::Receiver<cluster::Beat>,
    task: Task,
}

/// Claims the node name (refusing to start if a live daemon bears it), writes the first
/// heartbeat before any check (so daemons starting together do not all check everything), then
/// keeps it alive.
async fn join_cluster(
    pool: &PgPool,
    me: &cluster::Member,
    config: &Config,
) -> anyhow::Result<Joined> {
    let limit = db::call_limit(&config.database);
    let claim = cluster::NameClaim::take(pool, me, limit, config.database.connect_timeout).await?;
    let sent = tokio::time::Instant::now();
    let (first, confirmed) = match db::deadline(limit, cluster::beat(pool, me)).await {
        Ok(beat) => (beat, Some(sent)),
        Err(e) => {
            tracing::warn!(event = "heartbeat_failed", error = %e, "cannot write the first heartbeat; checking nothing until it is written");
            (cluster::Beat::default(), None)
        }
    };
    let (tx, members) = watch::channel(first.clone());
    let (pool, me) = (pool.clone(), me.clone());
    let task = Task::spawn(move |stop| {
        cluster::keep_membership(pool, me, claim, limit, confirmed, tx, stop)
    });
    Ok(Joined {
        first,
        members,
        task,
    })
}

/// Writes the results an earlier run kept on disk because the database was away at its exit.
async fn replay_spilled(pool: &PgPool, config: &Config, checked_by: &str) {
    let Some(dir) = config.daemon.state_dir.as_deref() else {
        return;
    };
    let ctx = store::FlushContext {
        uptime_window: config.uptime.window,
        check_interval: config.probe.interval,
        checked_by,
    };
    match spill::replay(pool, dir, &ctx, db::call_limit(&config.database)).await {
        Ok(done) if done.files > 0 => {
            tracing::info!(
                event = "results_replayed",
                files = done.files,
                checks = done.checks,
                "results kept on disk by an earlier run are written"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::error!(event = "replay_failed", dir = %dir.display(), error = %e,
                                  "cannot read the state directory"),
    }
}

/// `work`, unless `shutdown` comes first (`None`).
async fn cancellable<T>(
    shutdown: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        () = shutdown.cancelled() => None,
        done = work => Some(done),
    }
}
