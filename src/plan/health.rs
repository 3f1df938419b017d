//! The health state machine (pure): `next(state, observation, thresholds)` returns the new state
//! and the alert-worthy events, if any. No I/O: the caller logs and stores.
//!
//! - A failure sets consecutive_failures += 1 and consecutive_successes = 0; a success the reverse.
//! - Going down: with `failure_window = 0`, when consecutive_failures reaches the failure
//!   threshold; with `failure_window = N`, when `failure` of the last N checks failed. Coming back
//!   up: when consecutive_successes reaches the success threshold (which also empties the window,
//!   so the next verdict rests on checks made after the recovery).
//! - What operators were told is kept apart from the verdict (`alerted_down`): `service_down` and
//!   `service_up` are logged when the two differ and nothing holds the alert back. A maintenance
//!   window or flapping holds it back; when that ends, a service still down is alerted then.
//! - Flapping: `flap_changes` verdict changes within `flap_window` log one `service_flapping`;
//!   it ends (`service_flapping_ended`) once the service has held one verdict a whole window.
//! - While down, every failure at least `reminder_interval` after the last alert is a reminder.
//! - A healthy service answering slower than `degraded_after`, or presenting a certificate that
//!   expires within `tls_expiry_warning`, is degraded (`service_degraded`, once until it is not).
//! - A certificate inside `tls_expiry_warning` logs `certificate_expiring` on entering it and then
//!   once a day.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failure: u32,
    pub success: u32,
    /// 0: failures must be consecutive; N: `failure` failures among the last N checks.
    pub failure_window: u32,
    pub degraded_after: Duration,
    pub reminder_interval: Duration,
    /// Zero: no certificate warning.
    pub tls_expiry_warning: Duration,
    /// Zero: no flap detection.
    pub flap_window: Duration,
    pub flap_changes: u32,
}

impl From<&Config> for Thresholds {
    fn from(config: &Config) -> Self {
        Self {
            failure: config.probe.failure_threshold,
            success: config.probe.success_threshold,
            failure_window: config.probe.failure_window,
            degraded_after: config.probe.degraded_after,
            reminder_interval: config.alerts.reminder_interval,
            tls_expiry_warning: config.probe.tls_expiry_warning,
            flap_window: config.alerts.flap_window,
            flap_changes: config.alerts.flap_changes,
        }
    }
}

/// What the state machine remembers of one service. Survives restarts through
/// `service_health_status` (the verdict, counters, times, the recent outcomes, the certificate's
/// expiry and the degraded reason); the alert bookkeeping is rebuilt from the verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// `None` until the thresholds have judged the service one way or the other.
    pub healthy: Option<bool>,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// When `healthy` last changed.
    pub state_changed_at: Option<DateTime<Utc>>,
    /// Why a healthy service is degraded (`None`: it is not).
    pub degraded: Option<String>,
    /// When `service_down` or `service_still_down` was last logged.
    pub last_alert_at: Option<DateTime<Utc>>,
    /// Bit i set: the i-th latest check failed (bit 0 the latest); `recent_checks` are known.
    pub recent_failures: u64,
    pub recent_checks: u8,
    /// The served certificate's expiry (https targets).
    pub tls_not_after: Option<DateTime<Utc>>,
    /// When `certificate_expiring` was last logged for this certificate.
    pub cert_warned_at: Option<DateTime<Utc>>,
    /// Operators were told it is down (`service_down` logged, an incident open), and not yet up.
    pub alerted_down: bool,
    /// When the service last went down (for `service_up`'s `down_for`).
    pub down_since: Option<DateTime<Utc>>,
    /// Failed checks since `service_down` was logged (the incident's `failed_checks`).
    pub incident_failures: u32,
    /// Verdict changes inside the flap window, oldest first (empty unless it changes often).
    pub changes: Vec<DateTime<Utc>>,
    pub flapping: bool,
}

impl ServiceState {
    /// The state of a service read back from its status row. `alerted_down` is what the last
    /// alert said, as stored (`None` for a row written before it was: then what was judged). A
    /// service alerted down was alerted already: its next reminder is due a whole reminder
    /// interval from `now`, not at once.
    pub fn restored(mut self, now: DateTime<Utc>, alerted_down: Option<bool>) -> Self {
        let down = alerted_down.unwrap_or(self.healthy == Some(false));
        self.alerted_down = down;
        self.last_alert_at = down.then_some(now);
        self.down_since = if self.healthy == Some(false) {
            self.state_changed_at
        } else {
            None
        };
        self.incident_failures = if down { self.consecutive_failures } else { 0 };
        self
    }
}

/// One check, as far as the state machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub success: bool,
    pub latency: Duration,
    pub at: DateTime<Utc>,
    /// The certificate the server presented expires then (https checks that got that far).
    pub tls_not_after: Option<DateTime<Utc>>,
    /// Inside a maintenance window: the verdict follows the checks, no service alert is logged.
    pub maintenance: bool,
}

impl Observation {
    pub fn new(success: bool, latency: Duration, at: DateTime<Utc>) -> Self {
        Self {
            success,
            latency,
            at,
            tls_not_after: None,
            maintenance: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Down,
    Up {
        down_for: Duration,
    },
    StillDown,
    Degraded,
    CertificateExpiring {
        not_after: DateTime<Utc>,
        days_left: i64,
    },
    Flapping,
    FlappingEnded {
        healthy: bool,
    },
}

impl Transition {
    /// The alert log's `event` name.
    pub fn event(self) -> &'static str {
        match self {
            Transition::Down => "service_down",
            Transition::Up { .. } => "service_up",
            Transition::StillDown => "service_still_down",
            Transition::Degraded => "service_degraded",
            Transition::CertificateExpiring { .. } => "certificate_expiring",
            Transition::Flapping => "service_flapping",
            Transition::FlappingEnded { .. } => "service_flapping_ended",
        }
    }
}

/// `certificate_expiring` is repeated this often while the certificate stays inside the window.
const CERT_REMINDER: TimeDelta = TimeDelta::days(1);

pub fn next(
    state: &ServiceState,
    obs: Observation,
    th: &Thresholds,
) -> (ServiceState, Vec<Transition>) {
    let mut s = state.clone();
    let mut events = Vec::new();
    let since = |t: Option<DateTime<Utc>>| {
        t.map_or(Duration::ZERO, |t| {
            (obs.at - t).to_std().unwrap_or_default()
        })
    };
    s.recent_failures = (s.recent_failures << 1) | u64::from(!obs.success);
    s.recent_checks = s.recent_checks.saturating_add(1).min(64);
    if obs.tls_not_after.is_some() || obs.success {
        s.tls_not_after = obs.tls_not_after;
    }
    let was = s.healthy;
    if obs.success {
        s.consecutive_successes = s.consecutive_successes.saturating_add(1);
        s.consecutive_failures = 0;
        s.last_success_at = Some(obs.at);
        if s.healthy != Some(true) && s.consecutive_successes >= th.success {
            s.healthy = Some(true);
            s.state_changed_at = Some(obs.at);
            (s.recent_failures, s.recent_checks) = (0, 0);
        }
    } else {
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.consecutive_successes = 0;
        s.last_failure_at = Some(obs.at);
        if s.alerted_down {
            s.incident_failures = s.incident_failures.saturating_add(1);
        }
        if s.healthy != Some(false) && failing(&s, th) {
            s.healthy = Some(false);
            s.state_changed_at = Some(obs.at);
            s.down_since = Some(obs.at);
        }
    }
    // A change between two verdicts (a first verdict is not a change) may make it flapping.
    if was.is_some() && was != s.healthy && !obs.maintenance {
        count_change(&mut s, obs.at, th, &mut events);
    }
    if s.flapping && since(s.state_changed_at) >= th.flap_window {
        s.flapping = false;
        s.changes.clear();
        events.push(Transition::FlappingEnded {
            healthy: s.healthy == Some(true),
        });
    }
    certificate(&mut s, obs, th, &mut events);
    let degraded = degradation(&s, obs, th, state.degraded.as_deref());
    let became_degraded = degraded.is_some() && s.degraded.is_none();
    s.degraded = degraded;
    if obs.maintenance || s.flapping {
        return (s, events);
    }
    // An alert held back (maintenance, flapping) catches up on a check that agrees with it, so
    // a service that recovered meanwhile is never alerted down on a success.
    match (s.healthy, s.alerted_down) {
        (Some(false), false) if !obs.success => {
            s.alerted_down = true;
            s.last_alert_at = Some(obs.at);
            s.incident_failures = s.consecutive_failures;
            events.push(Transition::Down);
        }
        (Some(true), true) if obs.success => {
            s.alerted_down = false;
            s.last_alert_at = None;
            events.push(Transition::Up {
                down_for: since(s.down_since),
            });
            s.down_since = None;
        }
        (Some(false), true)
            if !obs.success
                && s.last_alert_at
                    .is_none_or(|t| since(Some(t)) >= th.reminder_interval) =>
        {
            s.last_alert_at = Some(obs.at);
            events.push(Transition::StillDown);
        }
        _ => {}
    }
    if became_degraded && s.healthy == Some(true) {
        events.push(Transition::Degraded);
    }
    (s, events)
}

/// Whether the failures so far take a service down: consecutive, or within the window.
fn failing(s: &ServiceState, th: &Thresholds) -> bool {
    if th.failure_window == 0 {
        return s.consecutive_failures >= th.failure;
    }
    let n = th.failure_window.min(u32::from(s.recent_checks)).min(64);
    let mask = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    (s.recent_failures & mask).count_ones() >= th.failure
}

/// Records a verdict change at `at`; the `flap_changes`-th within the window makes it flapping.
fn count_change(
    s: &mut ServiceState,
    at: DateTime<Utc>,
    th: &Thresholds,
    out: &mut Vec<Transition>,
) {
    if th.flap_window.is_zero() {
        return;
    }
    let window = TimeDelta::from_std(th.flap_window).unwrap_or(TimeDelta::MAX);
    s.changes.retain(|&t| at - t < window);
    s.changes.push(at);
    if !s.flapping && s.changes.len() >= th.flap_changes as usize {
        s.flapping = true;
        out.push(Transition::Flapping);
    }
    // Only the latest flap_changes matter.
    let excess = s.changes.len().saturating_sub(th.flap_changes as usize);
    s.changes.drain(..excess);
}

/// Logs `certificate_expiring` on entering the warning window, then once a day inside it.
fn certificate(s: &mut ServiceState, obs: Observation, th: &Thresholds, out: &mut Vec<Transition>) {
    let Some(not_after) = s.tls_not_after.filter(|_| !th.tls_expiry_warning.is_zero()) else {
        s.cert_warned_at = None;
        return;
    };
    let warning = TimeDelta::from_std(th.tls_expiry_warning).unwrap_or(TimeDelta::MAX);
    let left = not_after - obs.at;
    if left >= warning || left <= TimeDelta::zero() {
        s.cert_warned_at = None;
        return;
    }
    if s.cert_warned_at.is_none_or(|t| obs.at - t >= CERT_REMINDER) {
        s.cert_warned_at = Some(obs.at);
        out.push(Transition::CertificateExpiring {
            not_after,
            days_left: left.num_days(),
        });
    }
}

/// Why a healthy service is degraded now, if it is. `was` is the reason it had: kept when the
/// cause is the same, so a service degraded for days formats nothing per check.
fn degradation(
    s: &ServiceState,
    obs: Observation,
    th: &Thresholds,
    was: Option<&str>,
) -> Option<String> {
    if s.healthy != Some(true) || !obs.success {
        return None;
    }
    if obs.latency > th.degraded_after {
        if let Some(was) = was.filter(|w| w.starts_with("slow")) {
            return Some(was.to_owned());
        }
        return Some(format!(
            "slow: over degraded_after ({} ms)",
            th.degraded_after.as_millis()
        ));
    }
    let not_after = s.tls_not_after?;
    let left = not_after - obs.at;
    let warning = TimeDelta::from_std(th.tls_expiry_warning).unwrap_or(TimeDelta::MAX);
    if th.tls_expiry_warning.is_zero() || left >= warning {
        return None;
    }
    // Reformatted when the daily warning is logged (its days left change), else kept.
    let warned_now = s.cert_warned_at == Some(obs.at);
    if let Some(was) = was.filter(|w| !warned_now && w.starts_with("certificate")) {
        return Some(was.to_owned());
    }
    Some(format!(
        "certificate expires {} ({} days left)",
        not_after.format("%Y-%m-%d %H:%M UTC"),
        left.num_days()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const TH: Thresholds = Thresholds {
        failure: 3,
        success: 2,
        failure_window: 0,
        degraded_after: Duration::from_secs(2),
        reminder_interval: Duration::from_secs(1800),
        tls_expiry_warning: Duration::from_secs(14 * 86_400),
        flap_window: Duration::ZERO,
        flap_changes: 4,
    };

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn ok(s: i64) -> Observation {
        Observation::new(true, Duration::from_millis(20), at(s))
    }

    fn slow(s: i64) -> Observation {
        Observation::new(true, Duration::from_secs(3), at(s))
    }

    fn fail(s: i64) -> Observation {
        Observation::new(false, Duration::from_millis(5), at(s))
    }

    /// Runs `steps` from `start` and returns each step's transition.
    fn run(start: ServiceState, steps: &[Observation]) -> (ServiceState, Vec<Vec<Transition>>) {
        run_with(&TH, start, steps)
    }

    fn run_with(
        th: &Thresholds,
        start: ServiceState,
        steps: &[Observation],
    ) -> (ServiceState, Vec<Vec<Transition>>) {
        let mut s = start;
        let mut out = Vec::new();
        for &obs in steps {
            let (n, t) = next(&s, obs, th);
            s = n;
            out.push(t);
        }
        (s, out)
    }

    fn healthy() -> ServiceState {
        ServiceState {
            healthy: Some(true),
            state_changed_at: Some(at(-100)),
            ..Default::default()
        }
    }

    fn down_since(t: i64) -> ServiceState {
        ServiceState {
            healthy: Some(false),
            consecutive_failures: 5,
            state_changed_at: Some(at(t)),
            last_alert_at: Some(at(t)),
            alerted_down: true,
            down_since: Some(at(t)),
            ..Default::default()
        }
    }

    /// (name, start state, checks, transition after each, healthy at the end)
    type Case = (
        &'static str,
        ServiceState,
        Vec<Observation>,
        Vec<Vec<Transition>>,
        Option<bool>,
    );

    #[test]
    fn transitions() {
        use Transition::*;
        let cases: Vec<Case> = vec![
            (
                "unknown, successes reach the threshold: healthy, no alert",
                ServiceState::default(),
                vec![ok(0), ok(1)],
                vec![vec![], vec![]],
                Some(true),
            ),
            (
                "unknown, one success is not enough with success threshold 2",
                ServiceState::default(),
                vec![ok(0)],
                vec![vec![]],
                None,
            ),
            (
                "unknown, failures reach the threshold: down",
                ServiceState::default(),
                vec![fail(0), fail(1), fail(2)],
                vec![vec![], vec![], vec![Down]],
                Some(false),
            ),
            (
                "healthy, failures below the threshold: still healthy",
                healthy(),
                vec![fail(0), fail(1)],
                vec![vec![], vec![]],
                Some(true),
            ),
            (
                "healthy, a success resets the failure count",
                healthy(),
                vec![fail(0), fail(1), ok(2), fail(3), fail(4)],
                vec![vec![]; 5],
                Some(true),
            ),
            (
                "healthy, three failures: down exactly once",
                healthy(),
                vec![fail(0), fail(1), fail(2), fail(3)],
                vec![vec![], vec![], vec![Down], vec![]],
                Some(false),
            ),
            (
                "down, successes below the threshold: still down",
                down_since(0),
                vec![ok(10)],
                vec![vec![]],
                Some(false),
            ),
            (
                "down, success threshold reached: up with its downtime",
                down_since(0),
                vec![ok(10), ok(70)],
                vec![
                    vec![],
                    vec![Up {
                        down_for: Duration::from_secs(70),
                    }],
                ],
                Some(true),
            ),
            (
                "down, a failure between successes restarts the count",
                down_since(0),
                vec![ok(10), fail(11), ok(12)],
                vec![vec![], vec![], vec![]],
                Some(false),
            ),
            (
                "down, reminder only after reminder_interval",
                down_since(0),
                vec![fail(60), fail(1799), fail(1800), fail(1830), fail(3600)],
                vec![vec![], vec![], vec![StillDown], vec![], vec![StillDown]],
                Some(false),
            ),
            (
                "down after a restart (no alert time): first failure reminds",
                ServiceState {
                    last_alert_at: None,
                    ..down_since(0)
                },
                vec![fail(5), fail(6)],
                vec![vec![StillDown], vec![]],
                Some(false),
            ),
            (
                "healthy and slow: degraded once, again after a fast answer",
                healthy(),
                vec![slow(0), slow(1), ok(2), slow(3)],
                vec![vec![Degraded], vec![], vec![], vec![Degraded]],
                Some(true),
            ),
            (
                "a slow answer that brings a service up is an up, and degraded",
                down_since(0),
                vec![slow(10), slow(11), slow(12)],
                vec![
                    vec![],
                    vec![
                        Up {
                            down_for: Duration::from_secs(11),
                        },
                        Degraded,
                    ],
                    vec![],
                ],
                Some(true),
            ),
        ];
        for (name, start, steps, want, want_healthy) in cases {
            let (end, got) = run(start, &steps);
            assert_eq!(got, want, "{name}");
            assert_eq!(end.healthy, want_healthy, "{name}");
        }
    }

    /// `pattern`: one check per second from `t0`, `F` a failure and `.` a success.
    fn checks(t0: i64, pattern: &str) -> Vec<Observation> {
        (t0..)
            .zip(pattern.chars())
            .map(|(t, c)| if c == 'F' { fail(t) } else { ok(t) })
            .collect()
    }

    fn events(all: &[Vec<Transition>]) -> Vec<&'static str> {
        all.iter().flatten().map(|t| t.event()).collect()
    }

    #[test]
    fn a_failure_window_catches_a_service_failing_every_other_check() {
        let pattern = "F.F.F.F.F.F.F.F.";
        let (end, got) = run(healthy(), &checks(0, pattern));
        assert_eq!(events(&got), Vec::<&str>::new(), "never 3 in a row");
        assert_eq!(end.healthy, Some(true));
        let windowed = Thresholds {
            failure_window: 6,
            ..TH
        };
        let (end, got) = run_with(&windowed, healthy(), &checks(0, pattern));
        assert_eq!(
            got[4],
            vec![Transition::Down],
            "3 of the last 6 at the 5th check"
        );
        assert_eq!(
            events(&got),
            ["service_down"],
            "stays down: never 2 successes in a row"
        );
        assert_eq!(end.healthy, Some(false));
        // Recovery empties the window: one failure after it is not a relapse.
        let (end, got) = run_with(&windowed, end, &checks(100, "..F..F"));
        assert_eq!(events(&got), ["service_up"]);
        assert_eq!(end.healthy, Some(true));
    }

    #[test]
    fn a_flapping_service_alerts_once_until_it_holds_still() {
        let th = Thresholds {
            failure: 3,
            success: 1,
            flap_window: Duration::from_secs(60),
            ..TH
        };
        // Down, up, down, up: the 4th change is flapping, then quiet while it keeps cycling.
        let cycling = "FFF...".repeat(6);
        let (s, got) = run_with(&th, healthy(), &checks(0, &cycling));
        assert_eq!(
            events(&got),
            [
                "service_down",
                "service_up",
                "service_down",
                "service_flapping"
            ]
        );
        assert!(s.flapping && s.alerted_down, "the last alert said down");
        // Healthy for a whole window: the flapping ends, and the alert catches up (up).
        let (s, got) = run_with(&th, s, &checks(36, &".".repeat(62)));
        assert_eq!(events(&got), ["service_flapping_ended", "service_up"]);
        assert!(!s.flapping && !s.alerted_down);
        // Ending while down: the last alert already said down (its incident is still open).
        let (s, _) = run_with(&th, healthy(), &checks(0, &cycling));
        let (s, got) = run_with(&th, s, &checks(36, &"F".repeat(64)));
        assert_eq!(events(&got), ["service_flapping_ended"]);
        assert!(!s.flapping && s.alerted_down);
    }

    #[test]
    fn maintenance_holds_alerts_back_and_a_service_still_down_is_alerted_after() {
        let in_window = |o: Observation| Observation {
            maintenance: true,
            ..o
        };
        let steps: Vec<Observation> = checks(0, "FFFFF").into_iter().map(in_window).collect();
        let (s, got) = run(healthy(), &steps);
        assert_eq!(events(&got), Vec::<&str>::new());
        assert_eq!(s.healthy, Some(false), "the verdict follows the checks");
        let (s, got) = run(s, &checks(10, "F"));
        assert_eq!(
            events(&got),
            ["service_down"],
            "alerted once the window ends"
        );
        // Recovered during a window: service_up when it ends.
        let steps: Vec<Observation> = checks(20, "...").into_iter().map(in_window).collect();
        let (s, got) = run(s, &steps);
        assert_eq!(events(&got), Vec::<&str>::new());
        let (_, got) = run(s, &checks(30, "."));
        assert_eq!(events(&got), ["service_up"]);
        // Down in a window and recovering as it ends: a success is never alerted as a down.
        let steps: Vec<Observation> = checks(40, "FFF").into_iter().map(in_window).collect();
        let (s, _) = run(healthy(), &steps);
        let (s, got) = run(s, &checks(50, "."));
        assert_eq!(
            events(&got),
            Vec::<&str>::new(),
            "1 success of 2: still down, not alerted"
        );
        assert!(!s.alerted_down);
    }

    #[test]
    fn a_restart_keeps_what_was_alerted_not_only_what_was_judged() {
        let judged_down = ServiceState {
            healthy: Some(false),
            consecutive_failures: 4,
            state_changed_at: Some(at(-50)),
            ..Default::default()
        };
        // Down inside a maintenance window, never alerted: after the restart, alerted then.
        let s = judged_down.clone().restored(at(0), Some(false));
        let (_, got) = run(s, &checks(1, "F"));
        assert_eq!(events(&got), ["service_down"]);
        // Up while flapping, the last alert said down: its service_up still comes.
        let flapping_up = ServiceState {
            healthy: Some(true),
            flapping: true,
            state_changed_at: Some(at(-10)),
            ..Default::default()
        };
        let th = Thresholds {
            flap_window: Duration::from_secs(60),
            ..TH
        };
        let s = flapping_up.restored(at(0), Some(true));
        let (_, got) = run_with(&th, s, &checks(50, "...."));
        assert_eq!(events(&got), ["service_flapping_ended", "service_up"]);
    }

    #[test]
    fn an_expiring_certificate_degrades_and_warns_once_a_day() {
        let expires = at(5 * 86_400 + 3600);
        let tls = |s: i64| Observation {
            tls_not_after: Some(expires),
            ..ok(s)
        };
        let (s, got) = run(healthy(), &[tls(0), tls(60), tls(86_399), tls(86_400)]);
        let expiring = Transition::CertificateExpiring {
            not_after: expires,
            days_left: 5,
        };
        assert_eq!(got[0], vec![expiring, Transition::Degraded]);
        assert_eq!(got[1..3], [vec![], vec![]]);
        assert!(matches!(
            got[3][..],
            [Transition::CertificateExpiring { days_left: 4, .. }]
        ));
        assert!(
            s.degraded
                .as_deref()
                .unwrap()
                .starts_with("certificate expires")
        );
        assert_eq!(
            s.healthy,
            Some(true),
            "never down for an expiring certificate"
        );
        // A renewed certificate ends both.
        let renewed = Observation {
            tls_not_after: Some(at(90 * 86_400)),
            ..ok(100_000)
        };
        let (s, got) = run(s, &[renewed]);
        assert_eq!(got, [vec![]]);
        assert_eq!((s.degraded, s.cert_warned_at), (None, None));
    }

    #[test]
    fn a_restored_state_is_alerted_as_it_was_judged() {
        let stored = ServiceState {
            healthy: Some(false),
            consecutive_failures: 7,
            state_changed_at: Some(at(-50)),
            ..Default::default()
        };
        let s = stored.restored(at(0), None);
        assert!(s.alerted_down);
        assert_eq!(s.down_since, Some(at(-50)));
        let (_, got) = run(s, &checks(1, "F.."));
        assert_eq!(
            got,
            [
                vec![],
                vec![],
                vec![Transition::Up {
                    down_for: Duration::from_secs(53)
                }]
            ]
        );
    }

    #[test]
    fn counters_and_times_follow_the_checks() {
        let (s, _) = run(healthy(), &[fail(0), fail(1)]);
        assert_eq!((s.consecutive_failures, s.consecutive_successes), (2, 0));
        assert_eq!(s.last_failure_at, Some(at(1)));
        let (s, _) = run(s, &[ok(2)]);
        assert_eq!((s.consecutive_failures, s.consecutive_successes), (0, 1));
        assert_eq!(s.last_success_at, Some(at(2)));
        assert_eq!(s.state_changed_at, Some(at(-100)), "no state change");
        let (s, _) = run(s, &[fail(3), fail(4), fail(5)]);
        assert_eq!(s.state_changed_at, Some(at(5)));
    }

    #[test]
    fn event_names_match_the_alert_log_contract() {
        assert_eq!(Transition::Down.event(), "service_down");
        assert_eq!(
            Transition::Up {
                down_for: Duration::ZERO
            }
            .event(),
            "service_up"
        );
        assert_eq!(Transition::StillDown.event(), "service_still_down");
        assert_eq!(Transition::Degraded.event(), "service_degraded");
    }
}
