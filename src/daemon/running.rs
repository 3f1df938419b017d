//! The pieces of a running daemon that a registry change, a membership change or a reload
//! replaces or retunes: the scheduler, the job scheduler, the registry watcher and the HTTP
//! endpoint, with the channels that tell the long-lived monitor and writer what changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};

use super::task::Task;
use crate::cluster;
use crate::config::Config;
use crate::jobs::scheduler::JobScheduling;
use crate::observe::http;
use crate::observe::stats::Stats;
use crate::pipeline::scheduler::{Report, Scheduler};
use crate::plan::health::ServiceState;
use crate::plan::target::{Planned, plan_all};
use crate::probe::Prober;
use crate::registry::{self, RegistryRow};
use crate::store;

pub struct Running {
    /// This daemon's id among the live daemons, and who they are.
    pub me: String,
    pub members: Vec<String>,
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
    pub rows: Vec<RegistryRow>,
    pub changes: mpsc::Sender<Vec<RegistryRow>>,
    pub stats: Arc<Stats>,
    pub pool: PgPool,
}

impl Running {
    /// Runs the services of `rows` this daemon owns among the live daemons.
    pub fn apply_registry(&mut self, rows: Vec<RegistryRow>, event: &'static str) {
        let mine: Vec<RegistryRow> = rows
            .iter()
            .filter(|r| cluster::owns(&self.me, &self.members, &r.service_type))
            .cloned()
            .collect();
        let planned = plan_all(&mine, &self.config.probe);
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
    }

    /// A new member list: take over (with their stored state) or hand off services.
    pub async fn apply_members(&mut self, members: Vec<String>) {
        let before: HashSet<String> = self.services_tx.borrow().iter().cloned().collect();
        self.members = members;
        let gained: HashSet<String> = self
            .rows
            .iter()
            .map(|r| r.service_type.clone())
            .filter(|s| cluster::owns(&self.me, &self.members, s) && !before.contains(s))
            .collect();
        if !gained.is_empty() {
            self.adopt_states(&gained).await;
        }
        let rows = self.rows.clone();
        self.apply_registry(rows, "membership_applied");
    }

    /// Hands the monitor the stored states of `gained`, so it continues where the previous
    /// owner left off (a down service stays down, without a second `service_down`).
    async fn adopt_states(&self, gained: &HashSet<String>) {
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
        rows: Vec<RegistryRow>,
        changes: mpsc::Sender<Vec<RegistryRow>>,
    ) -> Task {
        let (pool, refresh) = (pool.clone(), config.registry.refresh_interval);
        Task::spawn(|stop| registry::watch(pool, refresh, changes, rows, stop))
    }

    pub async fn start_http(
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
            metrics: crate::observe::metrics::install()?,
            stats: stats.clone(),
            pool: pool.clone(),
        };
        tracing::info!(event = "http_listening", address = %addr, "/metrics and /healthz");
        Ok(Some(Task::spawn(|stop| http::serve(listener, state, stop))))
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
