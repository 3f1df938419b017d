//! The pieces of a running daemon that a registry change, a membership change or a reload
//! replaces or retunes: the scheduler, the job scheduler, the registry watcher and the HTTP
//! endpoint, with the channels that tell the long-lived monitor and writer what changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::task::Task;
use crate::cluster;
use crate::config::Config;
use crate::jobs::scheduler::JobScheduling;
use crate::observe::http;
use crate::observe::stats::Stats;
use crate::pipeline::scheduler::{Report, Scheduler};
use crate::plan::health::ServiceState;
use crate::plan::target::{Planned, plan};
use crate::probe::Prober;
use crate::registry;
use crate::store;

pub struct Running {
    /// This daemon's node name among the live daemons, and who they are (empty while fenced).
    pub me: String,
    pub members: Vec<String>,
    /// Services this daemon gained from a live daemon, held back until that one has surely
    /// seen the new membership (one heartbeat ttl), so that no service is checked twice.
    pub held: HashMap<String, Instant>,
    /// How long a hand-over from a live daemon takes: the heartbeat ttl.
    pub handover: Duration,
    /// Stored states of services taken over from another daemon, for the monitor.
    pub adopt: mpsc::Sender<HashMap<String, ServiceState>>,
    pub config: Arc<Config>,
    pub config_tx: watch::Sender<Arc<Config>>,
    /// The services this daemon checks, for the monitor's counts.
    pub services_tx: watch::Sender<Arc<HashSet<String>>>,
    pub reports: mpsc::Sender<Report>,
    pub scheduler: Scheduler,
    pub jobs: JobScheduling,
    pub watcher: Task,
    pub http: Option<Task>,
    /// The whole available registry, owned by this daemon or not.
    pub rows: registry::Rows,
    pub changes: mpsc::Sender<registry::Rows>,
    pub stats: Arc<Stats>,
    pub pool: PgPool,
}

impl Running {
    /// Whether this daemon checks `service` now: it owns it among the live members (owning
    /// nothing while fenced), and it is not held back for a hand-over.
    fn checks(&self, service: &str) -> bool {
        self.owns(service) && !self.held.contains_key(service)
    }

    /// Whether this daemon owns `service` among the live members; while fenced (no members)
    /// it owns nothing.
    fn owns(&self, service: &str) -> bool {
        !self.members.is_empty() && cluster::owns(&self.me, &self.members, service)
    }

    /// Runs the services of `rows` this daemon owns among the live daemons.
    pub fn apply_registry(&mut self, rows: registry::Rows, event: &'static str) {
        let planned: Vec<Planned> = rows
            .iter()
            .filter(|r| self.checks(&r.service_type))
            .map(|r| plan(r, &self.config.probe))
            .collect();
        log_registry(&planned, event);
        let names: HashSet<String> = planned
            .iter()
            .map(|p| p.service_type().to_owned())
            .collect();
        self.scheduler.apply(planned);
        self.stats
            .services
            .store(self.scheduler.len(), Ordering::Relaxed);
        self.services_tx.send_replace(Arc::new(names));
        self.rows = rows;
        release_freed_memory();
    }

    /// A new member list: hand off services, and take over (with their stored state) those
    /// whose previous owner is gone; those whose previous owner is live are held back one ttl.
    pub async fn apply_members(&mut self, beat: cluster::Beat) {
        let before: HashSet<String> = self.services_tx.borrow().iter().cloned().collect();
        // Who checked what until now: the new list if our row never lapsed (a restart, or
        // beats that failed for less than a ttl), else our own view, or, if we were not in it
        // (a first start, or fenced), the others without us.
        let members = beat.live;
        let prior: Vec<String> = if beat.was_member {
            members.clone()
        } else if self.members.contains(&self.me) {
            self.members.clone()
        } else {
            members.iter().filter(|m| **m != self.me).cloned().collect()
        };
        self.members = members;
        let owned: HashSet<String> = self
            .rows
            .iter()
            .map(|r| r.service_type.clone())
            .filter(|s| self.owns(s))
            .collect();
        self.held.retain(|s, _| owned.contains(s));
        let release_at = Instant::now() + self.handover;
        let mut gained = HashSet::new();
        let newly: Vec<&String> = owned
            .iter()
            .filter(|s| !before.contains(*s) && !self.held.contains_key(*s))
            .collect();
        for s in newly {
            match cluster::owner(&prior, s) {
                Some(o) if o != self.me && self.members.iter().any(|m| m == o) => {
                    self.held.insert(s.clone(), release_at);
                }
                _ => {
                    gained.insert(s.clone());
                }
            }
        }
        if !gained.is_empty() {
            self.adopt_states(&gained).await;
        }
        let rows = self.rows.clone();
        self.apply_registry(rows, "membership_applied");
    }

    /// When the next held-back service is due, if any.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.values().min().copied()
    }

    /// Starts checking the held-back services whose hand-over time has come.
    pub async fn release_due(&mut self) {
        let now = Instant::now();
        let due: HashSet<String> = self
            .held
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        self.held.retain(|s, _| !due.contains(s));
        self.adopt_states(&due).await;
        let rows = self.rows.clone();
        self.apply_registry(rows, "handover_done");
    }

    /// Hands the monitor the stored states of `gained`, so it continues where the previous
    /// owner left off (a down service stays down, without a second `service_down`).
    async fn adopt_states(&self, gained: &HashSet<String>) {
        let limit = store::db::call_limit(&self.config.database);
        match store::db::deadline(limit, store::load_states(&self.pool)).await {
            Ok(mut states) => {
                states.retain(|s, _| gained.contains(s));
                let _ = self.adopt.send(states).await;
            }
            Err(e) => {
                tracing::warn!(event = "adopt_failed", error = %e, "taking services over without their stored state")
            }
        }
    }

    pub fn new_scheduler(
        config: &Config,
        reports: mpsc::Sender<Report>,
    ) -> anyhow::Result<Scheduler> {
        Ok(Scheduler::new(
            Prober::new(&config.probe)?,
            config.probe.interval,
            config.probe.concurrency,
            reports,
        ))
    }

    pub fn start_watcher(
        pool: &PgPool,
        config: &Config,
        rows: registry::Rows,
        changes: mpsc::Sender<registry::Rows>,
    ) -> Task {
        let (pool, refresh) = (pool.clone(), config.registry.refresh_interval);
        let limit = store::db::call_limit(&config.database);
        Task::spawn(move |stop| registry::watch(pool, refresh, limit, changes, rows, stop))
    }

    pub async fn start_http(
        config: &Config,
        stats: &Arc<Stats>,
        pool: &PgPool,
    ) -> anyhow::Result<Option<Task>> {
        // Before anything is served: the endpoint's cap is counted against this limit.
        http::raise_fd_limit(config);
        let Some(addr) = config.http.listen else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on http.listen = {addr}"))?;
        let state = http::HttpState {
            metrics: crate::observe::metrics::install()?,
            stats: stats.clone(),
            pool: pool.clone(),
        };
        let pages = config.http.status_page.then(|| {
            crate::statuspage::router(pool.clone(), store::db::call_limit(&config.database))
        });
        let serves = if pages.is_some() {
            "/metrics, /healthz, the status page (/) and /api/status.json"
        } else {
            "/metrics and /healthz"
        };
        tracing::info!(event = "http_listening", address = %addr, serves, "listening");
        Ok(Some(Task::spawn(|stop| {
            http::serve(listener, state, pages, stop)
        })))
    }
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

/// Hands the heap's free pages back to the system after a registry change, whose planning
/// frees as much as the fleet's size: glibc keeps freed memory for reuse, so without this the
/// resident size stays at the peak of the largest change (issue 16).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}
