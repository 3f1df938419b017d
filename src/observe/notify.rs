//! systemd's notification protocol (sd_notify): READY, RELOADING, STOPPING, STATUS and the
//! watchdog. Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier;

impl Notifier {
    fn send(states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(self) {
        Self::send(&[NotifyState::Ready]);
    }

    /// RELOADING=1 with the MONOTONIC_USEC that `Type=notify-reload` requires.
    pub fn reloading(self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => Self::send(&[NotifyState::Reloading, now]),
            Err(_) => Self::send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(self) {
        Self::send(&[NotifyState::Stopping]);
    }

    pub fn status(self, line: &str) {
        Self::send(&[NotifyState::Status(line)]);
    }

    pub fn watchdog(self) {
        Self::send(&[NotifyState::Watchdog]);
    }

    /// How often to send WATCHDOG=1: half of `WATCHDOG_USEC`, if systemd asked for it.
    pub fn watchdog_period() -> Option<Duration> {
        sd_notify::watchdog_enabled().map(|d| d / 2)
    }
}
