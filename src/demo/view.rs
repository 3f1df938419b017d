//! Where the demo's dashboard goes: on a terminal the live screen (`layout`, `screen`), redrawn
//! every two seconds and at once when the terminal is resized; on a pipe the plain table of
//! `status` every two seconds, as a log of the tour.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use super::layout::{self, Banner};
use super::screen::{self, Screen};
use super::signals::StopSignals;
use crate::store::dashboard::{self, DashboardRow};
use crate::text::escape_control;

/// The latest alert lines of the daemon's log, for under the table.
fn recent_alerts(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let alerts: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["event"]
                .as_str()
                .is_some_and(|ev| ev.starts_with("service_"))
        })
        .map(|e| {
            format!(
                "{} {:<20} {:<18} {}",
                e["timestamp"]
                    .as_str()
                    .unwrap_or("")
                    .get(11..19)
                    .unwrap_or(""),
                escape_control(e["event"].as_str().unwrap_or("")),
                escape_control(e["service_type"].as_str().unwrap_or("")),
                escape_control(e["error"].as_str().unwrap_or(""))
            )
        })
        .collect();
    alerts[alerts.len().saturating_sub(6)..].to_vec()
}

/// Where the dashboard goes: a live screen on a terminal, a plain table on a pipe.
pub enum View {
    Terminal(Screen),
    Pipe { started: Instant },
}

impl View {
    pub fn new() -> anyhow::Result<Self> {
        Ok(match std::io::stdout().is_terminal() {
            true => Self::Terminal(Screen::enter().context("cannot set up the terminal")?),
            false => Self::Pipe {
                started: Instant::now(),
            },
        })
    }

    /// Shows the dashboard every two seconds (and on a terminal at once when it is resized)
    /// until a stop signal, or until the daemon ends by itself.
    pub async fn watch(
        &mut self,
        pool: &PgPool,
        banner: &Banner,
        daemon: &JoinHandle<anyhow::Result<ExitCode>>,
        signals: &mut StopSignals,
    ) -> anyhow::Result<()> {
        let mut resized = signal(SignalKind::window_change())?;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut rows = Vec::new();
        loop {
            let fresh = tokio::select! {
                () = signals.next() => return Ok(()),
                _ = resized.recv() => false,
                _ = tick.tick() => true,
            };
            if daemon.is_finished() {
                return Ok(());
            }
            if fresh {
                let load = tokio::time::timeout(Duration::from_secs(1), dashboard::load(pool));
                match load.await {
                    Ok(Ok(loaded)) => rows = loaded,
                    _ => continue,
                }
            }
            self.show(banner, &rows, fresh)?;
        }
    }

    fn show(&mut self, banner: &Banner, rows: &[DashboardRow], fresh: bool) -> anyhow::Result<()> {
        let alerts = recent_alerts(&banner.log);
        match self {
            Self::Terminal(screen) => {
                let (width, height) = screen::size();
                let lines =
                    layout::compose(banner, rows, &alerts, chrono::Utc::now(), (width, height));
                screen.draw(&lines, (width, height))?;
            }
            Self::Pipe { started } if fresh => {
                say!("---- {}s ----", started.elapsed().as_secs());
                say_raw!("{}", dashboard::render(rows, chrono::Utc::now(), false));
                if !alerts.is_empty() {
                    say!("\nrecent alerts:");
                    for a in alerts {
                        say!("  {a}");
                    }
                }
            }
            Self::Pipe { .. } => {}
        }
        Ok(())
    }
}
