//! Live facts the daemon's loops publish and its reporters read: the sd_notify STATUS line and
//! watchdog, and `/healthz`. Atomics only; every writer owns its own fields.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Services the scheduler is running (set by the daemon).
    pub services: AtomicUsize,
    /// Set by the monitor.
    pub healthy: AtomicUsize,
    pub down: AtomicUsize,
    last_report_ms: AtomicU64,
    last_flush_ms: AtomicU64,
    /// Whether the writer's last attempt reached the database.
    pub db_ok: AtomicBool,
    /// Whether a monitor-side outage is declared (set by the monitor).
    pub monitor_outage: AtomicBool,
    /// The longest a service may go unchecked in normal operation (interval + timeout).
    pub check_period_ms: AtomicU64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Stats {
    pub fn new(check_period: Duration) -> Self {
        Self {
            started: Instant::now(),
            services: AtomicUsize::new(0),
            healthy: AtomicUsize::new(0),
            down: AtomicUsize::new(0),
            last_report_ms: AtomicU64::new(0),
            last_flush_ms: AtomicU64::new(0),
            db_ok: AtomicBool::new(true),
            monitor_outage: AtomicBool::new(false),
            check_period_ms: AtomicU64::new(ms(check_period)),
        }
    }

    fn now_ms(&self) -> u64 {
        // +1 so that 0 keeps meaning "never".
        ms(self.started.elapsed()) + 1
    }

    pub fn report_seen(&self) {
        self.last_report_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    pub fn flushed(&self) {
        self.last_flush_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn since(&self, stamp: &AtomicU64) -> Option<Duration> {
        match stamp.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(self.now_ms().saturating_sub(t))),
        }
    }

    pub fn since_last_flush(&self) -> Option<Duration> {
        self.since(&self.last_flush_ms)
    }

    /// `Ok` while checks are being completed as often as the schedule demands (or there is
    /// nothing to check); otherwise why not. The watchdog and `/healthz` vouch with this.
    pub fn prober_progress(&self) -> Result<(), String> {
        if self.services.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let allowed = Duration::from_millis(self.check_period_ms.load(Ordering::Relaxed))
            + Duration::from_secs(5);
        let quiet = self
            .since(&self.last_report_ms)
            .unwrap_or_else(|| self.started.elapsed());
        if quiet <= allowed {
            Ok(())
        } else {
            Err(format!(
                "no check has completed for {}s (expected one at least every {}s)",
                quiet.as_secs(),
                allowed.as_secs()
            ))
        }
    }

    /// The one-line summary systemd shows in `systemctl status`.
    pub fn status_line(&self) -> String {
        let flush = match self.since_last_flush() {
            Some(d) => format!("last flush {}s ago", d.as_secs()),
            None => "no flush yet".into(),
        };
        format!(
            "{} services, {} healthy, {} down; {flush}{}",
            self.services.load(Ordering::Relaxed),
            self.healthy.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
            if self.db_ok.load(Ordering::Relaxed) {
                ""
            } else {
                "; database unreachable"
            }
        ) + if self.monitor_outage.load(Ordering::Relaxed) {
            "; monitor-side outage: failures are inconclusive"
        } else {
            ""
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_judged_against_the_check_period() {
        let stats = Stats::new(Duration::from_millis(0));
        assert!(
            stats.prober_progress().is_ok(),
            "nothing to check is progress"
        );
        stats.services.store(3, Ordering::Relaxed);
        stats.report_seen();
        assert!(stats.prober_progress().is_ok());
        assert_eq!(
            stats.status_line(),
            "3 services, 0 healthy, 0 down; no flush yet"
        );
        stats.flushed();
        stats.db_ok.store(false, Ordering::Relaxed);
        assert!(
            stats
                .status_line()
                .ends_with("last flush 0s ago; database unreachable")
        );
    }
}
