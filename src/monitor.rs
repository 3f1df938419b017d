//! The monitor: owns every service's health state. It receives each finished check, runs the
//! pure state machine, logs transitions, and hands the result to the writer's pending batch.
//! It never waits on the database, so checking and alerting go on while PostgreSQL is away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::alerts;
use crate::health::{self, Observation, ServiceState, Thresholds};
use crate::probe::Check;
use crate::store::Pending;

/// A finished check of one service.
#[derive(Debug, Clone)]
pub struct Report {
    pub service_type: String,
    pub url: String,
    pub check: Check,
}

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

    /// Applies one report: state machine, alert log, pending batch.
    pub fn apply(&mut self, report: &Report) {
        let obs = Observation {
            success: report.check.outcome.is_success(),
            latency: report.check.latency,
            at: report.check.started_at + report.check.latency,
        };
        let state = self.states.entry(report.service_type.clone()).or_default();
        let (next, transition) = health::next(state, obs, &self.thresholds);
        *state = next;
        if let Some(t) = transition {
            alerts::log_transition(t, &report.service_type, &report.url, state, &report.check);
        }
        tracing::debug!(service_type = %report.service_type, outcome = ?report.check.outcome, "checked");
        self.pending
            .lock()
            .expect("pending batch lock poisoned")
            .record(&report.service_type, state, &report.check);
    }

    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.thresholds = thresholds;
    }

    /// Runs until every sender is gone (the scheduler has stopped).
    pub async fn run(mut self, mut reports: mpsc::Receiver<Report>) {
        while let Some(report) = reports.recv().await {
            self.apply(&report);
        }
    }
}
