//! One HTTP check of one target: `Prober::check(&Target) -> Check`. No database, no state: a
//! down service is data (`Outcome::Failure { kind, detail }`), never an `Err`.
//!
//! Like blackbox_exporter and the kubelet, every check opens a new connection (the client keeps
//! no idle connections), the whole check (connect, request, capped body read) is bounded by
//! the target's timeout, and at most `max_body_bytes` of the body are read. Redirects are
//! followed by `redirect`, which keeps the row's headers and credentials on the target's origin.
//! An https check also reports when the server's certificate expires (`cert`), and trusts the
//! roots of `probe.ca_file` besides the system's.

mod cert;
mod classify;
mod plain;
mod redirect;

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::ProbeConfig;
use crate::plan::target::{Planned, Target};
use crate::text::redact_urls;
use classify::classify;
use redirect::Hop;

/// The failure classes of DESIGN.md; `error_message` is `KIND: detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    Timeout,
    Connect,
    Dns,
    Tls,
    Status,
    Protocol,
    Redirect,
    Body,
    InvalidTarget,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Dns,
        ErrorKind::Tls,
        ErrorKind::Status,
        ErrorKind::Protocol,
        ErrorKind::Redirect,
        ErrorKind::Body,
        ErrorKind::InvalidTarget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Dns => "dns",
            ErrorKind::Tls => "tls",
            ErrorKind::Status => "status",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Redirect => "redirect",
            ErrorKind::Body => "body",
            ErrorKind::InvalidTarget => "invalid_target",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success {
        status: u16,
    },
    /// `status` is the HTTP status when the check got a response (a failure by status, or by
    /// body).
    Failure {
        kind: ErrorKind,
        detail: String,
        status: Option<u16>,
    },
}

/// Longest `detail` kept: a hostile server must not be able to fill log lines and rows.
const MAX_DETAIL: usize = 512;

impl Outcome {
    /// A failure whose `detail` is stored and logged: any URL in it loses its userinfo, and it
    /// is cut to [`MAX_DETAIL`] bytes.
    pub fn failure(kind: ErrorKind, detail: impl Into<String>) -> Self {
        let mut detail = redact_urls(&detail.into()).into_owned();
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push_str("...");
        }
        Outcome::Failure {
            kind,
            detail,
            status: None,
        }
    }

    /// A failure of a check that got a response with `status`.
    pub fn failure_with_status(kind: ErrorKind, status: u16, detail: impl Into<String>) -> Self {
        match Self::failure(kind, detail) {
            Outcome::Failure { kind, detail, .. } => Outcome::Failure {
                kind,
                detail,
                status: Some(status),
            },
            success => success,
        }
    }

    /// The HTTP status of the response, if the check got one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Success { status } => Some(*status),
            Outcome::Failure { status, .. } => *status,
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success { .. })
    }

    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Outcome::Success { .. } => None,
            Outcome::Failure { kind, .. } => Some(*kind),
        }
    }

    /// `error_message` as stored and logged: `KIND: detail`, or `None` on success.
    pub fn error_message(&self) -> Option<String> {
        match self {
            Outcome::Success { .. } => None,
            Outcome::Failure { kind, detail, .. } => Some(format!("{kind}: {detail}")),
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub started_at: DateTime<Utc>,
    /// Request start to the end of the (capped) body read; up to the timeout on failure.
    pub latency: Duration,
    pub outcome: Outcome,
    /// The notAfter of the leaf certificate the server presented, for an https check whose
    /// final hop got a response (whatever its status or body); `None` for plain http and for
    /// checks that failed before a response.
    pub tls_not_after: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Prober {
    client: reqwest::Client,
    max_body_bytes: usize,
    follow_redirects: usize,
}

impl Prober {
    /// A prober with `config`'s limits; trusts the system's roots and, with `probe.ca_file`,
    /// every certificate of that PEM file as well. Fails if that file cannot be read or holds
    /// no certificate, naming the key and the path.
    pub fn new(config: &ProbeConfig) -> anyhow::Result<Self> {
        let extra_roots = match &config.ca_file {
            Some(path) => extra_roots(path)?,
            None => Vec::new(),
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("mcp-healthd/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none()) // followed by `follow`
            .no_proxy()
            .tcp_nodelay(true)
            .tls_info(true) // the peer's certificate, for `Check::tls_not_after`
            .tls_certs_merge(extra_roots)
            .build()?;
        Ok(Self {
            client,
            max_body_bytes: config.max_body_bytes,
            follow_redirects: config.follow_redirects as usize,
        })
    }

    /// Checks a planned service: probes a target; a row that cannot be probed fails at once
    /// with its `invalid_target` reason, so it is reported like any other failure.
    pub async fn check_planned(&self, planned: &Planned) -> Check {
        match planned {
            Planned::Probe(target) => self.check(target).await,
            Planned::Invalid(invalid) => Check {
                started_at: Utc::now(),
                latency: Duration::ZERO,
                outcome: Outcome::failure(ErrorKind::InvalidTarget, invalid.reason.clone()),
                tls_not_after: None,
            },
        }
    }

    pub async fn check(&self, target: &Target) -> Check {
        let started_at = Utc::now();
        let start = Instant::now();
        let mut tls_not_after = None;
        let exchange = self.exchange(target, &mut tls_not_after);
        let outcome = match tokio::time::timeout(target.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::failure(
                ErrorKind::Timeout,
                format!(
                    "no complete response within {}",
                    humantime::format_duration(target.timeout)
                ),
            ),
        };
        Check {
            started_at,
            latency: start.elapsed(),
            outcome,
            tls_not_after,
        }
    }

    /// The check's request(s) and body read: follows up to `probe.follow_redirects` redirects
    /// and judges the last response. `tls_not_after` is set as soon as the final hop's response
    /// is in, so a body that then fails or times out keeps it.
    async fn exchange(
        &self,
        target: &Target,
        tls_not_after: &mut Option<DateTime<Utc>>,
    ) -> Outcome {
        let mut hop = Hop::first(target);
        let mut followed = 0;
        loop {
            let reply = match self.send(target, &hop, tls_not_after).await {
                Ok(reply) => reply,
                Err(outcome) => return outcome,
            };
            if self.follow_redirects == 0 {
                return judge(target, &reply); // a redirect is judged, and fails, as it is
            }
            hop = match redirect::next(&hop, reply.status, reply.location.as_deref()) {
                None => return judge(target, &reply),
                Some(Err(detail)) => return Outcome::failure(ErrorKind::Redirect, detail),
                Some(Ok(_)) if followed == self.follow_redirects => {
                    return Outcome::failure(
                        ErrorKind::Redirect,
                        format!("too many redirects (more than {followed})"),
                    );
                }
                Some(Ok(next)) => next,
            };
            followed += 1;
        }
    }

    /// One hop: its request, and its body unless the response is a redirect to follow (or the
    /// method is HEAD). Plain http without credentials takes the lean path (`plain`); the rest
    /// goes through reqwest. The row's headers and credentials go only to the target's origin.
    async fn send(
        &self,
        target: &Target,
        hop: &Hop,
        tls_not_after: &mut Option<DateTime<Utc>>,
    ) -> Result<Reply, Outcome> {
        *tls_not_after = None; // the final hop's, never an earlier one's
        let wants_body = |status, location: Option<&str>| {
            hop.method != reqwest::Method::HEAD
                && (self.follow_redirects == 0 || redirect::next(hop, status, location).is_none())
        };
        let own_origin = hop.is_target_origin(target);
        let headers: &[(String, String)] = if own_origin { &target.headers } else { &[] };
        if plain::eligible(&hop.url) && (!own_origin || plain::eligible(&target.url)) {
            return plain::fetch(
                &hop.url,
                &hop.method,
                headers,
                self.max_body_bytes,
                wants_body,
            )
            .await;
        }
        let mut request = self
            .client
            .request(hop.method.clone(), hop.request_url(target));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(|e| classify(&e))?;
        *tls_not_after = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(reqwest::tls::TlsInfo::peer_certificate)
            .and_then(cert::not_after);
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        if wants_body(status, location.as_deref()) {
            self.read_body(&mut response, &mut body)
                .await
                .map_err(|e| classify(&e))?;
        }
        Ok(Reply {
            status,
            location,
            body,
        })
    }

    /// Reads the body into `body` until it ends or `max_body_bytes` are read.
    async fn read_body(
        &self,
        response: &mut reqwest::Response,
        body: &mut Vec<u8>,
    ) -> reqwest::Result<()> {
        while let Some(chunk) = response.chunk().await? {
            let room = self.max_body_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= self.max_body_bytes {
                break; // dropping the response closes the connection
            }
        }
        Ok(())
    }
}

/// What one hop got: the response's status and `Location`, and its (capped) body when the hop
/// ends the check.
pub(crate) struct Reply {
    status: reqwest::StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

/// The certificates of the PEM file `path` (`probe.ca_file`), to trust as extra roots; each
/// must parse as a trust anchor, so a bad file fails here, naming the key and the path, not
/// later with a bare builder error.
fn extra_roots(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let fail = |why: String| anyhow::anyhow!("probe.ca_file: {path:?} {why}");
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot be read ({e})")))?;
    let mut roots = Vec::new();
    for (i, der) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let der = der.map_err(|e| fail(format!("is not valid PEM ({e})")))?;
        rustls::RootCertStore::empty()
            .add(der.clone())
            .map_err(|e| {
                fail(format!(
                    "holds an invalid certificate (number {}: {e})",
                    i + 1
                ))
            })?;
        roots.push(reqwest::Certificate::from_der(&der)?);
    }
    if roots.is_empty() {
        return Err(fail("holds no PEM certificate".to_owned()));
    }
    Ok(roots)
}

/// A response (its body read) against the target's expectations: the status, then the body.
fn judge(target: &Target, reply: &Reply) -> Outcome {
    let status = reply.status.as_u16();
    if !target.expected_status.contains(status) {
        let kind = if (300..400).contains(&status) {
            ErrorKind::Redirect
        } else {
            ErrorKind::Status
        };
        let location = reply
            .location
            .as_deref()
            .map(|l| format!(" to {l}"))
            .unwrap_or_default();
        return Outcome::failure_with_status(
            kind,
            status,
            format!(
                "HTTP {status}{location} (expected {})",
                target.expected_status
            ),
        );
    }
    if let Some(needle) = &target.body_contains
        && !contains(&reply.body, needle.as_bytes())
    {
        return Outcome::failure_with_status(
            ErrorKind::Body,
            status,
            format!(
                "the first {} bytes of the body do not contain {needle:?}",
                reply.body.len()
            ),
        );
    }
    Outcome::Success { status }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_kind_colon_detail() {
        let o = Outcome::failure(ErrorKind::InvalidTarget, "port 0 is outside 1-65535");
        assert_eq!(
            o.error_message().as_deref(),
            Some("invalid_target: port 0 is outside 1-65535")
        );
        assert_eq!(Outcome::Success { status: 200 }.error_message(), None);
    }

    #[test]
    fn kinds_print_as_the_design_names_them() {
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "timeout",
                "connect",
                "dns",
                "tls",
                "status",
                "protocol",
                "redirect",
                "body",
                "invalid_target"
            ]
        );
    }

    #[test]
    fn details_are_bounded() {
        let long = format!("HTTP 302 to /{}", "é".repeat(100_000));
        let Outcome::Failure { detail, .. } = Outcome::failure(ErrorKind::Redirect, long) else {
            panic!()
        };
        assert!(detail.len() <= MAX_DETAIL + 3 && detail.ends_with("..."));
    }

    #[test]
    fn details_never_hold_credentials() {
        let o = Outcome::failure(
            ErrorKind::Redirect,
            "HTTP 302 to http://monitor:PASS@elsewhere/h (expected 200-299)",
        );
        assert_eq!(
            o.error_message().as_deref(),
            Some("redirect: HTTP 302 to http://***@elsewhere/h (expected 200-299)")
        );
    }

    #[test]
    fn body_search() {
        assert!(contains(b"{\"status\":\"ok\"}", b"\"ok\""));
        assert!(!contains(b"degraded", b"ok"));
    }
}
