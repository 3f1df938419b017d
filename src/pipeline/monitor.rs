//! The monitor: owns every service's health state. It receives each finished check, runs the
//! pure state machine, logs transitions, records metrics, and hands the result to the writer's
//! pending batch. It never waits on the database, so checking and alerting go on while
//! PostgreSQL is away.
//!
//! Its loop also sends systemd's STATUS line and, when systemd asked for one, the watchdog
//! ping: only while checks keep completing, so a stuck prober stops the pings.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::observe::metrics::{CHECK_DURATION, CHECKS, SERVICE_LATENCY, SERVICE_UP};
use crate::observe::notify::Notifier;
use crate::observe::stats::Stats;
use crate::pipeline::alerts;
use crate::pipeline::scheduler::Report;
use crate::plan::health::{self, Observation, ServiceState, Thresholds};
use crate::store::Pending;

pub struct Monitor {
    states: HashMap<String, ServiceState>,
    thresholds: Thresholds,
    pending: Arc<Mutex<Pending>>,
}

impl Monitor {
    pub fn new(
        states: HashMap<String, ServiceState>,
        thresholds: Thresholds,
        pending: Arc<Mutex<Pending>>,
    ) -> Self {
        Self {
            states,
            thresholds,
            pending,
        }
    }

    /// Applies one report: state machine, alert log, metrics, pending batch.
    pub fn apply(&mut self, report: &Report) {
        let check = &report.check;
        let obs = Observation {
            success: check.outcome.is_success(),
            latency: check.latency,
            at: check.started_at + check.latency,
        };
        let state = self.states.entry(report.service_type.clone()).or_default();
        let (next, transition) = health::next(state, obs, &self.thresholds);
        *state = next;
        if let Some(t) = transition {
            alerts::log_transition(t, &report.service_type, &report.url, state, check);
        }
        let outcome = check.outcome.kind().map_or("ok", |k| k.as_str());
        metrics::counter!(CHECKS, "outcome" => outcome).increment(1);
        metrics::histogram!(CHECK_DURATION).record(check.latency.as_secs_f64());
        let service = report.service_type.clone();
        metrics::gauge!(SERVICE_LATENCY, "service_type" => service.clone())
            .set(check.latency.as_secs_f64());
        if let Some(healthy) = state.healthy {
            metrics::gauge!(SERVICE_UP, "service_type" => service).set(if healthy {
                1.0
            } else {
                0.0
            });
        }
        self.pending
            .lock()
            .expect("pending batch lock poisoned")
            .record(&report.service_type, state, check);
    }

    /// (healthy, down) among `services`.
    fn counts(&self, services: &HashSet<String>) -> (usize, usize) {
        services
            .iter()
            .filter_map(|s| self.states.get(s).and_then(|st| st.healthy))
            .fold(
                (0, 0),
                |(up, down), h| if h { (up + 1, down) } else { (up, down + 1) },
            )
    }

    /// Runs until every report sender is gone (the scheduler has stopped).
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        mut config: watch::Receiver<Arc<Config>>,
        services: watch::Receiver<Arc<HashSet<String>>>,
        mut adopt: mpsc::Receiver<HashMap<String, ServiceState>>,
        stats: Arc<Stats>,
    ) {
        let mut status_tick = tokio::time::interval(Duration::from_secs(5));
        let watchdog = Notifier::watchdog_period();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        loop {
            tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => {
                        self.apply(&report);
                        stats.report_seen();
                    }
                    None => return,
                },
                // Services taken over from another daemon: continue from its last stored state.
                Some(states) = adopt.recv() => self.states.extend(states),
                Ok(()) = config.changed() => {
                    self.thresholds = Thresholds::from(&**config.borrow_and_update());
                }
                _ = status_tick.tick() => {
                    let (healthy, down) = self.counts(&services.borrow());
                    stats.healthy.store(healthy, Ordering::Relaxed);
                    stats.down.store(down, Ordering::Relaxed);
                    Notifier.status(&stats.status_line());
                }
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    match stats.prober_progress() {
                        Ok(()) => Notifier.watchdog(),
                        Err(why) => tracing::error!(event = "watchdog_withheld", reason = %why),
                    }
                }
            }
        }
    }
}
