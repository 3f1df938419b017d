//! The monitor: owns every service's health state. It receives each finished check, runs the
//! pure state machine, logs transitions, records metrics, and hands the result to the writer's
//! pending batch (with the incidents the alerts open and close). It never waits on the
//! database, so checking and alerting go on while PostgreSQL is away.
//!
//! Before the state machine, each check meets what holds alerts back: a maintenance window
//! covering the service (the verdict follows the checks, no service alert, left out of uptime),
//! and the monitor-side outage detector (`plan::outage`: failures that are the monitor's own are
//! inconclusive and leave the state alone).
//!
//! Its loop also sends systemd's STATUS line and, when systemd asked for one, the watchdog
//! ping: only while checks keep completing, so a stuck prober stops the pings.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::observe::metrics::{CheckFigures, CheckMetrics, MONITOR_OUTAGE};
use crate::observe::notify::Notifier;
use crate::observe::stats::Stats;
use crate::pipeline::alerts;
use crate::pipeline::scheduler::Report;
use crate::plan::health::{self, Observation, ServiceState, Thresholds, Transition};
use crate::plan::outage::{Declared, Detector, Verdict};
use crate::store::maintenance::Window;
use crate::store::{Counted, Pending};

pub struct Monitor {
    states: HashMap<String, ServiceState>,
    thresholds: Thresholds,
    pending: Arc<Mutex<Pending>>,
    detector: Detector,
    /// The daemon's services (for the outage detector's share).
    total: usize,
    /// Maintenance windows now and ahead.
    windows: Arc<Vec<Window>>,
    /// Windows whose `maintenance_started` was logged.
    announced: HashSet<i64>,
    /// The services this daemon checks (windows are announced only when they cover one).
    owned: Arc<HashSet<String>>,
    stats: Option<Arc<Stats>>,
    metrics: CheckMetrics,
}

/// What the monitor reads besides the checks.
pub struct Feeds {
    pub config: watch::Receiver<Arc<Config>>,
    pub services: watch::Receiver<Arc<HashSet<String>>>,
    /// Services taken over from another daemon, with their last stored state.
    pub adopt: mpsc::Receiver<HashMap<String, ServiceState>>,
    pub windows: watch::Receiver<Arc<Vec<Window>>>,
    /// Whether every canary fails (`None`: no canaries).
    pub canaries: watch::Receiver<Option<bool>>,
}

impl Monitor {
    pub fn new(
        states: HashMap<String, ServiceState>,
        config: &Config,
        pending: Arc<Mutex<Pending>>,
    ) -> Self {
        Self {
            states,
            thresholds: Thresholds::from(config),
            pending,
            detector: Detector::new(config.alerts.mass_failure_ratio, config.probe.interval),
            total: 0,
            windows: Arc::default(),
            announced: HashSet::new(),
            owned: Arc::default(),
            stats: None,
            metrics: CheckMetrics::default(),
        }
    }

    /// Starts with these maintenance windows (read before the first check is judged).
    pub fn with_windows(mut self, windows: Vec<Window>) -> Self {
        self.windows = Arc::new(windows);
        self
    }

    /// Applies one report: outage detector, state machine, alert log, metrics, pending batch.
    pub fn apply(&mut self, report: &Report) {
        let check = &report.check;
        let service = &*report.service_type;
        let at = check.started_at + check.latency;
        let maintenance = self.windows.iter().any(|w| w.covers(service, at));
        let success = check.outcome.is_success();
        if !self.states.contains_key(service) {
            self.states
                .insert(service.to_owned(), ServiceState::default());
        }
        let before = &self.states[service];
        match self
            .detector
            .observe(service, success, at, before, self.total)
        {
            Verdict::Judge => self.judge(report, at, maintenance),
            Verdict::Inconclusive => self.record_only(report, maintenance),
            Verdict::Declare(declared) => {
                self.declare(declared);
                self.record_only(report, maintenance);
            }
        }
        if let Some(reason) = self.detector.recover_if_due(self.total) {
            self.recovered(reason.as_str());
        }
        let figures = CheckFigures {
            outcome: check.outcome.kind().map_or("ok", |k| k.as_str()),
            latency: check.latency,
            up: self.states.get(service).and_then(|s| s.healthy),
            cert_expiry: check.tls_not_after.map(|t| t.timestamp()),
        };
        self.metrics.record(service, figures);
    }

    /// The state machine's turn: the new state, its alerts and incidents, the pending batch.
    fn judge(&mut self, report: &Report, at: DateTime<Utc>, maintenance: bool) {
        let check = &report.check;
        let obs = Observation {
            success: check.outcome.is_success(),
            latency: check.latency,
            at,
            tls_not_after: check.tls_not_after,
            maintenance,
        };
        let state = self
            .states
            .get_mut(&*report.service_type)
            .expect("inserted by apply");
        let (next, events) = health::next(state, obs, &self.thresholds);
        *state = next;
        let mut pending = self.pending.lock().expect("pending batch lock poisoned");
        let counted = if maintenance {
            Counted::Maintenance
        } else {
            Counted::Yes
        };
        pending.record_as(&report.service_type, state, check, counted);
        for &event in &events {
            alerts::log_transition(event, &report.service_type, &report.url, state, check);
            match event {
                Transition::Down => {
                    let row = &pending.status[&*report.service_type].clone();
                    pending.open_incident(&report.service_type, at, row, state.incident_failures);
                }
                Transition::Up { .. } => {
                    pending.close_incident(&report.service_type, at, state.incident_failures);
                }
                _ => {}
            }
        }
    }

    /// A check that does not touch the state: recorded, left out of uptime.
    fn record_only(&mut self, report: &Report, maintenance: bool) {
        let state = &self.states[&*report.service_type];
        let counted = if maintenance {
            Counted::Maintenance
        } else {
            Counted::Inconclusive
        };
        self.pending
            .lock()
            .expect("pending batch lock poisoned")
            .record_as(&report.service_type, state, &report.check, counted);
    }

    /// A monitor-side outage: one event, and the failures judged before it are undone.
    fn declare(&mut self, declared: Declared) {
        alerts::monitor_outage(declared.reason.as_str(), declared.failing, declared.total);
        self.set_outage(true);
        let mut pending = self.pending.lock().expect("pending batch lock poisoned");
        for (service, fresh) in declared.recalled {
            for &at in &fresh.failures {
                pending.reclassify_failure(&service, at);
            }
            // The verdict goes back to before those failures; what was alerted stays (a
            // service_down already logged keeps its incident, closed by its service_up).
            let now = self.states.get(&service).cloned().unwrap_or_default();
            let restored = ServiceState {
                alerted_down: now.alerted_down,
                down_since: now.down_since,
                incident_failures: now.incident_failures,
                last_alert_at: now.last_alert_at,
                ..fresh.before
            };
            if let Some(row) = pending.status.get_mut(&service) {
                row.state = restored.clone();
            }
            self.states.insert(service, restored);
        }
    }

    fn recovered(&mut self, reason: &str) {
        alerts::monitor_recovered(reason, self.detector.failing(), self.total);
        self.set_outage(false);
    }

    fn set_outage(&self, on: bool) {
        metrics::gauge!(MONITOR_OUTAGE).set(if on { 1.0 } else { 0.0 });
        if let Some(stats) = &self.stats {
            stats.monitor_outage.store(on, Ordering::Relaxed);
        }
    }

    /// Logs `maintenance_started` / `maintenance_ended` once per window as time passes, for the
    /// windows that cover a service this daemon checks.
    fn announce_windows(&mut self, now: DateTime<Utc>) {
        for w in self.windows.iter() {
            let ours = match &w.service_type {
                None => !self.owned.is_empty(),
                Some(s) => self.owned.contains(s),
            };
            if ours && w.starts_at <= now && now < w.ends_at && self.announced.insert(w.id) {
                alerts::maintenance_started(w);
            }
        }
        let windows = &self.windows;
        self.announced.retain(|id| {
            let live = windows
                .iter()
                .any(|w| w.id == *id && w.starts_at <= now && now < w.ends_at);
            if !live {
                alerts::maintenance_ended(*id);
            }
            live
        });
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

    fn canaries_changed(&mut self, all_failing: Option<bool>) {
        self.detector.canaries(all_failing);
        if let Some(declared) = self.detector.declare_if_due(self.total) {
            self.declare(declared);
        }
        if let Some(reason) = self.detector.recover_if_due(self.total) {
            self.recovered(reason.as_str());
        }
    }

    /// Runs until every report sender is gone (the scheduler has stopped).
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<Report>,
        mut feeds: Feeds,
        stats: Arc<Stats>,
    ) {
        self.stats = Some(stats.clone());
        let mut status_tick = tokio::time::interval(Duration::from_secs(5));
        let mut window_tick = tokio::time::interval(Duration::from_secs(1));
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
                Some(states) = feeds.adopt.recv() => self.states.extend(states),
                Ok(()) = feeds.config.changed() => {
                    let config = feeds.config.borrow_and_update().clone();
                    self.thresholds = Thresholds::from(&*config);
                    self.detector.set_limits(config.alerts.mass_failure_ratio, config.probe.interval);
                }
                Ok(()) = feeds.services.changed() => {
                    let services = feeds.services.borrow_and_update().clone();
                    self.total = services.len();
                    for gone in self.states.keys().filter(|s| !services.contains(*s)) {
                        self.detector.forget(gone);
                        self.metrics.forget(gone);
                    }
                    self.owned = services;
                }
                Ok(()) = feeds.windows.changed() => {
                    self.windows = feeds.windows.borrow_and_update().clone();
                    self.announce_windows(Utc::now());
                }
                Ok(()) = feeds.canaries.changed() => {
                    let all_failing = *feeds.canaries.borrow_and_update();
                    self.canaries_changed(all_failing);
                }
                _ = window_tick.tick() => self.announce_windows(Utc::now()),
                _ = status_tick.tick() => {
                    let (healthy, down) = self.counts(&feeds.services.borrow());
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
