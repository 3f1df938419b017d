//! Parsers of single values whose messages quote the value: host names, log filters, listen
//! addresses. A quoted value is cut to about 80 characters and its control characters escaped
//! (`text::echo`), so a 10 MB value in the file makes a one-line error.

use crate::text::{ECHO_CHARS, echo, escape_control, truncate};

/// A value from the file as a message shows it: in quotes, cut to about 80 characters, control
/// characters escaped.
pub(super) fn quoted(raw: &str) -> String {
    format!("\"{}\"", echo(raw))
}

/// A parser's message, which may quote part of the value: escaped, and cut when very long.
pub(super) fn reason(message: &str) -> String {
    escape_control(&truncate(message, 3 * ECHO_CHARS)).into_owned()
}

pub(super) fn host(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    url::Host::parse(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| format!("{} is not a host name or IP address ({e})", quoted(raw)))
}

/// A level (`info`) or per-target directives (`info,sqlx=warn`). A bare word that is not a
/// level would be taken by `tracing` as a target name and silently log everything from it.
pub(super) fn log_level(raw: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bad = raw.split(',').map(str::trim).find(|d| {
        let level = d.rsplit_once('=').map_or(*d, |(_, level)| level);
        !LEVELS.contains(&level.to_ascii_lowercase().as_str())
    });
    if let Some(d) = bad {
        return Err(format!(
            "{} is not a log filter; use error, warn, info, debug or trace (or target=level)",
            quoted(d)
        ));
    }
    tracing_subscriber::EnvFilter::try_new(raw)
        .map(|_| raw.to_owned())
        .map_err(|e| {
            format!(
                "{} is not a log filter ({}); use error, warn, info, debug or trace",
                quoted(raw),
                reason(&e.to_string())
            )
        })
}

pub(super) fn listen(raw: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        format!(
            "{} is not an address such as \"127.0.0.1:9464\" (use \"\" to disable)",
            quoted(raw)
        )
    })
}
