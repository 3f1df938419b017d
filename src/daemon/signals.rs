//! Signals: SIGHUP asks for a reload; the first SIGTERM or SIGINT starts an orderly shutdown,
//! a second one exits at once.

use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub enum Signal {
    Reload,
}

/// SIGHUP -> `Signal::Reload`; the first SIGTERM/SIGINT cancels `shutdown`, a second exits now.
pub fn spawn_handler(
    shutdown: CancellationToken,
) -> anyhow::Result<(JoinHandle<()>, mpsc::Receiver<Signal>)> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(async move {
        while let Some(signal) = signals.next().await {
            match signal {
                SIGHUP => {
                    let _ = tx.send(Signal::Reload).await;
                }
                _ if shutdown.is_cancelled() => {
                    tracing::warn!(event = "forced_exit", signal, "second signal: exiting now");
                    std::process::exit(1);
                }
                _ => shutdown.cancel(),
            }
        }
    });
    Ok((task, rx))
}
