//! Transport errors sorted into the KINDs of DESIGN.md, from reqwest's own flags (or, on the
//! lean path, the phase hyper failed in) and the chain of causes beneath them.

use std::error::Error as _;

use super::{ErrorKind, Outcome};

/// Sorts a transport error into one KIND, with the most specific cause as the detail.
pub(super) fn classify(e: &reqwest::Error) -> Outcome {
    let causes: Vec<&(dyn std::error::Error + 'static)> =
        std::iter::successors(e.source(), |&c| c.source()).collect();
    let kind = kind_of(e, &causes);
    let detail = if kind == ErrorKind::Redirect && causes.is_empty() {
        e.to_string()
    } else {
        causes
            .last()
            .map_or_else(|| e.to_string(), |c| c.to_string())
    };
    Outcome::failure(kind, detail)
}

/// The KIND of a transport error, from reqwest's own flags and the error's `causes`; the
/// first test that matches wins.
fn kind_of(e: &reqwest::Error, causes: &[&(dyn std::error::Error + 'static)]) -> ErrorKind {
    let any =
        |pred: fn(&(dyn std::error::Error + 'static)) -> bool| causes.iter().any(|c| pred(*c));
    if e.is_redirect() {
        ErrorKind::Redirect
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else if any(is_tls) {
        ErrorKind::Tls
    } else if any(|c| c.to_string().starts_with("dns error")) {
        ErrorKind::Dns
    } else if e.is_connect() {
        ErrorKind::Connect
    } else if any(is_parse_error) {
        ErrorKind::Protocol
    } else if any(is_connection_lost) {
        ErrorKind::Connect
    } else if e.is_body() || e.is_decode() {
        ErrorKind::Body
    } else {
        ErrorKind::Protocol
    }
}

/// Where a lean-path (hyper) error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Sending the request or reading the response's head.
    Head,
    /// Reading the body.
    Body,
}

/// Sorts an error of the lean path into one KIND, as [`classify`] sorts reqwest's: a response
/// hyper cannot parse is `protocol`, a connection lost is `connect`, any other failure while
/// reading the body is `body`, and the rest `protocol`.
pub(super) fn classify_hyper(e: &hyper::Error, phase: Phase) -> Outcome {
    let causes: Vec<&(dyn std::error::Error + 'static)> =
        std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |&c| {
            c.source()
        })
        .collect();
    let any =
        |pred: fn(&(dyn std::error::Error + 'static)) -> bool| causes.iter().any(|c| pred(*c));
    let kind = if any(is_parse_error) {
        ErrorKind::Protocol
    } else if any(is_connection_lost) {
        ErrorKind::Connect
    } else if phase == Phase::Body {
        ErrorKind::Body
    } else {
        ErrorKind::Protocol
    };
    let detail = causes
        .last()
        .map_or_else(|| e.to_string(), |c| c.to_string());
    Outcome::failure(kind, detail)
}

fn is_tls(c: &(dyn std::error::Error + 'static)) -> bool {
    // hyper-rustls wraps the handshake error in io::Errors, whose source() skips it.
    c.is::<rustls::Error>()
        || c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| {
                inner.is::<rustls::Error>()
                    || inner
                        .downcast_ref::<std::io::Error>()
                        .and_then(std::io::Error::get_ref)
                        .is_some_and(|i| i.is::<rustls::Error>())
            })
}

/// hyper could not parse the response (or its status line).
fn is_parse_error(c: &(dyn std::error::Error + 'static)) -> bool {
    c.downcast_ref::<hyper::Error>()
        .is_some_and(|h| h.is_parse() || h.is_parse_status())
}

/// The connection was reset, aborted or broken mid-exchange.
fn is_connection_lost(c: &(dyn std::error::Error + 'static)) -> bool {
    c.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        )
    })
}
