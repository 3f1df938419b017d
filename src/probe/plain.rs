//! The lean path of a plain-http hop: one `TcpStream` and hyper's HTTP/1 client connection,
//! driven in the check's own task. reqwest's pool, connector layers and per-request task are
//! machinery a one-shot request without TLS does not use; they cost about as much CPU as the
//! rest of the check (issue 16). https, and a URL with credentials, still go through reqwest.
//!
//! The connection lives exactly as long as the hop: whether the hop ends, fails or is dropped
//! by the check's timeout, the socket is closed with it, and no task is left behind.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::future::{Either, select};
use http_body_util::{BodyExt as _, Empty};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Url;

use super::classify::{Phase, classify_hyper};
use super::{ErrorKind, Outcome, Reply};

/// How long a connection attempt may take before the next address is tried.
const FALLBACK_AFTER: std::time::Duration = std::time::Duration::from_millis(300);

const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("mcp-healthd/", env!("CARGO_PKG_VERSION")));

/// Whether a hop to `url` can take the lean path: plain http with no credentials to send.
pub(super) fn eligible(url: &Url) -> bool {
    url.scheme() == "http" && url.username().is_empty() && url.password().is_none()
}

/// One request to `url` (eligible) on a new connection; `headers` are sent as they are. The
/// body is read (up to `max_body` bytes) when `wants_body` says so of the response's head.
pub(super) async fn fetch(
    url: &Url,
    method: &Method,
    headers: &[(String, String)],
    max_body: usize,
    wants_body: impl FnOnce(StatusCode, Option<&str>) -> bool,
) -> Result<Reply, Outcome> {
    let request = request(url, method, headers)?;
    let stream = connect(url).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| classify_hyper(&e, Phase::Head))?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| classify_hyper(&e, Phase::Head))?;
        let (head, mut incoming) = response.into_parts();
        let location = head
            .headers
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        if wants_body(head.status, location.as_deref()) {
            while body.len() < max_body {
                let Some(frame) = incoming.frame().await else {
                    break;
                };
                let frame = frame.map_err(|e| classify_hyper(&e, Phase::Body))?;
                if let Ok(chunk) = frame.into_data() {
                    let room = max_body - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
            }
        }
        Ok(Reply {
            status: head.status,
            location,
            body,
        })
    };
    // The connection is polled beside the exchange and dropped with it, closing the socket.
    match select(std::pin::pin!(exchange), conn).await {
        Either::Left((reply, _conn)) => reply,
        // The connection ended (the server closed it, or it failed): what the exchange got
        // before that, or the error the connection handed it, decides.
        Either::Right((_, exchange)) => exchange.await,
    }
}

/// The request line and headers a hop sends: the target's own headers, then, where it set
/// none of them, reqwest's defaults (Host, User-Agent, Accept), so a row's `Host` or
/// `User-Agent` replaces the default rather than doubling it.
fn request(
    url: &Url,
    method: &Method,
    headers: &[(String, String)],
) -> Result<Request<Empty<Bytes>>, Outcome> {
    let invalid = |what: String| Outcome::failure(ErrorKind::InvalidTarget, what);
    let path_and_query = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path_and_query)
        .body(Empty::new())
        .map_err(|e| invalid(e.to_string()))?;
    let sent = request.headers_mut();
    for (name, value) in headers {
        // Checked when the target was planned; never echoed (a value can be a secret).
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(invalid(format!("header {name:?} cannot be sent")));
        };
        sent.append(name, value);
    }
    let host = HeaderValue::from_str(host).map_err(|_| invalid(format!("host {host:?}")))?;
    sent.entry(header::HOST).or_insert(host);
    sent.entry(header::USER_AGENT).or_insert(USER_AGENT);
    sent.entry(header::ACCEPT)
        .or_insert(HeaderValue::from_static("*/*"));
    if method == Method::POST {
        sent.entry(header::CONTENT_LENGTH)
            .or_insert(HeaderValue::from_static("0"));
    }
    Ok(request)
}

/// A connected socket to the URL's host: an address as it is, a name through the system's
/// resolver, its addresses tried in turn. Every address but the last gets [`FALLBACK_AFTER`]:
/// an IPv6 route that drops packets must not cost the check when IPv4 answers (reqwest's
/// connector falls back after the same delay).
async fn connect(url: &Url) -> Result<TcpStream, Outcome> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::from((ip, port))],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::from((ip, port))],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| Outcome::failure(ErrorKind::Dns, e.to_string()))?
            .collect(),
        None => return Err(Outcome::failure(ErrorKind::InvalidTarget, "no host")),
    };
    let mut last = None;
    let count = addrs.len();
    for (i, addr) in addrs.into_iter().enumerate() {
        let attempt = TcpStream::connect(addr);
        let connected = match i + 1 < count {
            true => tokio::time::timeout(FALLBACK_AFTER, attempt)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
            false => attempt.await,
        };
        match connected {
            // No TCP_NODELAY: the request goes out in one write, which Nagle never holds back
            // (a system call per check saved).
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => Outcome::failure(ErrorKind::Connect, e.to_string()),
        None => Outcome::failure(
            ErrorKind::Dns,
            format!("{} has no address", url.host_str().unwrap_or_default()),
        ),
    })
}
