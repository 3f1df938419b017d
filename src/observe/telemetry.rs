//! Logging: one line per event on stderr, JSON (fields flattened to the top level, as the alert
//! log contract requires) or text, without colour codes unless stderr is a terminal.
//!
//! The alert stream is this crate's: other crates (sqlx's server notices, the cron scheduler's
//! chatter) log at warn and above unless `log.level` names them (`info,sqlx=info`); see
//! [`directives`]. `RUST_LOG`, when set, overrides `log.level` as a raw `EnvFilter`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::reload;

use crate::config::{LogConfig, LogFormat};

/// Changes the level filter of the installed subscriber (used on reload).
pub type LevelHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// The crate whose events make the alert stream; every other target is another crate's.
const OWN_TARGET: &str = "mcp_healthd";

fn filter(level: &str) -> EnvFilter {
    let level = directives(level);
    match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).unwrap_or_else(|_| EnvFilter::new(&level))
        }
        _ => EnvFilter::new(&level),
    }
}

/// `log.level` as the subscriber's filter. Its bare level (the last one, else `info`) is this
/// crate's; other crates log at warn and above (or only what that level allows, if it is
/// `error` or `off`); `target=level` directives apply as written, so they can open another
/// crate (`sqlx=info`) or part of this one (`mcp_healthd::probe=debug`).
pub fn directives(level: &str) -> String {
    let parts: Vec<&str> = level
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let (targeted, bare): (Vec<&str>, Vec<&str>) = parts.iter().partition(|d| d.contains('='));
    let own = bare.last().copied().unwrap_or("info");
    let others = match own.to_ascii_lowercase().as_str() {
        "error" | "off" => own,
        _ => "warn",
    };
    let mut out = vec![others.to_owned()];
    let names_own = targeted.iter().any(|d| {
        d.split_once('=')
            .is_some_and(|(t, _)| t.trim() == OWN_TARGET)
    });
    if !names_own {
        out.push(format!("{OWN_TARGET}={own}"));
    }
    out.extend(targeted.iter().map(|d| (*d).to_owned()));
    out.join(",")
}

/// Installs the global subscriber, writing to stderr. Returns `None` if one is already
/// installed (tests).
pub fn init(log: &LogConfig) -> Option<LevelHandle> {
    install(log, std::io::stderr, std::io::stderr().is_terminal())
}

/// The same, writing to a new file (the demo keeps its terminal for the status table). The
/// file must not exist: it is never opened through a symlink or over another file.
pub fn init_to_file(
    log: &LogConfig,
    path: &std::path::Path,
) -> std::io::Result<Option<LevelHandle>> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_is_never_opened_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let log = dir.path().join("daemon.log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        let err = init_to_file(
            &LogConfig {
                format: LogFormat::Json,
                level: "info".into(),
            },
            &log,
        )
        .expect_err("a planted link is refused");
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn other_crates_log_at_warn_unless_named() {
        let cases = [
            ("info", "warn,mcp_healthd=info"),
            ("debug", "warn,mcp_healthd=debug"),
            ("error", "error,mcp_healthd=error"),
            ("off", "off,mcp_healthd=off"),
            ("info,sqlx=info", "warn,mcp_healthd=info,sqlx=info"),
            (
                "warn, mcp_healthd::probe=debug",
                "warn,mcp_healthd=warn,mcp_healthd::probe=debug",
            ),
            (
                "tokio_cron_scheduler=info",
                "warn,mcp_healthd=info,tokio_cron_scheduler=info",
            ),
            ("debug,mcp_healthd=trace", "warn,mcp_healthd=trace"),
        ];
        for (level, want) in cases {
            assert_eq!(directives(level), want, "{level}");
            tracing_subscriber::EnvFilter::try_new(want).expect(want);
        }
    }
}
