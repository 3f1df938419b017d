//! The status page on `http.listen` (with `http.status_page = true`): `GET /` serves one
//! server-rendered HTML page (`render`), `GET /api/status.json` the same data as JSON.
//!
//! Both are rendered once per snapshot and served from memory. A request finding the snapshot
//! older than [`FRESH_FOR`] is served it at once and starts a refresh behind it (one query),
//! unless a refresh is running or one started within [`FRESH_FOR`] (a failing database is asked
//! at most once a second too). So the database sees at most one query per [`FRESH_FOR`]
//! whatever the traffic, and a slow or silent database never holds a request that has
//! something to serve: while it fails, the last snapshot is served, marked as such. Before the
//! first snapshot, requests wait for the first read (one at a time), then get it or a 503.
//!
//! May import: `config`, `clock`, `text`, `observe`, `store`.

mod render;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::observe::metrics::STATUS_PAGE_QUERIES;
use crate::store::db;
use crate::store::status_page::{self, Snapshot};

/// A snapshot is served this long before the next request reads a new one.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// A snapshot and when it was read.
type Timed = (Instant, Arc<Snapshot>);

/// A snapshot, rendered.
struct Rendered {
    made: Instant,
    /// The database did not answer the last refresh: this is older than it should be.
    stale: bool,
    html: Bytes,
    json: Bytes,
}

#[derive(Clone)]
struct Pages {
    pool: PgPool,
    /// The latest rendering, read without waiting.
    published: Arc<RwLock<Option<Arc<Rendered>>>>,
    /// Held by the one request refreshing; holds when the last attempt started.
    refresh: Arc<Mutex<Option<Instant>>>,
    /// The last snapshot read, and when: re-rendered as stale while the database fails.
    last_snapshot: Arc<RwLock<Option<Timed>>>,
    /// How long a refresh may wait on the database.
    limit: Duration,
}

/// The routes `/` and `/api/status.json`, to be merged into the HTTP endpoint. `limit` bounds
/// each query (the daemon's `database.statement_timeout`).
pub fn router(pool: PgPool, limit: Duration) -> Router {
    let pages = Pages {
        pool,
        published: Arc::default(),
        refresh: Arc::default(),
        last_snapshot: Arc::default(),
        limit,
    };
    Router::new()
        .route("/", get(page))
        .route("/api/status.json", get(json))
        .with_state(pages)
}

impl Pages {
    fn published(&self) -> Option<Arc<Rendered>> {
        self.published.read().expect("status page lock").clone()
    }

    /// What to serve now: see the module's doc. `None` only while no snapshot was ever read.
    async fn current(&self) -> Option<Arc<Rendered>> {
        let current = self.published();
        if current
            .as_ref()
            .is_some_and(|r| r.made.elapsed() < FRESH_FOR)
        {
            return current;
        }
        if current.is_some() {
            // Never wait on the database with something to serve: refresh behind this request.
            if let Ok(guard) = self.refresh.clone().try_lock_owned() {
                let pages = self.clone();
                tokio::spawn(async move { pages.refresh(guard).await });
            }
            return current;
        }
        // Nothing yet: wait for the first read (made by this request or one before it).
        let guard = self.refresh.clone().lock_owned().await;
        if guard.is_some() {
            return self.published();
        }
        self.refresh(guard).await;
        self.published()
    }

    /// One refresh, at most one per [`FRESH_FOR`] (`last_attempt`, held while it runs).
    async fn refresh(&self, mut last_attempt: tokio::sync::OwnedMutexGuard<Option<Instant>>) {
        if last_attempt.is_some_and(|t| t.elapsed() < FRESH_FOR)
            || self
                .published()
                .is_some_and(|r| r.made.elapsed() < FRESH_FOR)
        {
            return;
        }
        *last_attempt = Some(Instant::now());
        metrics::counter!(STATUS_PAGE_QUERIES).increment(1);
        let read = db::deadline(self.limit, status_page::snapshot(&self.pool)).await;
        let rendered = match read {
            Ok(snap) => {
                let made = Instant::now();
                let rendered = render_all(&snap, false, made);
                *self.last_snapshot.write().expect("status page lock") =
                    Some((made, Arc::new(snap)));
                Some(rendered)
            }
            Err(e) => {
                tracing::warn!(event = "status_page_stale", error = %e, "the status page's query failed; serving the last snapshot");
                self.last_snapshot
                    .read()
                    .expect("status page lock")
                    .as_ref()
                    .map(|(made, snap)| render_all(snap, true, *made))
            }
        };
        if let Some(r) = rendered {
            *self.published.write().expect("status page lock") = Some(Arc::new(r));
        }
    }
}

/// Renders the page and the JSON of `snap` once, for every request until the next snapshot.
fn render_all(snap: &Snapshot, stale: bool, made: Instant) -> Rendered {
    Rendered {
        made,
        stale,
        html: render::page(snap, stale, chrono::Utc::now())
            .into_string()
            .into(),
        json: serde_json::to_vec(snap).unwrap_or_default().into(),
    }
}

async fn page(State(pages): State<Pages>) -> Response {
    match pages.current().await {
        Some(r) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            r.html.clone(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render::unavailable().into_string(),
        )
            .into_response(),
    }
}

async fn json(State(pages): State<Pages>) -> Response {
    match pages.current().await {
        Some(r) => {
            let mut response = (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                r.json.clone(),
            )
                .into_response();
            if r.stale {
                let warning =
                    HeaderValue::from_static("110 - \"stale: the database does not answer\"");
                response.headers_mut().insert(header::WARNING, warning);
            }
            response
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": "the status database does not answer" })),
        )
            .into_response(),
    }
}
