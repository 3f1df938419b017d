//! Logging: one line per event on stderr, JSON (fields flattened to the top level, as the alert
//! log contract requires) or text, without colour codes unless stderr is a terminal.
//! `RUST_LOG`, when set, overrides `log.level`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::reload;

use crate::config::{LogConfig, LogFormat};

/// Changes the level filter of the installed subscriber (used on reload).
pub type LevelHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

fn filter(level: &str) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).unwrap_or_else(|_| EnvFilter::new(level))
        }
        _ => EnvFilter::new(level),
    }
}

/// Installs the global subscriber, writing to stderr. Returns `None` if one is already
/// installed (tests).
pub fn init(log: &LogConfig) -> Option<LevelHandle> {
    install(log, std::io::stderr, std::io::stderr().is_terminal())
}

/// The same, writing to a file (the demo keeps its terminal for the status table).
pub fn init_to_file(
    log: &LogConfig,
    path: &std::path::Path,
) -> std::io::Result<Option<LevelHandle>> {
    let file = std::fs::File::create(path)?;
    Ok(install(log, std::sync::Mutex::new(file), false))
}

fn install<W>(log: &LogConfig, writer: W, ansi: bool) -> Option<LevelHandle>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::prelude::*;

    let (filter, handle) = reload::Layer::new(filter(&log.level));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match log.format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(writer),
            )
            .try_init(),
    };
    result.ok().map(|()| handle)
}

/// Applies a new `log.level` to a running subscriber (unless `RUST_LOG` pins it).
pub fn set_level(handle: &LevelHandle, level: &str) {
    let _ = handle.reload(filter(level));
}
