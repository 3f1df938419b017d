//! The small HTTP endpoint on `http.listen`: `/metrics` (Prometheus text format) and
//! `/healthz` (200 while checks keep completing and the database answers, 503 with the reason),
//! plus the routes a higher layer hands in (the status page).
//!
//! It must never take the descriptors the prober needs, so it is bounded: at most
//! [`MAX_CONNECTIONS`] at once (more are accepted and closed at once), request headers within
//! [`HEADER_READ_TIMEOUT`] of the connection opening or of the previous request (so an idle
//! keep-alive connection is closed after that long too), and no connection served longer than
//! [`CONNECTION_LIFETIME`]. Connections are served by hand with hyper for that.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::observe::stats::Stats;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: PrometheusHandle,
    pub stats: Arc<Stats>,
    pub pool: PgPool,
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn healthz(State(state): State<HttpState>) -> (StatusCode, String) {
    if let Err(why) = state.stats.prober_progress() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("prober: {why}\n"));
    }
    if state
        .stats
        .monitor_outage
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "monitor_outage: this daemon cannot reach the services (canaries or most checks failing); their failures are inconclusive\n".into(),
        );
    }
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database: no answer within 2s\n".into(),
        ),
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime and many daemons do: the
/// prober holds a socket per check in flight, and the usual soft limit of 1024 is easily met.
/// Warns (`fd_limit_low`) when the limit stays below what `config` can use at once: checks in
/// flight, the pool, this endpoint's cap and a margin for the rest.
pub fn raise_fd_limit(config: &Config) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    let needed = config.probe.concurrency as u64
        + u64::from(config.database.max_connections)
        + MAX_CONNECTIONS as u64
        + 64;
    if limit.rlim_cur < needed {
        tracing::warn!(
            event = "fd_limit_low",
            limit = limit.rlim_cur,
            needed,
            "the descriptor limit (RLIMIT_NOFILE) may not cover probe.concurrency checks at once"
        );
    }
}

/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send a request's headers, counted from when it opens or
/// from its previous request: also the idle timeout of a keep-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection is served, however slowly its client reads.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves until `stop`. Also drains the recorder's histogram buffers every few seconds, so
/// memory stays flat however rarely `/metrics` is scraped.
/// Serves `/metrics`, `/healthz` and the routes of `extra` until `stop`.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    extra: Option<Router>,
    stop: CancellationToken,
) {
    let upkeep = {
        let (handle, stop) = (state.metrics.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        })
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state);
    let app = match extra {
        Some(extra) => app.merge(extra),
        None => app,
    };
    accept_loop(&listener, &app, &stop).await;
    upkeep.abort();
}

/// Accepts until `stop`, each connection in a task holding one of [`MAX_CONNECTIONS`] slots.
/// On `stop`, open connections finish their request (briefly) and are closed.
async fn accept_loop(listener: &TcpListener, app: &Router, stop: &CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut capped = false;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_failed(&e, stop).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if !std::mem::replace(&mut capped, true) {
                tracing::warn!(
                    event = "http_connections_capped",
                    max = MAX_CONNECTIONS,
                    "/metrics and /healthz: new connections are closed until some end"
                );
            }
            continue; // dropping the stream closes it
        };
        capped = false;
        connections.spawn(serve_connection(stream, app.clone(), slot, stop.clone()));
    }
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// An accept error: out of descriptors (or memory) waits a moment rather than spinning; a
/// connection that went away before it was accepted is nothing.
async fn accept_failed(e: &std::io::Error, stop: &CancellationToken) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        return;
    }
    tracing::debug!(event = "http_accept_failed", error = %e);
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(Duration::from_millis(250)) => {}
    }
}

/// One connection, HTTP/1.1, with the header-read (and idle) timeout and the lifetime cap.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    _slot: OwnedSemaphorePermit,
    stop: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(16 * 1024);
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = tokio::time::sleep(CONNECTION_LIFETIME) => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
        }
    }
}
