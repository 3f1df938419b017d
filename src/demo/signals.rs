//! Ctrl-C and its kin for the demo: SIGINT, SIGTERM and SIGHUP (the terminal went away) each
//! ask it to stop. Listening starts before the demo makes anything, so no signal ends the
//! process by its default action and leaves a cluster or a directory behind. The first asks for
//! an orderly stop (the daemon's final flush, then the database); a second one for a quick
//! stop that still removes everything.

use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next of them.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}
